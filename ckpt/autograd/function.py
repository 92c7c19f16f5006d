"""User-defined differentiable operations (torch.autograd.Function)."""
import functools
import inspect
import warnings
from contextlib import contextmanager

import numpy as np

from . import grad_mode
from .batch import Batch
from .node import Extensions, Node, SavedTensor, record
from .ops.shape import bump_version, mark_view_creation, rebase_views, take_history
from .tensor import Tensor, _wrap


class FunctionCtx(Node):
    """The ``ctx`` of a custom Function: it becomes the ``grad_fn`` node of the outputs."""
    _array_rule = False  # user code expects Tensors

    def save_for_backward(self, *tensors):
        self._to_save = tensors

    def save_for_forward(self, *tensors):
        """Tensors ``jvp`` reads as ``ctx.saved_tensors`` (``save_for_backward``'s are for
        ``backward`` only, as in torch)."""
        self._for_forward = tensors

    def mark_non_differentiable(self, *tensors):
        """These outputs get no gradient: they don't require grad, and ``backward`` receives
        zeros for them (None after ``set_materialize_grads(False)``)."""
        self._non_differentiable = {id(t) for t in tensors}

    def mark_dirty(self, *tensors):
        """These inputs were modified in place by ``forward``, which must return them: they come
        out as the same Tensor objects, their version bumped and their history moved to this
        Function, as torch's ``mark_dirty`` does.

        >>> import ckpt
        >>> class AddOne_(ckpt.autograd.Function):
        ...     @staticmethod
        ...     def forward(ctx, x):
        ...         ctx.mark_dirty(x)
        ...         return x.add_(1)
        ...     @staticmethod
        ...     def backward(ctx, g):
        ...         return g
        >>> h = ckpt.ones(2, requires_grad=True) * 2
        >>> AddOne_.apply(h) is h, h.grad_fn.name(), h.tolist()
        (True, 'AddOne_Backward', [3.0, 3.0])
        """
        self._dirty = {id(t) for t in tensors}

    def set_materialize_grads(self, value):
        """With False, ``backward`` gets None (not zeros) for an output no gradient reached,
        and ``jvp`` gets None for an input without tangent."""
        self._materialize = bool(value)

    @property
    def saved_tensors(self):
        if self.__dict__.get("_in_jvp"):
            return tuple(self.__dict__.get("_for_forward", ()))
        unpacked = self.__dict__.get("_unpacked")
        if unpacked is None:
            return Node.saved_tensors.fget(self)
        self._unpacked = None  # the engine unpacked them for the first read; torch unpacks at each
        return unpacked

    @property
    def saved_variables(self):
        """``saved_tensors`` under its deprecated name (a DeprecationWarning, as in torch)."""
        warnings.warn("'saved_variables' is deprecated; use 'saved_tensors'", DeprecationWarning,
                      stacklevel=2)
        return self.saved_tensors

    def vjp(self, grads, *saved):
        grads = grads if isinstance(grads, list) else [grads]
        self._unpacked = saved
        function = self._function
        if function.backward is not Function.backward and function.vjp is not Function.vjp:
            raise RuntimeError("Implementing both 'backward' and 'vjp' for a custom Function is "
                               "not allowed. You should only implement one of them.")
        rule = function.vjp if function.backward is Function.backward else function.backward
        try:
            result = rule(self, *grads)
        finally:
            self._unpacked = None
        return self._checked_gradients(result if isinstance(result, tuple) else (result,))

    def _checked_gradients(self, result):
        """``backward``'s result, one gradient per input of ``forward`` (trailing Nones past
        them dropped), or torch's error for a wrong count or a gradient of a non-tensor."""
        n = len(self.next_functions)
        if len(result) > n and all(g is None for g in result[n:]):
            result = result[:n]
        if len(result) != n:
            raise RuntimeError(f"function {self.name()} returned an incorrect number of gradients "
                               f"(expected {n}, got {len(result)})")
        for i, (g, is_tensor) in enumerate(zip(result, self._tensor_inputs)):
            if g is not None and not is_tensor:
                raise RuntimeError(
                    f"function {self.name()} returned a gradient different than None at position "
                    f"{i + 1}, but the corresponding forward input was not a Variable")
        return result


