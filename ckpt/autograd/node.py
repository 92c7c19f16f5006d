"""Graph nodes (``grad_fn``), saved tensors and the one function every op records through.

A node is created by an op when grad mode is on and an input requires grad. It holds
``next_functions`` (edges to the nodes of its inputs), what the op saved for backward (each
saved tensor goes through the active saved-tensor hooks), and per-input shape/dtype so the
engine can un-broadcast and validate gradients in one place. Subclasses define
``vjp(self, grad, *saved)`` returning one gradient per input (or None).
"""
import re
import sys
import weakref
from typing import NamedTuple

import numpy as np

from . import grad_mode
from .accumulate import accumulate_array, accumulate_into
from .tensor import Tensor, _wrap

_GradState = grad_mode._State


class GradientEdge(NamedTuple):
    """Where a tensor's gradient enters the graph: the node (its ``grad_fn``, or a leaf's
    ``AccumulateGrad``) and which of the node's outputs (``graph.get_gradient_edge``)."""
    node: object
    output_nr: int


class _SavedHookStack:
    """The saved-tensor hook pairs in effect, innermost last, and the ``saved_tensors_hooks``
    that entered each; how many of them a user entered (not a tracker's own); the messages of
    the ``disable_saved_tensors_hooks`` in effect."""

    def __init__(self):
        self.pairs = []
        self.owners = []
        self.entered_by_user = 0
        self.refusals = []

    NONE = ((), (), 0)  # the state without hooks

    def state(self):
        return list(self.pairs), list(self.owners), self.entered_by_user

    def restore(self, state):
        """Put back what ``state()`` gave: a backward pass does, as torch does (hooks entered
        or exited during backward, by an unpack hook say, are undone at its end)."""
        self.pairs[:], self.owners[:], self.entered_by_user = state


_HookStack = _SavedHookStack()


class saved_tensors_hooks:
    """Within this context, every tensor an op saves for backward is passed to
    ``pack_hook(tensor)`` and whatever it returns is stored; ``unpack_hook(packed)`` must give
    the tensor back when backward needs it. Nested contexts: the innermost pair wins.

    >>> import ckpt
    >>> packed = []
    >>> def pack(t):
    ...     packed.append(t.shape); return t.detach().numpy().copy()
    >>> with ckpt.autograd.graph.saved_tensors_hooks(pack, ckpt.tensor):
    ...     x = ckpt.ones(3, requires_grad=True)
    ...     y = (x * x).sum()
    >>> y.backward(); packed, x.grad.tolist()
    ([(3,), (3,)], [2.0, 2.0, 2.0])
    """

    def __init__(self, pack_hook, unpack_hook):
        self.pack_hook = pack_hook
        self.unpack_hook = unpack_hook

    # a memory tracker's own pair (events.observing) sets this: ``disable_saved_tensors_hooks``
    # neither refuses it nor is refused by it, so tracking never changes what a program does
    _tracker = False

    def __enter__(self):
        if not self._tracker:
            if _HookStack.refusals:
                raise RuntimeError(_HookStack.refusals[-1])
            _HookStack.entered_by_user += 1
        _HookStack.pairs.append((self.pack_hook, self.unpack_hook))
        _HookStack.owners.append(self)
        return self

    def __exit__(self, *exc):
        owners = _HookStack.owners
        for i in range(len(owners) - 1, -1, -1):
            if owners[i] is self:
                del owners[i], _HookStack.pairs[i]
                break
        else:
            raise RuntimeError("saved_tensors_hooks.__exit__ called without a matching "
                               "__enter__: these hooks are not in effect (exited already?)")
        if not self._tracker:
            _HookStack.entered_by_user -= 1
        return False


