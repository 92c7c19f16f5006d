"""Losses: ``nll_loss``, ``cross_entropy`` and ``mse_loss``, with torch's reductions."""
import numpy as np

from ...node import Node, record
from ...tensor import Tensor, _wrap
from .._util import data_of, for_jvp, total
from ..reduce import sum
from ._common import _as_index_array, _needs, _scatter_add_flat
from .softmax import log_softmax


_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction, op):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")


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
    >>> from ckpt.autograd.ops.nn.loss import nll_loss
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
    >>> from ckpt.autograd.ops.nn.loss import cross_entropy
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
    >>> from ckpt.autograd.ops.nn.loss import mse_loss
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
