"""Neural-network ops (softmax family, losses, normalization, dropout, embedding, conv, pool)."""
import numpy as np

from .. import random as _random
from ..grad_mode import _Recompute
from ..node import Extensions, Node, OUTPUT, record
from ..tensor import Tensor, _wrap
from ._util import Batch, data_of, normalize_dims, total
from .elementwise import exp
from .reduce import mean, sum
from .shape import _SameOpOnTangent, expand


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


def _for_jvp(**arrays):
    """Node attributes for the non-differentiable arrays a JVP needs and the VJP reads from
    ``saved`` (a JVP sees the inputs and the attributes, not what is saved). Given only inside
    a dual level: outside one, reverse mode keeps them in ``saved`` alone, where the memory
    layer counts them."""
    return arrays if Extensions.forward_ad else {}


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
    size = int(np.prod(shape))
    out = np.bincount(index.reshape(-1), weights=v.reshape(-1), minlength=size)
    if values.__class__ is not Tensor:  # arrays in, arrays out (array rules)
        return out.astype(v.dtype, copy=False).reshape(shape)
    return record(ScatterAddBackward0, out.astype(v.dtype, copy=False).reshape(shape), (values,),
                  index=index)


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
    def vjp(self, g, target):
        flat, wt = _nll_select(self.in_shape, data_of(target), self.weight, self.ignore_index)
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
    return record(NllLossBackward0, np.asarray(out, dtype=x.dtype), (input,), (target_t,),
                  in_shape=x.shape, weight=w, ignore_index=ignore_index, reduction=reduction,
                  total=total, **_for_jvp(target=target_t))


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
    smooth = -(logp if w_b is None else logp * w_b).sum(class_dim) * valid.astype(x.dtype)
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

def _normalization_vjp(node, g, x, weight, param_shape, stats=None):
    """Gradients ``(x, weight, bias)`` of ``y = xhat * weight + bias`` with
    ``xhat = (x - mean) * rstd`` over ``node.axes``: batch statistics recomputed from ``x``
    with differentiable ops (``stats=None``, so second derivatives are right), or constant
    ``(mean, rstd)`` arrays (batch norm in eval mode). ``weight``/``bias`` gradients sum over
    ``node.param_axes``. Shared by layer_norm and batch_norm: only the axes differ."""
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
    if stats is None:
        mean = d.mean(axis=axes, keepdims=True)
        var = d.var(axis=axes, keepdims=True)
        stats = (mean, 1.0 / np.sqrt(var + eps))
    out = (d - stats[0]) * stats[1]
    if weight is not None:
        out = out * weight.data.reshape(param_shape)
    if bias is not None:
        out = out + bias.data.reshape(param_shape)
    return out.astype(d.dtype, copy=False)


class NativeLayerNormBackward0(Node):
    def vjp(self, g, x, weight):
        return _normalization_vjp(self, g, x, weight, self.param_shape)

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
    out = _normalize_forward(d, axes, eps, weight, bias, ns)
    return record(NativeLayerNormBackward0, out, (input, weight, bias), (input, weight),
                  axes=axes, eps=eps, param_shape=ns, param_axes=tuple(range(axes[0])),
                  bias_shape=ns)


class NativeBatchNormBackward0(Node):
    def vjp(self, g, x, weight):
        return _normalization_vjp(self, g, x, weight, self.param_shape, self.stats)

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
    out = _normalize_forward(d, axes, eps, weight, bias, param_shape, stats)
    return record(NativeBatchNormBackward0, out, (input, weight, bias), (input, weight),
                  axes=axes, eps=eps, param_shape=param_shape, param_axes=axes, bias_shape=(C,),
                  stats=node_stats)


# ---- dropout, embedding -------------------------------------------------------------------

class NativeDropoutBackward0(Node):
    def vjp(self, g, mask):
        return g * (data_of(mask) * np.asarray(self.scale, dtype=g.dtype))

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
    >>> sorted(set(a.tolist())) <= [0.0, 2.0]
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
        mask, scale = _random.default_generator.numpy.random(d.shape) >= p, 1.0 / (1.0 - p)
    out = (d * (mask * np.asarray(scale, dtype=d.dtype))).astype(d.dtype, copy=False)
    mask = _wrap(mask)
    return record(NativeDropoutBackward0, out, (input,), (mask,), scale=scale,
                  **_for_jvp(mask=mask))


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
                  scale_grad_by_freq=scale_grad_by_freq, **_for_jvp(indices=indices))


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


