"""Reductions: sum, mean, max/min (whole tensor or along a dim), var, logsumexp."""
import math
from collections import namedtuple

import numpy as np

from ..node import Node, OUTPUT, record, record_multi
from ..tensor import Tensor, _wrap
from ._util import data_of, expand_reduced, for_jvp, kept_shape, normalize_dims, reduced_dims, shift

_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
values_indices = namedtuple("values_indices", ["values", "indices"])


class SumBackward0(Node):
    _batched_rule = True

    def vjp(self, g):
        return expand_reduced(g, self.in_shape, self.axes, self.keepdim)

    def jvp(self, tangents, primals, out):
        return reduce_over(sum, tangents[0], shift(self.axes), self.keepdim)


def reduce_over(reduce, x, axes, keepdim=False):
    """``reduce`` (``sum`` or ``mean``) of ``x`` over exactly ``axes``: ``x`` itself when
    there are none, where an empty ``dim`` given to ``reduce`` means every dim, as in torch.

    >>> import numpy as np
    >>> reduce_over(sum, np.ones((2, 3)), (1,)).tolist(), reduce_over(sum, np.ones(2), ()).tolist()
    ([3.0, 3.0], [1.0, 1.0])
    """
    return reduce(x, axes, keepdim) if axes else x


def sum(x, dim=None, keepdim=False):
    """Sum over ``dim`` (all elements when None).

    >>> import ckpt
    >>> ckpt.sum(ckpt.ones(2, 3), dim=1).tolist()
    [3.0, 3.0]
    """
    d = data_of(x)
    axes = reduced_dims(dim, d.ndim, "sum")
    out = np.sum(d, axis=axes, keepdims=keepdim)
    if x.__class__ is not Tensor:  # arrays in, arrays out (array rules)
        return out
    return record(SumBackward0 if dim is None else SumBackward1, np.asarray(out), (x,),
                  in_shape=d.shape, axes=axes, keepdim=keepdim)


class SumBackward1(SumBackward0):
    """``sum(x, dim)`` (torch names the overload with a dim apart)."""


class MeanBackward0(Node):
    _batched_rule = True

    def vjp(self, g):
        count = self.count or 1   # (no element: an empty gradient, whatever it is divided by)
        if g.__class__ is np.ndarray and not g.ndim:   # the mean of all: one new array, filled
            return np.full(self.in_shape, divided(g, count), dtype=g.dtype)
        return divided(expand_reduced(g, self.in_shape, self.axes, self.keepdim), count)

    def jvp(self, tangents, primals, out):
        return reduce_over(mean, tangents[0], shift(self.axes), self.keepdim)


def divided(g, count):
    """``g / count`` as torch divides: float16 in float32, rounded once (numpy would round
    ``count`` to float16 first, to inf past 65504).

    >>> import numpy as np
    >>> float(divided(np.array(1.0, np.float16), 70000))
    1.430511474609375e-05
    """
    if data_of(g).dtype != np.float16:
        return g / count
    if g.__class__ is Tensor:
        return (g.to(np.float32) / count).to(np.float16)
    return (g.astype(np.float32) / count).astype(np.float16)


def mean(x, dim=None, keepdim=False):
    """Mean over ``dim`` (all elements when None).

    >>> import ckpt
    >>> ckpt.mean(ckpt.tensor([1.0, 2.0, 6.0])).item()
    3.0
    """
    d = data_of(x)
    if d.dtype.kind not in "fc":
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be floating "
                           f"point, got {d.dtype}")
    axes = reduced_dims(dim, d.ndim, "mean")
    count = math.prod([d.shape[a] for a in axes]) if axes else 1
    if d.dtype is _F32 or d.dtype is _F64:  # np.mean's steps, without its wrapper (-10 µs)
        out, n = np.add.reduce(d, axis=axes, keepdims=keepdim), np.intp(count)
        out = (np.true_divide(out, n, out=out, casting="unsafe") if out.__class__ is np.ndarray
               else out.dtype.type(out / n))
    else:  # (float16 summed in float32, complex)
        out = np.mean(d, axis=axes, keepdims=keepdim)
    out = np.asarray(out, dtype=d.dtype)
    if x.__class__ is not Tensor:
        return out
    return record(MeanBackward0 if dim is None else MeanBackward1, out, (x,), in_shape=d.shape,
                  axes=axes, keepdim=keepdim, count=count)


