"""Convolution: ``conv2d`` and the two ops that are its derivatives, ``conv2d_input`` and
``conv2d_weight``.

With x read as 0 outside the image, the form
    T(x, w, y) = sum of y[n, o, p, q] w[o, c, i, j] x[n, c, p*sh + i*dh - ph, q*sw + j*dw - pw]
(c over o's group) has three partial derivatives: conv2d(x, w) = dT/dy, conv2d_input(w, y)
= dT/dx (the gradient of a convolution's input: a transposed convolution) and
conv2d_weight(x, y) = dT/dw. Each is linear in both its arguments, and the VJP and JVP of
each are the other two: the family is closed under differentiation, to any order.

The kernels loop over the kernel offsets (i, j): the (O, C) slice w[:, :, i, j] times the
input shifted by the offset (a strided view of the part inside the image, so no padded copy
is made) is added to the output positions the offset reaches. Nothing is copied k*k times
(im2col): an offset's temporaries -- the shifted slice made contiguous and its product --
cover one chunk of about 1/CHUNKS of the output positions (whole samples, or rows of one
sample when the batch is small) and die before the next offset's are made. A chunk holds
at least _CONV_MIN_CHUNK values (positions times channels): below that, Python's overhead
per matrix product costs more time than the memory saved is worth. With few channels per
group (``_lowered``) each chunk is turned into its columns instead and multiplied once.
"""
import numpy as np

from ...node import Node, record
from ...tensor import Tensor, _wrap
from .._util import CHUNKS, data_of, total
from ..reduce import sum
from ._common import _needs
from .windows import _geometry, _offset_spans, _pair


_CONV_MIN_CHUNK = 16384


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
    >>> from ckpt.autograd.ops.nn.conv import conv2d
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
    >>> from ckpt.autograd.ops.nn.conv import conv2d_input
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
    >>> from ckpt.autograd.ops.nn.conv import conv2d_weight
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
