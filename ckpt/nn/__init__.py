"""Layers, losses and containers with torch.nn's names (``ckpt.nn.Linear``, ...).

``ckpt.nn.functional`` holds the stateless ops the layers call; ``ckpt.nn.init`` the
initializers; ``ckpt.nn.grad`` the gradients of a convolution (as torch.nn.grad). How
``Parameter`` is represented (a plain Tensor flagged in a registry, not a subclass) is
explained in ``ckpt.nn.parameter``.

>>> import ckpt
>>> _ = ckpt.manual_seed(0)
>>> net = ckpt.nn.Sequential(ckpt.nn.Linear(4, 8), ckpt.nn.ReLU(), ckpt.nn.Linear(8, 2))
>>> net(ckpt.randn(3, 4)).shape
(3, 2)
"""
from . import functional, grad, init
from .activation import GELU, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadSelfAttention
from .container import ModuleDict, ModuleList, Sequential
from .conv import Conv2d
from .dropout import Dropout
from .flatten import Flatten
from .linear import Identity, Linear
from .loss import CrossEntropyLoss, MSELoss, NLLLoss
from .module import Module
from .normalization import (BatchNorm1d, BatchNorm2d, InstanceNorm1d, InstanceNorm2d,
                            InstanceNorm3d, LayerNorm)
from .parameter import Parameter
from .pooling import AvgPool2d, MaxPool2d
from .residual import ResidualBlock
from .sparse import Embedding
from .transformer import TransformerEncoderLayer

__all__ = ["AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "CrossEntropyLoss", "Dropout",
           "Embedding", "Flatten", "GELU", "Identity", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "LayerNorm", "Linear", "LogSoftmax",
           "MSELoss", "MaxPool2d", "Module", "ModuleDict", "ModuleList", "MultiheadSelfAttention",
           "NLLLoss", "Parameter", "ReLU", "ResidualBlock", "Sequential", "Sigmoid", "Softmax", "Tanh",
           "TransformerEncoderLayer",
           "functional", "grad", "init"]