class MeanBackward1(MeanBackward0):
    """``mean(x, dim)``."""


class MaxBackward1(Node):
    """Whole-tensor max/min: the gradient is shared evenly among the tied extremes."""

    _batched_rule = True

    def vjp(self, g, x, out):
        d = data_of(x)
        return expand_reduced(g, d.shape, tuple(range(d.ndim)), False) * self._share(d, out)

    def jvp(self, tangents, primals, out):
        d = data_of(primals[0])
        return reduce_over(sum, tangents[0] * self._share(d, out), shift(tuple(range(d.ndim))))

    @staticmethod
    def _share(d, out):
        value = data_of(out)
        mask = np.isnan(d) if np.isnan(value) else d == value  # a NaN result: the NaNs share
        return (mask / mask.sum()).astype(d.dtype)


class MaxBackward0(Node):
    """max/min along a dim: the gradient goes to the selected index (saved, as torch saves
    the indices output)."""
    _batched_rule = True

    def vjp(self, grads, indices):
        g = grads[0]
        return expand_reduced(g, self.in_shape, (self.dim,), self.keepdim) * self._onehot(indices)

    def jvp(self, tangents, primals, out):
        return sum(tangents[0] * self._onehot(self.indices), shift((self.dim,)), self.keepdim)

    def _onehot(self, indices):
        """True at each selected index, over the input's shape."""
        idx = data_of(indices)
        if not self.keepdim:
            idx = np.expand_dims(idx, self.dim)
        return np.arange(self.in_shape[self.dim]).reshape(
            [-1 if i == self.dim else 1 for i in range(len(self.in_shape))]) == idx


def _extreme(x, dim, keepdim, pick, arg_pick, name):
    if dim is None:
        if x.data.size == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
        return record(MaxBackward1 if name == "max" else MinBackward1, np.asarray(pick(x.data)),
                      (x,), (x, OUTPUT))
    (axis,) = normalize_dims(dim, x.data.ndim, name)
    if x.data.ndim == 0:  # the value itself, at index 0 (as torch)
        return _extreme(x.reshape(1), 0, False, pick, arg_pick, name)
    idx = np.expand_dims(arg_pick(x.data, axis=axis), axis)
    values = np.take_along_axis(x.data, idx, axis)
    if not keepdim:
        values, idx = values.squeeze(axis), idx.squeeze(axis)
    indices = _wrap(idx)
    cls = MaxBackward0 if name == "max" else MinBackward0
    out = record_multi(cls, (values, indices), (x,), (indices,), differentiable=(True, False),
                       in_shape=x.data.shape, dim=axis, keepdim=keepdim, **for_jvp(indices=idx))
    return values_indices(*out)


class MinBackward1(MaxBackward1):
    pass


class MinBackward0(MaxBackward0):
    pass


def max(x, dim=None, keepdim=False):
    """Largest element, or ``(values, indices)`` along ``dim``; with a tensor as ``dim``,
    the elementwise maximum (as ``torch.max(a, b)``).

    >>> import ckpt
    >>> ckpt.max(ckpt.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=1).values.tolist()
    [5.0, 7.0]
    """
    if hasattr(dim, "data") and not isinstance(dim, (int, np.integer)):
        from .elementwise import maximum
        return maximum(x, dim)
    return _extreme(x, dim, keepdim, np.max, np.argmax, "max")


def min(x, dim=None, keepdim=False):
    """Smallest element, or ``(values, indices)`` along ``dim``.

    >>> import ckpt
    >>> ckpt.min(ckpt.tensor([3.0, 1.0, 2.0])).item()
    1.0
    """
    if hasattr(dim, "data") and not isinstance(dim, (int, np.integer)):
        from .elementwise import minimum
        return minimum(x, dim)
    return _extreme(x, dim, keepdim, np.min, np.argmin, "min")