class Node:
    """Base class of every ``grad_fn``; its name is the class name, as in torch."""
    # _meta: [shape0, dtype0, shape1, dtype1, ...] of the inputs (None for non-differentiable)
    __slots__ = ("next_functions", "_saved", "_meta", "__weakref__", "__dict__")
    _out_meta = None  # [(shape, dtype)] per output, set only for multi-output nodes
    # Hooks are rare: they live in the instance dict only once registered. ``_plain`` (the
    # one lookup of the engine's hot path, where three were: with the table's rules as
    # staticmethods, -4% of the 300-op chain's backward instructions) is
    # True while the node may run straight to its rule on arrays: it turns False when the
    # node gets hooks of any kind or several outputs, or its class a rule that needs Tensors.
    _pre_hooks = _post_hooks = _tensor_hooks = _retain_hooks = None
    _plain = True
    # ``vjp`` works on plain numpy arrays as well as on Tensors: rules use operators, the
    # shape methods numpy shares (reshape, squeeze, mT, indexing) and ckpt ops, which
    # return arrays for arrays. A backward pass that builds no graph (no ``create_graph``)
    # runs rules on arrays, skipping Tensor wrappers; with ``create_graph`` the same rule
    # runs on Tensors and is recorded. A subclass whose rule needs Tensors sets this False.
    _array_rule = True
    # ``vjp``/``jvp`` handle gradients/tangents with leading batch dims (see ops._util.Batch);
    # ``_elementwise``: the op broadcasts its inputs elementwise, so a batched tangent of a
    # lower-rank input is padded to the output's rank before the JVP rule sees it.
    _batched_rule = False
    _elementwise = False
    # torch's names of what the node saves, in ``_saved`` order: ``grad_fn._saved_<name>``
    # reads one (unpacked), ``grad_fn._raw_saved_<name>`` gives its ``register_hooks``
    _saved_names = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls._array_rule:
            cls._plain = False
        for key in cls.__dict__.get("_saved_names", ()):
            cls._saved_value_properties(key)

    @classmethod
    def _saved_value_properties(cls, key):
        """``_saved_<key>`` (the saved value, unpacked) and ``_raw_saved_<key>`` (its
        ``register_hooks``) as properties of ``cls``. (Not ``__getattr__``: a class with
        one has every attribute read take Python's unspecialized path, +4% of the 300-op
        chain's instructions.)

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> y = x.exp(); y.grad_fn._saved_result.grad_fn is y.grad_fn, x.sin().grad_fn._saved_self is x
        (True, True)
        """
        def index(node, name):
            names = type(node)._saved_names
            if key not in names:
                raise AttributeError(f"{type(node).__name__!r} object has no attribute {name!r}")
            return names.index(key)

        def value(node):
            i = index(node, "_saved_" + key)
            saved = node._saved
            if saved is None:
                raise RuntimeError(_FREED_MESSAGE)
            entry = saved[i]
            return entry.unpack(node) if entry.__class__ is SavedTensor else entry

        setattr(cls, "_saved_" + key, property(value))
        setattr(cls, "_raw_saved_" + key,
                property(lambda node: RawSavedTensor.of(node, index(node, "_raw_saved_" + key))))

    def name(self):
        """The node's name, e.g. ``'MulBackward0'``.

        >>> import ckpt
        >>> (ckpt.ones(2, requires_grad=True) * 3).grad_fn.name()
        'MulBackward0'
        """
        return type(self).__name__

    def __repr__(self):
        return f"<{type(self).__name__} object at {id(self):#x}>"

    def __call__(self, *grads):
        """This node's backward rule on ``grads`` (one per output of its op): the gradient of
        each input (a tuple, or the one gradient), as calling a torch ``grad_fn`` does.

        >>> import ckpt
        >>> x = ckpt.tensor([3.0], requires_grad=True)
        >>> (x ** 2).grad_fn(ckpt.ones(1)).tolist()
        [6.0]
        """
        wanted = 1 if self._out_meta is None else len(self._out_meta)
        if len(grads) != wanted:
            raise TypeError(f"{self.name()}: expected {wanted} arguments, got {len(grads)} "
                            "instead")
        result = self.vjp(grads[0] if self._out_meta is None else list(grads), *self.saved_tensors)
        result = result if isinstance(result, (tuple, list)) else (result,)
        result = tuple(g if g is None or isinstance(g, Tensor) else Tensor(g) for g in result)
        return result[0] if len(result) == 1 else result

    @property
    def saved_tensors(self):
        """The tensors this node saved for backward, unpacked (through unpack hooks)."""
        saved = self._saved
        if saved is None:
            raise RuntimeError(_FREED_MESSAGE)
        return tuple(s.unpack(self) if s.__class__ is SavedTensor else s for s in saved)

    @property
    def needs_input_grad(self):
        """Per input: does it need a gradient?"""
        if "needs_input_grad" in self.__dict__:
            return self.__dict__["needs_input_grad"]
        return tuple(edge[0] is not None for edge in self.next_functions)

    @property
    def metadata(self):
        """A dict of the user's, kept with the node (torch's ``grad_fn.metadata``).

        >>> import ckpt
        >>> y = ckpt.ones(2, requires_grad=True) * 2
        >>> y.grad_fn.metadata["step"] = 3; y.grad_fn.metadata
        {'step': 3}
        """
        return self.__dict__.setdefault("_metadata", {})

    def saved_entries(self):
        """The ``SavedTensor`` records of what this node saved, not unpacked (plain values left
        out); empty once backward released them.

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> [s.producer(None) for s in (x * x).grad_fn.saved_entries()]   # x is a leaf
        [None, None]
        """
        return tuple(s for s in self._saved or () if s.__class__ is SavedTensor)

    @property
    def multi_output(self):
        """True for the node of an op with several outputs (``record_multi``).

        >>> import ckpt
        >>> x = ckpt.ones(2, 3, requires_grad=True)
        >>> x.max(dim=1).values.grad_fn.multi_output   # max along a dim: values and indices
        True
        >>> x.exp().grad_fn.multi_output
        False
        """
        return self._out_meta is not None

    def input_meta(self, i):
        """``(shape, dtype)`` of input ``i`` as the op saw it, or None for an input that needs
        no gradient.

        >>> import ckpt
        >>> x = ckpt.ones(2, 3, requires_grad=True)
        >>> (x * 2.0).grad_fn.input_meta(0), (x * 2.0).grad_fn.input_meta(1)
        (((2, 3), dtype('float32')), None)
        """
        shape = self._meta[2 * i]
        return None if shape is None else (shape, self._meta[2 * i + 1])

    def saved_buffers(self):
        """``{buffer_id: nbytes}`` of the distinct numpy buffers this node saved (views share).

        A saved-tensor hook's packed object may define ``resident_buffers()`` (a dict like
        this one) to say what it keeps in memory instead: ``checkpoint`` reports its inputs,
        ``save_on_disk`` nothing.

        >>> import ckpt
        >>> x = ckpt.ones(4, requires_grad=True)
        >>> (x * x).grad_fn.saved_buffers() == {id(x.data): 16}
        True
        """
        buffers = {}
        for s in self._saved or ():
            if s.__class__ is SavedTensor:
                # hooks that keep data elsewhere (checkpoint, save_on_disk) say what stays in memory
                resident = getattr(s.packed, "resident_buffers", None) if s.unpack_hook else None
                if resident is not None:
                    buffers.update(resident())
                    continue
                key, nbytes = s.buffer()
                buffers[key] = nbytes
        return buffers

    def saved_bytes(self):
        """Bytes this node keeps alive for backward, each underlying buffer counted once.

        >>> import ckpt
        >>> x = ckpt.ones(4, requires_grad=True)
        >>> x.exp().grad_fn.saved_bytes()
        16
        """
        return sum(self.saved_buffers().values())

    def register_hook(self, fn):
        """``fn(grad_inputs, grad_outputs)`` runs after this node computed its input gradients;
        returning a tuple replaces them."""
        if self._post_hooks is None:
            self._post_hooks = []
        self._plain = False
        return RemovableHandle(self._post_hooks, fn)

    def register_prehook(self, fn):
        """``fn(grad_outputs)`` runs before this node; returning a tuple replaces the grads."""
        if self._pre_hooks is None:
            self._pre_hooks = []
        self._plain = False
        return RemovableHandle(self._pre_hooks, fn)

    def _release(self):
        if self._saved:
            self._saved = None

    def vjp(self, grad, *saved):
        raise NotImplementedError(f"{self.name()} has no backward rule")


