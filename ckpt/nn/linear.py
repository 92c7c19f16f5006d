"""``Linear`` and ``Identity``."""
import math

import numpy as np

from ..autograd.ops import linear
from ..autograd.tensor import Tensor
from . import init
from .module import Module
from .parameter import Parameter

_DEFAULT_FLOAT = np.dtype(np.float32)


def _empty_parameter(shape, dtype):
    return Parameter(Tensor(np.empty(shape, _DEFAULT_FLOAT if dtype is None else np.dtype(dtype))))


class Identity(Module):
    """Returns its input unchanged (extra arguments are accepted and ignored).

    >>> import ckpt
    >>> ckpt.nn.Identity()(ckpt.ones(2)).tolist()
    [1.0, 1.0]
    """

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight`` of shape ``(out_features, in_features)``.

    Initialized as torch: ``kaiming_uniform_(weight, a=sqrt(5))`` (i.e. U(-1/sqrt(in),
    1/sqrt(in))) and the bias from the same range, drawn from ckpt's generator.

    >>> import ckpt
    >>> fc = ckpt.nn.Linear(3, 2)
    >>> fc
    Linear(in_features=3, out_features=2, bias=True)
    >>> fc(ckpt.ones(4, 3)).shape
    (4, 2)
    """

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        add_weight_and_bias(self, (out_features, in_features), bias, dtype)

    def reset_parameters(self):
        """Re-draw weight and bias with torch's default scheme."""
        reset_weight_and_bias(self.weight, self.bias)


    def forward(self, input):
        return linear(input, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


def add_weight_and_bias(module, weight_shape, bias, dtype):
    """Give ``module`` a ``weight`` of ``weight_shape`` and, if ``bias``, a ``bias`` of
    ``weight_shape[0]`` (else a ``None`` bias parameter), then ``module.reset_parameters()``:
    how Linear and Conv2d make theirs.

    >>> import ckpt
    >>> layer = ckpt.nn.Linear(2, 2)
    >>> add_weight_and_bias(layer, (3, 2), bias=False, dtype=None)
    >>> layer.weight.shape, layer.bias
    ((3, 2), None)
    """
    module.weight = _empty_parameter(weight_shape, dtype)
    if bias:
        module.bias = _empty_parameter(weight_shape[:1], dtype)
    else:
        module.register_parameter("bias", None)
    module.reset_parameters()


def reset_weight_and_bias(weight, bias):
    """torch's default init of Linear and Conv layers: kaiming-uniform weight (a=sqrt(5)) and
    a bias uniform in +-1/sqrt(fan_in)."""
    init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = init._calculate_fan_in_and_fan_out(weight)[0]
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound)