def amax(x, dim=None, keepdim=False):
    """Maximum over ``dim`` (ties share the gradient); values only.

    >>> import ckpt
    >>> ckpt.amax(ckpt.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=0).tolist()
    [7.0, 5.0]
    """
    if dim is None:
        return max(x)
    axes = reduced_dims(dim, x.data.ndim, "amax")
    return record(AmaxBackward0, np.asarray(np.max(x.data, axis=axes, keepdims=keepdim)), (x,),
                  (x, OUTPUT), axes=axes, keepdim=keepdim)


class ReducedByFactor(Node):
    """A reduction over ``axes`` whose derivative with respect to each input element is
    ``factor(x, out)``: the gradient is the expanded g times it, the tangent the reduced
    product (``amax``, ``prod``)."""
    _batched_rule = True

    def vjp(self, g, x, out):
        return expand_reduced(g, data_of(x).shape, self.axes, self.keepdim) * self.factor(x, out)

    def jvp(self, tangents, primals, out):
        return reduce_over(sum, tangents[0] * self.factor(primals[0], out), shift(self.axes), self.keepdim)


class AmaxBackward0(ReducedByFactor):
    def factor(self, x, out):
        """Each input element's share of the maximum: 1/ties where it ties, else 0."""
        d = data_of(x)
        kept = data_of(out) if self.keepdim else data_of(out).reshape(kept_shape(d.shape, self.axes))
        mask = d == kept
        return (mask / mask.sum(axis=self.axes, keepdims=True)).astype(d.dtype)


def argmax(x, dim=None, keepdim=False):
    """Index of the largest element (flattened when ``dim`` is None); not differentiable.

    >>> import ckpt
    >>> ckpt.argmax(ckpt.tensor([[1.0, 5.0], [7.0, 2.0]]), dim=1).tolist()
    [1, 0]
    """
    if dim is None:
        return _wrap(np.asarray(np.argmax(x.data)))
    return _wrap(np.argmax(x.data, axis=dim, keepdims=keepdim))


def argmin(x, dim=None, keepdim=False):
    """Index of the smallest element (flattened when ``dim`` is None); not differentiable.

    >>> import ckpt
    >>> ckpt.argmin(ckpt.tensor([3.0, 1.0, 2.0])).item()
    1
    """
    if dim is None:
        return _wrap(np.asarray(np.argmin(x.data)))
    return _wrap(np.argmin(x.data, axis=dim, keepdims=keepdim))


class VarBackward0(Node):
    _batched_rule = True

    def vjp(self, g, x):   # (torch's order: the scale times g first, then x - mean)
        return expand_reduced(g * self._scale(), x.shape, self.axes, self.keepdim) * self._centered(x)

    def jvp(self, tangents, primals, out):
        return reduce_over(sum, tangents[0] * (self._centered(primals[0]) * self._scale()),
                           shift(self.axes), self.keepdim)

    def _scale(self):
        """d var / d x = scale (x - mean), scale = 2 / (n - correction)."""
        dof = self.count - self.correction
        return 2.0 / dof if dof > 0 else math.nan  # no degrees of freedom: nan, as torch

    def _centered(self, x):
        return x - mean(x, self.axes, keepdim=True)


def var(x, dim=None, unbiased=None, keepdim=False, correction=None):
    """Variance over ``dim`` with Bessel's correction by default (``correction=1``).

    >>> import ckpt
    >>> ckpt.var(ckpt.tensor([1.0, 2.0, 3.0, 4.0])).item()
    1.6666666269302368
    """
    axes, count, correction = var_args(x, dim, unbiased, correction, "var")
    return record(VarBackward0, _variance(x.data, axes, correction, keepdim), (x,), (x,),
                  axes=axes, keepdim=keepdim, count=count, correction=correction)


def var_args(x, dim, unbiased, correction, name):
    """``(axes, count, correction)`` of a variance over ``dim``, read as torch reads them: a
    bool in ``dim``'s place (``x.var(False)``) is ``unbiased``; only float dtypes."""
    if x.data.dtype.kind not in "fc":
        raise RuntimeError(f"{'std and var' if name in ('std', 'var') else name} only support "
                           f"floating point and complex dtypes")
    if dim.__class__ is bool and unbiased is None:
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    axes = reduced_dims(dim, x.data.ndim, name)
    return axes, int(np.prod([x.data.shape[a] for a in axes])) if axes else 1, correction


