"""Normalization: ``layer_norm`` and ``batch_norm``, one VJP and one JVP for both (only the
axes differ)."""
import numpy as np

from ...grad_mode import _Recompute
from ...node import Node, record
from ...tensor import Tensor, _wrap
from .._util import chunk_axis, data_of, for_jvp, total
from ..reduce import mean, reduce_over, sum
from ..shape import bump_version
from ._common import _needs


def _normalization_vjp(node, g, x, weight, param_shape, stats=None, forward_stats=None):
    """Gradients ``(x, weight, bias)`` of ``y = xhat * weight + bias`` with
    ``xhat = (x - mean) * rstd`` over ``node.axes``: batch statistics recomputed from ``x``
    with differentiable ops (``stats=None``, so second derivatives are right), or constant
    ``(mean, rstd)`` arrays (batch norm in eval mode). ``weight``/``bias`` gradients sum over
    ``node.param_axes``. Shared by layer_norm and batch_norm: only the axes differ.

    On numpy arrays (a backward without ``create_graph``) the same gradients come from
    ``_normalization_vjp_arrays``, which makes no temporary larger than a chunk."""
    if g.__class__ is not Tensor and x.size:
        return _normalization_vjp_arrays(node, g, x, weight, param_shape, forward_stats,
                                         batch_stats=stats is None)
    xhat, rstd = _normalized(node, x, stats)
    param_axes = node.param_axes
    gx = gw = gb = None
    if _needs(node, 0):
        gy = g if weight is None else g * weight.reshape(param_shape)
        gx = _through_normalization(node, gy, xhat, rstd, stats is None)
    if _needs(node, 1):
        gw = reduce_over(sum, g * xhat, param_axes).reshape(weight.shape)
    if _needs(node, 2):
        gb = reduce_over(sum, g, param_axes).reshape(node.bias_shape)
    return gx, gw, gb


def _normalization_jvp(node, tangents, primals, param_shape, stats=None):
    """Tangent of ``y = xhat * weight + bias``: ``J t_x * weight + xhat * t_weight + t_bias``
    (``J`` as in ``_through_normalization``; statistics as in ``_normalization_vjp``)."""
    (t_x, t_w, t_b), (x, weight, _) = tangents, primals
    xhat, rstd = _normalized(node, x, stats)
    t_xhat = None if t_x is None else _through_normalization(node, t_x, xhat, rstd, stats is None)
    if t_xhat is not None and weight is not None:
        t_xhat = t_xhat * weight.reshape(param_shape)
    return total(t_xhat, None if t_w is None else xhat * t_w.reshape(param_shape),
                 None if t_b is None else t_b.reshape(param_shape))


def _normalized(node, x, stats):
    """``(xhat, rstd)`` of ``x`` over ``node.axes``, from differentiable batch statistics
    (``stats=None``) or the constant ``(mean, rstd)`` arrays ``stats``."""
    if stats is None:
        xc = x - mean(x, node.axes, keepdim=True)
        rstd = (mean(xc * xc, node.axes, keepdim=True) + node.eps) ** -0.5
        return xc * rstd, rstd
    return (x - stats[0]) * stats[1], stats[1]


def _through_normalization(node, v, xhat, rstd, batch_stats):
    """``J v`` for ``J = d xhat / d x``. ``J`` is symmetric -- ``rstd (I - 11'/n - xhat xhat'/n)``
    per normalized group with batch statistics, ``rstd I`` with constant ones -- so this one
    product is both the VJP (``v`` a gradient) and the JVP (``v`` a tangent)."""
    if not batch_stats:
        return v * rstd
    axes = node.axes
    return rstd * (v - mean(v, axes, keepdim=True) - xhat * mean(v * xhat, axes, keepdim=True))


def _normalize_forward(d, axes, eps, weight, bias, param_shape, stats=None):
    """``(d - mean) * rstd * weight + bias`` and the ``(mean, rstd)`` used: the batch
    statistics over ``axes`` unless ``stats`` are given. The output is the only buffer of
    its size made (each step is done in place when that keeps the dtype)."""
    if stats is None:
        mean = d.mean(axis=axes, keepdims=True)
        var = d.var(axis=axes, keepdims=True)
        stats = (mean, 1.0 / np.sqrt(var + eps))
    out = _in_place(np.multiply, d - stats[0], stats[1])
    if weight is not None:
        out = _in_place(np.multiply, out, weight.data.reshape(param_shape))
    if bias is not None:
        out = _in_place(np.add, out, bias.data.reshape(param_shape))
    return out.astype(d.dtype, copy=False), stats


def _in_place(ufunc, a, b):
    """``ufunc(a, b)``, written into ``a`` when the result has ``a``'s shape and dtype (bit
    for bit what the out-of-place call gives)."""
    if np.result_type(a, b) == a.dtype and np.broadcast_shapes(a.shape, np.shape(b)) == a.shape:
        return ufunc(a, b, out=a)
    return ufunc(a, b)


