"""``as_strided``: a view of a tensor's memory ("storage", torch's word) with any sizes,
strides and offset, all counted in elements from the start of the storage.

The storage is the numpy buffer that owns the tensor's memory; its
elements are numbered from its lowest address. The gradient follows torch's
``as_strided_backward`` for inputs whose elements don't overlap: the output's gradient is
added into a zero storage at the output's positions, then read at the input's positions.
"""
import numpy as np

from ..node import record
from ..tensor import Tensor
from ._util import data_of
from .shape import _SameOpOnTangent, _share_version_if_view, getitem, index_into_zeros


def _storage(array):
    """``(flat, offset)``: the storage of ``array`` as a flat array from its lowest address,
    and the position there of ``array``'s first element."""
    root = array
    while True:  # (``as_strided`` arrays hold their source through a non-array ``base``)
        above = root.base if isinstance(root.base, np.ndarray) else getattr(root.base, "base", None)
        if not isinstance(above, np.ndarray):
            break
        root = above
    low = root[tuple(slice(None, None, -1) if s < 0 else slice(None) for s in root.strides)]
    size = 1 + sum((n - 1) * abs(s) for n, s in zip(root.shape, root.strides)) // root.itemsize \
        if root.size else 0
    flat = np.lib.stride_tricks.as_strided(low, (size,), (root.itemsize,))
    offset = (array.__array_interface__["data"][0] - low.__array_interface__["data"][0])
    return flat, offset // array.itemsize


def _positions(shape, strides, offset):
    """The storage position of every element of a view of ``shape``/``strides``/``offset``."""
    positions = np.full(shape, offset, dtype=np.int64)
    for axis, (n, s) in enumerate(zip(shape, strides)):
        positions += (np.arange(n) * s).reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return positions


def storage_offset(x):
    """Where ``x``'s first element lies in its storage, in elements (torch's name).

    >>> import ckpt
    >>> ckpt.arange(6)[2:].storage_offset()
    2
    """
    return _storage(data_of(x))[1]


class AsStridedBackward0(_SameOpOnTangent):
    def vjp(self, g):
        storage = index_into_zeros(g, (self.out_positions,), (self.storage_size,))
        return getitem(storage, (self.in_positions,))

    def tangent_op(self, t, out):
        """The input's tangent placed in storage, read at the output's positions."""
        return getitem(index_into_zeros(t, (self.in_positions,), (self.storage_size,)),
                       (self.out_positions,))


def as_strided(x, size, stride, storage_offset=None):
    """The view of ``x``'s storage with ``size``, ``stride`` and ``storage_offset`` (in
    elements; the offset defaults to ``x``'s own).

    >>> import ckpt
    >>> ckpt.arange(6.0).as_strided((2, 2), (1, 2)).tolist()
    [[0.0, 2.0], [1.0, 3.0]]
    """
    d = data_of(x)
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    flat, own_offset = _storage(d)
    offset = own_offset if storage_offset is None else int(storage_offset)
    needed = offset + 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    if needed > flat.size or min(stride, default=0) < 0 or offset < 0:
        raise RuntimeError(
            f"setStorage: sizes {list(size)}, strides {list(stride)}, storage offset {offset}, "
            f"and itemsize {d.itemsize} requiring a storage size of {needed * d.itemsize} are "
            f"out of bounds for storage of size {flat.size * d.itemsize}")
    out = np.lib.stride_tricks.as_strided(flat[offset:], size, [s * d.itemsize for s in stride])
    if x.__class__ is not Tensor:
        return out
    in_positions = _positions(d.shape, [s // d.itemsize for s in d.strides], own_offset)
    t = record(AsStridedBackward0, out, (x,), storage_size=flat.size, in_positions=in_positions,
               out_positions=_positions(size, stride, offset))
    return _share_version_if_view(t, x, as_strided, (size, stride, offset))