def _variance(d, axes, correction, keepdim):
    """np.var of ``d`` in its dtype; float16 summed in float32, as torch does (its squares
    overflow float16 long before the variance does)."""
    wide = np.float32 if d.dtype == np.float16 else None
    return np.asarray(np.var(d, axis=axes, ddof=correction, keepdims=keepdim, dtype=wide),
                      dtype=d.dtype)


class StdBackward0(VarBackward0):
    """``std = sqrt(var)``: var's rule on ``g / (2 std)``, and 0 where the std is 0, as torch
    (a constant input gets no gradient, where ``sqrt``'s rule would give NaN)."""
    _saved_names = ("self", "result")

    def vjp(self, g, x, out):
        return super().vjp(_over_twice(g, out), x)

    def jvp(self, tangents, primals, out):
        return _over_twice(super().jvp(tangents, primals, out), out)


def _over_twice(value, std):
    """``value / (2 std)``, 0 where ``std`` is 0 (without dividing by it there)."""
    from .elementwise import where
    zero = data_of(std) == 0
    return where(zero, 0.0, value / (2 * where(zero, 1.0, std)))


def std(x, dim=None, unbiased=None, keepdim=False, correction=None):
    """Standard deviation: ``sqrt(var(...))``, with torch's gradient (0, not NaN, where it is 0).

    >>> import ckpt
    >>> ckpt.std(ckpt.tensor([1.0, 3.0])).item()
    1.4142135381698608
    """
    axes, count, correction = var_args(x, dim, unbiased, correction, "std")
    wide = np.float32 if x.data.dtype == np.float16 else x.data.dtype
    out = np.sqrt(_variance(x.data.astype(wide, copy=False), axes, correction, keepdim))
    return record(StdBackward0, np.asarray(out, dtype=x.data.dtype), (x,), (x, OUTPUT),
                  axes=axes, keepdim=keepdim, count=count, correction=correction)


class LogsumexpBackward0(Node):
    _batched_rule = True

    def vjp(self, g, x, out):
        return expand_reduced(g, x.shape, self.axes, self.keepdim) * self._softmax(x, out)

    def jvp(self, tangents, primals, out):
        return reduce_over(sum, tangents[0] * self._softmax(primals[0], out), shift(self.axes), self.keepdim)

    def _softmax(self, x, out):
        """d logsumexp / d x = exp(x - logsumexp)."""
        from .elementwise import exp
        kept = out if self.keepdim else out.reshape(kept_shape(x.shape, self.axes))
        return exp(x - kept)


def logsumexp(x, dim, keepdim=False):
    """``log(sum(exp(x), dim))`` computed stably.

    >>> import ckpt
    >>> round(ckpt.logsumexp(ckpt.tensor([0.0, 0.0]), dim=0).item(), 4)
    0.6931
    """
    axes = reduced_dims(dim, x.data.ndim, "logsumexp")
    d = x.data
    m = np.max(d, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(d - m), axis=axes, keepdims=True)) + m
    if not keepdim:
        out = out.squeeze(axes)
    return record(LogsumexpBackward0, out.astype(d.dtype, copy=False), (x,), (x, OUTPUT),
                  axes=axes, keepdim=keepdim)


def all(x, dim=None, keepdim=False):
    """True where every element (along ``dim``) is nonzero; not differentiable.

    >>> import ckpt
    >>> ckpt.tensor([1, 0]).all().item()
    False
    """
    return _wrap(np.asarray(np.all(x.data, axis=dim, keepdims=keepdim)))


def any(x, dim=None, keepdim=False):
    """True where some element (along ``dim``) is nonzero; not differentiable.

    >>> import ckpt
    >>> ckpt.tensor([1, 0]).any().item()
    True
    """
    return _wrap(np.asarray(np.any(x.data, axis=dim, keepdims=keepdim)))
