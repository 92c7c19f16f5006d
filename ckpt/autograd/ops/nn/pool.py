"""Pooling: ``max_pool2d`` and ``avg_pool2d``."""
import numpy as np

from ...node import Node, record
from ...tensor import _wrap
from .._util import data_of, for_jvp
from ._common import _gather_flat, _scatter_add_flat
from .conv import conv2d, conv2d_input
from .windows import _batched, _geometry, _offset_spans, _pad_hw, _windows


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
    >>> from ckpt.autograd.ops.nn.pool import max_pool2d
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
    >>> from ckpt.autograd.ops.nn.pool import avg_pool2d
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
