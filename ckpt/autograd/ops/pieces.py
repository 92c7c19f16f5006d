"""Taking a piece of a tensor along one dim (``narrow``, ``select``: views, by indexing),
splitting it into pieces that may be written in place (``unsafe_split``...) and tiling it
(``repeat``)."""
import numpy as np

from ..node import record
from ._util import normalize_dims
from .reduce import sum
from .shape import _SameOpOnTangent, chunk, getitem, split


def narrow(x, dim, start, length):
    """The view ``x[..., start:start + length, ...]`` along ``dim`` (``start`` may be negative).

    >>> import ckpt
    >>> ckpt.arange(6).reshape(2, 3).narrow(1, 1, 2).tolist()
    [[1, 2], [4, 5]]
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "narrow")
    size = x.data.shape[dim] if x.data.ndim else 1
    if not -size <= start <= size:
        raise IndexError(f"start out of range (expected to be in range of [{-size}, {size}], "
                         f"but got {start})")
    start = start + size if start < 0 else start
    if start + length > size or length < 0:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({size}).")
    return getitem(x, (slice(None),) * dim + (slice(start, start + length),))


def select(x, dim, index):
    """The view ``x[..., index, ...]`` along ``dim``, one dim fewer.

    >>> import ckpt
    >>> ckpt.arange(6).reshape(2, 3).select(1, -1).tolist()
    [2, 5]
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "select")
    size = x.data.shape[dim]
    if not -size <= index < size:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(x.data.shape)} at dimension {dim}")
    return getitem(x, (slice(None),) * dim + (int(index),))


class RepeatBackward0(_SameOpOnTangent):
    def vjp(self, g):
        """Each input element's gradient sums its copies: split every dim into (copies, size)."""
        split = [n for pair in zip(self.repeats, self.padded_shape) for n in pair]
        return sum(g.reshape(tuple(split)), tuple(range(0, len(split), 2))).reshape(self.in_shape)

    def tangent_op(self, t, out):
        return repeat(t, *self.repeats)


def repeat(x, *sizes):
    """``x`` tiled ``sizes[i]`` times along dim ``i`` (leading ``sizes`` add dims), a copy.

    >>> import ckpt
    >>> ckpt.tensor([1, 2]).repeat(2, 2).tolist()
    [[1, 2, 1, 2], [1, 2, 1, 2]]
    """
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < x.data.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    padded = (1,) * (len(sizes) - x.data.ndim) + x.data.shape
    out = np.tile(x.data.reshape(padded), sizes)
    return record(RepeatBackward0, out, (x,), repeats=sizes, padded_shape=padded,
                  in_shape=x.data.shape)



def _writable(pieces):
    """``pieces`` untied from their base as torch's ``unsafe_*`` outputs are: no ban on writing
    one output of a multi-output view op, their own version counters, no rebase of the base."""
    for piece in pieces:
        meta = piece._creation_meta
        if meta is not None and meta[0] == "multi":
            piece._creation_meta = None
        base = piece._base
        if base is not None:
            views = getattr(base, "_views", None)
            if views:
                views.difference_update([r for r in views if r() is piece])
            piece._base = None
        piece._vc = [piece._vc[0]]
    return pieces


def unsafe_split(x, split_size, dim=0):
    """``split`` whose pieces may be written in place (the caller vouches that is safe).

    >>> import ckpt
    >>> a, b = (ckpt.ones(4, requires_grad=True) * 1).unsafe_split(2)
    >>> a.mul_(b).tolist()
    [1.0, 1.0]
    """
    return _writable(split(x, split_size, dim))


def unsafe_split_with_sizes(x, split_sizes, dim=0):
    """``split_with_sizes`` whose pieces may be written in place."""
    return _writable(split(x, list(split_sizes), dim))


def unsafe_chunk(x, chunks, dim=0):
    """``chunk`` whose pieces may be written in place."""
    return _writable(chunk(x, chunks, dim))
