"""Neural-network ops (softmax family, losses, normalization, dropout, embedding, conv, pool)."""
import numpy as np

from .. import random as _random
from ..grad_mode import _Recompute
from ..node import Node, OUTPUT, record
from ..tensor import Tensor, _wrap
from ._util import (CHUNKS, MIN_CHUNK, Batch, chunk_axis, data_of, for_jvp, normalize_dims,
                    saved_tensor, total)
from .elementwise import exp
from .reduce import mean, sum
from .shape import _SameOpOnTangent


class SoftmaxBackward0(Node):
    _batched_rule = True

    def vjp(self, g, out):
        return out * (g - sum(g * out, self.dim + Batch.dims, keepdim=True))

    def jvp(self, tangents, primals, out):
        return self.vjp(tangents[0], out)  # the Jacobian diag(s) - s s^T is symmetric


def softmax(x, dim):
    """``exp(x) / sum(exp(x), dim)`` computed stably.

    >>> import ckpt
    >>> ckpt.softmax(ckpt.tensor([0.0, 0.0]), dim=0).tolist()
    [0.5, 0.5]
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "softmax")
    d = x.data
    e = np.exp(d - d.max(axis=dim, keepdims=True))
    e /= e.sum(axis=dim, keepdims=True)
    return record(SoftmaxBackward0, e, (x,), (OUTPUT,), dim=dim)


class LogSoftmaxBackward0(Node):
    _batched_rule = True

    def vjp(self, g, out):
        return g - exp(out) * sum(g, self.dim + Batch.dims, keepdim=True)

    def jvp(self, tangents, primals, out):
        t = tangents[0]
        return t - sum(exp(out) * t, self.dim + Batch.dims, keepdim=True)


def log_softmax(x, dim):
    """``x - logsumexp(x, dim)`` computed stably.

    >>> import ckpt
    >>> round(ckpt.log_softmax(ckpt.tensor([0.0, 0.0]), dim=0)[0].item(), 4)
    -0.6931
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "log_softmax")
    d = x.data
    shifted = d - d.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return record(LogSoftmaxBackward0, out, (x,), (OUTPUT,), dim=dim)


# ---- shared helpers ---------------------------------------------------------------------
#
# Ops below keep torch's argument names and error style. Non-differentiable arrays a VJP
# needs (class targets, dropout masks, argmax positions, embedding indices) are passed in
# ``saved`` as Tensors, so the memory layer sees them like any other saved buffer.

_REDUCTIONS = ("none", "mean", "sum")


def _needs(node, i):
    """Does input ``i`` of ``node`` need a gradient?"""
    return node.next_functions[i][0] is not None


def _as_index_array(t, op):
    d = t.data if isinstance(t, Tensor) else np.asarray(t)
    if d.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: expected an integer tensor of indices, got dtype {d.dtype} "
                           f"(shape {list(d.shape)})")
    return d


def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


def _pair(value, name, op):
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    try:
        pair = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(pair) == 1:
        pair = pair * 2
    if len(pair) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return pair