class Error(Node):
    """The ``grad_fn`` (torch's name) of what a ``once_differentiable`` backward returns under
    ``create_graph``: differentiating through it raises."""

    def vjp(self, grad, *saved):
        raise RuntimeError("trying to differentiate twice a function that was marked with "
                           "@once_differentiable")


def once_differentiable(backward):
    """Decorates a custom Function's ``backward`` written with no differentiable ops in
    mind: it runs without recording a graph, and under ``create_graph`` its results carry a
    node that raises if a second derivative is asked for, as in torch.

    >>> import ckpt
    >>> from ckpt.autograd.function import once_differentiable
    >>> class Square(ckpt.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x
    ...     @staticmethod
    ...     @once_differentiable
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return 2 * x * g
    >>> x = ckpt.tensor([3.0], requires_grad=True)
    >>> (g,) = ckpt.autograd.grad((Square.apply(x) * x).sum(), x, create_graph=True)
    >>> g.grad_fn.name()
    'AddBackward0'
    >>> g.sum().backward()
    Traceback (most recent call last):
    RuntimeError: trying to differentiate twice a function that was marked with @once_differentiable
    """
    @functools.wraps(backward)
    def wrapped(ctx, *grads):
        with grad_mode.no_grad():
            result = backward(ctx, *grads)
        differentiable = [g for g in grads if isinstance(g, Tensor) and g.requires_grad]
        if not (grad_mode.is_grad_enabled() and differentiable):
            return result
        single = not isinstance(result, tuple)
        marked = tuple(record(Error, g.data, differentiable) if isinstance(g, Tensor) else g
                       for g in ((result,) if single else result))
        return marked[0] if single else marked
    return wrapped


_node_classes = {}


def _node_class(function):
    cls = _node_classes.get(function)
    if cls is None:
        cls = type(function.__name__ + "Backward", (FunctionCtx,), {"_function": function})
        _node_classes[function] = cls
    return cls


