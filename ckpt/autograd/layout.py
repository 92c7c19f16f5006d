"""Memory layout as torch names it: strides in elements, memory formats (``contiguous_format``,
``channels_last``...), tensors made with given strides, and the layout of a leaf's gradient.

A numpy array's strides are in bytes; torch's are in elements. ``channels_last`` keeps a
4-d ``(N, C, H, W)`` tensor's elements in ``(N, H, W, C)`` order (``channels_last_3d``: a
5-d one's in ``(N, D, H, W, C)`` order).
"""
import numpy as np

from .tensor import Tensor


class memory_format:
    """One of torch's memory formats (the constants below are its only instances)."""

    def __init__(self, name, ndim=None, order=None):
        self.name, self.ndim, self.order = name, ndim, order

    def __repr__(self):
        return f"ckpt.{self.name}"

    def layout(self, shape):
        """The strides (in elements) of a dense tensor of ``shape`` in this format."""
        if self.order is None:
            order = range(len(shape))
        elif len(shape) != self.ndim:
            raise RuntimeError(f"required rank {self.ndim} tensor to use {self.name} format")
        else:
            order = self.order
        strides, step = [0] * len(shape), 1
        for axis in reversed(order):
            strides[axis] = step
            step *= max(shape[axis], 1)
        return tuple(strides)


contiguous_format = memory_format("contiguous_format")
channels_last = memory_format("channels_last", 4, (0, 2, 3, 1))
channels_last_3d = memory_format("channels_last_3d", 5, (0, 2, 3, 4, 1))
preserve_format = memory_format("preserve_format")


def stride(t, dim=None):
    """``t``'s strides in elements (torch's unit), or the stride of ``dim``.

    >>> import ckpt
    >>> ckpt.zeros(2, 3).stride(), ckpt.zeros(2, 3).T.stride(0)
    ((3, 1), 1)
    """
    strides = tuple(s // t.data.itemsize for s in t.data.strides)
    return strides if dim is None else strides[dim]


def is_contiguous(t, memory_format=contiguous_format):
    """Whether ``t``'s elements lie densely in ``memory_format``'s order (dims of size 1 may
    have any stride, as in torch).

    >>> import ckpt
    >>> x = ckpt.zeros(2, 3, 4, 5)
    >>> x.is_contiguous(), x.is_contiguous(memory_format=ckpt.channels_last)
    (True, False)
    """
    if memory_format is not contiguous_format and t.data.ndim != memory_format.ndim:
        return False
    wanted = memory_format.layout(t.data.shape)
    return all(n <= 1 or have == want
               for n, have, want in zip(t.data.shape, stride(t), wanted))


def in_memory_format(t, memory_format=contiguous_format, node=None):
    """``t`` if it lies in ``memory_format`` already, else a copy that does, recorded as a
    ``node`` (``CloneBackward0`` by default, as torch's ``contiguous``; ``to`` names its own).

    >>> import ckpt
    >>> ckpt.zeros(1, 3, 2, 2).contiguous(memory_format=ckpt.channels_last).stride()
    (12, 1, 6, 3)
    """
    if memory_format is preserve_format or is_contiguous(t, memory_format):
        return t
    from .ops.shape import CloneBackward0
    from .node import record
    out = empty_strided(t.data.shape, memory_format.layout(t.data.shape), dtype=t.data.dtype).data
    out[...] = t.data
    return record(node or CloneBackward0, out, (t,), in_dtype=t.data.dtype)


def empty_strided(size, stride, *, dtype=None, requires_grad=False, device=None):
    """A tensor of ``size`` whose elements lie ``stride`` elements apart (zeros here).

    >>> import ckpt
    >>> ckpt.empty_strided((2, 2), (4, 2)).stride()
    (4, 2)
    """
    from .factory import _check_device, _dtype
    _check_device(device)
    dtype = _dtype(dtype)
    size, stride = tuple(size), tuple(stride)
    span = 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    buffer = np.zeros(span, dtype=dtype)
    array = np.lib.stride_tricks.as_strided(buffer, size, [s * dtype.itemsize for s in stride])
    return Tensor(array, requires_grad=requires_grad)


def laid_out_like(g, leaf):
    """The array ``g`` as torch lays out a leaf's gradient: with the strides of ``leaf`` (an
    array) where ``leaf`` is dense, else C-ordered; ``g`` itself when it is so already."""
    like = np.empty_like(leaf, dtype=g.dtype)  # the leaf's layout, made dense
    if like.strides != leaf.strides:
        like = np.empty(leaf.shape, g.dtype)
    if like.strides == g.strides:
        return g
    like[...] = g
    return like
