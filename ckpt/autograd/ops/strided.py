"""``as_strided``: a view given by sizes, strides and an offset into a tensor's storage.

Its derivative goes through storage positions: the gradient of the view is summed into the
storage positions it reads, and each input element takes the gradient at its own position
(shared evenly where input elements overlap, as torch). Positions outside the input are no
function of it: they carry no gradient and no tangent.
"""
import numpy as np

from ..node import record
from ..storage import TypedStorage
from ..tensor import Tensor
from ._util import data_of
from .shape import _SameOpOnTangent, _share_version_if_view, getitem, index_into_zeros


def _positions(storage_size, size, stride, offset):
    """The storage position of every element of the view ``(size, stride, offset)``."""
    index = np.arange(max(storage_size, offset + 1), dtype=np.int64)
    item = index.itemsize
    return np.lib.stride_tricks.as_strided(index[offset:], size, [s * item for s in stride],
                                           writeable=False)


class AsStridedBackward0(_SameOpOnTangent):
    def vjp(self, g):
        in_positions = self.in_positions
        spread = index_into_zeros(g, self.out_positions, (self.storage_size,))
        counts = np.bincount(in_positions.reshape(-1), minlength=self.storage_size)
        shared = counts[in_positions]
        taken = getitem(spread, in_positions)
        return taken if (shared == 1).all() else taken / shared.astype(taken.dtype)

    def tangent_op(self, t, out):
        counts = np.bincount(self.in_positions.reshape(-1), minlength=self.storage_size)
        spread = index_into_zeros(t, self.in_positions, (self.storage_size,))
        if (counts > 1).any():
            spread = spread / np.maximum(counts, 1).astype(spread.dtype)
        return getitem(spread, self.out_positions)


def as_strided(x, size, stride, storage_offset=None):
    """The view of ``x``'s storage with these sizes and strides (in elements), from
    ``storage_offset`` (default: where ``x`` starts).

    >>> import ckpt
    >>> ckpt.arange(6).as_strided((2, 2), (3, 1), 1).tolist()
    [[1, 2], [4, 5]]
    """
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    if any(s < 0 for s in stride):
        raise RuntimeError(f"as_strided: Negative strides are not supported at the moment, got "
                           f"strides: {list(stride)}")
    d = data_of(x)  # (an array when a write through a view replays this op on its base)
    storage, item = TypedStorage(d), d.itemsize
    own_offset = (d.__array_interface__["data"][0] - storage.data_ptr()) // item
    start = own_offset if storage_offset is None else int(storage_offset)
    needed = 0 if 0 in size else start + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if needed > len(storage):
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage offset "
                           f"{start}, and itemsize {item} requiring a storage size of "
                           f"{needed * item} are out of bounds for storage of size {storage.nbytes()}")
    flat = storage.owner.reshape(-1, order="A").view(d.dtype)
    out = np.lib.stride_tricks.as_strided(flat[min(start, flat.size):], size,
                                          [s * item for s in stride])
    if x.__class__ is not Tensor:
        return out
    positions = _positions(len(storage), size, stride, start)
    in_positions = _positions(len(storage), d.shape, x.stride(), own_offset)
    t = record(AsStridedBackward0, out, (x,), storage_size=len(storage), out_positions=positions,
               in_positions=in_positions)
    return _share_version_if_view(t, x, as_strided, (size, stride, start))
