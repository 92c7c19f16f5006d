"""In-place methods (``add_``, ``mul_``, ``zero_``, ...).

Each runs its out-of-place op, writes the result into the tensor's own buffer, bumps the
version counter and moves the tensor's ``grad_fn`` to the new node (torch's history
rebase). Ops whose VJP needs the old value get a private copy of it first, so backward
sees the value before the write. Writing into a view rebases its base's history, and the
other views of that base are re-derived (see ``shape.rebase_views``).
"""
import numpy as np

from .. import grad_mode
from ..node import Node, record
from ..tensor import Tensor, _wrap
from . import elementwise as ew
from .shape import (bump_version, check_inplace, check_no_overlap, clone, rebase_views, squeeze,
                    take_history, take_tangent, transpose, unsqueeze, writable, write_into)
from .strided import as_strided

_OUT_OF_PLACE = {
    "add_": ew.add, "sub_": ew.sub, "mul_": ew.mul, "div_": ew.div, "pow_": ew.pow,
    "clamp_": ew.clamp, "relu_": ew.relu, "exp_": ew.exp, "tanh_": ew.tanh,
    "sigmoid_": ew.sigmoid, "neg_": ew.neg, "sin_": ew.sin, "cos_": ew.cos, "log_": ew.log,
    "sqrt_": ew.sqrt, "abs_": ew.abs, "erf_": ew.erf,
}
_SAVES_SELF = {"mul_", "div_", "pow_", "clamp_", "sin_", "cos_", "log_", "abs_", "erf_"}


def _snapshot(x):
    """A copy of ``x``'s current value that keeps ``x``'s place in the graph."""
    t = _wrap(x.data.copy())
    t.requires_grad, t.grad_fn, t._output_nr, t._acc = x.requires_grad, x.grad_fn, x._output_nr, x._acc
    # and, in forward mode, a copy of its tangent (the write updates x's tangent in place)
    t._fw = None if x._fw is None else clone(x._fw)
    if x.requires_grad and x.grad_fn is None:
        t._acc = x._get_accumulator()
    return t


def write_result(self, out, name, casting="same_kind"):
    """Write ``out`` (the recorded out-of-place result of the op ``name``) into ``self``:
    its values, version, history and tangent, and re-derive the views that share them."""
    try:
        np.copyto(writable(self.data), out.data, casting=casting)
    except TypeError:
        raise RuntimeError(f"result type {out.data.dtype} can't be cast to the desired output "
                           f"type {self.data.dtype} in {name}") from None
    bump_version(self)
    take_tangent(self, out)  # forward mode: the written tensor takes the new tangent
    if out.grad_fn is not None:
        take_history(self, out.grad_fn)
    if out.grad_fn is not None or out._fw is not None:
        rebase_views(self)
    return self


def _inplace(name):
    """The in-place op ``name`` (e.g. ``'add_'``), the function behind the Tensor method."""
    if name in ("zero_", "fill_", "copy_"):
        def fill(self, value=0):
            if name == "copy_":
                check_no_overlap(self.data)
            write_into(self, Ellipsis, value)
            return self
        fill.__name__ = name
        fill.__doc__ = f"``{name}`` in place (recorded as ``CopySlices``)."
        return fill
    op = _OUT_OF_PLACE[name]

    def method(self, *args, **kwargs):
        check_inplace(self, args)
        check_no_overlap(self.data)
        tracking = grad_mode._State.enabled and (
            self.requires_grad or any(isinstance(a, Tensor) and a.requires_grad for a in args))
        source = _snapshot(self) if tracking and name in _SAVES_SELF else self
        return write_result(self, op(source, *args, **kwargs), name)
    method.__name__ = name
    method.__doc__ = f"In-place ``{name[:-1]}``: writes into this tensor and bumps its version."
    return method


add_, sub_, mul_, div_, pow_ = (_inplace(n) for n in ("add_", "sub_", "mul_", "div_", "pow_"))
clamp_, relu_, exp_, tanh_ = (_inplace(n) for n in ("clamp_", "relu_", "exp_", "tanh_"))
sigmoid_, neg_ = _inplace("sigmoid_"), _inplace("neg_")
sin_, cos_, log_, sqrt_ = (_inplace(n) for n in ("sin_", "cos_", "log_", "sqrt_"))
abs_, erf_ = _inplace("abs_"), _inplace("erf_")
zero_, fill_, copy_ = _inplace("zero_"), _inplace("fill_"), _inplace("copy_")


def _view_in_place(self, view_op, *args):
    """Make this tensor the view ``view_op(self, *args)`` of its own memory (torch's in-place
    view ops: ``transpose_``, ``as_strided_``...)."""
    check_inplace(self)
    out = view_op(self, *args)
    self._data = out.data
    bump_version(self)
    if self._base is not None and out._base is self._base:
        self._view_fn = out._view_fn   # a written view is re-derived from its base this way
    if out.grad_fn is not None:
        take_history(self, out.grad_fn)
    return self


