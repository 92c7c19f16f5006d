"""Small helpers shared by the op modules."""
import numpy as np

from ..tensor import Tensor, _wrap


def data_of(x):
    """The numpy value behind an op argument: a Tensor's array, or the plain number/array."""
    return x.data if x.__class__ is Tensor else x


def as_tensor_arg(x, like=None):
    """A Tensor for ``x``; plain numbers take ``like``'s dtype (torch's scalar rule)."""
    if x.__class__ is Tensor or isinstance(x, Tensor):
        return x
    dtype = like.data.dtype if like is not None and isinstance(x, (int, float)) else None
    return _wrap(np.asarray(x, dtype=dtype))


def normalize_dims(dim, ndim, op_name):
    """``dim`` (None, int or sequence) as a sorted tuple of non-negative axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    out = []
    for d in dims:
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(
                f"{op_name}: Dimension out of range (expected to be in range of "
                f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {d})")
        out.append(d % ndim if ndim else 0)
    return tuple(sorted(set(out)))


def kept_shape(shape, axes):
    """``shape`` with the reduced ``axes`` set to 1 (the keepdim shape)."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def expand_reduced(g, in_shape, axes, keepdim):
    """Broadcast a reduction's gradient back to the input's shape (differentiably; arrays
    in, arrays out)."""
    from .shape import expand
    batch = lead(g)
    if not keepdim and axes:
        g = g.reshape(batch + kept_shape(in_shape, axes))
    return expand(g, batch + tuple(in_shape))


def shape_error(op_name, a, b):
    return RuntimeError(f"{op_name}: shapes {list(np.shape(a))} and {list(np.shape(b))} are not compatible")


def total(*terms):
    """The sum of the terms that are not None (a JVP's contributions from the tangents that
    exist); None if there are none."""
    result = None
    for term in terms:
        if term is not None:
            result = term if result is None else result + term
    return result


class Batch:
    """Leading batch dims carried by gradients (``grad(..., is_grads_batched=True)``) or
    tangents (``dual_level(batch_size=B)``) during a vectorized pass; 0 otherwise.

    Rules of nodes with ``_batched_rule = True`` handle those dims themselves (elementwise
    broadcasting, negative axes, ``lead(x)``); the others are looped over the batch."""
    dims = 0


def lead(x):
    """The leading batch dims of a gradient or tangent ``x`` (``()`` outside a vectorized pass)."""
    return x.shape[:Batch.dims]


def shift(axes):
    """Axes of a primal, moved past the batch dims of its gradient or tangent."""
    return tuple(a + Batch.dims for a in axes) if Batch.dims else axes
