"""Activation layers: ``ReLU``, ``GELU``, ``Tanh``, ``Sigmoid``, ``Softmax``, ``LogSoftmax``."""
from ..autograd.ops import gelu, relu, sigmoid, tanh
from ..autograd.ops.nn.softmax import log_softmax, softmax
from .module import Module


class ReLU(Module):
    """``max(x, 0)`` elementwise (``inplace=True`` uses ``relu_``).

    >>> import ckpt
    >>> ckpt.nn.ReLU()(ckpt.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return input.relu_() if self.inplace else relu(input)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class GELU(Module):
    """Gaussian error linear unit; ``approximate='tanh'`` uses the tanh formula.

    >>> import ckpt
    >>> ckpt.nn.GELU()
    GELU(approximate='none')
    >>> round(ckpt.nn.GELU()(ckpt.tensor([1.0])).item(), 4)
    0.8413
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
        self.approximate = approximate

    def forward(self, input):
        return gelu(input, approximate=self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    """``tanh(x)`` elementwise.

    >>> import ckpt
    >>> ckpt.nn.Tanh()(ckpt.zeros(1)).tolist()
    [0.0]
    """

    def forward(self, input):
        return tanh(input)


class Sigmoid(Module):
    """``1 / (1 + exp(-x))`` elementwise.

    >>> import ckpt
    >>> ckpt.nn.Sigmoid()(ckpt.zeros(1)).tolist()
    [0.5]
    """

    def forward(self, input):
        return sigmoid(input)


class Softmax(Module):
    """Softmax along ``dim``.

    >>> import ckpt
    >>> ckpt.nn.Softmax(dim=-1)(ckpt.zeros(1, 2)).tolist()
    [[0.5, 0.5]]
    """

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return softmax(input, self.dim if self.dim is not None else -1)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """Log-softmax along ``dim``.

    >>> import ckpt
    >>> round(ckpt.nn.LogSoftmax(dim=-1)(ckpt.zeros(1, 2))[0, 0].item(), 4)
    -0.6931
    """

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, input):
        return log_softmax(input, self.dim if self.dim is not None else -1)

    def extra_repr(self):
        return f"dim={self.dim}"
