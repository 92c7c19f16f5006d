"""Stateless neural-network ops with torch.nn.functional's names and signatures.

Every op here is differentiable to any order (its VJP is written with ckpt ops). Most are
re-exported from ``ckpt.autograd.ops``; the few defined here only adapt torch's signature.

>>> import ckpt
>>> import ckpt.nn.functional as F
>>> logits = ckpt.zeros(2, 3, requires_grad=True)
>>> loss = F.cross_entropy(logits, ckpt.tensor([0, 2]))
>>> loss.backward(); round(loss.item(), 4), logits.grad.shape
(1.0986, (2, 3))
"""
import warnings

from ..autograd.ops import gelu, linear, sigmoid, tanh
from ..autograd.ops.nn import softmax as _softmax_family
from ..autograd.ops import relu as _relu
from ..autograd.ops.nn.conv import conv2d
from ..autograd.ops.nn.dropout import dropout
from ..autograd.ops.nn.embedding import embedding
from ..autograd.ops.nn.loss import cross_entropy, mse_loss, nll_loss
from ..autograd.ops.nn.norm import batch_norm, instance_norm, layer_norm
from ..autograd.ops.nn.pool import avg_pool2d, max_pool2d
from ..autograd.ops.nn.windows import fold, unfold

__all__ = ["avg_pool2d", "batch_norm", "conv2d", "cross_entropy", "dropout", "embedding", "fold",
           "gelu", "instance_norm", "layer_norm", "linear", "log_softmax", "max_pool2d", "mse_loss", "nll_loss",
           "relu", "sigmoid", "softmax", "tanh", "unfold"]


def relu(input, inplace=False):
    """``max(input, 0)``; ``inplace=True`` overwrites ``input`` (``relu_``).

    >>> import ckpt, ckpt.nn.functional as F
    >>> F.relu(ckpt.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return input.relu_() if inplace else _relu(input)


def _softmax_dim(name, input, dim):
    if dim is not None:
        return dim
    dim = 0 if input.ndim in (0, 1, 3) else 1
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to "
                  f"include dim=X as an argument.", UserWarning, stacklevel=3)
    return dim


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Softmax along ``dim`` (``dtype`` casts the input first), as torch.nn.functional.softmax.

    >>> import ckpt, ckpt.nn.functional as F
    >>> F.softmax(ckpt.tensor([[0.0, 0.0]]), dim=1).tolist()
    [[0.5, 0.5]]
    """
    if dtype is not None:
        input = input.to(dtype)
    return _softmax_family.softmax(input, _softmax_dim("softmax", input, dim))


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """Log-softmax along ``dim`` (``dtype`` casts the input first).

    >>> import ckpt, ckpt.nn.functional as F
    >>> round(F.log_softmax(ckpt.tensor([[0.0, 0.0]]), dim=1)[0, 0].item(), 4)
    -0.6931
    """
    if dtype is not None:
        input = input.to(dtype)
    return _softmax_family.log_softmax(input, _softmax_dim("log_softmax", input, dim))
