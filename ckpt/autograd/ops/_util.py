"""Small helpers shared by the op modules."""
import numpy as np

from ..batch import Batch, lead, shift  # noqa: F401  (the ops import them from here)
from ..node import Extensions
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


def reduced_dims(dim, ndim, op_name):
    """``normalize_dims`` for a reduction, read as torch reads it: an empty list or tuple
    is every dim; a 0-d tensor's one place (dim 0 or -1) reduces nothing; a dim named twice,
    or a bool for a dim, is an error.

    >>> reduced_dims([], 2, "sum"), reduced_dims((1,), 2, "sum"), reduced_dims(-1, 0, "sum")
    ((0, 1), (1,), ())
    """
    named = dim.__class__ in (list, tuple)
    if dim.__class__ is bool or named and any(d.__class__ is bool for d in dim):
        raise TypeError(f"{op_name}(): argument 'dim' must be an int or a tuple of ints, not bool")
    axes = normalize_dims(None if named and not dim else dim, ndim, op_name)
    if named and len(axes) < len(dim):
        wrapped = [d % max(ndim, 1) for d in dim]
        twice = next(d for i, d in enumerate(wrapped) if d in wrapped[:i])
        raise RuntimeError(f"dim {twice} appears multiple times in the list of dims")
    return axes if ndim else ()


def kept_shape(shape, axes):
    """``shape`` with the reduced ``axes`` set to 1 (the keepdim shape)."""
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def expand_reduced(g, in_shape, axes, keepdim):
    """Broadcast a reduction's gradient back to the input's shape (differentiably; arrays
    in, arrays out).

    >>> import numpy as np
    >>> view = expand_reduced(np.array(2.0), (2, 3), (0, 1), False)
    >>> view.tolist(), view.flags.writeable
    ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], False)
    """
    if g.__class__ is np.ndarray and not g.ndim:   # a whole array reduced to a number
        return spread(g, tuple(in_shape))
    from .shape import expand
    batch = lead(g)
    if not keepdim and axes:
        g = g.reshape(batch + kept_shape(in_shape, axes))
    return expand(g, batch + tuple(in_shape))


def spread(number, shape):
    """The 0-d array ``number`` at every place of ``shape``: a read-only view, as
    ``np.broadcast_to`` makes it, at a quarter of its cost (0.6 µs, not 2.5).

    >>> import numpy as np
    >>> spread(np.array(1.5, np.float32), (2,)).tolist()
    [1.5, 1.5]
    """
    view = np.ndarray(shape, number.dtype, number, 0, (0,) * len(shape))
    view.flags.writeable = False
    return view


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


# Ops whose numpy work needs temporaries as large as their output (a mask, a product) make
# them a piece at a time, in about CHUNKS pieces, so what an op holds beyond its inputs and
# output is a fraction of an activation (docs/planner.md, "Measured").
CHUNKS = 8
MIN_CHUNK = 16384  # elements: below CHUNKS * MIN_CHUNK an op works whole (a loop costs more)


def chunk_axis(shape):
    """``(axis, step)``: cut arrays of ``shape`` along ``axis`` into about ``CHUNKS`` pieces
    of ``step`` (the first axis that long, else the longest); one piece when the array has
    fewer than ``CHUNKS * MIN_CHUNK`` elements.

    >>> chunk_axis((4096, 256)), chunk_axis((64, 512))
    ((0, 512), (0, 64))
    """
    axis = next((a for a, n in enumerate(shape) if n >= CHUNKS), int(np.argmax(shape)))
    if int(np.prod(shape)) < CHUNKS * MIN_CHUNK:
        return axis, max(1, shape[axis])
    return axis, max(1, -(-shape[axis] // CHUNKS))


def chunked(fn, dtype, *arrays):
    """``fn(out, *arrays)`` for numpy arrays, where ``fn`` writes an elementwise result into
    ``out`` (a new array of ``dtype``) -- piece by piece (``chunk_axis``) when the arrays
    share one shape and are large, so that the temporaries ``fn`` makes are a fraction of the
    output; else (small arrays, broadcasting, scalars) ``fn(None, *arrays)`` computes and
    returns it whole.

    >>> import numpy as np
    >>> a = np.arange(20.0).reshape(10, 2)
    >>> out = chunked(lambda out, x: np.multiply(x, x > 3, out=out), a.dtype, a)
    >>> bool((out == a * (a > 3)).all())
    True
    """
    shape = arrays[0].shape
    if (not shape or arrays[0].size < CHUNKS * MIN_CHUNK
            or any(a.shape != shape for a in arrays)):
        return fn(None, *arrays)
    out = np.empty(shape, dtype=dtype)
    axis, step = chunk_axis(shape)
    lead = (slice(None),) * axis
    for i in range(0, shape[axis], step):
        part = lead + (slice(i, i + step),)
        fn(out[part], *(a[part] for a in arrays))
    return out


def for_jvp(**arrays):
    """Node attributes for the non-differentiable arrays a JVP needs and the VJP reads from
    ``saved`` (a JVP sees the inputs and the attributes, not what is saved). Given only inside
    a dual level: outside one, reverse mode keeps them in ``saved`` alone, where saved-tensor
    hooks see them and the memory layer counts them.

    >>> for_jvp(mask=None)   # no dual level open
    {}
    """
    return arrays if Extensions.forward_ad else {}


def saved_tensor(x):
    """What an op saves for a non-differentiable tensor argument (a condition, an index, a
    class weight): the caller's Tensor itself, so an in-place change before backward is
    caught by its version counter, or a Tensor of its own around an array or list.

    >>> import ckpt
    >>> t = ckpt.tensor([1, 0]); saved_tensor(t) is t
    True
    """
    return x if x.__class__ is Tensor else _wrap(np.asarray(x))