class ConvolutionBackward0(Node):
    """grad_x = fold(W^T @ grad_cols); grad_w = grad @ unfold(x)^T summed over the batch;
    grad_b = grad summed over (N, H, W). Written with fold/unfold/matmul, so differentiable."""

    def vjp(self, g, x, w):
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G = self.groups
        Og, K, L = O // G, Cg * kh * kw, g.shape[2] * g.shape[3]
        geometry = dict(dilation=self.dilation, padding=self.padding, stride=self.stride)
        gcols = g.reshape(N, G, Og, L)
        gx = gw = gb = None
        if _needs(self, 0):
            cols = w.reshape(G, Og, K).mT @ gcols  # (N, G, K, L)
            gx = fold(cols.reshape(N, G * K, L), (H, W), (kh, kw), **geometry)
        if _needs(self, 1):
            xcols = unfold(x, (kh, kw), **geometry).reshape(N, G, K, L)
            gw = sum(gcols @ xcols.mT, 0).reshape(w.shape)  # (N, G, Og, K) summed over N
        if _needs(self, 2):
            gb = sum(g, (0, 2, 3))
        return gx, gw, gb

    def jvp(self, tangents, primals, out):
        """Bilinear in (x, w), affine in b: ``conv(t_x, w) + conv(x, t_w) + t_b``."""
        (t_x, t_w, t_b), (x, w, _) = tangents, primals
        geometry = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                        groups=self.groups)
        return total(None if t_x is None else conv2d(t_x, w, None, **geometry),
                     None if t_w is None else conv2d(x, t_w, None, **geometry),
                     None if t_b is None else t_b.reshape(-1, 1, 1))