class Function:
    """Subclass with static ``forward(ctx, *args)`` and ``backward(ctx, *grad_outputs)``;
    call ``YourFunction.apply(*args)``. ``backward`` receives one gradient per output of
    ``forward`` (None for an output that is not a tensor) and returns one gradient per
    argument of ``forward`` (None for non-tensors); written with ckpt ops it is itself
    differentiable. ``forward(*args)`` with a separate ``setup_context`` works too.

    >>> import ckpt
    >>> class Cube(ckpt.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         (x,) = ctx.saved_tensors
    ...         return g * 3 * x ** 2
    >>> x = ckpt.tensor([2.0], requires_grad=True)
    >>> y = Cube.apply(x); y.backward()
    >>> y.grad_fn.name(), x.grad.tolist()
    ('CubeBackward', [12.0])

    For forward mode, define ``jvp(ctx, *tangents)`` (one tangent per argument of
    ``forward``) returning the output tangent(s); ``ctx.save_for_forward`` keeps what it reads:

    >>> import ckpt.autograd.forward_ad as fwAD
    >>> class Square(ckpt.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_forward(x)
    ...         return x * x
    ...     @staticmethod
    ...     def jvp(ctx, t):
    ...         (x,) = ctx.saved_tensors
    ...         return 2 * x * t
    >>> with fwAD.dual_level():
    ...     y = Square.apply(fwAD.make_dual(ckpt.tensor([3.0]), ckpt.tensor([1.0])))
    ...     fwAD.unpack_dual(y).tangent.tolist()
    [6.0]
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function: forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for your "
                                  "custom autograd.Function to use it with backward mode AD.")

    @staticmethod
    def vjp(ctx, *grad_outputs):
        """torch's other name for ``backward``: a Function defines one of the two."""
        raise NotImplementedError("You must implement either the backward or vjp method for your "
                                  "custom autograd.Function to use it with backward mode AD.")

    @staticmethod
    def jvp(ctx, *tangents):
        """Forward mode: one tangent per argument of ``forward`` (None for non-tensors;
        zeros for a tensor without tangent unless ``ctx.set_materialize_grads(False)``, then
        None); returns the tangent of each output. Written with ckpt ops it is differentiable."""
        raise NotImplementedError

    @staticmethod
    def setup_context(ctx, inputs, output):
        """The other style (torch's): ``forward(*args)`` without ``ctx``, and
        ``setup_context(ctx, inputs, output)`` saving what ``backward`` needs; ``inputs`` are
        the arguments of ``forward`` (defaults filled in), ``output`` what it returned.

        >>> import ckpt
        >>> class Scale(ckpt.autograd.Function):
        ...     @staticmethod
        ...     def forward(x, k=2.0):
        ...         return x * k
        ...     @staticmethod
        ...     def setup_context(ctx, inputs, output):
        ...         ctx.k = inputs[1]
        ...     @staticmethod
        ...     def backward(ctx, g):
        ...         return g * ctx.k, None
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> Scale.apply(x).sum().backward(); x.grad.tolist()
        [2.0, 2.0]
        """
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs):
        node = _node_class(cls).__new__(_node_class(cls))
        node._to_save = ()
        node._non_differentiable, node._dirty = set(), set()
        node._materialize = True
        separate_setup = cls.setup_context is not Function.setup_context
        if separate_setup:
            bound = inspect.signature(cls.forward).bind(*args, **kwargs)
            bound.apply_defaults()
            args, kwargs = bound.args, bound.kwargs
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        node.__dict__["needs_input_grad"] = needs
        with grad_mode.no_grad(), _forward_ad_paused():
            if separate_setup:
                outputs = cls.forward(*args, **kwargs)
                cls.setup_context(node, args, outputs)
            else:
                outputs = cls.forward(node, *args, **kwargs)
        single = not isinstance(outputs, tuple)
        outs = (outputs,) if single else outputs
        recording = grad_mode._State.enabled
        _check_dirty(node, args, outs, recording)
        outs = tuple(o.detach() if isinstance(o, Tensor) and any(o is a for a in args)
                     and not (recording and id(o) in node._dirty) else o for o in outs)
        if Extensions.forward_ad:
            _propagate_tangents(cls, node, args, outs)
        if not (recording and any(needs)):
            for o in outs if recording else ():  # still views torch won't let be written
                if isinstance(o, Tensor) and any(isinstance(a, Tensor) and np.may_share_memory(
                        o.data, a.data) for a in args):
                    mark_view_creation(o, "custom", False)
            return outs[0] if single else outs
        node.next_functions = tuple(
            ((a.grad_fn, a._output_nr) if a.grad_fn is not None else (a._get_accumulator(), 0))
            if isinstance(a, Tensor) and a.requires_grad else (None, 0) for a in args)
        node._tensor_inputs = tuple(isinstance(a, Tensor) for a in args)
        node._meta = [m for a in args for m in ((a.data.shape, a.data.dtype) if isinstance(a, Tensor)
                                                 and a.requires_grad else (None, None))]
        if len(outs) > 1:
            # torch's ctx._materialize_non_diff_grads = False: None for non-differentiable outputs
            non_diff_zeros = node.__dict__.get("_materialize_non_diff_grads", True)
            node._out_meta = [_gradient_meta(o, node._materialize and (
                non_diff_zeros or id(o) not in node._non_differentiable)) for o in outs]
            node._plain = False
        tensor_outs = [o for o in outs if isinstance(o, Tensor)]
        for nr, o in enumerate(outs):
            if (isinstance(o, Tensor) and id(o) not in node._non_differentiable
                    and o.data.dtype.kind in "fc"):
                if id(o) in node._dirty:
                    take_history(o, node, nr)
                    rebase_views(o)
                else:
                    o.requires_grad, o.grad_fn, o._output_nr = True, node, nr
                    if any(isinstance(a, Tensor) and np.may_share_memory(o.data, a.data)
                           for a in args):
                        mark_view_creation(o, "custom", True)
        node._saved = tuple(SavedTensor(t, any(t is o for o in tensor_outs)) if isinstance(t, Tensor)
                            else t for t in node._to_save)
        node._to_save = ()
        for observer in Extensions.observers:  # anomaly mode, events: as for any recorded op
            observer.on_op(tensor_outs[0] if tensor_outs else None, node)
        return outs[0] if single else outs

    generate_vmap_rule = False  # torch's flag and default; ckpt has no vmap to use it

    @staticmethod
    def vmap(info, in_dims, *args):
        """torch's hook for a custom batching rule, kept for its name: ckpt has no vmap.

        >>> import ckpt
        >>> ckpt.autograd.Function.generate_vmap_rule
        False
        """
        raise NotImplementedError("To use autograd.Function with vmap, you must either override "
                                  "the vmap staticmethod or set generate_vmap_rule=True.")

    def __init__(self, *args, **kwargs):
        warnings.warn(f"{type(self)} should not be instantiated. Methods on autograd functions "
                      "are all static, so you should invoke them on the class itself. "
                      "Instantiating an autograd function will raise an error in a future "
                      "version of PyTorch.", DeprecationWarning, stacklevel=2)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Legacy autograd function with non-static forward method is "
                           "deprecated. Please use new-style autograd function with static "
                           "forward method: call YourFunction.apply(...), not YourFunction()(...)")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._backward_cls = _node_class(cls)   # torch's name for the class of ``ctx``