def transpose_(self, dim0, dim1):
    """Swap two dimensions of this tensor in place (its metadata only, as torch's).

    >>> import ckpt
    >>> ckpt.zeros(2, 3).transpose_(0, 1).shape
    (3, 2)
    """
    return _view_in_place(self, transpose, dim0, dim1)


def t_(self):
    """``transpose_(0, 1)`` of a matrix (a vector stays as it is)."""
    if self.data.ndim > 2:
        raise RuntimeError(f"t_() expects a tensor with <= 2 dimensions, but self is "
                           f"{self.data.ndim}D")
    return _view_in_place(self, transpose, 0, 1 if self.data.ndim == 2 else 0)


def squeeze_(self, dim=None):
    """``squeeze`` in place."""
    return _view_in_place(self, squeeze, dim)


def unsqueeze_(self, dim):
    """``unsqueeze`` in place."""
    return _view_in_place(self, unsqueeze, dim)


def as_strided_(self, size, stride, storage_offset=None):
    """``as_strided`` in place: this tensor becomes that view of its storage.

    >>> import ckpt
    >>> ckpt.arange(6.0).as_strided_((2, 2), (1, 2)).tolist()
    [[0.0, 2.0], [1.0, 3.0]]
    """
    return _view_in_place(self, as_strided, size, stride, storage_offset)


class NotImplemented_(Node):
    """The node of a write torch does not differentiate (``set_``): backward through it raises."""

    def name(self):
        return "NotImplemented"

    def vjp(self, g):
        raise RuntimeError(f"derivative for {self.op_name} is not implemented")


def set_(self, source=None):
    """Make this tensor share ``source``'s memory, shape and values (empty without
    ``source``), as torch's ``set_``: its version is bumped and, for a leaf, later graphs use
    a new gradient accumulator; not differentiable (backward through it raises).

    >>> import ckpt
    >>> a, b = ckpt.zeros(3), ckpt.ones(2)
    >>> _ = b.set_(a); a[0] = 5.0; b.tolist()
    [5.0, 0.0, 0.0]
    """
    check_inplace(self, (source,))
    self._data = np.empty(0, self.data.dtype) if source is None else source.data
    bump_version(self)
    self._acc = None
    out = record(NotImplemented_, self.data, (self, source), op_name="set_")
    if out.grad_fn is not None:
        take_history(self, out.grad_fn)
    return self


def resize_(self, *sizes):
    """Give this tensor the shape ``sizes`` in place, keeping its first elements (zeros where
    it grows; torch leaves those uninitialised); a change of shape bumps the version.

    >>> import ckpt
    >>> x = ckpt.tensor([1.0, 2.0, 3.0]).resize_(2)
    >>> x.tolist(), x._version
    ([1.0, 2.0], 1)
    """
    if self.requires_grad and not grad_mode._State.inference:
        raise RuntimeError("cannot resize variables that require grad")
    shape = tuple(sizes[0]) if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)) else sizes
    if shape == self.data.shape:
        return self
    check_inplace(self)
    flat = self.data.reshape(-1)
    grown = np.zeros(int(np.prod(shape)), dtype=flat.dtype)
    kept = min(flat.size, grown.size)
    grown[:kept] = flat[:kept]
    self._data = grown.reshape(shape)
    bump_version(self)
    return self


def resize_as_(self, other):
    """``resize_`` to ``other``'s shape."""
    return resize_(self, other.data.shape)


class NoGradientThrough(Node):
    """The node of values that carry no gradient (an in-place comparison, an in-place
    initialiser): zeros flow back, and forward mode gets zero tangents."""
    _batched_rule = True

    def vjp(self, g):
        return g * 0

    def jvp(self, tangents, primals, out):
        return tangents[0] * 0


def _compare_inplace(name, op):
    node_cls = type(name.strip("_").capitalize() + "Backward0", (NoGradientThrough,),
                    {"__module__": __name__})

    def method(self, other):
        check_inplace(self)
        values = op(self.detach(), other.detach() if isinstance(other, Tensor) else other)
        out = record(node_cls, values.data.astype(self.data.dtype), (self,))
        return write_result(self, out, name, casting="unsafe")
    method.__name__ = name
    method.__doc__ = (f"In place ``{name[:-1]}``: 1 where it holds, else 0, in this tensor's "
                      f"dtype.\n\n    >>> import ckpt\n    >>> ckpt.tensor([1.0, 2.0]).{name}"
                      f"(1.0).dtype\n    dtype('float32')\n")
    return method


eq_, ne_, lt_ = _compare_inplace("eq_", ew.eq), _compare_inplace("ne_", ew.ne), _compare_inplace("lt_", ew.lt)
le_, gt_, ge_ = _compare_inplace("le_", ew.le), _compare_inplace("gt_", ew.gt), _compare_inplace("ge_", ew.ge)
