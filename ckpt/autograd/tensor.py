"""The Tensor: a numpy array plus the autograd metadata torch users know.

Ops live in ``ckpt.autograd.ops``; the methods and operators here only call them.
"""
import operator
import warnings

import numpy as np

from . import grad_mode
from .storage import TypedStorage
from .hook_table import backward_hooks, refuse_deletion, set_backward_hooks

_GradState = grad_mode._State
_DEFAULT_FLOAT = np.dtype(np.float32)


class Tensor:
    """A numpy array that can record the ops applied to it.

    >>> import ckpt
    >>> a = ckpt.tensor([1.0], requires_grad=True)
    >>> c = a * (a + 2)
    >>> c.backward()
    >>> a.grad
    tensor([4.])
    """
    __slots__ = ("_data", "requires_grad", "_grad", "grad_fn", "_output_nr", "_vc", "_acc",
                 "_hooks", "_retains_grad", "_fw", "__weakref__",
                 "_base", "_view_fn", "_views",  # set only on views/bases (ops/shape.py)
                 "_creation_meta")  # views torch forbids writing, detach_()ed tensors
    __array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False):
        # every slot but _view_fn and _views; a class call is the cheapest way to make a Tensor
        # (``object.__new__`` plus an init function: +260 instructions per Tensor, 1% of the
        # 300-op chain's forward; callgrind, 2026-12-06)
        self._data = data if data.__class__ is np.ndarray else np.asarray(data)
        self.requires_grad = False
        self._grad = None
        self.grad_fn = None
        self._output_nr = 0
        self._vc = [0]
        self._acc = None
        self._hooks = None
        self._retains_grad = False
        self._fw = None
        self._base = None
        self._creation_meta = None
        if requires_grad:
            self.requires_grad_(True)

    def _set_data(self, value):
        """``x.data = value``, checked as torch checks it.

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> x.data = ckpt.zeros(3); x
        tensor([0., 0., 0.], requires_grad=True)
        """
        if value is self._data:   # ``x.data -= step``: numpy wrote in place; nothing to set
            return
        if isinstance(value, Tensor):
            value = value._data
        elif not isinstance(value, (np.ndarray, np.generic)):
            raise TypeError(f"Variable data has to be a tensor or a numpy array, but got "
                            f"{value.__class__.__name__}")
        if self.requires_grad and value.dtype.kind not in "fc":
            raise RuntimeError(f"data set to a tensor that requires gradients must be floating "
                               f"point or complex dtype, got {value.dtype}")
        self._data = np.asarray(value)

    def _del_data(self):
        raise RuntimeError("Deleting tensor data is not allowed. Delete tensor instead!")

    # read through attrgetter (no Python frame on the hot path); written through the check
    data = property(operator.attrgetter("_data"), _set_data, _del_data, doc="""The numpy array.
        ``x.data = other`` (a Tensor or an array, any shape; floating point if ``x`` requires
        grad) makes ``x`` share ``other``'s memory without recording anything, as in torch;
        ``x`` keeps its version counter.""")

    def _set_grad(self, grad):
        """``x.grad = grad``, checked as torch checks it: None or a Tensor of ``x``'s shape
        and dtype.

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> x.grad = ckpt.zeros(3)
        Traceback (most recent call last):
        RuntimeError: attempting to assign a gradient of size '[3]' to a tensor of size '[2]'. \
Please ensure that the gradient and the tensor are the same size
        """
        if grad is not None:
            if not isinstance(grad, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got grad of "
                                f"type {type(grad).__name__}")
            if grad._data.shape != self._data.shape:
                raise RuntimeError(
                    f"attempting to assign a gradient of size '{list(grad._data.shape)}' to a "
                    f"tensor of size '{list(self._data.shape)}'. Please ensure that the gradient "
                    f"and the tensor are the same size")
            if grad._data.dtype != self._data.dtype:
                raise RuntimeError(
                    f"attempting to assign a gradient with dtype '{_c_name(grad._data.dtype)}' to "
                    f"a tensor with grad_dtype '{_scalar_name(self._data.dtype)}'. The gradient "
                    f"must match the tensor's grad_dtype (defaults to the tensor's dtype). You can "
                    f"set the tensor's grad_dtype attribute with a specific dtype, or None to "
                    f"allow any dtype. Set grad_dtype with caution. Diverging the dtypes of a "
                    f"tensor and its gradient may break downstream systems that assume they match.")
        self._grad = grad

    # ---- metadata -------------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    def size(self, dim=None):
        """Shape, or one dimension of it (torch's ``size``)."""
        return self.data.shape if dim is None else self.data.shape[dim]

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

    def numel(self):
        return self.data.size

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def retains_grad(self):
        return self._retains_grad

    @property
    def output_nr(self):
        """Which output of its ``grad_fn`` this tensor is (0 for leaves).

        >>> import ckpt
        >>> (ckpt.ones(2, requires_grad=True) * 2).output_nr
        0
        """
        return self._output_nr

    def is_inference(self):
        """True for a tensor made inside ``inference_mode`` (or a view of such a tensor).

        >>> import ckpt
        >>> with ckpt.inference_mode():
        ...     x = ckpt.ones(2)
        >>> x.is_inference(), (x * 2).is_inference()
        (True, False)
        """
        return self._creation_meta is INFERENCE

    def is_floating_point(self):
        """True for float dtypes.

        >>> import ckpt
        >>> ckpt.ones(1).is_floating_point(), ckpt.arange(2).is_floating_point()
        (True, False)
        """
        return self.data.dtype.kind == "f"

    @property
    def _version(self):
        if self._creation_meta is INFERENCE:
            raise RuntimeError("Inference tensors do not track version counter.")
        return self._vc[0]

    def _is_view(self):
        """Whether this tensor is a view of another (torch's name): a view made in the graph,
        or one whose array is a view of another array.

        >>> import ckpt
        >>> x = ckpt.ones(2, 3)
        >>> x[0]._is_view(), x._is_view(), x[[0]]._is_view()
        (True, False, False)
        """
        if self._creation_meta is INFERENCE:
            return False
        return getattr(self, "_base", None) is not None or self._data.base is not None

    @property
    def device(self):
        return "cpu"

    @property
    def nbytes(self):
        return self.data.nbytes

    def data_ptr(self):
        """The address of this tensor's first element (torch's ``data_ptr``)."""
        return self._data.__array_interface__["data"][0]

    def element_size(self):
        return self.data.itemsize

    def storage(self):
        """The memory this tensor views, shared with its views (torch's ``TypedStorage``)."""
        return TypedStorage(self._data)

    def stride(self, dim=None):
        """Steps between neighbours along each dim (or ``dim``), in elements.

        >>> import ckpt
        >>> ckpt.zeros(2, 3).stride(), ckpt.zeros(2, 3).t().stride(0)
        ((3, 1), 1)
        """
        steps = tuple(s // self._data.itemsize for s in self._data.strides)
        return steps if dim is None else steps[dim]

    def storage_offset(self):
        """Where this tensor starts in its storage, in elements.

        >>> import ckpt
        >>> ckpt.arange(6)[2:].storage_offset()
        2
        """
        return (self.data_ptr() - self.storage().data_ptr()) // self.element_size()

    # ---- autograd ---------------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` in place (only on leaves, as in torch)."""
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach().")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(
                f"only Tensors of floating point and complex dtype can require gradients, got {self.data.dtype}")
        self.requires_grad = requires_grad
        return self

    def _get_accumulator(self):
        acc = self._acc
        if acc is None:
            from .node import AccumulateGrad
            acc = self._acc = AccumulateGrad(self)
        return acc

    def detach(self):
        """A tensor sharing this one's data (and version counter) but outside the graph.

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> (x * 2).detach().requires_grad
        False
        """
        t = _wrap(self.data)
        t._vc = self._vc
        return t

    def detach_(self):
        """Take this tensor out of the graph in place; refused for views, as in torch, and a
        backward that needs it as a saved tensor is refused too.

        >>> import ckpt
        >>> y = ckpt.ones(2, requires_grad=True) * 2
        >>> y.detach_().requires_grad
        False
        """
        if self._base is not None:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead. If you are using "
                "DistributedDataParallel (DDP) for training, and gradient_as_bucket_view is set "
                "as True, gradients are views of DDP buckets, and hence detach_() cannot be "
                "called on these gradients. To fix this error, please refer to the "
                "Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution.")
        if self.requires_grad:
            self._creation_meta = ("detached",)
        self.grad_fn = None
        self.requires_grad = False
        self._fw = None   # its forward-mode tangent goes too, as torch's
        return self

    def retain_grad(self):
        """Keep ``.grad`` of this non-leaf tensor after backward (a no-op on leaves).

        >>> import ckpt
        >>> x = ckpt.ones(2, requires_grad=True)
        >>> y = x * 3; y.retain_grad(); y.sum().backward()
        >>> y.grad.tolist()
        [1.0, 1.0]
        """
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self._retains_grad:
            return
        import weakref
        node = self.grad_fn
        if node._retain_hooks is None:
            node._retain_hooks = {}
            node._plain = False
        node._retain_hooks[self._output_nr] = weakref.ref(self)
        self._retains_grad = True

    def register_hook(self, hook):
        """Run ``hook(grad)`` when the gradient w.r.t. this tensor is computed; a returned
        tensor replaces the gradient. Returns a handle with ``remove()``.

        >>> import ckpt
        >>> x = ckpt.ones(3, requires_grad=True)
        >>> _ = x.register_hook(lambda g: g * 10)
        >>> x.sum().backward(); x.grad.tolist()
        [10.0, 10.0, 10.0]
        """
        from .node import RemovableHandle
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = []
            if self._acc is not None:
                self._acc._plain = False   # (an accumulator made later sees the hooks itself)
            return RemovableHandle(self._hooks, hook)
        node = self.grad_fn
        if node._tensor_hooks is None:
            node._tensor_hooks = {}
            node._plain = False
        return RemovableHandle(node._tensor_hooks.setdefault(self._output_nr, []), hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Run ``hook(self)`` (returning None) each time a backward pass has accumulated into
        this leaf's ``.grad``; a handle with ``remove()``. E.g. the optimizer step in backward:

        >>> import ckpt
        >>> w = ckpt.ones(3, requires_grad=True)
        >>> def sgd(p):
        ...     with ckpt.no_grad():
        ...         p -= 0.5 * p.grad
        ...     p.grad = None
        >>> handle = w.register_post_accumulate_grad_hook(sgd)
        >>> (w * w).sum().backward(); w.tolist(), w.grad
        ([0.0, 0.0, 0.0], None)
        """
        from .node import RemovableHandle
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        acc = self._get_accumulator()
        if acc._post_acc_hooks is None:
            acc._post_acc_hooks = []
            acc._plain = False
        return RemovableHandle(acc._post_acc_hooks, hook)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (see ``ckpt.autograd.backward``).

        >>> import ckpt
        >>> x = ckpt.ones(3, requires_grad=True)
        >>> (8 * x ** 2).backward(ckpt.tensor([1.0, 2.0, 3.0]))
        >>> x.grad.tolist()
        [16.0, 32.0, 48.0]

        ``gradient`` may also be array-like (``[1.0, 2.0, 3.0]``); torch requires a Tensor.
        """
        from .engine import backward
        backward(self, None if gradient is None else (gradient,), retain_graph, create_graph,
                 inputs=inputs)

    # ---- operators: each calls its op in ckpt.autograd.ops -------------------------------
    def __add__(self, other): return _ops.add(self, other)
    def __sub__(self, other): return _ops.sub(self, other)
    def __mul__(self, other): return _ops.mul(self, other)
    def __truediv__(self, other): return _ops.div(self, other)
    def __pow__(self, other): return _ops.pow(self, other)
    def __matmul__(self, other): return _ops.matmul(self, other)
    def __radd__(self, other): return _ops.add(self, other)
    def __rsub__(self, other): return _ops.sub(other, self)
    def __rmul__(self, other): return _ops.mul(self, other)
    def __rtruediv__(self, other): return _ops.div(other, self)
    def __rpow__(self, other): return _ops.pow(other, self)
    def __neg__(self): return _ops.neg(self)
    def __abs__(self): return _ops.abs(self)
    def __invert__(self): return _ops.bitwise_not(self)
    def __eq__(self, other): return _ops.eq(self, other)
    def __ne__(self, other): return _ops.ne(self, other)
    def __lt__(self, other): return _ops.lt(self, other)
    def __le__(self, other): return _ops.le(self, other)
    def __gt__(self, other): return _ops.gt(self, other)
    def __ge__(self, other): return _ops.ge(self, other)
    def __getitem__(self, index): return _ops.getitem(self, index)
    def __setitem__(self, index, value): _ops.setitem(self, index, value)
    def __iadd__(self, other): return _ops.inplace.add_(self, other)
    def __isub__(self, other): return _ops.inplace.sub_(self, other)
    def __imul__(self, other): return _ops.inplace.mul_(self, other)
    def __itruediv__(self, other): return _ops.inplace.div_(self, other)

    # ---- methods: each calls its op in ckpt.autograd.ops ---------------------------------
    def abs(self): return _ops.abs(self)
    def cos(self): return _ops.cos(self)
    def exp(self): return _ops.exp(self)
    def gelu(self, approximate="none"): return _ops.gelu(self, approximate)
    def log(self): return _ops.log(self)
    def neg(self): return _ops.neg(self)
    def relu(self): return _ops.relu(self)
    def sigmoid(self): return _ops.sigmoid(self)
    def sin(self): return _ops.sin(self)
    def sqrt(self): return _ops.sqrt(self)
    def tanh(self): return _ops.tanh(self)
    def erf(self): return _ops.erf(self)
    def sign(self): return _ops.sign(self)
    def logical_not(self): return _ops.logical_not(self)
    def bitwise_not(self): return _ops.bitwise_not(self)
    def add(self, other, alpha=1): return _ops.add(self, other, alpha)
    def sub(self, other): return _ops.sub(self, other)
    def mul(self, other): return _ops.mul(self, other)
    def div(self, other): return _ops.div(self, other)
    def pow(self, other): return _ops.pow(self, other)
    def maximum(self, other): return _ops.maximum(self, other)
    def minimum(self, other): return _ops.minimum(self, other)
    def matmul(self, other): return _ops.matmul(self, other)
    def eq(self, other): return _ops.eq(self, other)
    def ne(self, other): return _ops.ne(self, other)
    def lt(self, other): return _ops.lt(self, other)
    def le(self, other): return _ops.le(self, other)
    def gt(self, other): return _ops.gt(self, other)
    def ge(self, other): return _ops.ge(self, other)
    def isclose(self, other, *args, **kwargs): return _ops.isclose(self, other, *args, **kwargs)
    def allclose(self, other, *args, **kwargs): return _ops.allclose(self, other, *args, **kwargs)
    def clamp(self, *args, **kwargs): return _ops.clamp(self, *args, **kwargs)
    def all(self, *args, **kwargs): return _ops.all(self, *args, **kwargs)
    def any(self, *args, **kwargs): return _ops.any(self, *args, **kwargs)
    def amax(self, *args, **kwargs): return _ops.amax(self, *args, **kwargs)
    def argmax(self, *args, **kwargs): return _ops.argmax(self, *args, **kwargs)
    def argmin(self, *args, **kwargs): return _ops.argmin(self, *args, **kwargs)
    def logsumexp(self, *args, **kwargs): return _ops.logsumexp(self, *args, **kwargs)
    def max(self, *args, **kwargs): return _ops.max(self, *args, **kwargs)
    def mean(self, *args, **kwargs): return _ops.mean(self, *args, **kwargs)
    def min(self, *args, **kwargs): return _ops.min(self, *args, **kwargs)
    def std(self, *args, **kwargs): return _ops.std(self, *args, **kwargs)
    def sum(self, *args, **kwargs): return _ops.sum(self, *args, **kwargs)
    def var(self, *args, **kwargs): return _ops.var(self, *args, **kwargs)
    def chunk(self, *args, **kwargs): return _ops.chunk(self, *args, **kwargs)
    def diagonal(self, *args, **kwargs): return _ops.diagonal(self, *args, **kwargs)
    def expand(self, *args, **kwargs): return _ops.expand(self, *args, **kwargs)
    def flatten(self, *args, **kwargs): return _ops.flatten(self, *args, **kwargs)
    def permute(self, *args, **kwargs): return _ops.permute(self, *args, **kwargs)
    def split(self, *args, **kwargs): return _ops.split(self, *args, **kwargs)
    def split_with_sizes(self, split_sizes, dim=0): return _ops.split(self, list(split_sizes), dim)
    def unsafe_split(self, *args, **kwargs): return _ops.pieces.unsafe_split(self, *args, **kwargs)
    def unsafe_split_with_sizes(self, *args, **kwargs):
        return _ops.pieces.unsafe_split_with_sizes(self, *args, **kwargs)
    def unsafe_chunk(self, *args, **kwargs): return _ops.pieces.unsafe_chunk(self, *args, **kwargs)
    def squeeze(self, *args, **kwargs): return _ops.squeeze(self, *args, **kwargs)
    def unbind(self, *args, **kwargs): return _ops.unbind(self, *args, **kwargs)
    def unsqueeze(self, *args, **kwargs): return _ops.unsqueeze(self, *args, **kwargs)
    def transpose(self, *args, **kwargs): return _ops.transpose(self, *args, **kwargs)
    def to(self, *args, **kwargs): return _ops.to(self, *args, **kwargs)
    def sum_to(self, *args, **kwargs): return _ops.sum_to(self, *args, **kwargs)
    def reshape(self, *args, **kwargs): return _ops.reshape(self, *args, **kwargs)
    def view(self, *args, **kwargs): return _ops.view(self, *args, **kwargs)
    def clip(self, *args, **kwargs): return _ops.clamp(self, *args, **kwargs)
    def where(self, condition, other): return _ops.where(condition, self, other)
    def masked_fill(self, mask, value): return _ops.where(mask, value, self)
    def softmax(self, *args, **kwargs): return _ops.softmax(self, *args, **kwargs)
    def log_softmax(self, *args, **kwargs): return _ops.log_softmax(self, *args, **kwargs)
    def narrow(self, dim, start, length): return _ops.narrow(self, dim, start, length)
    def as_strided(self, size, stride, storage_offset=None): return _ops.as_strided(self, size, stride, storage_offset)
    def select(self, dim, index): return _ops.select(self, dim, index)
    def repeat(self, *sizes): return _ops.repeat(self, *sizes)
    def prod(self, *args, **kwargs): return _ops.prod(self, *args, **kwargs)
    def median(self, *args, **kwargs): return _ops.median(self, *args, **kwargs)
    def nanmedian(self, *args, **kwargs): return _ops.nanmedian(self, *args, **kwargs)
    def isin(self, *args, **kwargs): return _ops.isin(self, *args, **kwargs)
    def signbit(self): return _ops.signbit(self)
    def gather(self, dim, index): return _ops.gather(self, dim, index)
    def scatter_add(self, dim, index, src): return _ops.scatter_add(self, dim, index, src)
    def scatter_reduce(self, *args, **kwargs): return _ops.scatter_reduce(self, *args, **kwargs)
    def index_reduce(self, *args, **kwargs): return _ops.index_reduce(self, *args, **kwargs)
    def mm(self, other): return _ops.mm(self, other)

    def sum_to_size(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _ops.sum_to(self, shape)

    def expand_as(self, other): return _ops.expand(self, other.shape)
    def view_as(self, other): return _ops.view(self, other.shape)
    def reshape_as(self, other): return _ops.reshape(self, other.shape)
    def t(self): return _ops.t(self)

    @property
    def T(self): return _ops.permute(self, *reversed(range(self.data.ndim)))

    @property
    def mT(self):
        if self.data.ndim < 2:
            raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. "
                               f"Got {self.data.ndim}-D tensor.")
        return _ops.transpose(self, -2, -1)

    # ---- in place: write into this tensor, bump its version (ckpt.autograd.ops.inplace) ---
    def add_(self, *args, **kwargs): return _ops.inplace.add_(self, *args, **kwargs)
    def sub_(self, *args, **kwargs): return _ops.inplace.sub_(self, *args, **kwargs)
    def mul_(self, *args, **kwargs): return _ops.inplace.mul_(self, *args, **kwargs)
    def div_(self, *args, **kwargs): return _ops.inplace.div_(self, *args, **kwargs)
    def pow_(self, *args, **kwargs): return _ops.inplace.pow_(self, *args, **kwargs)
    def clamp_(self, *args, **kwargs): return _ops.inplace.clamp_(self, *args, **kwargs)
    def relu_(self, *args, **kwargs): return _ops.inplace.relu_(self, *args, **kwargs)
    def zero_(self, *args, **kwargs): return _ops.inplace.zero_(self, *args, **kwargs)
    def fill_(self, *args, **kwargs): return _ops.inplace.fill_(self, *args, **kwargs)
    def copy_(self, *args, **kwargs): return _ops.inplace.copy_(self, *args, **kwargs)
    def exp_(self, *args, **kwargs): return _ops.inplace.exp_(self, *args, **kwargs)
    def tanh_(self, *args, **kwargs): return _ops.inplace.tanh_(self, *args, **kwargs)
    def sigmoid_(self, *args, **kwargs): return _ops.inplace.sigmoid_(self, *args, **kwargs)
    def neg_(self, *args, **kwargs): return _ops.inplace.neg_(self, *args, **kwargs)
    def transpose_(self, dim0, dim1): return _ops.inplace.transpose_(self, dim0, dim1)
    def swapdims_(self, dim0, dim1): return _ops.inplace.transpose_(self, dim0, dim1)
    swapaxes_ = swapdims_
    def t_(self): return _ops.inplace.t_(self)
    def squeeze_(self, dim=None): return _ops.inplace.squeeze_(self, dim)
    def unsqueeze_(self, dim): return _ops.inplace.unsqueeze_(self, dim)
    def as_strided_(self, *args, **kwargs): return _ops.inplace.as_strided_(self, *args, **kwargs)
    def swapdims(self, dim0, dim1): return _ops.transpose(self, dim0, dim1)
    swapaxes = swapdims
    def eq_(self, other): return _ops.inplace.eq_(self, other)
    def ne_(self, other): return _ops.inplace.ne_(self, other)
    def lt_(self, other): return _ops.inplace.lt_(self, other)
    def le_(self, other): return _ops.inplace.le_(self, other)
    def gt_(self, other): return _ops.inplace.gt_(self, other)
    def ge_(self, other): return _ops.inplace.ge_(self, other)
    def resize_(self, *sizes): return _ops.inplace.resize_(self, *sizes)
    def set_(self, source=None): return _ops.inplace.set_(self, source)
    def resize_as_(self, other): return _ops.inplace.resize_as_(self, other)
    def sin_(self): return _ops.inplace.sin_(self)
    def cos_(self): return _ops.inplace.cos_(self)
    def log_(self): return _ops.inplace.log_(self)
    def sqrt_(self): return _ops.inplace.sqrt_(self)
    def abs_(self): return _ops.inplace.abs_(self)
    def erf_(self): return _ops.inplace.erf_(self)
    # in-place initialisers (ckpt.autograd.ops.random_fill)
    def uniform_(self, *args, **kwargs): return _ops.random_fill.uniform_(self, *args, **kwargs)
    def normal_(self, *args, **kwargs): return _ops.random_fill.normal_(self, *args, **kwargs)
    def bernoulli_(self, *args, **kwargs): return _ops.random_fill.bernoulli_(self, *args, **kwargs)
    def exponential_(self, *args, **kwargs):
        return _ops.random_fill.exponential_(self, *args, **kwargs)
    def geometric_(self, *args, **kwargs): return _ops.random_fill.geometric_(self, *args, **kwargs)
    def log_normal_(self, *args, **kwargs):
        return _ops.random_fill.log_normal_(self, *args, **kwargs)
    def cauchy_(self, *args, **kwargs): return _ops.random_fill.cauchy_(self, *args, **kwargs)
    def random_(self, *args, **kwargs): return _ops.random_fill.random_(self, *args, **kwargs)

    # ---- conversion -------------------------------------------------------------------
    def numpy(self):
        """The underlying numpy array (shared, not copied); refuses tensors that require grad
        unless grad mode is off (``no_grad``), as torch does."""
        if self.requires_grad and _GradState.enabled:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self.data

    def item(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self.data.size} elements cannot be converted to Scalar")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"Boolean value of Tensor with {self.data.size} values is ambiguous")
        return bool(self.data)

    def __index__(self):
        return self.data.__index__()

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __hash__(self):
        return id(self)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", prefix="tensor(")
        extra = ""
        if self.data.dtype not in (_DEFAULT_FLOAT, np.dtype(np.int64), np.dtype(np.bool_)):
            extra += f", dtype=ckpt.{self.data.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn.name()}>"
        elif self._creation_meta is not None and _ops.shape.grad_fn_is_invalid(self):
            extra += ", grad_fn=<Invalid>"  # (torch's grad_fn would raise, its repr says so)
        elif self.requires_grad:
            extra += ", requires_grad=True"
        if self._fw is not None:   # a dual tensor's tangent, as torch prints it
            extra += f", tangent={self._fw!r}"
        return f"tensor({body}{extra})"

    def __deepcopy__(self, memo):
        """A new leaf with copied data, ``requires_grad`` and ``grad`` (as torch, leaves only)."""
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support "
                               "the deepcopy protocol at the moment.  If you were attempting to "
                               "deepcopy a module, this may be because of a torch.nn.utils.weight_norm "
                               "usage, see https://github.com/pytorch/pytorch/pull/103001")
        copied = _wrap(self.data.copy())
        copied.requires_grad = self.requires_grad
        if self.grad is not None:
            copied.grad = _wrap(self.grad.data.copy())
        memo[id(self)] = copied
        return copied

    def __reduce_ex__(self, protocol):
        """Pickling keeps the data and ``requires_grad`` (not the graph: a non-leaf comes back
        a leaf), as torch.

        >>> import ckpt, pickle
        >>> pickle.loads(pickle.dumps(ckpt.ones(2, requires_grad=True) * 2))
        tensor([2., 2.], requires_grad=True)
        """
        return _unpickled, (self._data, self.requires_grad)

    def new(self, *args):
        """A tensor of this one's dtype: ``new(*size)`` or ``new(size_tuple)`` (zeros; torch
        leaves them uninitialised), ``new(list)`` (those values), ``new()`` (empty). A tuple
        is a size here (ckpt's shapes are tuples; torch reads a tuple as values).

        >>> import ckpt
        >>> x = ckpt.ones(2, dtype=ckpt.float64)
        >>> x.new(2, 3).shape, x.new([1, 2]), x.new().shape
        ((2, 3), tensor([1., 2.], dtype=ckpt.float64), (0,))
        """
        if not args:
            return _factory.empty(0, dtype=self.data.dtype)
        if len(args) == 1 and isinstance(args[0], (list, Tensor, np.ndarray)):
            return _factory.tensor(args[0], dtype=self.data.dtype)
        return _factory.zeros(*args, dtype=self.data.dtype)

    def new_zeros(self, *size, dtype=None, requires_grad=False, device=None):
        """Zeros of this tensor's dtype (or ``dtype``), as torch's ``new_zeros``.

        >>> import ckpt
        >>> ckpt.ones(1, dtype=ckpt.int64).new_zeros(2, 2).dtype
        dtype('int64')
        """
        return _factory.zeros(*size, dtype=dtype or self.data.dtype, requires_grad=requires_grad,
                              device=device)

    def new_ones(self, *size, dtype=None, requires_grad=False, device=None):
        """Ones of this tensor's dtype (or ``dtype``), as torch's ``new_ones``."""
        return _factory.ones(*size, dtype=dtype or self.data.dtype, requires_grad=requires_grad,
                             device=device)

    def new_empty(self, *size, dtype=None, requires_grad=False, device=None):
        """An uninitialised tensor of this tensor's dtype (or ``dtype``) (``new_empty``)."""
        return _factory.empty(*size, dtype=dtype or self.data.dtype, requires_grad=requires_grad,
                              device=device)

    def new_full(self, size, fill_value, dtype=None, requires_grad=False, device=None):
        """``fill_value`` everywhere, of this tensor's dtype (or ``dtype``) (``new_full``).

        >>> import ckpt
        >>> ckpt.ones(1).new_full((2,), 3)
        tensor([3., 3.])
        """
        return _factory.full(size, fill_value, dtype=dtype or self.data.dtype,
                             requires_grad=requires_grad, device=device)

    def bernoulli(self, *args, **kwargs): return _ops.random_fill.bernoulli(self, *args, **kwargs)

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def long(self):
        return self.to(np.int64)

    def int(self):
        return self.to(np.int32)

    def bool(self):
        return self.to(np.bool_)

    def clone(self):
        return _ops.clone(self)

    def contiguous(self, memory_format=None):
        """``self`` if its data is C-ordered (or in ``memory_format``), else a copy that is
        (in the graph), as torch.

        >>> import ckpt
        >>> x = ckpt.ones(2, 3)
        >>> x.contiguous() is x, x.T.contiguous().view(-1).shape
        (True, (6,))
        """
        if memory_format is not None:
            return _layout.in_memory_format(self, memory_format)
        return self if self.data.flags.c_contiguous else _ops.clone(self)

    def is_contiguous(self, memory_format=None):
        return _layout.is_contiguous(self, memory_format or _layout.contiguous_format)

    def cpu(self):
        return self


def _forget_grad(t):
    """``del x.grad``: ``x.grad`` becomes None, as in torch.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> x.sum().backward(); del x.grad; print(x.grad)
    None
    """
    t._grad = None


def _read_grad(t):
    """``x.grad``; for a non-leaf that does not retain its gradient, torch's UserWarning.

    >>> import ckpt, warnings
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     (x.grad, (x * 2).grad, len(w))
    (None, None, 1)
    """
    g = t._grad
    if g is None and t.grad_fn is not None and not t._retains_grad:
        warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
    return g


_NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad field "
    "to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If you "
    "access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead. See "
    "github.com/pytorch/pytorch/pull/30531 for more information.")

