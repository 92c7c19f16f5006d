"""Tensor constructors (torch's names; float32 by default, as in torch)."""
import numpy as np

from .random import default_generator
from .tensor import Tensor, _DEFAULT_FLOAT

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
bool_ = np.dtype(np.bool_)
float, double, long = float32, float64, int64


def _infer_dtype(array, source):
    if isinstance(source, np.ndarray) or isinstance(source, np.generic):
        return array.dtype
    if array.dtype.kind == "f":
        return _DEFAULT_FLOAT
    if array.dtype.kind in "iu":
        return int64
    return array.dtype


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor holding a copy of ``data``; Python floats become float32, ints int64.

    >>> import ckpt
    >>> ckpt.tensor([1.0, 2.0], requires_grad=True)
    tensor([1., 2.], requires_grad=True)
    """
    if isinstance(data, Tensor):
        data = data.data
    array = np.array(data, dtype=dtype)
    if dtype is None:
        array = array.astype(_infer_dtype(array, data), copy=False)
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(data, dtype=None):
    """``data`` as a tensor, sharing memory with a numpy array when the dtype allows.

    >>> import numpy as np, ckpt
    >>> a = np.zeros(2); ckpt.as_tensor(a).data is a
    True
    """
    if isinstance(data, Tensor):
        return data if dtype is None or np.dtype(dtype) == data.dtype else data.to(dtype)
    if isinstance(data, np.ndarray) and (dtype is None or np.dtype(dtype) == data.dtype):
        return Tensor(data)
    return tensor(data, dtype=dtype)


def from_numpy(array):
    """A tensor sharing ``array``'s memory.

    >>> import numpy as np, ckpt
    >>> ckpt.from_numpy(np.arange(3)).tolist()
    [0, 1, 2]
    """
    return Tensor(array)


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(size[0])
    return tuple(size)


def _dtype(dtype):
    return _DEFAULT_FLOAT if dtype is None else np.dtype(dtype)


def zeros(*size, dtype=None, requires_grad=False):
    """A tensor of zeros.

    >>> import ckpt
    >>> ckpt.zeros(2, 3).shape
    (2, 3)
    """
    return Tensor(np.zeros(_shape(size), _dtype(dtype)), requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    """A tensor of ones.

    >>> import ckpt
    >>> ckpt.ones(2).tolist()
    [1.0, 1.0]
    """
    return Tensor(np.ones(_shape(size), _dtype(dtype)), requires_grad=requires_grad)


def empty(*size, dtype=None, requires_grad=False):
    """An uninitialized tensor (zeros here, for determinism).

    >>> import ckpt
    >>> ckpt.empty(2).shape
    (2,)
    """
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    """A tensor filled with ``fill_value``.

    >>> import ckpt
    >>> ckpt.full((2,), 7.0).tolist()
    [7.0, 7.0]
    """
    if dtype is None and isinstance(fill_value, (bool, int)) and not isinstance(fill_value, float):
        dtype = bool_ if isinstance(fill_value, bool) else int64
    return Tensor(np.full(tuple(size), fill_value, _dtype(dtype)), requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    """Zeros with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.zeros_like(ckpt.ones(2)).tolist()
    [0.0, 0.0]
    """
    return Tensor(np.zeros(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    """Ones with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.ones_like(ckpt.zeros(2)).tolist()
    [1.0, 1.0]
    """
    return Tensor(np.ones(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    """``fill_value`` with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.full_like(ckpt.zeros(2), 3.0).tolist()
    [3.0, 3.0]
    """
    return Tensor(np.full(t.shape, fill_value, dtype or t.dtype), requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    """Evenly spaced values in ``[start, end)``; integers unless an argument is a float.

    >>> import ckpt
    >>> ckpt.arange(3).tolist()
    [0, 1, 2]
    """
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else _DEFAULT_FLOAT
    return Tensor(np.arange(start, end, step, dtype=dtype), requires_grad=requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False):
    """``steps`` values from ``start`` to ``end`` inclusive.

    >>> import ckpt
    >>> ckpt.linspace(0, 1, 3).tolist()
    [0.0, 0.5, 1.0]
    """
    return Tensor(np.linspace(start, end, steps, dtype=_dtype(dtype)), requires_grad=requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    """The identity matrix.

    >>> import ckpt
    >>> ckpt.eye(2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    return Tensor(np.eye(n, m, dtype=_dtype(dtype)), requires_grad=requires_grad)


def randn(*size, dtype=None, requires_grad=False, generator=None):
    """Standard-normal samples from ckpt's generator.

    >>> import ckpt
    >>> ckpt.randn(2, 3).shape
    (2, 3)
    """
    g = (generator or default_generator).numpy
    return Tensor(g.standard_normal(_shape(size), dtype=_dtype(dtype) if _dtype(dtype) in (float32, float64) else float64).astype(_dtype(dtype), copy=False),
                  requires_grad=requires_grad)


def rand(*size, dtype=None, requires_grad=False, generator=None):
    """Uniform samples in [0, 1) from ckpt's generator.

    >>> import ckpt
    >>> bool((ckpt.rand(5) < 1).all())
    True
    """
    g = (generator or default_generator).numpy
    return Tensor(g.random(_shape(size), dtype=float64).astype(_dtype(dtype), copy=False),
                  requires_grad=requires_grad)


def randint(low, high=None, size=(), dtype=None, generator=None):
    """Integers in ``[low, high)`` from ckpt's generator.

    >>> import ckpt
    >>> ckpt.randint(0, 3, (4,)).shape
    (4,)
    """
    if high is None:
        low, high = 0, low
    g = (generator or default_generator).numpy
    return Tensor(g.integers(low, high, size=tuple(size), dtype=np.dtype(dtype or int64)))


def randn_like(t, dtype=None, requires_grad=False):
    """``randn`` with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.randn_like(ckpt.zeros(2, 3)).shape
    (2, 3)
    """
    return randn(*t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def rand_like(t, dtype=None, requires_grad=False):
    """``rand`` with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.rand_like(ckpt.zeros(4)).shape
    (4,)
    """
    return rand(*t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def is_tensor(obj):
    """True for ckpt tensors.

    >>> import ckpt
    >>> ckpt.is_tensor(ckpt.ones(1)), ckpt.is_tensor([1.0])
    (True, False)
    """
    return isinstance(obj, Tensor)
