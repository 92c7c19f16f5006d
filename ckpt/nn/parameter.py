"""``Parameter``: how a Module tells its learnable tensors from the others.

Design (differs from torch): ``Parameter(data)`` returns a *plain* ``ckpt.Tensor`` with
``requires_grad=True``, never an instance of a subclass. The autograd hot path
(``ckpt.autograd.node.record``, ``ops._util.data_of``, ...) recognizes tensors with the
exact-class test ``x.__class__ is Tensor``; a real subclass would slip past it (no graph
edge, no saved value), so parameters must stay exact Tensors.

A tensor is a parameter when it sits in ``_PARAMETERS``, a ``WeakValueDictionary`` from
``id(tensor)`` to the tensor (``Tensor`` has ``__slots__``, so it cannot carry a marker
attribute; a ``WeakSet`` would compare tensors with ``==``, which is elementwise). An entry
disappears with its tensor, and a lookup checks identity, so a reused ``id`` never matches.
``isinstance(t, Parameter)`` consults the registry through a metaclass hook, so torch-style
code that checks for parameters keeps working. Differences a user can see: the repr is
the tensor's (no ``Parameter containing:`` prefix) and ``type(p)`` is ``Tensor``.
"""
import weakref

import numpy as np

from ..autograd.tensor import Tensor

_PARAMETERS = weakref.WeakValueDictionary()


def is_parameter(obj):
    """True if ``obj`` was created by (or registered as) a ``Parameter``.

    >>> import ckpt
    >>> from ckpt.nn.parameter import is_parameter
    >>> is_parameter(ckpt.nn.Parameter(ckpt.ones(2))), is_parameter(ckpt.ones(2))
    (True, False)
    """
    return obj.__class__ is Tensor and _PARAMETERS.get(id(obj)) is obj


def mark_parameter(t):
    """Flag the Tensor ``t`` as a parameter (in place) and return it."""
    _PARAMETERS[id(t)] = t
    return t


class _ParameterMeta(type):
    def __instancecheck__(cls, obj):
        return is_parameter(obj)


class Parameter(Tensor, metaclass=_ParameterMeta):
    """A tensor a Module registers as learnable (leaf, ``requires_grad=True`` by default).

    ``Parameter(t)`` shares ``t``'s memory, as in torch, but returns a plain ``Tensor`` (see
    the module docstring); ``isinstance(p, Parameter)`` still answers True.

    >>> import ckpt
    >>> p = ckpt.nn.Parameter(ckpt.zeros(2))
    >>> p.requires_grad, type(p).__name__, isinstance(p, ckpt.nn.Parameter)
    (True, 'Tensor', True)
    """
    __slots__ = ()

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            array = np.empty((0,), np.float32)
        elif isinstance(data, Tensor):
            array = data.data
        else:
            array = np.asarray(data)
        return mark_parameter(Tensor(array, requires_grad=requires_grad))