def _normalization_vjp_arrays(node, g, x, weight, param_shape, stats, batch_stats):
    """``_normalization_vjp`` on numpy arrays. With ``xc = x - mean``, ``xhat = xc * rstd``,
    ``gy = g * weight`` and ``n`` elements per statistic:

        grad_x = rstd * (gy - sum(gy) / n - xc * rstd**2 * sum(gy * xc) / n)   (batch stats)
        grad_x = rstd * gy                                                     (constant stats)
        grad_weight = sum(g * xhat),  grad_bias = sum(g)

    with the statistics the forward used (``stats``, saved by the node; ``batch_stats`` when
    they were the batch's, not constants), sums over ``node.axes``
    for grad_x and over ``node.param_axes`` for the parameters. Products are made a chunk
    at a time, in place: grad_x is the only large buffer, with one chunk-sized temporary."""
    axes, param_axes = node.axes, node.param_axes
    mean, rstd = stats
    w = None if weight is None else weight.reshape(
        (1,) * (x.ndim - len(param_shape)) + tuple(param_shape))
    axis, step = chunk_axis(x.shape)
    chunks = [(slice(None),) * axis + (slice(i, i + step),) for i in range(0, x.shape[axis], step)]

    def part(a, c):  # chunk c of an array, full-size or broadcast along the axis
        return a if a.shape[axis] == 1 else a[c]

    def chunked_sum(factors, over, centered=True):
        """The sum over ``over`` (kept) of the product of ``factors`` -- times ``x - mean``
        if ``centered`` -- made chunk by chunk, in place."""
        total = None
        for c in chunks:
            if centered:
                prod, rest = part(x, c) - part(mean, c), factors
            else:
                prod, rest = part(factors[0], c) * part(factors[1], c), factors[2:]
            for f in rest:
                prod *= part(f, c)
            piece = np.sum(prod, axis=over, keepdims=True)
            del prod
            if total is None:
                total = piece if axis in over else np.empty(
                    piece.shape[:axis] + (x.shape[axis],) + piece.shape[axis + 1:], piece.dtype)
            elif axis in over:
                total += piece
            if axis not in over:
                total[c] = piece
        return total

    gy = (g,) if w is None else (g, w)
    gx = gw = gb = None
    if _needs(node, 1):
        gw = np.sum(chunked_sum((g, rstd), param_axes), axis=param_axes).reshape(weight.shape)
    if _needs(node, 2):
        gb = np.sum(g, axis=param_axes).reshape(node.bias_shape)
    if _needs(node, 0):
        gx = np.empty(x.shape, dtype=np.result_type(g, x, rstd, *gy[1:]))
        if batch_stats:
            n = int(np.prod([x.shape[a] for a in axes]))
            shift = (np.sum(g, axis=axes, keepdims=True) if w is None
                     else chunked_sum(gy, axes, centered=False)) / n
            slope = rstd * rstd * chunked_sum(gy, axes) / n
        for c in chunks:
            out = gx[c]
            np.multiply(part(g, c), 1 if w is None else part(w, c), out=out)
            if batch_stats:
                out -= part(shift, c)
                xc = part(x, c) - part(mean, c)
                xc *= part(slope, c)
                out -= xc
                del xc
            out *= part(rstd, c)
    return gx, gw, gb


class NativeLayerNormBackward0(Node):
    """Saves the input, the weight and the forward's per-row ``(mean, rstd)``, as torch."""

    def vjp(self, g, x, weight, mean, rstd):
        return _normalization_vjp(self, g, x, weight, self.param_shape,
                                  forward_stats=(data_of(mean), data_of(rstd)))

    def jvp(self, tangents, primals, out):
        return _normalization_jvp(self, tangents, primals, self.param_shape)


