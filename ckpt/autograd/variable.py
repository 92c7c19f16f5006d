"""``Variable``: torch's deprecated alias of ``Tensor``, for the programs that still call it."""
import numpy as np

from .engine import queue_callback
from .tensor import Tensor, _wrap


class _EveryTensor(type):
    def __instancecheck__(cls, instance):
        return isinstance(instance, Tensor)


class _ExecutionEngine:
    """What ``Variable._execution_engine`` offers in ckpt: ``queue_callback``."""
    queue_callback = staticmethod(queue_callback)


class Variable(metaclass=_EveryTensor):
    """``Variable(t, requires_grad=False)``: a Tensor sharing ``t``'s data, cut from its graph,
    asking for gradients if told to (``Variable()`` is an empty tensor); every Tensor is a
    Variable, as in torch.

    >>> import ckpt
    >>> from ckpt.autograd import Variable
    >>> t = ckpt.ones(2)
    >>> v = Variable(t, requires_grad=True)
    >>> v.requires_grad, v.data is t.data, isinstance(t, Variable)
    (True, True, True)
    """
    _execution_engine = _ExecutionEngine()

    def __new__(cls, data=None, requires_grad=False, volatile=False):
        if data is None:
            return _wrap(np.zeros(0, dtype=np.float32))
        if not isinstance(data, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
        alias = data.detach()
        if requires_grad:
            alias.requires_grad_(True)
        return alias