class InplaceFunction(Function):
    """A Function told when made whether it works in place (torch's, kept for old code).

    >>> from ckpt.autograd.function import InplaceFunction
    >>> InplaceFunction(inplace=True).inplace
    True
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace


def _gradient_meta(out, materialize):
    """What the engine gives ``backward`` for ``out`` when no gradient reached it: zeros of
    this (shape, dtype), or None where (None, None): non-tensor outputs, and every output
    after ``ctx.set_materialize_grads(False)``."""
    if isinstance(out, Tensor) and materialize:
        return out.data.shape, out.data.dtype
    return None, None


_DIRTY_VIEW_WITH_OTHER_OUTPUTS = (
    "If your Function modifies inplace an input that is a view of another Tensor, your Function "
    "cannot return more than one Tensor. This is not supported by the current autograd engine. "
    "You should either make sure the input is not a view (using .clone() for example) or make "
    "your Function only return one Tensor (potentially splitting it into two Functions: one "
    "doing the inplace that returns a single Tensor and a second one that does the other "
    "operations). You can ask on the forum https://discuss.pytorch.org/ if you need help to do "
    "this change.")


def _check_dirty(ctx, args, outs, recording):
    """Torch's checks on the inputs ``forward`` marked dirty; bumps their versions."""
    if not ctx._dirty <= {id(a) for a in args}:
        warnings.warn("ctx.mark_dirty() received a tensor that was not an input. Only input "
                      "Tensors that have been mutated should be passed to ctx.mark_dirty().")
    returned = {id(o) for o in outs if isinstance(o, Tensor)}
    if not ctx._dirty <= returned:
        raise RuntimeError("Some elements marked as dirty during the forward method were not "
                           "returned as output. The inputs that are modified inplace must all be "
                           "outputs of the Function.")
    for o in outs:
        if isinstance(o, Tensor) and id(o) in ctx._dirty:
            bump_version(o)
            if recording and o.requires_grad:
                base = getattr(o, "_base", None)
                if o.grad_fn is None:
                    raise RuntimeError("a leaf Variable that requires grad has been used in an "
                                       "in-place operation.")
                if base is not None and base.requires_grad and base.grad_fn is None:
                    raise RuntimeError("a view of a leaf Variable that requires grad is being "
                                       "used in an in-place operation.")
                if base is not None and len(returned) > 1:
                    raise RuntimeError(_DIRTY_VIEW_WITH_OTHER_OUTPUTS)


@contextmanager
def _forward_ad_paused():
    """Forward mode off for the duration (a Function's forward and jvp run without it, as
    in torch: the outputs' tangents come from ``jvp`` alone)."""
    if not Extensions.forward_ad:
        yield
        return
    Extensions.forward_ad = False
    Extensions.refresh()
    try:
        yield
    finally:
        Extensions.forward_ad = True
        Extensions.refresh()