def _out_len(size, k, s, p, d, ceil_mode=False):
    """Output length of a sliding window (torch's formula, ceil mode included)."""
    span = size + 2 * p - d * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    n = -(-span // s) + 1
    if (n - 1) * s >= size + p:  # the last window would start inside the right padding
        n -= 1
    return n


def _geometry(op, hw, kernel_size, stride, padding, dilation, ceil_mode=False):
    """Validated ``(kernel, stride, padding, dilation, out_hw)`` pairs of a 2-D window op."""
    k = _pair(kernel_size, "kernel_size", op)
    s = _pair(stride, "stride", op)
    p = _pair(padding, "padding", op)
    d = _pair(dilation, "dilation", op)
    for name, pair, low in (("kernel_size", k, 1), ("stride", s, 1), ("dilation", d, 1),
                            ("padding", p, 0)):
        if min(pair) < low:
            raise ValueError(f"{op}: {name} must be >= {low}, got {pair}")
    out = tuple(_out_len(hw[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(2))
    if min(out) < 1:
        raise RuntimeError(
            f"{op}: input of spatial size {hw[0]}x{hw[1]} with padding {p} is smaller than the "
            f"kernel {k} with dilation {d}; the output would be {out[0]}x{out[1]}")
    return k, s, p, d, out


def _windows(xp, kernel, stride, dilation, out_hw):
    """A strided view ``(..., oh, ow, kh, kw)`` of the windows of padded ``xp`` (no copy)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    view = np.lib.stride_tricks.sliding_window_view(
        xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(-2, -1))
    return view[..., :(oh - 1) * sh + 1:sh, :(ow - 1) * sw + 1:sw, ::dh, ::dw]


def _pad_hw(d, padding, value=0.0, extra=(0, 0)):
    """Pad the last two dims by ``padding`` (plus ``extra`` at the bottom/right)."""
    (ph, pw), (eh, ew) = padding, extra
    if not (ph or pw or eh or ew):
        return d
    widths = ((0, 0),) * (d.ndim - 2) + ((ph, ph + eh), (pw, pw + ew))
    return np.pad(d, widths, constant_values=value)


def _batched(x, op, dims=4):
    """``x``'s data with a batch dim (adding one to an unbatched input) and whether it had one."""
    d = data_of(x)
    if d.ndim == dims:
        return d, True
    if d.ndim == dims - 1:
        return d[None], False
    raise RuntimeError(f"{op}: expected a {dims - 1}-D (unbatched) or {dims}-D (batched) input, "
                       f"got input of shape {list(d.shape)}")


class ScatterAddBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return _gather_flat(g, self.index)

    def tangent_op(self, t, out):
        return _scatter_add_flat(t, self.index, out.shape)


def _scatter_add_flat(values, index, shape):
    """Zeros of ``shape`` with ``values`` added at flat positions ``index`` (same shape as
    ``values``; repeated positions add up). Linear; its adjoint is ``_gather_flat``."""
    v = data_of(values)
    out = np.zeros(int(np.prod(shape)), dtype=v.dtype)
    np.add.at(out, index.reshape(-1), v.reshape(-1))
    if values.__class__ is not Tensor:  # arrays in, arrays out (array rules)
        return out.reshape(shape)
    return record(ScatterAddBackward0, out.reshape(shape), (values,), index=index)


class GatherBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return _scatter_add_flat(g, self.index, self.in_shape)

    def tangent_op(self, t, out):
        return _gather_flat(t, self.index)


def _gather_flat(x, index):
    """``x.flatten()[index]`` (output shaped like ``index``); the adjoint of ``_scatter_add_flat``."""
    if x.__class__ is not Tensor:
        return np.take(x.reshape(-1), index)
    return record(GatherBackward0, np.take(x.data.reshape(-1), index), (x,),
                  index=index, in_shape=x.data.shape)


# ---- losses -------------------------------------------------------------------------------

def _nll_select(x_shape, t, weight, ignore_index):
    """Flat positions of the picked log-probabilities and their weights (0 where ignored)."""
    valid = t != ignore_index
    C = x_shape[0] if len(x_shape) == 1 else x_shape[1]
    bad = valid & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(f"nll_loss: target {int(t[bad].reshape(-1)[0])} is out of bounds for {C} "
                         f"classes (input shape {list(x_shape)})")
    tc = np.where(valid, t, 0)
    if len(x_shape) == 1:
        flat = tc
    else:
        N, S = x_shape[0], int(np.prod(x_shape[2:], dtype=np.int64))
        n = np.arange(N).reshape((N,) + (1,) * (t.ndim - 1))
        s = np.arange(S).reshape(x_shape[2:])
        flat = (n * C + tc) * S + s
    wt = valid if weight is None else np.where(valid, weight[tc], 0)
    return flat, wt


class NllLossBackward0(Node):
    def vjp(self, g, target, weight):
        flat, wt = _nll_select(self.in_shape, data_of(target),
                               None if weight is None else data_of(weight), self.ignore_index)
        coef = -wt.astype(g.dtype)
        if self.reduction == "mean":
            coef = coef / self.total if self.total != 0 else coef * 0
        return _scatter_add_flat(g * coef, flat, self.in_shape)

    def jvp(self, tangents, primals, out):  # linear in the input: the loss of the tangent
        return nll_loss(tangents[0], self.target, self.weight, self.ignore_index, self.reduction)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices: ``-input[n, target[n], ...]`` (weighted).

    ``input`` is ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)`` log-probabilities; ``target`` holds
    class indices of shape ``(N,)``, ``(N, d1, ...)`` or ``()``. ``'mean'`` divides by the summed
    weights of the non-ignored targets. ``weight`` is a constant (no gradient), as in torch.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import nll_loss
    >>> nll_loss(ckpt.tensor([[-1.0, -2.0], [-3.0, -4.0]]), ckpt.tensor([1, 0])).item()
    2.5
    """
    _check_reduction(reduction, "nll_loss")
    x = input.data
    t = _as_index_array(target, "nll_loss")
    if x.ndim == 0:
        raise RuntimeError("nll_loss: input must have at least 1 dimension (classes), got a scalar")
    expected = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    if t.shape != expected:
        raise RuntimeError(f"nll_loss: expected target of shape {list(expected)} for input of "
                           f"shape {list(x.shape)}, got target of shape {list(t.shape)}")
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    w = None
    if weight is not None:
        w = weight.data if isinstance(weight, Tensor) else np.asarray(weight)
        if w.shape != (C,):
            raise RuntimeError(f"nll_loss: weight must have shape [{C}] (one per class), got "
                               f"{list(w.shape)}")
        w = w.astype(x.dtype, copy=False)
    flat, wt = _nll_select(x.shape, t, w, ignore_index)
    wt = wt.astype(x.dtype, copy=False)
    losses = -wt * np.take(x.reshape(-1), flat)
    total = wt.sum()
    if reduction == "none":
        out = losses
    elif reduction == "sum":
        out = losses.sum()
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = losses.sum() / total
    target_t = target if isinstance(target, Tensor) else _wrap(t)
    # the caller's weight itself when it needed no cast (an in-place change is then caught)
    weight_t = None
    if w is not None:
        weight_t = weight if isinstance(weight, Tensor) and weight.data is w else _wrap(w)
    return record(NllLossBackward0, np.asarray(out, dtype=x.dtype), (input,), (target_t, weight_t),
                  in_shape=x.shape, ignore_index=ignore_index, reduction=reduction,
                  total=total, **for_jvp(target=target_t, weight=w))


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """``nll_loss(log_softmax(input, class_dim), target)`` with optional label smoothing.

    ``target`` is either class indices (as for ``nll_loss``) or class probabilities with
    ``input``'s shape. The class dim is 1 (0 for a ``(C,)`` input). With smoothing ``e``
    the loss is ``(1 - e) * nll + e / C * sum_c(-w_c * log p_c)``, as in torch.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import cross_entropy
    >>> round(cross_entropy(ckpt.zeros(2, 4), ckpt.tensor([0, 3])).item(), 4)
    1.3863
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got "
                         f"{label_smoothing}")
    x = input.data
    if x.ndim == 0:
        raise RuntimeError("cross_entropy: input must have at least 1 dimension (classes), got a scalar")
    class_dim = 0 if x.ndim == 1 else 1
    C = x.shape[class_dim]
    logp = log_softmax(input, class_dim)
    w_b = None
    if weight is not None:
        weight = weight if isinstance(weight, Tensor) else _wrap(np.asarray(weight, dtype=x.dtype))
        if tuple(weight.shape) != (C,):
            raise RuntimeError(f"cross_entropy: weight must have shape [{C}] (one per class), got "
                               f"{list(weight.shape)}")
        w_b = weight.reshape((C,) + (1,) * (x.ndim - class_dim - 1))
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind == "f":  # class probabilities
        if t.shape != x.shape:
            raise RuntimeError(f"cross_entropy: probability target must have the input's shape "
                               f"{list(x.shape)}, got {list(t.shape)}")
        p = target if isinstance(target, Tensor) else _wrap(t)
        if label_smoothing:
            p = p * (1 - label_smoothing) + label_smoothing / C
        per = logp * p if w_b is None else logp * p * w_b
        losses = -per.sum(class_dim)
        return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()
    nll = nll_loss(logp, target, weight, ignore_index, reduction)
    if not label_smoothing:
        return nll
    valid = t != ignore_index
    smooth = -(logp if w_b is None else logp * w_b).sum(class_dim) * _wrap(valid.astype(x.dtype))
    if reduction == "sum":
        smooth = smooth.sum()
    elif reduction == "mean":
        wsum = valid.sum() if weight is None else weight.data[np.where(valid, t, 0)][valid].sum()
        smooth = smooth.sum() / np.asarray(wsum, dtype=x.dtype)
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / C)