_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


class RemovableHandle:
    """Returned by ``register_hook``; ``remove()`` unregisters the hook.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> h = x.register_hook(lambda g: g * 2)
    >>> h.remove()
    >>> (x * 1).sum().backward(); x.grad.tolist()
    [1.0, 1.0]
    """
    __slots__ = ("_hooks", "_fn")

    def __init__(self, hooks, fn):
        self._hooks = hooks
        self._fn = fn
        hooks.append(fn)

    def remove(self):
        if self._fn in self._hooks:
            self._hooks.remove(self._fn)


class AccumulateGrad(Node):
    """The node of a leaf that requires grad: its rule adds the incoming gradient into
    ``leaf.grad``. ``_plain`` (the engine runs it as any rule) until the leaf or the node
    gets a hook; a hooked one goes through the engine's hook path."""
    __slots__ = ("_variable",)
    _post_acc_hooks = None  # the leaf's ``register_post_accumulate_grad_hook``s, once registered

    def __init__(self, leaf):
        self._variable = weakref.ref(leaf)
        self.next_functions = ()
        self._saved = ()
        self._meta = ()
        if leaf._hooks is not None:
            self._plain = False

    def vjp(self, g):
        leaf = self._variable()
        if leaf is not None:
            if g.__class__ is np.ndarray:
                # more holders than the pass loop's name, this frame's and getrefcount's
                # argument (as counted by this interpreter): something else holds it too
                shared = sys.getrefcount(g) > _HELD_BY_PASS_ONLY
                accumulate_array(leaf, g, shared)
            elif g.__class__ is Tensor:  # a Tensor pass (its grad mode is its create_graph),
                if g._data.shape != leaf._data.shape:   # or the node called directly
                    raise RuntimeError(f"AccumulateGrad: a gradient of size {list(g._data.shape)} "
                                       f"for a tensor of size {list(leaf._data.shape)}")
                accumulate_into(leaf, g, _GradState.enabled)
            else:  # numpy's scalar for a sum of 0-d gradients
                accumulate_array(leaf, np.asarray(g), False)
        return ()

    @property
    def variable(self):
        return self._variable()


