"""The softmax family: ``softmax`` and ``log_softmax`` over one dim."""
import numpy as np

from ...node import Node, OUTPUT, record
from .._util import Batch, normalize_dims
from ..elementwise import exp
from ..reduce import sum


class SoftmaxBackward0(Node):
    _batched_rule = True

    def vjp(self, g, out):
        return out * (g - sum(g * out, self.dim + Batch.dims, keepdim=True))

    def jvp(self, tangents, primals, out):
        return self.vjp(tangents[0], out)  # the Jacobian diag(s) - s s^T is symmetric


def softmax(x, dim):
    """``exp(x) / sum(exp(x), dim)`` computed stably.

    >>> import ckpt
    >>> ckpt.softmax(ckpt.tensor([0.0, 0.0]), dim=0).tolist()
    [0.5, 0.5]
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "softmax")
    d = x.data
    e = np.exp(d - d.max(axis=dim, keepdims=True))
    e /= e.sum(axis=dim, keepdims=True)
    return record(SoftmaxBackward0, e, (x,), (OUTPUT,), dim=dim)


class LogSoftmaxBackward0(Node):
    _batched_rule = True

    def vjp(self, g, out):
        return g - exp(out) * sum(g, self.dim + Batch.dims, keepdim=True)

    def jvp(self, tangents, primals, out):
        t = tangents[0]
        return t - sum(exp(out) * t, self.dim + Batch.dims, keepdim=True)


def log_softmax(x, dim):
    """``x - logsumexp(x, dim)`` computed stably.

    >>> import ckpt
    >>> round(ckpt.log_softmax(ckpt.tensor([0.0, 0.0]), dim=0)[0].item(), 4)
    -0.6931
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "log_softmax")
    d = x.data
    shifted = d - d.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return record(LogSoftmaxBackward0, out, (x,), (OUTPUT,), dim=dim)