# written through torch's checks (Tensor._set_grad); ``del`` leaves None behind
Tensor.grad = property(_read_grad, Tensor._set_grad, _forget_grad,
                       doc="The gradient a backward pass accumulated (None until then).")


def _c_name(dtype):
    """A dtype as torch's messages name its C type (``'double'``, ``'long int'``)."""
    return {"float64": "double", "float32": "float", "int64": "long int", "int32": "int",
            "float16": "c10::Half", "bool": "bool"}.get(str(dtype), str(dtype))


def _scalar_name(dtype):
    """A dtype as torch's messages name its scalar type (``'Float'``, ``'Long'``)."""
    return {"float16": "Half", "float32": "Float", "float64": "Double", "int8": "Char",
            "int16": "Short", "int32": "Int", "int64": "Long", "uint8": "Byte", "bool": "Bool",
            "complex64": "ComplexFloat", "complex128": "ComplexDouble"}.get(str(dtype), str(dtype))


def _unpickled(data, requires_grad):
    return Tensor(data, requires_grad)


_wrap = Tensor  # a fresh graph-less Tensor around an array: the ops' name for the constructor
INFERENCE = ("inference",)  # the _creation_meta of an inference tensor
_normal_init = Tensor.__init__


def _inference_init(self, data, requires_grad=False):
    _normal_init(self, data, requires_grad)
    self._creation_meta = INFERENCE


def set_inference_creation(on):
    """Make every new Tensor an inference tensor (``on``) or a normal one; ``inference_mode``
    switches this on entry and exit, so the normal constructor carries no check.

    >>> import ckpt
    >>> set_inference_creation(True); x = ckpt.ones(1); set_inference_creation(False)
    >>> x.is_inference(), ckpt.ones(1).is_inference()
    (True, False)
    """
    Tensor.__init__ = _inference_init if on else _normal_init

Tensor._backward_hooks = property(backward_hooks, set_backward_hooks, refuse_deletion)

from . import ops as _ops  # noqa: E402  (ops import Tensor; methods resolve them at call time)
from . import factory as _factory  # noqa: E402
from . import layout as _layout  # noqa: E402