class _CountingRule:
    """Called as the pass loop calls a rule, to count the references to a gradient that only
    the pass holds (3 on CPython 3.11-3.13, 4 on 3.10: stack references differ)."""

    def vjp(self, g):
        count = sys.getrefcount(g)
        return count


def _count_held_by_pass():
    node, input_grads = _CountingRule(), np.empty(1)
    input_grads = node.vjp(input_grads)
    return input_grads


_HELD_BY_PASS_ONLY = _count_held_by_pass()


def root_buffer(array):
    """The ndarray that owns ``array``'s memory (its ``.base`` chain followed to the end): views
    of one buffer share it, so memory is counted once per root.

    >>> import numpy as np
    >>> a = np.zeros(8)
    >>> root_buffer(a[2:].reshape(2, 3)) is a
    True
    """
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


_root_buffer = root_buffer  # the ops' name for it


def _op_name(node):
    """The op a node records, as torch names it in errors: ``MulBackward0`` -> ``Mul``."""
    return re.sub(r"Backward\d*$", "", node.name())


class SavedTensor:
    """One tensor an op saved for backward.

    Without hooks it keeps the input tensor itself (or, for the op's own output, just its
    data, so the graph holds no reference cycle). With saved-tensor hooks it keeps whatever
    ``pack_hook`` returned and calls ``unpack_hook`` when backward needs the tensor; what is
    needed to rebuild the tensor's place in the graph is noted at pack time.
    """
    __slots__ = ("tensor", "data", "version", "vc", "is_output", "output_nr", "unpack_hook",
                 "packed", "grad_fn", "acc", "requires_grad", "buffer_id", "nbytes", "shape", "dtype")

    def __init__(self, t, is_output):
        vc = t._vc
        self.vc = vc
        self.version = vc[0]
        self.is_output = is_output
        self.output_nr = t._output_nr
        if _HookStack.pairs:
            self._pack(t)
        elif is_output:
            self.unpack_hook = self.tensor = None
            self.data = t._data
            self.packed = None  # forward mode: the output's tangent, set once computed
        else:
            if t._creation_meta is not None:
                _check_saveable(t)
            self.unpack_hook = None
            self.tensor = t

    def _pack(self, t):
        if t._creation_meta is not None:
            _check_saveable(t)
        data = t.data
        self.shape, self.dtype = data.shape, data.dtype
        root = _root_buffer(data)
        self.buffer_id, self.nbytes = id(root), root.nbytes
        self.requires_grad = t.requires_grad
        self.grad_fn = None if self.is_output else t.grad_fn
        self.acc = t._get_accumulator() if (t.requires_grad and t.grad_fn is None) else None
        pack, self.unpack_hook = _HookStack.pairs[-1]
        version = t._vc[0]
        with grad_mode.no_grad():
            self.packed = pack(t)
        if getattr(pack, "checks_versions", False):  # allow_mutation_on_saved_tensors'
            self.vc = [version]
        if t._vc[0] != version:
            raise RuntimeError(
                "A saved tensor pack hook is modifying its input in place. Tensors provided as "
                "input to pack hook cannot be modified by in-place operations as this can lead "
                "to unexpected side-effects. Please open an issue if you need to perform "
                "in-place operations on the input to a pack hook.")
        self.tensor = self.data = None

    def producer(self, node):
        """The node whose output this saved tensor is (``node``, the saving one, for its own
        output), or None for a leaf.

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> e = x.exp()
        >>> (e * e).grad_fn.saved_entries()[0].producer(None) is e.grad_fn
        True
        >>> e.grad_fn.saved_entries()[0].producer(e.grad_fn) is e.grad_fn   # exp saves its output
        True
        """
        if self.is_output:
            return node
        if self.unpack_hook is not None:
            return self.grad_fn
        return self.tensor.grad_fn if self.tensor is not None else None

    def buffer(self):
        """``(buffer_id, nbytes)`` of the numpy buffer behind the saved tensor (views share)."""
        if self.unpack_hook is not None:
            return self.buffer_id, self.nbytes
        root = _root_buffer(self.tensor.data if self.tensor is not None else self.data)
        return id(root), root.nbytes

    def _version_error(self, node):
        if self.unpack_hook is not None:
            shape, dtype, grad_fn = self.shape, self.dtype, self.grad_fn
        else:
            data = self.tensor.data if self.tensor is not None else self.data
            shape, dtype = data.shape, data.dtype
            grad_fn = self.tensor.grad_fn if self.tensor is not None else None
        if self.is_output:
            where = f", which is output {self.output_nr} of {_op_name(node)},"
        elif grad_fn is not None:
            where = f", which is output {self.output_nr} of {_op_name(grad_fn)},"
        else:
            where = ""
        return RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [ckpt.{_type_name(dtype)} {list(shape)}]{where} is at "
            f"version {self.vc[0]}; expected version {self.version} instead.")

    def unpack(self, node, as_array=False):
        """The saved value, through the unpack hook if one packed it: a Tensor in its place
        in the graph, or (``as_array``, for array rules) just its numpy array.

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> saved = (x * x).grad_fn._saved[0]
        >>> saved.unpack(None) is x, saved.unpack(None, as_array=True) is x.data
        (True, True)
        """
        if self.vc[0] != self.version:
            raise self._version_error(node)
        hook = self.unpack_hook
        if hook is None:
            t = self.tensor
            if t is not None:
                if t.grad_fn is None and not t.requires_grad and t._creation_meta == _DETACHED:
                    raise RuntimeError(
                        "Trying to use a saved tensor that has been detached in-place, i.e. "
                        "with .detach_().This is not supported, please use out-of-place "
                        "`.detach()` instead")
                return t._data if as_array else t
            if as_array:
                return self.data
            t = _wrap(self.data)
            t._vc = self.vc
            t.requires_grad = True
            t.grad_fn = node
            t._output_nr = self.output_nr
            if Extensions.forward_ad:
                t._fw = self.packed
            return t
        unpacked = hook(self.packed)
        if not isinstance(unpacked, Tensor):
            raise TypeError("Output of saved tensor unpack_hook expected to be a Tensor but got "
                            f"result of type {type(unpacked).__name__}")
        if as_array:
            return unpacked.data
        if not (self.requires_grad or unpacked.requires_grad or unpacked._fw is not None):
            return unpacked  # as torch: nothing to attach, so the tensor itself
        t = _wrap(unpacked.data)
        t._vc = unpacked._vc  # as torch: the version counter of what unpack gave
        if self.requires_grad:
            t.requires_grad = True
            t._output_nr = self.output_nr
            if self.is_output:
                t.grad_fn = node
            else:
                t.grad_fn = self.grad_fn
                t._acc = self.acc
        return t


