"""ckpt: the memory of neural-network training.

An autograd core on numpy with PyTorch's semantics (``ckpt.autograd``), nn layers and
optimizers (``ckpt.nn``, ``ckpt.optim``), memory accounting (``ckpt.memory``),
``checkpoint`` (``ckpt.runtime``); the planner (``ckpt.planner``), plots (``ckpt.plot``) and
built-in runnable models (``ckpt.models``) load on first use.

>>> import ckpt
>>> a = ckpt.tensor([1.0], requires_grad=True)
>>> (a * (a + 2)).backward(); a.grad.item()
4.0
"""
from . import autograd
from .autograd import (Tensor, enable_grad, inference_mode, is_grad_enabled,
                       is_inference, is_inference_mode_enabled, no_grad, set_grad_enabled)
from .autograd.factory import (arange, as_tensor, bool_, device, double, empty, eye, float,
                               float16, float32, float64, from_numpy, full, full_like, int32, int64,
                               is_tensor, linspace, long, ones, ones_like, rand, rand_like,
                               randint, randn, randn_like, tensor, zeros, zeros_like)
bool = bool_  # noqa: A001  (torch.bool; this module calls no builtin bool)
from .autograd.factory import (BoolTensor, DoubleTensor, FloatTensor, LongTensor, int8, int16,
                               uint8)
int, short, half = int32, int16, float16  # noqa: A001  (torch's names; no builtin int used here)
from math import e, inf, nan, pi
from .autograd.ops import (abs, add, all, allclose, amax, any, argmax, argmin, as_strided, bitwise_not, cat, chunk,
                           clamp, clone, cos, div, eq, erf, exp, expand, flatten, ge, gelu,
                           getitem, gt, isclose, isin, le, linear, log, logical_not, logsumexp, lt, matmul, max, maximum, mean,
                           median, min, minimum, mm, nanmedian, mul, narrow, ne, neg, permute, pow, prod,
                           relu, reshape, select, sigmoid, sign, signbit, sin, split, sqrt,
                           squeeze, stack, std, sub, sum, sum_to, t, tanh, transpose, unbind,
                           unsqueeze, var, var_mean, where)
from .autograd.ops import as_strided, gather, index_reduce, scatter_add, scatter_reduce
from .autograd.ops.nn.conv import conv2d
from .autograd.ops.nn.dropout import dropout
from .autograd.ops.random_fill import bernoulli
from .autograd.ops.nn.embedding import embedding
from .autograd.ops.nn.norm import batch_norm, layer_norm
from .autograd.ops.nn.pool import avg_pool2d, max_pool2d
from .autograd.ops.nn.softmax import log_softmax, softmax
from .autograd.layout import (channels_last, channels_last_3d, contiguous_format, empty_strided,
                              memory_format, preserve_format)
from .autograd.anomaly import is_anomaly_check_nan_enabled, is_anomaly_enabled
from .autograd.random import get_rng_state, manual_seed, set_rng_state
from . import func, nn, optim
from . import memory, runtime
from .runtime import CheckpointError, checkpoint, checkpoint_sequential
from .serialization import load, save

clip = clamp
view = reshape

_LAZY = ("planner", "plot", "models")


def __getattr__(name):
    """``ckpt.planner``, ``ckpt.plot`` and ``ckpt.models`` are imported on first access
    (they pull in networkx and matplotlib, which the autograd core does not need).

    >>> import ckpt
    >>> ckpt.planner.zoo.uniform(2).name
    'uniform'
    """
    if name in _LAZY:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"
