"""Parameter initializers (torch.nn.init's names and formulas).

Each writes into ``tensor.data`` in place without recording a graph, bumps the tensor's
version (as torch's in-place ops do) and returns the tensor. All randomness comes from
ckpt's generator (``ckpt.manual_seed``); samples are drawn in float64 and rounded to the
tensor's dtype, so the same seed gives the same values in float32 and float64 up to rounding.
"""
import math

import numpy as np

from ..autograd.ops.shape import bump_version
from ..autograd.random import default_generator

__all__ = ["calculate_gain", "constant_", "kaiming_normal_", "kaiming_uniform_", "normal_",
           "ones_", "uniform_", "xavier_normal_", "xavier_uniform_", "zeros_"]


def _write(tensor, values):
    np.copyto(tensor.data, values, casting="unsafe")
    bump_version(tensor)
    return tensor


def _rng(generator):
    return (generator or default_generator).numpy


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for an activation (torch's table).

    >>> from ckpt.nn import init
    >>> init.calculate_gain("relu") == 2 ** 0.5
    True
    """
    linear_fns = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d")
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with samples from U(a, b).

    >>> import ckpt
    >>> t = ckpt.nn.init.uniform_(ckpt.empty(100), -1, 1)
    >>> bool((t >= -1).all() and (t < 1).all())
    True
    """
    return _write(tensor, _rng(generator).uniform(a, b, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with samples from N(mean, std**2).

    >>> import ckpt
    >>> ckpt.nn.init.normal_(ckpt.empty(2, 3)).shape
    (2, 3)
    """
    return _write(tensor, _rng(generator).normal(mean, std, tensor.shape))


def constant_(tensor, val):
    """Fill with ``val``.

    >>> import ckpt
    >>> ckpt.nn.init.constant_(ckpt.empty(2), 0.5).tolist()
    [0.5, 0.5]
    """
    return _write(tensor, val)


def zeros_(tensor):
    """Fill with zeros.

    >>> import ckpt
    >>> ckpt.nn.init.zeros_(ckpt.ones(2)).tolist()
    [0.0, 0.0]
    """
    return _write(tensor, 0)


def ones_(tensor):
    """Fill with ones.

    >>> import ckpt
    >>> ckpt.nn.init.ones_(ckpt.zeros(2)).tolist()
    [1.0, 1.0]
    """
    return _write(tensor, 1)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot uniform: U(-b, b) with ``b = gain * sqrt(6 / (fan_in + fan_out))``.

    >>> import ckpt
    >>> t = ckpt.nn.init.xavier_uniform_(ckpt.empty(3, 5))
    >>> bool((t.abs() <= (6 / 8) ** 0.5).all())
    True
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot normal: N(0, std**2) with ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    >>> import ckpt
    >>> ckpt.nn.init.xavier_normal_(ckpt.empty(3, 5)).shape
    (3, 5)
    """
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He uniform: U(-b, b) with ``b = gain * sqrt(3 / fan)``; with ``a=sqrt(5)`` (the
    Linear/Conv default) ``b = 1 / sqrt(fan_in)``.

    >>> import ckpt, math
    >>> t = ckpt.nn.init.kaiming_uniform_(ckpt.empty(4, 16), a=math.sqrt(5))
    >>> bool((t.abs() <= 0.25).all())
    True
    """
    if 0 in tensor.shape:
        return tensor
    fan = _fan(tensor, mode)
    gain = calculate_gain(nonlinearity, a)
    bound = math.sqrt(3.0) * gain / math.sqrt(fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He normal: N(0, std**2) with ``std = gain / sqrt(fan)``.

    >>> import ckpt
    >>> ckpt.nn.init.kaiming_normal_(ckpt.empty(4, 16)).shape
    (4, 16)
    """
    if 0 in tensor.shape:
        return tensor
    fan = _fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)