def _propagate_tangents(function, ctx, args, outs):
    """Inside a dual level: give the outputs of ``function.apply`` the tangents its ``jvp``
    returns, if an argument carries one. In a batched level (``dual_level(batch_size=B)``)
    ``jvp`` runs once per tangent of the batch and the results are stacked."""
    from . import forward_ad
    tangents = [a._fw if isinstance(a, Tensor) else None for a in args]
    if all(t is None for t in tangents):
        return
    if function.jvp is Function.jvp:
        raise NotImplementedError(
            f"{function.__name__} has an input with a forward-mode tangent but no jvp: you must "
            f"implement the jvp function (staticmethod jvp(ctx, *tangents)) for custom "
            f"autograd.Function to use it with forward mode AD.")
    batch = Batch.level_size
    targets = [(i, o) for i, o in enumerate(outs) if _differentiable(ctx, o)]
    versions = [None if t is None else t._version for t in tangents]
    ctx._in_jvp = True
    try:
        with _forward_ad_paused():
            if batch is None:
                results = _call_jvp(function, ctx, args, tangents, len(outs))
                _check_jvp_results(ctx, args, tangents, versions, outs, results)
            else:
                from .ops.shape import stack
                columns = [_call_jvp(function, ctx, args,
                                     [None if t is None else t[b] for t in tangents], len(outs))
                           for b in range(batch)]
                results = [None if columns[0][i] is None or not isinstance(o, Tensor) else
                           stack([_output_tangent(c[i], o, function, i) for c in columns])
                           for i, o in enumerate(outs)]
    finally:
        ctx._in_jvp = False
    for i, o in targets:
        if results[i] is not None:
            t = _output_tangent(results[i], o, function, i) if batch is None else results[i]
            forward_ad._remember(o, forward_ad._to_output(t, o))


def _differentiable(ctx, out):
    return (isinstance(out, Tensor) and id(out) not in ctx._non_differentiable
            and out.data.dtype.kind in "fc")


def _check_jvp_results(ctx, args, tangents, versions, outs, results):
    """torch's checks of the tangents ``jvp`` returned: None for an output that is no
    differentiable tensor; for an input modified in place (``mark_dirty``) its tangent,
    modified in place; for a view of an input (or the input as-is) a view of its tangent."""
    for i, (out, result) in enumerate(zip(outs, results)):
        if not _differentiable(ctx, out):
            if result is not None:
                raise RuntimeError(
                    f"Function's jvp returned a gradient at position {i}, but the corresponding "
                    "forward output is not a differentiable Tensor. You should return None at "
                    "that position instead.")
            continue
        source = next((j for j, a in enumerate(args) if isinstance(a, Tensor)
                       and np.may_share_memory(out.data, a.data)), None)
        given = None if source is None else tangents[source]
        if given is None or result is None:
            continue
        if id(out) in ctx._dirty:
            doing = ("modifying the forward mode gradients inplace" if given._version == versions[source]
                     else "returning the forward mode gradients as-is" if result is not given else None)
            if doing:
                raise RuntimeError(
                    f"An inplace custom Function is not {doing}. If the forward is modifying an "
                    "input inplace, then the jvp function must modify the corresponding gradient "
                    "inplace and return it as-is.")
        elif not isinstance(result, Tensor) or result._base is None:
            raise RuntimeError("A custom Function's forward is returning a view (or an input "
                               "as-is) but the jvp is not returning a view.")
        elif result._base is not (given if given._base is None else given._base):
            raise RuntimeError(
                "A custom Function is returning a view but the jvp is not returning a view of "
                f"{'the given' if given._base is None else 'the same base as the given'} grad input.")


def _call_jvp(function, ctx, args, tangents, n_outs):
    materialize = ctx._materialize
    tangents = [t if t is not None or not isinstance(a, Tensor) or not materialize
                or a.data.dtype.kind not in "fc" else _wrap(np.zeros_like(a.data))
                for a, t in zip(args, tangents)]
    result = function.jvp(ctx, *tangents)
    result = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(result) != n_outs:
        raise RuntimeError(f"{function.__name__}.jvp returned {len(result)} tangents but forward "
                           f"returned {n_outs} outputs; return one tangent per output")
    return result


def _output_tangent(t, out, function, i):
    if not isinstance(t, Tensor):
        t = _wrap(np.asarray(t, dtype=out.data.dtype))
    if t.data.shape != out.data.shape:
        raise RuntimeError(f"{function.__name__}.jvp returned a tangent of shape "
                           f"{list(t.data.shape)} for output {i} of shape {list(out.data.shape)}")
    return t
