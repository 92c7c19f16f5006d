"""Reductions beyond sums and extremes: ``prod``, ``median``, ``nanmedian``, ``var_mean``."""
from collections import namedtuple

import numpy as np

from .. import grad_mode
from ..node import OUTPUT, Extensions, record, record_multi, share_node
from ..tensor import _wrap
from ._util import data_of, expand_reduced, for_jvp, normalize_dims, reduced_dims
from .reduce import MaxBackward0, MaxBackward1, ReducedByFactor, VarBackward0, divided, mean, var, var_args

median_values_indices = namedtuple("median", ["values", "indices"])


class ProdBackward0(ReducedByFactor):
    """d prod / d x_i is the product of the other elements: ``prod / x_i`` without zeros
    (differentiable again); with a zero, exclusive products (not differentiable again)."""
    _batched_rule = False

    def factor(self, x, out):
        d = data_of(x)
        if np.all(d != 0):
            kept = out if self.keepdim or not self.axes else out.reshape(
                tuple(1 if i in self.axes else n for i, n in enumerate(d.shape)))
            return kept / x
        axis = self.axes[0] if len(self.axes) == 1 else None
        flat = d if axis is not None else d.reshape(-1)
        axis = 0 if axis is None else axis
        before = np.cumprod(np.concatenate([np.ones_like(np.take(flat, [0], axis)),
                                            np.delete(flat, -1, axis)], axis), axis)
        after = np.flip(np.cumprod(np.concatenate(
            [np.ones_like(np.take(flat, [0], axis)),
             np.delete(np.flip(flat, axis), -1, axis)], axis), axis), axis)
        return (before * after).reshape(d.shape)


class ProdBackward1(ProdBackward0):
    """``prod(x, dim)``."""


def prod(x, dim=None, keepdim=False, dtype=None):
    """The product of the elements (along one ``dim``); integers and bools give int64, as torch.

    >>> import ckpt
    >>> ckpt.prod(ckpt.tensor([[1.0, 2.0], [3.0, 4.0]]), 1).tolist()
    [2.0, 12.0]
    """
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise TypeError(f"prod(): argument 'dim' must be int, not {type(dim).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    if x.data.dtype.kind in "biu":
        x = _wrap(x.data.astype(np.int64))
    axes = reduced_dims(dim, x.data.ndim, "prod")
    keepdim = keepdim and dim is not None
    out = np.asarray(np.prod(x.data, axis=axes, keepdims=keepdim), dtype=x.data.dtype)
    return record(ProdBackward0 if dim is None else ProdBackward1, out, (x,), (x, OUTPUT),
                  axes=axes, keepdim=keepdim)


class MedianBackward0(MaxBackward1):
    """Whole-tensor median: shared evenly among the elements equal to it, as in torch."""


class MedianBackward1(MaxBackward0):
    """Median along a dim: the gradient goes to the selected index."""


class NanmedianBackward0(MedianBackward0):
    pass


class NanmedianBackward1(MedianBackward1):
    pass


def median(x, dim=None, keepdim=False):
    """The lower median of all elements, or ``(values, indices)`` along ``dim``; NaN if
    there is one, as in torch.

    >>> import ckpt
    >>> ckpt.median(ckpt.tensor([3.0, 1.0, 2.0, 4.0])).item()
    2.0
    """
    return _median(x, dim, keepdim, False)


def nanmedian(x, dim=None, keepdim=False):
    """``median`` of the elements that are not NaN (NaN where all are).

    >>> import ckpt
    >>> ckpt.nanmedian(ckpt.tensor([3.0, float("nan"), 1.0])).item()
    1.0
    """
    return _median(x, dim, keepdim, True)


def _median(x, dim, keepdim, skip_nan):
    node = (NanmedianBackward0, NanmedianBackward1) if skip_nan else (MedianBackward0, MedianBackward1)
    if dim is None:
        if x.data.size == 0:
            return record(node[0], np.asarray(np.nan, dtype=x.data.dtype), (x,), (x, OUTPUT))
        flat = x.data.reshape(-1)
        return record(node[0], flat[_lower_median(flat, 0, skip_nan)[0]], (x,), (x, OUTPUT))
    (axis,) = normalize_dims(dim, x.data.ndim, "nanmedian" if skip_nan else "median")
    if x.data.ndim == 0:
        return _median(x.reshape(1), 0, False, skip_nan)
    idx = _lower_median(x.data, axis, skip_nan)
    values = np.take_along_axis(x.data, idx, axis)
    if not keepdim:
        values, idx = values.squeeze(axis), idx.squeeze(axis)
    indices = _wrap(idx)
    out = record_multi(node[1], (values, indices), (x,), (indices,),
                       differentiable=(True, False), in_shape=x.data.shape, dim=axis,
                       keepdim=keepdim, **for_jvp(indices=idx))
    return median_values_indices(*out)


def _lower_median(d, axis, skip_nan):
    """The index along ``axis`` (kept, of size 1) of each slice's lower median: a NaN where
    the slice has one, or (``skip_nan``) the lower median of the others."""
    order = np.argsort(d, axis=axis, kind="stable")  # NaNs last
    size = d.shape[axis]
    nans = np.isnan(d).sum(axis=axis, keepdims=True) if d.dtype.kind in "fc" else 0
    if skip_nan:
        at = np.maximum((size - nans - 1) // 2, 0)
    else:
        at = np.where(nans > 0, size - nans, (size - 1) // 2)
    return np.take_along_axis(order, np.broadcast_to(at, np.take(order, [0], axis).shape), axis)


def var_mean(x, dim=None, unbiased=None, keepdim=False, correction=None):
    """``(var(x, ...), mean(x, ...))`` in one call, as torch's ``var_mean``.

    >>> import ckpt
    >>> [t.item() for t in ckpt.var_mean(ckpt.tensor([1.0, 2.0, 3.0]), correction=0)]
    [0.6666666865348816, 2.0]
    """
    axes, count, correction = var_args(x, dim, unbiased, correction, "var_mean")
    # each value from its own op (which gives it its tangent in forward mode), one node for both
    with grad_mode.set_grad_enabled(grad_mode.is_grad_enabled() and Extensions.forward_ad):
        outs = var(x, axes, None, keepdim, correction), mean(x, axes, keepdim)
    return share_node(outs, VarMeanBackward0, (x,), (x,), axes=axes, keepdim=keepdim,
                      count=count, correction=correction)


class VarMeanBackward0(VarBackward0):
    def vjp(self, grads, x):
        g_var, g_mean = grads
        return (VarBackward0.vjp(self, g_var, x)
                + divided(expand_reduced(g_mean, x.shape, self.axes, self.keepdim), self.count or 1))