def _check_saveable(t):
    if t.is_inference():
        raise RuntimeError(
            "Inference tensors cannot be saved for backward. Please do not use Tensors created in "
            "inference mode in computation tracked by autograd. To work around this, you can make "
            "a clone to get a normal tensor and use it in autograd, or use `ckpt.no_grad()` "
            "instead of `ckpt.inference_mode()`.")


class RawSavedTensor:
    """``grad_fn._raw_saved_<name>``: one saved value of ``node``, whose hooks can be set.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> y = x.exp()
    >>> y.grad_fn._raw_saved_result.register_hooks(lambda t: t * 2, lambda t: t)
    >>> y.sum().backward(); [round(v, 4) for v in x.grad.tolist()]
    [5.4366, 5.4366]

    Only a node makes one (``ckpt.autograd.SavedTensor``, torch's name for this class):

    >>> ckpt.autograd.SavedTensor()
    Traceback (most recent call last):
    RuntimeError: Trying to create a SavedTensor object from Python is forbidden.
    """

    def __init__(self, *args, **kwargs):
        raise RuntimeError("Trying to create a SavedTensor object from Python is forbidden.")

    @classmethod
    def of(cls, node, index):
        """The saved value ``index`` of ``node``."""
        raw = cls.__new__(cls)
        raw.node, raw.index = node, index
        return raw

    def register_hooks(self, pack_hook, unpack_hook):
        """Pack the saved value now with ``pack_hook``; ``unpack_hook`` gives it back when
        backward needs it (one pair per saved value, as in torch)."""
        if not (callable(pack_hook) and callable(unpack_hook)):
            raise TypeError("register_hooks(): incompatible function arguments: pack_hook and "
                            "unpack_hook must be callables")
        node = self.node
        if node._saved is None:
            raise RuntimeError(
                "Calling register_hooks on a saved tensor after it has been freed. Saved "
                "intermediate values of the graph are freed when you call .backward() or "
                "autograd.grad(). Specify retain_graph=True if you need to backward through the "
                "graph a second time or if you need to access saved variables after calling "
                "backward.")
        entry = node._saved[self.index]
        if entry.__class__ is not SavedTensor:
            raise RuntimeError("register_hooks: this saved value is not a tensor")
        if entry.unpack_hook is not None:
            raise RuntimeError("Calling register_hooks on a saved tensor whose hooks have already "
                               "been set. Hint: only one pair of hooks is allowed at a time.")
        value = entry.unpack(node)
        _HookStack.pairs.append((pack_hook, unpack_hook))
        _HookStack.owners.append(None)
        try:
            repacked = SavedTensor(value, entry.is_output)
        finally:
            _HookStack.pairs.pop()
            _HookStack.owners.pop()
        saved = list(node._saved)
        saved[self.index] = repacked
        node._saved = saved if len(saved) > 1 else tuple(saved)