class MseLossBackward0(Node):
    def vjp(self, g, input, target):
        gx = self._scaled_slope(g, input, target)
        return (gx if _needs(self, 0) else None), (-gx if _needs(self, 1) else None)

    def jvp(self, tangents, primals, out):
        t_input, t_target = tangents
        d = self._scaled_slope(total(t_input, None if t_target is None else -t_target), *primals)
        return d if self.reduction == "none" else sum(d)

    def _scaled_slope(self, g, input, target):
        """``g`` times d loss_i / d input_i = 2 (input - target) (over n for 'mean')."""
        scale = 2.0 / self.count if self.reduction == "mean" else 2.0
        return g * scale * (input - target)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``(input - target) ** 2`` reduced by ``reduction`` (broadcasting).

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import mse_loss
    >>> mse_loss(ckpt.tensor([1.0, 3.0]), ckpt.tensor([0.0, 0.0])).item()
    5.0
    """
    _check_reduction(reduction, "mse_loss")
    x, t = input.data, target.data if isinstance(target, Tensor) else np.asarray(target)
    try:
        diff = x - t
    except ValueError:
        raise RuntimeError(f"mse_loss: input shape {list(x.shape)} and target shape "
                           f"{list(t.shape)} cannot be broadcast together") from None
    sq = diff * diff
    out = sq if reduction == "none" else sq.sum() if reduction == "sum" else sq.mean()
    return record(MseLossBackward0, np.asarray(out, dtype=np.result_type(x, t)), (input, target),
                  (input, target), reduction=reduction, count=sq.size)


# ---- normalization ------------------------------------------------------------------------

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
        gw = sum(g * xhat, param_axes).reshape(weight.shape)
    if _needs(node, 2):
        gb = sum(g, param_axes).reshape(node.bias_shape)
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
    >>> from ckpt.autograd.ops.nn_functional import layer_norm
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
    >>> from ckpt.autograd.ops.nn_functional import batch_norm
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
        from .shape import bump_version
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


# ---- dropout, embedding -------------------------------------------------------------------

class NativeDropoutBackward0(Node):
    def vjp(self, g, mask):
        factor = data_of(mask) * np.asarray(self.scale, dtype=g.dtype)  # 0 or 1/(1-p)
        if g.__class__ is not np.ndarray or factor.shape != g.shape:
            return g * factor
        return np.multiply(factor, g, out=factor)   # the product in place: no temporary

    def jvp(self, tangents, primals, out):  # diagonal: the same product with the tangent
        return self.vjp(tangents[0], self.mask)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    The mask comes from ckpt's generator, so restoring ``ckpt.get_rng_state()`` replays it.
    With ``training=False`` or ``p=0`` the input is returned unchanged.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import dropout
    >>> state = ckpt.get_rng_state(); a = dropout(ckpt.ones(6), 0.5)
    >>> ckpt.set_rng_state(state); bool((dropout(ckpt.ones(6), 0.5) == a).all())
    True
    >>> set(a.tolist()) <= {0.0, 2.0}
    True
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if inplace:
        raise NotImplementedError("dropout: inplace=True is not supported; ckpt's dropout is "
                                  "out-of-place")
    if not training or p == 0:
        return input
    d = input.data
    if p == 1:
        mask, scale = np.zeros(d.shape, dtype=bool), 0.0
    else:
        mask, scale = _keep_mask(d.shape, p), 1.0 / (1.0 - p)
    out = mask * np.asarray(scale, dtype=d.dtype)    # d * (mask * scale), made in place
    np.multiply(out, d, out=out)
    mask = _wrap(mask)
    return record(NativeDropoutBackward0, out, (input,), (mask,), scale=scale,
                  **for_jvp(mask=mask))


def _keep_mask(shape, p):
    """``uniform(shape) >= p`` from ckpt's generator, drawn a piece at a time: the same
    numbers in the same order as one draw of the whole shape (the float64 draw of a
    float32 activation would be twice its size)."""
    mask = np.empty(shape, dtype=bool)
    flat = mask.reshape(-1)
    step = max(MIN_CHUNK, -(-flat.size // (2 * CHUNKS)))  # float64 draws: half-length pieces
    for i in range(0, flat.size, step):
        flat[i:i + step] = _random.default_generator.numpy.random(len(flat[i:i + step])) >= p
    return mask


class EmbeddingBackward0(Node):
    def vjp(self, g, indices):
        i = data_of(indices)
        V, D = self.weight_shape
        if self.padding_idx is not None or self.scale_grad_by_freq:
            factor = np.ones(i.shape, dtype=g.dtype)
            if self.scale_grad_by_freq:
                factor = factor / np.bincount(i.reshape(-1), minlength=V)[i]
            if self.padding_idx is not None:
                factor[i == self.padding_idx] = 0
            g = g * factor[..., None]
        flat = i[..., None] * D + np.arange(D)
        return _scatter_add_flat(g, flat, (V, D))

    def jvp(self, tangents, primals, out):  # linear in the weight: the rows of its tangent
        return embedding(self.indices, tangents[0])


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` picked by the integer ``input``: shape ``input.shape + (D,)``.

    The gradient is scattered into the picked rows (repeated indices add up); the
    ``padding_idx`` row gets none. ``max_norm`` and ``sparse`` are not supported.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import embedding
    >>> embedding(ckpt.tensor([2, 0]), ckpt.arange(6.0).reshape(3, 2)).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm is not supported by ckpt")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported by ckpt")
    i = _as_index_array(input, "embedding")
    w = weight.data
    if w.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                           f"shape {list(w.shape)}")
    V = w.shape[0]
    if i.size and (i.min() < 0 or i.max() >= V):
        bad = i.min() if i.min() < 0 else i.max()
        raise IndexError(f"embedding: index {int(bad)} is out of range for a weight with {V} rows "
                         f"(weight shape {list(w.shape)})")
    if padding_idx is not None:
        if not -V <= padding_idx < V:
            raise ValueError(f"embedding: padding_idx must be within num_embeddings ({V}), got "
                             f"{padding_idx}")
        padding_idx %= V
    indices = input if isinstance(input, Tensor) else _wrap(i)
    return record(EmbeddingBackward0, np.take(w, i, axis=0), (weight,), (indices,),
                  weight_shape=w.shape, padding_idx=padding_idx,
                  scale_grad_by_freq=scale_grad_by_freq, **for_jvp(indices=indices))


# ---- im2col / col2im, convolution, pooling -------------------------------------------------

class Im2ColBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return fold(g, self.in_hw, self.kernel, self.dilation, self.padding, self.stride)

    def tangent_op(self, t, out):
        return unfold(t, self.kernel, self.dilation, self.padding, self.stride)


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: the sliding ``kernel_size`` blocks of ``(N, C, H, W)`` as columns of an
    ``(N, C*kh*kw, L)`` tensor (as torch.nn.functional.unfold). Its adjoint is ``fold``.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import unfold
    >>> unfold(ckpt.arange(9.0).reshape(1, 1, 3, 3), 2)[0].tolist()
    [[0.0, 1.0, 3.0, 4.0], [1.0, 2.0, 4.0, 5.0], [3.0, 4.0, 6.0, 7.0], [4.0, 5.0, 7.0, 8.0]]
    """
    d, batched = _batched(input, "unfold")
    N, C, H, W = d.shape
    k, s, p, dl, (oh, ow) = _geometry("unfold", (H, W), kernel_size, stride, padding, dilation)
    win = _windows(_pad_hw(d, p), k, s, dl, (oh, ow))
    cols = win.transpose(0, 1, 4, 5, 2, 3).reshape(N, C * k[0] * k[1], oh * ow)
    if input.__class__ is not Tensor:
        return cols if batched else cols[0]
    return record(Im2ColBackward0, cols if batched else cols[0], (input,),
                  in_hw=(H, W), kernel=k, stride=s, padding=p, dilation=dl)


