"""Sliding windows: the geometry of a 2-d window over an image (output sizes, strided views
of the windows, padding) and the two ops that copy windows out and back, ``unfold``
(im2col) and ``fold`` (col2im), each the other's VJP."""
import numpy as np

from ...node import record
from ...tensor import Tensor
from .._util import data_of
from ..shape import _SameOpOnTangent


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


class Im2ColBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return fold(g, self.in_hw, self.kernel, self.dilation, self.padding, self.stride)

    def tangent_op(self, t, out):
        return unfold(t, self.kernel, self.dilation, self.padding, self.stride)


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: the sliding ``kernel_size`` blocks of ``(N, C, H, W)`` as columns of an
    ``(N, C*kh*kw, L)`` tensor (as torch.nn.functional.unfold). Its adjoint is ``fold``.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn.windows import unfold
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
    >>> from ckpt.autograd.ops.nn.windows import fold
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