def _type_name(dtype):
    return {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
            "int64": "LongTensor", "int32": "IntTensor", "bool": "BoolTensor"}.get(str(dtype), "Tensor")


OUTPUT = object()  # marks "the op's own output" in a ``saved`` tuple
_DETACHED = ("detached",)  # a Tensor's _creation_meta after detach_() took it out of the graph


class _Extensions:
    """Per-op extensions, off on the hot path: ``record`` checks one flag.

    ``forward_ad`` is True inside a ``forward_ad.dual_level``: ``record`` then gives each
    op's output its tangent through ``propagate_tangent(cls, out, inputs, attrs)``, which
    ``ckpt.autograd.forward_ad`` installs (this module knows nothing of forward mode);
    ``observers`` are objects with ``on_op(out, node)`` called after every recorded op.
    ``refresh()`` recomputes ``active`` after either changes.
    ``grad_observers`` are objects with ``on_grads(arrays)``, told by the engine of the
    numpy gradients a backward without ``create_graph`` passes between nodes (those are
    no Tensors, so ``on_op`` never sees them): each VJP's results before the node's saved
    tensors are released, and every sum of two gradients. Both lists are autograd's own:
    ``events.observing`` fills them, and turns their calls into the typed events every
    client outside autograd sees.
    """

    def __init__(self):
        self.active = False
        self.forward_ad = False
        self.propagate_tangent = None
        self.anomaly = None  # anomaly detection's watcher while it is on (failed, finished)
        self.observers = []
        self.grad_observers = []

    def refresh(self):
        self.active = self.forward_ad or bool(self.observers)