class Col2ImBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return unfold(g, self.kernel, self.dilation, self.padding, self.stride)

    def tangent_op(self, t, out):
        return fold(t, out.shape[-2:], self.kernel, self.dilation, self.padding, self.stride)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im: sum ``(N, C*kh*kw, L)`` blocks back into an ``(N, C, H, W)`` image, adding
    where blocks overlap (as torch.nn.functional.fold). Its adjoint is ``unfold``.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import fold
    >>> fold(ckpt.ones(1, 4, 4), (3, 3), 2)[0, 0].tolist()
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    d, batched = _batched(input, "fold", dims=3)
    N, CK, L = d.shape
    H, W = _pair(output_size, "output_size", "fold")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = _geometry(
        "fold", (H, W), kernel_size, stride, padding, dilation)
    if CK % (kh * kw):
        raise RuntimeError(f"fold: expected size of input's dimension 1 ({CK}) to be divisible by "
                           f"the product of kernel_size ({kh} * {kw} = {kh * kw}); input shape "
                           f"{list(input.shape)}")
    if L != oh * ow:
        raise RuntimeError(f"fold: input has {L} blocks (dimension 2) but output_size {[H, W]} "
                           f"with kernel {(kh, kw)}, stride {(sh, sw)}, padding {(ph, pw)} and "
                           f"dilation {(dh, dw)} gives {oh} * {ow} = {oh * ow} blocks")
    C = CK // (kh * kw)
    cols = d.reshape(N, C, kh, kw, oh, ow)
    out = np.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=d.dtype)
    for i in range(kh):  # one vectorized add per kernel offset, never per pixel
        for j in range(kw):
            out[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh,
                j * dw:j * dw + (ow - 1) * sw + 1:sw] += cols[:, :, i, j]
    out = np.ascontiguousarray(out[:, :, ph:ph + H, pw:pw + W])
    if input.__class__ is not Tensor:
        return out if batched else out[0]
    return record(Col2ImBackward0, out if batched else out[0], (input,),
                  kernel=(kh, kw), stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))


# ---- convolution: three ops, one trilinear form ---------------------------------------------
#
# With x read as 0 outside the image, the form
#     T(x, w, y) = sum of y[n, o, p, q] w[o, c, i, j] x[n, c, p*sh + i*dh - ph, q*sw + j*dw - pw]
# (c over o's group) has three partial derivatives: conv2d(x, w) = dT/dy, conv2d_input(w, y)
# = dT/dx (the gradient of a convolution's input: a transposed convolution) and
# conv2d_weight(x, y) = dT/dw. Each is linear in both its arguments, and the VJP and JVP of
# each are the other two: the family is closed under differentiation, to any order.
#
# The kernels loop over the kernel offsets (i, j): the (O, C) slice w[:, :, i, j] times the
# input shifted by the offset (a strided view of the part inside the image, so no padded copy
# is made) is added to the output positions the offset reaches. Nothing is copied k*k times
# (im2col): an offset's temporaries -- the shifted slice made contiguous and its product --
# cover one chunk of about 1/CHUNKS of the output positions (whole samples, or rows of one
# sample when the batch is small) and die before the next offset's are made. A chunk holds
# at least _CONV_MIN_CHUNK values (positions times channels): below that, Python's overhead
# per matrix product costs more time than the memory saved is worth. With few channels per
# group (``_lowered``) each chunk is turned into its columns instead and multiplied once.

_CONV_MIN_CHUNK = 16384


