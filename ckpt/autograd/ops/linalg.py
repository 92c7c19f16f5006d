"""Matrix products."""
import numpy as np

from ..node import Node, record


class MmBackward0(Node):
    """matmul with numpy's rules: 1-D operands are promoted to a row / column and the added
    dim is removed again; batch dims broadcast (the engine sums them back)."""

    def vjp(self, g, a, b):
        need_a = self.next_functions[0][0] is not None
        need_b = self.next_functions[1][0] is not None
        if a.data.ndim == 1 and b.data.ndim == 1:
            return (g * b if need_a else None), (g * a if need_b else None)
        if a.data.ndim == 1:
            g2 = g.unsqueeze(-2)
            ga = (g2 @ b.mT).squeeze(-2) if need_a else None
            gb = a.unsqueeze(-1) @ g2 if need_b else None
            return ga, gb
        if b.data.ndim == 1:
            g2 = g.unsqueeze(-1)
            ga = g2 @ b.unsqueeze(-2) if need_a else None
            gb = (a.mT @ g2).squeeze(-1) if need_b else None
            return ga, gb
        return (_product(g, b.mT, a) if need_a else None), (_product(a.mT, g, b) if need_b else None)


def _product(x, y, like):
    """``x @ y``, computed as ``(y.mT @ x.mT).mT`` when ``like`` is a transposed (F-ordered)
    matrix, so the gradient comes out in its input's memory layout (e.g. a weight used as
    ``W.mT`` gets a C-ordered gradient, which later in-place updates read fast)."""
    d = like.data
    if d.ndim == 2 and d.flags.f_contiguous and not d.flags.c_contiguous:
        return (y.mT @ x.mT).mT
    return x @ y


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
    return record(MmBackward0, out, (a, b), (a, b))


def linear(x, weight, bias=None):
    """``x @ weight.T + bias``, as torch.nn.functional.linear.

    >>> import ckpt
    >>> ckpt.linear(ckpt.ones(2, 3), ckpt.ones(4, 3)).shape
    (2, 4)
    """
    out = matmul(x, weight.mT)
    return out if bias is None else out + bias