# (instances, not classes: ops read an instance's attributes faster; with _HookStack and
# grad_mode._State, 1.2% of the 300-op chain's instructions)
Extensions = _Extensions()


def record(cls, out_data, inputs, saved=(), **attrs):
    """Wrap ``out_data`` in a Tensor and, if grad is needed, attach a ``cls`` node.

    ``inputs`` are the op's differentiable arguments (Tensors or plain numbers); ``saved``
    lists what the VJP needs: input Tensors, ``OUTPUT`` for the result, or plain values.
    ``attrs`` become attributes of the node (axes, shapes, ...).

    >>> import numpy as np, ckpt
    >>> from ckpt.autograd.ops.elementwise import ExpBackward0
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> record(ExpBackward0, np.exp(x.data), (x,), (OUTPUT,)).grad_fn.name()
    'ExpBackward0'
    """
    out = _wrap(out_data)
    if Extensions.active:
        return _record_extended(cls, out, inputs, saved, attrs)
    if not _GradState.enabled:
        return out
    return _attach(cls, out, inputs, saved, attrs)


def _attach(cls, out, inputs, saved, attrs):
    """Make ``out`` the output of a new ``cls`` node, if some input requires grad."""
    # Ops of one or two inputs (nearly all) skip the loop: building the tuples in one go
    # instead of adding to them per input saves 2% of the instructions of the 300-op
    # chain's forward (8.29M -> 8.13M per chain; callgrind, 2026-12-06).
    n_inputs = len(inputs)
    if n_inputs == 1:
        x = inputs[0]
        if x.__class__ is not Tensor or not x.requires_grad:
            return out
        d, fn = x._data, x.grad_fn
        edges = ((fn, x._output_nr) if fn is not None else (x._acc or x._get_accumulator(), 0),)
        meta = (d.shape, d.dtype)
    elif n_inputs == 2:
        a, b = inputs
        a_needs = a.__class__ is Tensor and a.requires_grad
        b_needs = b.__class__ is Tensor and b.requires_grad
        if not (a_needs or b_needs):
            return out
        edges = (_edge(a) if a_needs else _NO_EDGE, _edge(b) if b_needs else _NO_EDGE)
        meta = ((a._data.shape, a._data.dtype) if a_needs else _NO_META) + (
            (b._data.shape, b._data.dtype) if b_needs else _NO_META)
    else:
        edges = meta = ()
        for x in inputs:
            if x.__class__ is Tensor and x.requires_grad:
                edges += (_edge(x),)
                meta += (x._data.shape, x._data.dtype)
            else:
                edges += (_NO_EDGE,)
                meta += _NO_META
        if all(e is _NO_EDGE for e in edges):
            return out
    node = cls()   # (node classes take no arguments; cheaper than object.__new__(cls))
    node.next_functions = edges
    node._meta = meta
    out.requires_grad = True
    out.grad_fn = node
    if attrs:
        node.__dict__.update(attrs)
    n_saved = len(saved)
    if n_saved == 0:
        node._saved = ()
    elif n_saved <= 2:   # unrolled: a comprehension or a call per value: +1-2% of the chain's forward
        s = saved[0]
        first = (SavedTensor(s, False) if s.__class__ is Tensor else
                 SavedTensor(out, True) if s is OUTPUT else s)
        if n_saved == 1:
            node._saved = (first,)
        else:
            s = saved[1]
            node._saved = (first, SavedTensor(s, False) if s.__class__ is Tensor else
                           SavedTensor(out, True) if s is OUTPUT else s)
    else:
        node._saved = tuple([_saved_entry(s, out) for s in saved])
    return out