def _conv_padding(padding, kernel, dilation, stride):
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding != "same":
        raise ValueError(f"conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
    if stride != (1, 1):
        raise ValueError("conv2d: padding='same' is not supported for strided convolutions")
    total = [dilation[i] * (kernel[i] - 1) for i in range(2)]
    if any(t % 2 for t in total):
        raise NotImplementedError(f"conv2d: padding='same' with an even effective kernel "
                                  f"{tuple(t + 1 for t in total)} needs asymmetric padding, which "
                                  f"ckpt does not support")
    return (total[0] // 2, total[1] // 2)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of ``(N, C, H, W)`` (or unbatched ``(C, H, W)``) with
    ``weight (O, C/groups, kh, kw)`` plus ``bias (O,)``, as torch.nn.functional.conv2d.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn_functional import conv2d
    >>> conv2d(ckpt.ones(1, 2, 4, 4), ckpt.ones(3, 2, 3, 3), padding=1).shape
    (1, 3, 4, 4)
    """
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if input.ndim != 4:
        raise RuntimeError(f"conv2d: expected a 3-D (unbatched) or 4-D (batched) input, got input "
                           f"of shape {list(input.shape)}")
    d, w = input.data, weight.data
    if w.ndim != 4:
        raise RuntimeError(f"conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), "
                           f"got shape {list(w.shape)}")
    N, C, H, W = d.shape
    O, Cg, kh, kw = w.shape
    if not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    G = int(groups)
    if C != Cg * G:
        suffix = f", groups={G}" if G > 1 else ""
        raise RuntimeError(f"conv2d: input has {C} channels but weight expects {Cg * G} "
                           f"(weight shape {list(w.shape)}{suffix})")
    if O % G:
        raise RuntimeError(f"conv2d: out_channels ({O}) must be divisible by groups ({G})")
    if bias is not None and tuple(bias.shape) != (O,):
        raise RuntimeError(f"conv2d: bias must have shape [{O}] (one per output channel), got "
                           f"{list(bias.shape)}")
    if d.dtype != w.dtype or (bias is not None and bias.dtype != d.dtype):
        raise TypeError(f"conv2d: input dtype {d.dtype}, weight dtype {w.dtype}"
                        f"{'' if bias is None else f' and bias dtype {bias.dtype}'} must match")
    stride_pair = _pair(stride, "stride", "conv2d")
    padding = _conv_padding(padding, (kh, kw), _pair(dilation, "dilation", "conv2d"), stride_pair)
    k, s, p, dl, (oh, ow) = _geometry("conv2d", (H, W), (kh, kw), stride, padding, dilation)
    win = _windows(_pad_hw(d, p), k, s, dl, (oh, ow))  # (N, C, oh, ow, kh, kw), a view
    cols = win.reshape(N, G, Cg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6).reshape(
        G, N * oh * ow, Cg * kh * kw)
    out = cols @ w.reshape(G, O // G, Cg * kh * kw).transpose(0, 2, 1)  # (G, N*L, O/G)
    out = out.reshape(G, N, oh, ow, O // G).transpose(1, 0, 4, 2, 3).reshape(N, O, oh, ow)
    if bias is not None:
        out = out + bias.data.reshape(1, O, 1, 1)
    return record(ConvolutionBackward0, np.ascontiguousarray(out), (input, weight, bias),
                  (input, weight), stride=s, padding=p, dilation=dl, groups=G)


class MaxPool2DWithIndicesBackward0(Node):
    def vjp(self, g, positions):
        return _scatter_add_flat(g, data_of(positions), self.in_shape)

    def jvp(self, tangents, primals, out):  # the tangent at each window's maximum
        return _gather_flat(tangents[0], data_of(self.positions))


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
    need = [(o - 1) * s[i] + (k[i] - 1) * dl[i] + 1 for i, o in enumerate((oh, ow))]
    extra = (max(0, need[0] - H - 2 * p[0]), max(0, need[1] - W - 2 * p[1]))  # ceil_mode
    win = _windows(_pad_hw(d, p, -np.inf, extra), k, s, dl, (oh, ow))
    flatwin = win.reshape(N, C, oh, ow, k[0] * k[1])
    arg = flatwin.argmax(axis=-1)
    values = np.take_along_axis(flatwin, arg[..., None], axis=-1)[..., 0]
    ki, kj = np.divmod(arg, k[1])
    rows = np.clip(np.arange(oh)[:, None] * s[0] + ki * dl[0] - p[0], 0, H - 1)
    cols = np.clip(np.arange(ow) * s[1] + kj * dl[1] - p[1], 0, W - 1)
    plane_index = rows * W + cols
    positions = np.arange(N * C).reshape(N, C, 1, 1) * (H * W) + plane_index
    if not batched:
        values, plane_index, positions = values[0], plane_index[0], positions[0]
    positions = _wrap(positions)
    out = record(MaxPool2DWithIndicesBackward0, values, (input,), (positions,),
                 in_shape=input.shape, **_for_jvp(positions=positions))
    return (out, _wrap(plane_index)) if return_indices else out


class AvgPool2DBackward0(Node):
    def vjp(self, g):
        shape = self._batched_shape()
        N, C = shape[:2]
        K, L = self.kernel[0] * self.kernel[1], g.shape[-2] * g.shape[-1]
        cols = expand((g / self.divisor).reshape(N, C, 1, L), (N, C, K, L)).reshape(N, C * K, L)
        gx = fold(cols, shape[2:], self.kernel, 1, self.padding, self.stride)
        return gx.reshape(self.in_shape)

    def jvp(self, tangents, primals, out):
        """Linear: the window sums of the tangent (``unfold``, the adjoint of the VJP's
        ``fold``) over the divisor."""
        shape = self._batched_shape()
        N, C = shape[:2]
        cols = unfold(tangents[0].reshape(shape), self.kernel, 1, self.padding, self.stride)
        sums = sum(cols.reshape(N, C, self.kernel[0] * self.kernel[1], -1), 2)
        return (sums.reshape((N, C) + tuple(out.shape[-2:])) / self.divisor).reshape(out.shape)

    def _batched_shape(self):
        return self.in_shape if len(self.in_shape) == 4 else (1,) + tuple(self.in_shape)


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
    return record(AvgPool2DBackward0, out if batched else out[0], (input,),
                  in_shape=input.shape, kernel=k, stride=s, padding=p, divisor=divisor)