def _offset_spans(k, size, out, s, p, d):
    """Per kernel offset along one axis: ``(a, b, first)`` -- the outputs ``a <= y < b``
    whose input index ``y*s + i*d - p`` is inside ``[0, size)``, and the index output ``a``
    reads."""
    spans = []
    for i in range(k):
        start = i * d - p                    # input index read by output 0
        a = max(0, -(start // s))            # ceil(-start / s)
        b = min(out, (size - 1 - start) // s + 1)
        spans.append((a, b, start + a * s))
    return spans


def _conv_chunks(n, channels, in_hw, out_hw, kernel, stride, padding, dilation):
    """The work of a convolution kernel, chunk by chunk: ``(samples, y0, y1, tiles)`` for the
    output positions ``[samples, :, y0:y1, :]``, with ``tiles`` the kernel offsets' parts of
    it as ``(i, j, out_rows, out_cols, in_rows, in_cols)``: output ``[samples, :, out_rows,
    out_cols]`` meets input ``[samples, :, in_rows, in_cols]`` through ``w[:, :, i, j]``.
    ``channels``: the most values per output position a temporary has."""
    (oh, ow), (sh, sw) = out_hw, stride
    rows = _offset_spans(kernel[0], in_hw[0], oh, sh, padding[0], dilation[0])
    cols = [(j, slice(a, b), slice(f, f + (b - a - 1) * sw + 1, sw))
            for j, (a, b, f) in enumerate(
                _offset_spans(kernel[1], in_hw[1], ow, sw, padding[1], dilation[1])) if a < b]
    positions = max(-(-n * oh * ow // CHUNKS), -(-_CONV_MIN_CHUNK // max(channels, 1)))
    chunk_rows = max(1, positions // ow)
    if chunk_rows >= oh:
        per = chunk_rows // oh
        chunks = [(slice(s, s + per), 0, oh) for s in range(0, n, per)]
    else:
        chunks = [(slice(s, s + 1), y, min(oh, y + chunk_rows))
                  for s in range(n) for y in range(0, oh, chunk_rows)]
    for samples, y0, y1 in chunks:
        tiles = []
        for i, (a, b, first) in enumerate(rows):
            lo, hi = max(a, y0), min(b, y1)
            if lo < hi:
                in_rows = slice(first + (lo - a) * sh, first + (hi - 1 - a) * sh + 1, sh)
                tiles += [(i, j, slice(lo, hi), out_cols, in_rows, in_cols)
                          for j, out_cols, in_cols in cols]
        yield samples, y0, y1, tiles


def _conv_tiles(n, channels, in_hw, out_hw, kernel, stride, padding, dilation):
    """``_conv_chunks`` flattened: ``(samples, i, j, out_rows, out_cols, in_rows, in_cols)``."""
    for samples, _, _, tiles in _conv_chunks(n, channels, in_hw, out_hw, kernel, stride,
                                             padding, dilation):
        for tile in tiles:
            yield (samples,) + tile


def _lowered(w_shape):
    """Whether a kernel runs on each chunk's columns (im2col of one chunk, then one product)
    instead of offset by offset: when the channels per group are few (an image's stem), a
    product per offset would have an inner size of a few and k*k passes over the output."""
    _, Cg, kh, kw = w_shape
    return Cg < _LOWERED_BELOW and kh * kw > 1


_LOWERED_BELOW = 16


def _chunk_columns(part_of, b, C, kernel, y0, y1, ow, tiles, dtype):
    """The columns ``(b, C, kh, kw, y1 - y0, ow)`` of one chunk: ``part_of(in_rows,
    in_cols)`` at each offset's tile, 0 where the kernel reads padding."""
    cols = np.zeros((b, C) + tuple(kernel) + (y1 - y0, ow), dtype=dtype)
    for i, j, out_rows, out_cols, in_rows, in_cols in tiles:
        cols[:, :, i, j, out_rows.start - y0:out_rows.stop - y0, out_cols] = \
            part_of(in_rows, in_cols)
    return cols


def _offset_matrices(w, groups, transpose):
    """``w (O, C/G, kh, kw)`` as contiguous per-offset, per-group matrices ``[i, j, g]``:
    ``(O/G, C/G)``, or ``(C/G, O/G)`` with ``transpose``."""
    O, Cg, kh, kw = w.shape
    blocks = w.reshape(groups, O // groups, Cg, kh, kw)
    return np.ascontiguousarray(blocks.transpose((3, 4, 0, 2, 1) if transpose else (3, 4, 0, 1, 2)))


def _mix(mats, part):
    """The per-group matrices ``mats (G, M, K)`` applied to the channels of ``part (b, G*K,
    h, v)``: ``(b, G*M, h, v)``. Depthwise (M = K = 1) it is a scale per channel."""
    G, M, K = mats.shape
    b, _, h, v = part.shape
    if M == K == 1:
        return part * mats.reshape(1, G, 1, 1)
    return (mats @ part.reshape(b, G, K, h * v)).reshape(b, G * M, h, v)


def _conv_forward(x, w, stride, padding, dilation, groups, out_hw):
    """numpy: ``conv2d`` of ``x (N, C, H, W)`` and ``w (O, C/G, kh, kw)``, no bias."""
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    dtype = np.result_type(x, w)
    out = np.zeros((N, O) + tuple(out_hw), dtype=dtype)
    if _lowered(w.shape):
        mats = w.reshape(groups, O // groups, Cg * kh * kw)
        for s, y0, y1, tiles in _conv_chunks(N, max(C * kh * kw, O), (H, W), out_hw,
                                             (kh, kw), stride, padding, dilation):
            cols = _chunk_columns(lambda r, c: x[s, :, r, c], len(range(N)[s]), C, (kh, kw),
                                  y0, y1, out_hw[1], tiles, dtype)
            b = cols.shape[0]
            prod = mats @ cols.reshape(b, groups, Cg * kh * kw, -1)
            out[s, :, y0:y1, :] = prod.reshape(b, O, y1 - y0, out_hw[1])
            del cols, prod      # before the next chunk's are made
        return out
    mats = _offset_matrices(w, groups, False)
    for s, i, j, rows, cols, in_rows, in_cols in _conv_tiles(N, max(C, O), (H, W), out_hw, (kh, kw),
                                                              stride, padding, dilation):
        out[s, :, rows, cols] += _mix(mats[i, j], x[s, :, in_rows, in_cols])
    return out


def _conv_input_grad(gy, w, input_size, stride, padding, dilation, groups):
    """numpy: ``conv2d_input``, the input's gradient from ``gy (N, O, oh, ow)``."""
    N, O, oh, ow = gy.shape
    _, Cg, kh, kw = w.shape
    C = input_size[1]
    gx = np.zeros(input_size, dtype=np.result_type(gy, w))
    if _lowered(w.shape):
        mats = w.reshape(groups, O // groups, Cg * kh * kw).transpose(0, 2, 1)
        for s, y0, y1, tiles in _conv_chunks(N, max(C * kh * kw, O), input_size[2:],
                                             (oh, ow), (kh, kw), stride, padding, dilation):
            part = gy[s, :, y0:y1, :]
            b = part.shape[0]
            cols = (mats @ part.reshape(b, groups, O // groups, -1)).reshape(
                b, C, kh, kw, y1 - y0, ow)
            for i, j, out_rows, out_cols, in_rows, in_cols in tiles:
                gx[s, :, in_rows, in_cols] += \
                    cols[:, :, i, j, out_rows.start - y0:out_rows.stop - y0, out_cols]
            del part, cols      # before the next chunk's are made
        return gx
    mats = _offset_matrices(w, groups, True)
    for s, i, j, rows, cols, in_rows, in_cols in _conv_tiles(N, max(C, O),
                                                              input_size[2:], (oh, ow), (kh, kw),
                                                              stride, padding, dilation):
        gx[s, :, in_rows, in_cols] += _mix(mats[i, j], gy[s, :, rows, cols])
    return gx


def _conv_weight_grad(x, gy, weight_size, stride, padding, dilation, groups):
    """numpy: ``conv2d_weight``, the weight's gradient from ``x`` and ``gy``."""
    N, O, oh, ow = gy.shape
    _, Cg, kh, kw = weight_size
    Og = O // groups
    dtype = np.result_type(x, gy)
    if _lowered(weight_size):
        C = x.shape[1]
        gw = np.zeros((groups, Og, Cg * kh * kw), dtype=dtype)
        for s, y0, y1, tiles in _conv_chunks(N, max(C * kh * kw, O), x.shape[2:], (oh, ow),
                                             (kh, kw), stride, padding, dilation):
            cols = _chunk_columns(lambda r, c: x[s, :, r, c], len(range(N)[s]), C, (kh, kw),
                                  y0, y1, ow, tiles, dtype)
            b = cols.shape[0]
            part = gy[s, :, y0:y1, :].reshape(b, groups, Og, -1)
            prod = part @ cols.reshape(b, groups, Cg * kh * kw, -1).transpose(0, 1, 3, 2)
            gw += prod[0] if b == 1 else prod.sum(axis=0)
            del cols, part, prod    # before the next chunk's are made
        return gw.reshape(weight_size)
    gw = np.zeros((kh, kw, groups, Og, Cg), dtype=dtype)
    for s, i, j, rows, cols, in_rows, in_cols in _conv_tiles(N, max(x.shape[1], O), x.shape[2:],
                                                              (oh, ow), (kh, kw), stride, padding,
                                                              dilation):
        part_g, part_x = gy[s, :, rows, cols], x[s, :, in_rows, in_cols]
        if Og == Cg == 1:   # depthwise: a dot product per channel
            gw[i, j, :, 0, 0] += np.einsum("bchw,bchw->c", part_g, part_x)
            continue
        b, _, h, v = part_g.shape
        prod = part_g.reshape(b, groups, Og, h * v) @ \
            part_x.reshape(b, groups, Cg, h * v).transpose(0, 1, 3, 2)
        gw[i, j] += prod[0] if b == 1 else prod.sum(axis=0)
    return np.ascontiguousarray(gw.transpose(2, 3, 4, 0, 1)).reshape(weight_size)


def _as_tensors(*args):
    """``(args, True)`` with arrays wrapped as constant Tensors if any of ``args`` is a
    Tensor; ``(args, False)`` if none is (array rules: arrays in, arrays out)."""
    if not any(a.__class__ is Tensor for a in args):
        return args, False
    return tuple(a if a is None or a.__class__ is Tensor else _wrap(np.asarray(a))
                 for a in args), True


class _ConvNode(Node):
    def geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)


class ConvolutionBackward0(_ConvNode):
    """``conv2d``: grad_x = conv2d_input(w, g), grad_w = conv2d_weight(x, g), grad_b = g
    summed over (N, H, W); the JVP is bilinear in (x, w), affine in b."""

    def vjp(self, g, x, w):
        geometry = self.geometry()
        return (conv2d_input(x.shape, w, g, **geometry) if _needs(self, 0) else None,
                conv2d_weight(x, w.shape, g, **geometry) if _needs(self, 1) else None,
                sum(g, (0, 2, 3)) if _needs(self, 2) else None)

    def jvp(self, tangents, primals, out):
        (t_x, t_w, t_b), (x, w, _) = tangents, primals
        geometry = self.geometry()
        return total(None if t_x is None else conv2d(t_x, w, None, **geometry),
                     None if t_w is None else conv2d(x, t_w, None, **geometry),
                     None if t_b is None else t_b.reshape(-1, 1, 1))


class Conv2dInputBackward0(_ConvNode):
    """``conv2d_input(w, g)`` = dT/dx: with upstream u (shaped like the input), grad_w =
    conv2d_weight(u, g) and grad_g = conv2d(u, w); bilinear JVP."""

    def vjp(self, u, w, g):
        geometry = self.geometry()
        return (conv2d_weight(u, w.shape, g, **geometry) if _needs(self, 0) else None,
                conv2d(u, w, None, **geometry) if _needs(self, 1) else None)

    def jvp(self, tangents, primals, out):
        (t_w, t_g), (w, g) = tangents, primals
        geometry = self.geometry()
        return total(None if t_w is None else conv2d_input(self.input_size, t_w, g, **geometry),
                     None if t_g is None else conv2d_input(self.input_size, w, t_g, **geometry))


class Conv2dWeightBackward0(_ConvNode):
    """``conv2d_weight(x, g)`` = dT/dw: with upstream v (shaped like the weight), grad_x =
    conv2d_input(v, g) and grad_g = conv2d(x, v); bilinear JVP."""

    def vjp(self, v, x, g):
        geometry = self.geometry()
        return (conv2d_input(x.shape, v, g, **geometry) if _needs(self, 0) else None,
                conv2d(x, v, None, **geometry) if _needs(self, 1) else None)

    def jvp(self, tangents, primals, out):
        (t_x, t_g), (x, g) = tangents, primals
        geometry = self.geometry()
        return total(None if t_x is None else conv2d_weight(t_x, self.weight_size, g, **geometry),
                     None if t_g is None else conv2d_weight(x, self.weight_size, t_g, **geometry))


def _conv_padding(padding, kernel, dilation, stride, op="conv2d"):
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding != "same":
        raise ValueError(f"{op}: padding must be an int, a pair, 'valid' or 'same', got "
                         f"{padding!r}")
    if stride != (1, 1):
        raise ValueError(f"{op}: padding='same' is not supported for strided convolutions")
    total = [dilation[i] * (kernel[i] - 1) for i in range(2)]
    if any(t % 2 for t in total):
        raise NotImplementedError(f"{op}: padding='same' with an even effective kernel "
                                  f"{tuple(t + 1 for t in total)} needs asymmetric padding, which "
                                  f"ckpt does not support")
    return (total[0] // 2, total[1] // 2)


def _conv_channels(op, C, w_shape, groups):
    """Validated ``groups`` (an int) for ``C`` input channels and a weight of ``w_shape``."""
    if len(w_shape) != 4:
        raise RuntimeError(f"{op}: weight must be 4-D (out_channels, in_channels/groups, kH, kW), "
                           f"got shape {list(w_shape)}")
    O, Cg = w_shape[:2]
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"{op}: groups must be a positive int, got {groups!r}")
    G = int(groups)
    if C != Cg * G:
        suffix = f", groups={G}" if G > 1 else ""
        raise RuntimeError(f"{op}: input has {C} channels but weight expects {Cg * G} "
                           f"(weight shape {list(w_shape)}{suffix})")
    if O % G:
        raise RuntimeError(f"{op}: out_channels ({O}) must be divisible by groups ({G})")
    return G


def _conv_shape(op, in_shape, w_shape, stride, padding, dilation):
    """Validated ``(stride, padding, dilation, out_hw)`` of a convolution of an input of
    ``in_shape (N, C, H, W)`` with a weight of ``w_shape``."""
    kernel = tuple(w_shape[2:])
    stride_pair = _pair(stride, "stride", op)
    padding = _conv_padding(padding, kernel, _pair(dilation, "dilation", op), stride_pair, op)
    _, s, p, dl, out_hw = _geometry(op, in_shape[2:], kernel, stride, padding, dilation)
    return s, p, dl, out_hw


def _check_dtypes(op, **arrays):
    present = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(present.values())) > 1:
        dtypes = [f"{name} dtype {dtype}" for name, dtype in present.items()]
        listed = ", ".join(dtypes[:2]) + "".join(f" and {d}" for d in dtypes[2:])
        raise TypeError(f"{op}: {listed} must match")


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of ``(N, C, H, W)`` (or unbatched ``(C, H, W)``) with
    ``weight (O, C/groups, kh, kw)`` plus ``bias (O,)``, as torch.nn.functional.conv2d.

    Computed offset by offset of the kernel, chunk by chunk of the output: its temporaries
    are a fraction of the output, never the k*k copies of the input that im2col makes (see
    the comment above ``_CONV_MIN_CHUNK``). Its gradients are the ops ``conv2d_input`` and
    ``conv2d_weight``.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import conv2d
    >>> conv2d(ckpt.ones(1, 2, 4, 4), ckpt.ones(3, 2, 3, 3), padding=1).shape
    (1, 3, 4, 4)
    >>> conv2d(ckpt.ones(1, 1, 3, 3), ckpt.ones(1, 1, 3, 3), padding=1)[0, 0].tolist()
    [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]
    """
    if input.ndim == 3:
        if input.__class__ is not Tensor:
            return conv2d(input[None], weight, bias, stride, padding, dilation, groups)[0]
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if input.ndim != 4:
        raise RuntimeError(f"conv2d: expected a 3-D (unbatched) or 4-D (batched) input, got input "
                           f"of shape {list(input.shape)}")
    d, w, b = data_of(input), data_of(weight), data_of(bias)
    G = _conv_channels("conv2d", d.shape[1], w.shape, groups)
    O = w.shape[0]
    if b is not None and tuple(b.shape) != (O,):
        raise RuntimeError(f"conv2d: bias must have shape [{O}] (one per output channel), got "
                           f"{list(b.shape)}")
    _check_dtypes("conv2d", input=d, weight=w, bias=b)
    s, p, dl, out_hw = _conv_shape("conv2d", d.shape, w.shape, stride, padding, dilation)
    out = _conv_forward(d, w, s, p, dl, G, out_hw)
    if b is not None:
        out += b.reshape(1, O, 1, 1)
    (input, weight, bias), tensors = _as_tensors(input, weight, bias)
    if not tensors:
        return out
    return record(ConvolutionBackward0, out, (input, weight, bias), (input, weight),
                  stride=s, padding=p, dilation=dl, groups=G)


def _size(value, name, op):
    try:
        size = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be a sequence of 4 ints (N, C, H, W), got "
                        f"{value!r}") from None
    if len(size) != 4:
        raise RuntimeError(f"{op}: {name} must have 4 entries (N, C, H, W), got {list(size)}")
    return size


def _check_grad_output(op, gy, expected):
    if gy.ndim != 4 or tuple(gy.shape) != tuple(expected):
        raise RuntimeError(f"{op}: grad_output has shape {list(gy.shape)}, but the convolution "
                           f"gives outputs of shape {list(expected)}")


def conv2d_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of ``conv2d(input, weight, ...)`` with respect to its input, given the
    output's gradient ``grad_output`` (as torch.nn.grad.conv2d_input): a transposed
    convolution, of shape ``input_size (N, C, H, W)``. Linear in ``weight`` and in
    ``grad_output``, and differentiable in both (its rules are ``conv2d_weight`` and
    ``conv2d``). Batched inputs only.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import conv2d_input
    >>> conv2d_input((1, 1, 3, 3), ckpt.ones(1, 1, 2, 2), ckpt.ones(1, 1, 2, 2))[0, 0].tolist()
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    size = _size(input_size, "input_size", "conv2d_input")
    w, gy = data_of(weight), data_of(grad_output)
    G = _conv_channels("conv2d_input", size[1], w.shape, groups)
    s, p, dl, out_hw = _conv_shape("conv2d_input", size, w.shape, stride, padding, dilation)
    _check_grad_output("conv2d_input", gy, (size[0], w.shape[0]) + out_hw)
    _check_dtypes("conv2d_input", weight=w, grad_output=gy)
    return _record_conv_grad(Conv2dInputBackward0, _conv_input_grad(gy, w, size, s, p, dl, G),
                             (weight, grad_output), input_size=size, stride=s, padding=p,
                             dilation=dl, groups=G)


def conv2d_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of ``conv2d(input, weight, ...)`` with respect to its weight, given the
    output's gradient ``grad_output`` (as torch.nn.grad.conv2d_weight): shape
    ``weight_size (O, C/groups, kh, kw)``. Linear in ``input`` and in ``grad_output``, and
    differentiable in both (its rules are ``conv2d_input`` and ``conv2d``). Batched inputs
    only.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import conv2d_weight
    >>> conv2d_weight(ckpt.ones(1, 1, 3, 3), (1, 1, 2, 2), ckpt.ones(1, 1, 2, 2))[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """
    size = _size(weight_size, "weight_size", "conv2d_weight")
    d, gy = data_of(input), data_of(grad_output)
    if d.ndim != 4:
        raise RuntimeError(f"conv2d_weight: expected a 4-D (batched) input, got input of shape "
                           f"{list(d.shape)}")
    G = _conv_channels("conv2d_weight", d.shape[1], size, groups)
    s, p, dl, out_hw = _conv_shape("conv2d_weight", d.shape, size, stride, padding, dilation)
    _check_grad_output("conv2d_weight", gy, (d.shape[0], size[0]) + out_hw)
    _check_dtypes("conv2d_weight", input=d, grad_output=gy)
    return _record_conv_grad(Conv2dWeightBackward0, _conv_weight_grad(d, gy, size, s, p, dl, G),
                             (input, grad_output), weight_size=size, stride=s, padding=p,
                             dilation=dl, groups=G)


def _record_conv_grad(node_class, result, operands, **attrs):
    """``result`` as an array when no operand is a Tensor (a VJP on arrays), else recorded
    with both operands saved (each is the other's derivative)."""
    operands, tensors = _as_tensors(*operands)
    if not tensors:
        return result
    return record(node_class, result, operands, operands, **attrs)


class MaxPool2DWithIndicesBackward0(Node):
    def vjp(self, g, positions):
        return _scatter_add_flat(g, data_of(positions), self.in_shape)

    def jvp(self, tangents, primals, out):  # the tangent at each window's maximum
        return _gather_flat(tangents[0], data_of(self.positions))


def _window_max(d, kernel, stride, padding, dilation, out_hw):
    """The max of each window of ``d (N, C, H, W)`` -- padding and windows past the end read
    as ``-inf`` -- and its flat position in the ``H*W`` plane (the first maximum in
    row-major order on ties, the first NaN if any, as ``argmax``; a window with nothing
    above ``-inf`` points at its first element, clipped into the plane), made offset by
    offset of the window: no copy of the input, no temporary beyond a mask of a window."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    H, W = d.shape[2:]
    rows = _offset_spans(kh, H, out_hw[0], sh, ph, dh)
    cols = _offset_spans(kw, W, out_hw[1], sw, pw, dw)
    top = np.arange(out_hw[0])[:, None] * sh - ph    # the window's first row and column
    left = np.arange(out_hw[1]) * sw - pw
    values = np.full(d.shape[:2] + tuple(out_hw), -np.inf, dtype=d.dtype)
    plane = np.empty(values.shape, dtype=np.int64)
    plane[...] = np.clip(top, 0, H - 1) * W + np.clip(left, 0, W - 1)
    nan = d.size > 0 and bool(np.isnan(d.min()))
    for i, (a, b, r) in enumerate(rows):
        for j, (c, e, q) in enumerate(cols):
            if a >= b or c >= e:
                continue
            window = d[:, :, r:r + (b - a - 1) * sh + 1:sh, q:q + (e - c - 1) * sw + 1:sw]
            best = values[:, :, a:b, c:e]
            better = window > best
            if nan:
                better |= np.isnan(window) & ~np.isnan(best)
            np.copyto(best, window, where=better)
            np.copyto(plane[:, :, a:b, c:e], (top[a:b] + i * dh) * W + left[c:e] + j * dw,
                      where=better)
            del better   # before the next offset's
    return values, plane


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max over ``kernel_size`` windows of ``(N, C, H, W)`` (or ``(C, H, W)``); ``stride``
    defaults to ``kernel_size``; padding counts as ``-inf``. The gradient goes to the first
    maximal element of each window (as in torch). ``return_indices`` also returns each
    maximum's flat position in its ``H*W`` plane.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import max_pool2d
    >>> max_pool2d(ckpt.arange(16.0).reshape(1, 1, 4, 4), 2).reshape(-1).tolist()
    [5.0, 7.0, 13.0, 15.0]
    """
    d, batched = _batched(input, "max_pool2d")
    if d.dtype.kind != "f":
        raise TypeError(f"max_pool2d: expected a floating-point input, got {d.dtype}")
    N, C, H, W = d.shape
    k, s, p, dl, (oh, ow) = _geometry("max_pool2d", (H, W), kernel_size,
                                      kernel_size if stride is None else stride, padding,
                                      dilation, ceil_mode)
    for i in range(2):
        if 2 * p[i] > (k[i] - 1) * dl[i] + 1:
            raise ValueError(f"max_pool2d: pad should be at most half of effective kernel size, "
                             f"but got pad={p[i]}, kernel_size={k[i]} and dilation={dl[i]}")
    values, plane_index = _window_max(d, k, s, p, dl, (oh, ow))
    positions = plane_index.copy() if return_indices else plane_index
    positions += np.arange(N * C).reshape(N, C, 1, 1) * (H * W)
    if not batched:
        values, plane_index, positions = values[0], plane_index[0], positions[0]
    positions = _wrap(positions)
    out = record(MaxPool2DWithIndicesBackward0, values, (input,), (positions,),
                 in_shape=input.shape, **for_jvp(positions=positions))
    return (out, _wrap(plane_index)) if return_indices else out


class AvgPool2DBackward0(Node):
    """Linear. The VJP spreads each output's gradient over its window -- ``conv2d_input``
    with a depthwise kernel of ones -- and the JVP sums the tangent's windows -- ``conv2d``
    with it; both over the divisor."""

    def vjp(self, g, divisor):
        shape = self._batched_shape()
        g = (g / divisor).reshape(shape[:2] + tuple(g.shape[-2:]))
        return conv2d_input(shape, self._ones(g), g, self.stride, self.padding, 1,
                            shape[1]).reshape(self.in_shape)

    def jvp(self, tangents, primals, out):
        shape = self._batched_shape()
        t = tangents[0].reshape(shape)
        sums = conv2d(t, self._ones(t), None, self.stride, self.padding, 1, shape[1])
        return (sums / self.divisor).reshape(out.shape)

    def _batched_shape(self):
        return self.in_shape if len(self.in_shape) == 4 else (1,) + tuple(self.in_shape)

    def _ones(self, like):
        return np.ones((self._batched_shape()[1], 1) + tuple(self.kernel), dtype=like.dtype)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over ``kernel_size`` windows of ``(N, C, H, W)`` (or ``(C, H, W)``); ``stride``
    defaults to ``kernel_size``; zero padding is counted in the mean unless
    ``count_include_pad=False``. ``ceil_mode`` is not supported.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import avg_pool2d
    >>> avg_pool2d(ckpt.arange(16.0).reshape(1, 1, 4, 4), 2).reshape(-1).tolist()
    [2.5, 4.5, 10.5, 12.5]
    """
    if ceil_mode:
        raise NotImplementedError("avg_pool2d: ceil_mode=True is not supported by ckpt")
    d, batched = _batched(input, "avg_pool2d")
    if d.dtype.kind != "f":
        raise TypeError(f"avg_pool2d: expected a floating-point input, got {d.dtype}")
    N, C, H, W = d.shape
    k, s, p, dl, (oh, ow) = _geometry("avg_pool2d", (H, W), kernel_size,
                                      kernel_size if stride is None else stride, padding, 1)
    for i in range(2):
        if 2 * p[i] > k[i]:
            raise ValueError(f"avg_pool2d: pad should be at most half of kernel size, but got "
                             f"pad={p[i]} and kernel_size={k[i]}")
    sums = _windows(_pad_hw(d, p), k, s, dl, (oh, ow)).sum(axis=(-2, -1))
    if divisor_override is not None:
        if divisor_override == 0:
            raise ValueError("avg_pool2d: divisor_override must be nonzero")
        divisor = np.asarray(divisor_override, dtype=d.dtype)
    elif count_include_pad:
        divisor = np.asarray(k[0] * k[1], dtype=d.dtype)
    else:
        def real(n_out, size, i):  # how many unpadded rows (cols) each window covers
            start = np.arange(n_out) * s[i] - p[i]
            return np.minimum(start + k[i], size) - np.maximum(start, 0)
        divisor = (real(oh, H, 0)[:, None] * real(ow, W, 1)).astype(d.dtype)
    out = (sums / divisor).astype(d.dtype, copy=False)
    return record(AvgPool2DBackward0, out if batched else out[0], (input,), (_wrap(divisor),),
                  in_shape=input.shape, kernel=k, stride=s, padding=p, **for_jvp(divisor=divisor))