def _check_param(p, shape, name, op):
    if p is not None and tuple(p.shape) != tuple(shape):
        raise RuntimeError(f"{op}: {name} must have shape {list(shape)}, got {list(p.shape)}")


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalize over the trailing ``normalized_shape`` dims, then scale by ``weight`` and
    shift by ``bias`` (elementwise, shaped ``normalized_shape``).

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn.norm import layer_norm
    >>> [round(v, 3) for v in layer_norm(ckpt.tensor([[1.0, 3.0]]), 2)[0].tolist()]
    [-1.0, 1.0]
    """
    ns = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) \
        else tuple(int(s) for s in normalized_shape)
    d = input.data
    if not ns or len(ns) > d.ndim or d.shape[d.ndim - len(ns):] != ns:
        raise RuntimeError(f"layer_norm: Given normalized_shape={list(ns)}, expected input with "
                           f"shape [*, {', '.join(map(str, ns))}], but got input of size "
                           f"{list(d.shape)}")
    _check_param(weight, ns, "weight", "layer_norm")
    _check_param(bias, ns, "bias", "layer_norm")
    axes = tuple(range(d.ndim - len(ns), d.ndim))
    out, stats = _normalize_forward(d, axes, eps, weight, bias, ns)
    return record(NativeLayerNormBackward0, out, (input, weight, bias),
                  (input, weight, _wrap(stats[0]), _wrap(stats[1])), axes=axes, eps=eps,
                  param_shape=ns, param_axes=tuple(range(axes[0])), bias_shape=ns)


class NativeBatchNormBackward0(Node):
    """Saves the input, the weight and the per-channel ``(mean, rstd)`` it normalized with:
    the batch's in training, constants from the running statistics in eval."""

    def vjp(self, g, x, weight, mean, rstd):
        stats = (data_of(mean), data_of(rstd))
        return _normalization_vjp(self, g, x, weight, self.param_shape,
                                  None if self.batch_statistics else stats, stats)

    def jvp(self, tangents, primals, out):
        return _normalization_jvp(self, tangents, primals, self.param_shape, self.stats)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalize each channel (dim 1) of an ``(N, C, ...)`` input.

    In training, batch statistics are used and ``running_mean``/``running_var`` (if given)
    are updated in place: ``r = (1 - momentum) * r + momentum * batch_stat``, with the
    unbiased variance for ``running_var``, as in torch. In eval the running stats are used.
    While ``ckpt.checkpoint`` recomputes a segment in backward (``grad_mode.is_recomputing()``)
    the running stats are left alone: the forward already updated them for this step.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn.norm import batch_norm
    >>> rm, rv = ckpt.zeros(1), ckpt.ones(1)
    >>> [round(v, 3) for v in batch_norm(ckpt.tensor([[1.0], [3.0]]), rm, rv, training=True).reshape(-1).tolist()]
    [-1.0, 1.0]
    >>> rm.tolist(), rv.tolist()
    ([0.20000000298023224], [1.100000023841858])
    """
    d = input.data
    if d.ndim < 2:
        raise RuntimeError(f"batch_norm: expected an input of shape (N, C, ...) with at least 2 "
                           f"dims, got {list(d.shape)}")
    C = d.shape[1]
    for name, p in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        _check_param(p, (C,), name, "batch_norm")
    axes = (0,) + tuple(range(2, d.ndim))
    param_shape = (1, C) + (1,) * (d.ndim - 2)
    if training:
        count = d.size // C if C else 0
        if count <= 1:
            raise ValueError(f"batch_norm: expected more than 1 value per channel when training, "
                             f"got input of shape {list(d.shape)}")
        mean = d.mean(axis=axes, keepdims=True)
        var = d.var(axis=axes, keepdims=True)
        stats, node_stats = (mean, 1.0 / np.sqrt(var + eps)), None
        for r, batch in ((running_mean, mean), (running_var, var * (count / (count - 1)))):
            if r is not None and not _Recompute.active:  # checkpoint's recomputation: once is enough
                r.data[...] = (1 - momentum) * r.data + momentum * batch.reshape(C)
                bump_version(r)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("batch_norm: running_mean and running_var must be given when "
                               "training=False")
        stats = (running_mean.data.reshape(param_shape).astype(d.dtype),
                 (1.0 / np.sqrt(running_var.data + eps)).reshape(param_shape).astype(d.dtype))
        node_stats = stats
    out, stats = _normalize_forward(d, axes, eps, weight, bias, param_shape, stats)
    return record(NativeBatchNormBackward0, out, (input, weight, bias),
                  (input, weight, _wrap(stats[0]), _wrap(stats[1])), axes=axes, eps=eps,
                  param_shape=param_shape, param_axes=axes, bias_shape=(C,),
                  batch_statistics=training, **for_jvp(stats=node_stats))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalize each channel of each sample of an ``(N, C, ...)`` input over its other
    dims: ``batch_norm`` of the input seen as one sample of ``N * C`` channels, as torch
    computes it; the running statistics (if given) take the mean over the samples.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn.norm import instance_norm
    >>> instance_norm(ckpt.tensor([[[1.0, 3.0], [2.0, 6.0]]]), eps=0.0).tolist()
    [[[-1.0, 1.0], [-1.0, 1.0]]]
    """
    shape = input.data.shape
    if len(shape) < 3:
        raise ValueError(f"instance_norm: expected an input of shape (N, C, ...) with at least 3 "
                         f"dims, got {list(shape)}")
    n, c = shape[:2]
    repeated = [None if t is None else t.repeat(n) for t in (running_mean, running_var, weight, bias)]
    out = batch_norm(input.reshape((1, n * c) + shape[2:]), *repeated, use_input_stats, momentum,
                     eps)
    for kept, seen in zip((running_mean, running_var), repeated):
        if kept is not None and use_input_stats:
            kept.data[...] = seen.data.reshape(n, c).mean(0)
            bump_version(kept)
    return out.reshape(shape)