def _saved_entry(value, out):
    """What a node keeps of one value an op saves: a SavedTensor for a Tensor or ``OUTPUT``
    (the op's result ``out``), else the plain value itself."""
    if value.__class__ is Tensor:
        return SavedTensor(value, False)
    return SavedTensor(out, True) if value is OUTPUT else value


def _edge(x):
    """Where a gradient for ``x`` goes: its node and output number, or its leaf accumulator."""
    fn = x.grad_fn
    return (fn, x._output_nr) if fn is not None else (x._acc or x._get_accumulator(), 0)


def _record_extended(cls, out, inputs, saved, attrs):
    if _GradState.enabled:
        _attach(cls, out, inputs, saved, attrs)
    if Extensions.forward_ad:
        # after the node exists: a JVP rule reading the output then differentiates through
        # it (reverse over forward)
        Extensions.propagate_tangent(cls, out, inputs, attrs)
        node = out.grad_fn
        if out._fw is not None and node is not None and node._saved:
            for s in node._saved:  # a saved output keeps its tangent (forward over reverse)
                if s.__class__ is SavedTensor and s.is_output and s.unpack_hook is None:
                    s.packed = out._fw
    for observer in Extensions.observers:
        observer.on_op(out, out.grad_fn)
    return out


_NO_EDGE = (None, 0)
_NO_META = (None, None)


def record_multi(cls, outs_data, inputs, saved=(), differentiable=None, **attrs):
    """Like ``record`` for an op with several outputs; returns a tuple of Tensors.

    ``differentiable`` (a tuple of bools) marks outputs that carry gradient (e.g. not indices).
    The node's ``vjp`` receives one gradient per output (zeros filled in for unused ones).
    An output after the first may be given as a Tensor already (one that ``saved`` lists).
    """
    first = record(cls, outs_data[0], inputs, saved, **attrs)
    outs = [first]
    node = first.grad_fn
    for i, data in enumerate(outs_data[1:], start=1):
        t = data if data.__class__ is Tensor else _wrap(data)
        if node is not None and (differentiable is None or differentiable[i]):
            t.requires_grad = True
            t.grad_fn = node
            t._output_nr = i
        outs.append(t)
    if node is not None:
        node._out_meta = [(t.data.shape, t.data.dtype) for t in outs]
        node._plain = False
    return tuple(outs)


def share_node(outs, cls, inputs, saved=(), **attrs):
    """Make the Tensors ``outs`` (each made by its own op, which gave it its view and, in
    forward mode, its tangent) outputs ``0, 1, ...`` of one new ``cls`` node, as torch's
    multi-output ops are (``unbind``, ``split``, ``var_mean``): a hook on one output then
    sees None in a backward that reaches only another. ``cls.vjp`` receives one gradient per
    output, zeros where none came. Returns ``outs``.

    >>> import ckpt
    >>> a, b = ckpt.ones(2, requires_grad=True).unbind()
    >>> a.grad_fn is b.grad_fn, b.output_nr
    (True, 1)
    """
    if not _GradState.enabled:
        return outs
    node = _attach(cls, _wrap(outs[0].data), inputs, saved, attrs).grad_fn
    if node is None:
        return outs
    node._out_meta = [(t.data.shape, t.data.dtype) for t in outs]
    node._plain = False
    for nr, t in enumerate(outs):
        t.requires_grad, t.grad_fn, t._output_nr = True, node, nr
    for observer in Extensions.observers:
        observer.on_op(outs[0], node)
    return outs
