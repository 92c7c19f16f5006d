"""Matrix products."""
import numpy as np

from ..node import Node, record
from ._util import total as _total
from .shape import unsqueeze


class MmBackward0(Node):
    """matmul with numpy's rules: 1-D operands are promoted to a row / column and the added
    dim is removed again; batch dims broadcast (the engine sums them back). Written with
    negative axes only, so gradients and tangents may carry leading batch dims."""
    _batched_rule = True
    _saved_names = ("self", "mat2")

    def vjp(self, g, a, b):
        need_a, need_b = b is not None, a is not None  # each factor is saved only for the other's grad
        a_ndim, b_ndim = self.ndims  # an unsaved factor's rank still decides the rule
        if a_ndim == 1 and b_ndim == 1:
            g1 = unsqueeze(g, -1)
            return (g1 * b if need_a else None), (g1 * a if need_b else None)
        # A vector times a matrix: with batch dims in g, ``g @ matrix`` is one matrix product
        # (numpy runs a stack of (n, 1) columns as one matrix-vector product each).
        if a_ndim == 1:
            g2 = unsqueeze(g, -2)
            ga = (g @ b.mT if b_ndim == 2 else (g2 @ b.mT).squeeze(-2)) if need_a else None
            gb = unsqueeze(a, -1) @ g2 if need_b else None
            return ga, gb
        if b_ndim == 1:
            g2 = unsqueeze(g, -1)
            ga = g2 @ unsqueeze(b, -2) if need_a else None
            gb = (g @ a if a_ndim == 2 else (a.mT @ g2).squeeze(-1)) if need_b else None
            return ga, gb
        return (_product(g, b.mT, self.a_layout) if need_a else None), (
            _product(a.mT, g, self.b_layout) if need_b else None)

    def jvp(self, tangents, primals, out):
        (ta, tb), (a, b) = tangents, primals
        by_tb = None
        if tb is not None:  # a 1-D b's tangent is a column (it may carry batch dims in front)
            if b.ndim == 1:
                by_tb = tb @ a.mT if a.ndim == 2 else (a @ unsqueeze(tb, -1)).squeeze(-1)
            else:
                by_tb = a @ tb
        return _total(None if ta is None else ta @ b, by_tb)


class DotBackward0(MmBackward0):
    """A vector times a vector."""


class MvBackward0(MmBackward0):
    """A matrix times a vector."""


def _is_transposed(d):
    return d.ndim == 2 and d.flags.f_contiguous and not d.flags.c_contiguous


def _product(x, y, transposed):
    """``x @ y``, computed as ``(y.mT @ x.mT).mT`` when the input it is the gradient of is a
    transposed (F-ordered) matrix, so the gradient comes out in that input's memory layout
    (a weight used as ``W.mT`` gets a C-ordered gradient, which in-place updates read fast)."""
    return (y.mT @ x.mT).mT if transposed else x @ y


def matmul(a, b):
    """Matrix product with batching and broadcasting (``a @ b``).

    >>> import ckpt
    >>> (ckpt.ones(2, 3) @ ckpt.ones(3, 4)).shape
    (2, 4)
    """
    try:
        out = np.matmul(a.data, b.data)
    except ValueError:
        raise RuntimeError(f"matmul: shapes {list(a.data.shape)} and {list(b.data.shape)} cannot be "
                           f"multiplied ({a.data.shape[-1] if a.data.ndim else 0} != "
                           f"{b.data.shape[-2] if b.data.ndim > 1 else b.data.shape[0] if b.data.ndim else 0})") from None
    if not isinstance(out, np.ndarray):
        out = np.asarray(out)
    a_grad = a.requires_grad
    b_grad = b.requires_grad
    a_ndim, b_ndim = a.data.ndim, b.data.ndim
    cls = (MmBackward0 if b_ndim != 1 else DotBackward0 if a_ndim == 1 else
           MvBackward0 if a_ndim == 2 else MmBackward0)
    return record(cls, out, (a, b), (a if b_grad else None, b if a_grad else None),
                  a_layout=a_grad and _is_transposed(a.data), b_layout=b_grad and _is_transposed(b.data),
                  ndims=(a.data.ndim, b.data.ndim))


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``, as torch.nn.functional.linear.

    >>> import ckpt
    >>> ckpt.linear(ckpt.ones(2, 3), ckpt.ones(4, 3)).shape
    (2, 4)
    """
    out = matmul(x, weight.mT)
    return out if bias is None else out + bias


def mm(a, b):
    """The product of two matrices (2-D only, unlike ``matmul``).

    >>> import ckpt
    >>> ckpt.mm(ckpt.ones(2, 3), ckpt.ones(3, 4)).shape
    (2, 4)
    """
    for name, m in (("self", a), ("mat2", b)):
        if m.data.ndim != 2:
            raise RuntimeError(f"{name} must be a matrix")
    if a.data.shape[1] != b.data.shape[0]:
        (n, k), (k2, m) = a.data.shape, b.data.shape
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({n}x{k} and {k2}x{m})")
    return matmul(a, b)
