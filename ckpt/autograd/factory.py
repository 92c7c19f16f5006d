"""Tensor constructors (torch's names; float32 by default, as in torch).

Constructors that torch gives ``out=`` take it (the tensor written into, resized if needed,
and returned). Every constructor takes torch's ``device=``: ckpt's tensors are numpy arrays in CPU memory,
so ``"cpu"`` (``"cpu:0"``, ``ckpt.device("cpu")``, a ``torch.device("cpu")``) is accepted and
any other device is refused with an error naming it.
"""
import re

import numpy as np

from . import grad_mode
from .random import default_generator
from .tensor import Tensor, _DEFAULT_FLOAT

float32 = np.dtype(np.float32)
float64 = np.dtype(np.float64)
float16 = np.dtype(np.float16)
int64 = np.dtype(np.int64)
int32 = np.dtype(np.int32)
int16 = np.dtype(np.int16)
int8 = np.dtype(np.int8)
uint8 = np.dtype(np.uint8)
bool_ = np.dtype(np.bool_)
float, double, long = float32, float64, int64


class device:
    """torch.device's counterpart: a device type and an optional index. Any of torch's
    device types can be named, as in torch; ckpt makes tensors on ``"cpu"`` only.

    >>> import ckpt
    >>> ckpt.device("cpu"), ckpt.device("cpu:0").index, str(ckpt.device("cuda", 1))
    (device(type='cpu'), 0, 'cuda:1')
    >>> ckpt.zeros(2, device=ckpt.device("cpu")).device
    'cpu'
    """
    _TYPES = ("cpu", "cuda", "ipu", "xpu", "mkldnn", "opengl", "opencl", "ideep", "hip", "ve",
              "fpga", "maia", "xla", "lazy", "vulkan", "mps", "meta", "hpu", "mtia",
              "privateuseone")

    def __init__(self, type, index=None):  # noqa: A002 -- torch's parameter name
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise TypeError(f"device() expects a string such as 'cpu' or 'cpu:0', got "
                            f"{type.__class__.__name__}")
        match = re.fullmatch(r"([a-z_]+)(?::(\d+))?", type)
        if match is None or match.group(1) not in self._TYPES:
            if type.split(":")[0] in self._TYPES:
                raise RuntimeError(f"Invalid device string: {type!r}")
            raise RuntimeError(f"Expected one of {', '.join(self._TYPES)} device type at start "
                               f"of device string: {type}")
        if match.group(2) is not None:
            if index is not None:
                raise RuntimeError(f"device {type!r} already names an index; pass no index too")
            index = int(match.group(2))
        self.type, self.index = match.group(1), index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        index = "" if self.index is None else f", index={self.index}"
        return f"device(type={self.type!r}{index})"

    def __eq__(self, other):
        """Equal to the same device, and (unlike torch's) to its name: a ckpt Tensor's
        ``.device`` is the string ``'cpu'``."""
        if isinstance(other, str):
            return str(self) == other
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash(str(self))


def _check_device(where):
    """Refuse ``where`` unless it is the CPU (or None); ``where`` is a device string, a
    ``ckpt.device`` or a device object of another library whose ``str`` is its name.

    >>> _check_device("cuda")
    Traceback (most recent call last):
    RuntimeError: device 'cuda' is not available: ckpt keeps tensors as numpy arrays in CPU memory; pass device='cpu' or leave device out
    """
    if where is None:
        return
    if isinstance(where, (int, np.integer)) and not isinstance(where, bool):
        name = f"accelerator {where}"
    elif isinstance(where, (str, device)) or isinstance(getattr(where, "type", None), str):
        name = device(str(where)).type
        if name == "cpu":
            return
        name = repr(str(where))
    else:
        raise TypeError(f"device must be a string such as 'cpu' or a device, not "
                        f"{where.__class__.__name__}")
    raise RuntimeError(f"device {name} is not available: ckpt keeps tensors as numpy arrays in "
                       f"CPU memory; pass device='cpu' or leave device out")


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
    _check_device(device)
    if isinstance(data, Tensor):
        data = data.data
    array = np.array(data, dtype=dtype)
    if dtype is None:
        array = array.astype(_infer_dtype(array, data), copy=False)
    return Tensor(array, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """``data`` as a tensor, sharing memory with a numpy array when the dtype allows.

    >>> import numpy as np, ckpt
    >>> a = np.zeros(2); ckpt.as_tensor(a).data is a
    True
    """
    _check_device(device)
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


def _out_dtype(out, dtype, name):
    """The dtype factory ``name`` makes: ``dtype``, or ``out``'s when it writes into ``out``
    (torch's checks on ``out=``)."""
    if out is None:
        return dtype
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {out.__class__.__name__}")
    if dtype is not None and np.dtype(dtype) != out.data.dtype:
        raise RuntimeError(f"dtype {np.dtype(dtype)} does not match dtype of out parameter "
                           f"({out.data.dtype})")
    if out.requires_grad and grad_mode.is_grad_enabled():
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic "
                           f"differentiation, but one of the arguments requires grad.")
    return out.data.dtype


def _result(array, requires_grad, out):
    """A new tensor holding ``array``, or ``out`` holding it: written in place when the shapes
    agree (views of ``out`` see it), else ``out`` resized to it, as torch does; its version
    goes up."""
    if out is None:
        return Tensor(array, requires_grad=requires_grad)
    if out.data.shape == array.shape:
        np.copyto(out.data, array)
    else:
        out.data = array
    out._vc[0] += 1
    return out


def zeros(*size, dtype=None, requires_grad=False, device=None, out=None):
    """A tensor of zeros.

    >>> import ckpt
    >>> ckpt.zeros(2, 3).shape
    (2, 3)
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "zeros")
    return _result(np.zeros(_shape(size), _dtype(dtype)), requires_grad, out)


def ones(*size, dtype=None, requires_grad=False, device=None, out=None):
    """A tensor of ones.

    >>> import ckpt
    >>> ckpt.ones(2).tolist()
    [1.0, 1.0]
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "ones")
    return _result(np.ones(_shape(size), _dtype(dtype)), requires_grad, out)


def empty(*size, dtype=None, requires_grad=False, device=None, out=None):
    """An uninitialized tensor (zeros here, for determinism).

    >>> import ckpt
    >>> ckpt.empty(2).shape
    (2,)
    """
    _check_device(device)
    return zeros(*size, dtype=dtype, requires_grad=requires_grad, out=out)


def full(size, fill_value, dtype=None, requires_grad=False, device=None, out=None):
    """A tensor filled with ``fill_value``.

    >>> import ckpt
    >>> ckpt.full((2,), 7.0).tolist()
    [7.0, 7.0]
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "full")
    if dtype is None and isinstance(fill_value, (bool, int)) and not isinstance(fill_value, float):
        dtype = bool_ if isinstance(fill_value, bool) else int64
    return _result(np.full(tuple(size), fill_value, _dtype(dtype)), requires_grad, out)


def zeros_like(t, dtype=None, requires_grad=False, device=None):
    """Zeros with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.zeros_like(ckpt.ones(2)).tolist()
    [0.0, 0.0]
    """
    _check_device(device)
    return Tensor(np.zeros(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False, device=None):
    """Ones with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.ones_like(ckpt.zeros(2)).tolist()
    [1.0, 1.0]
    """
    _check_device(device)
    return Tensor(np.ones(t.shape, dtype or t.dtype), requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False, device=None):
    """``fill_value`` with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.full_like(ckpt.zeros(2), 3.0).tolist()
    [3.0, 3.0]
    """
    _check_device(device)
    return Tensor(np.full(t.shape, fill_value, dtype or t.dtype), requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None, out=None):
    """Evenly spaced values in ``[start, end)``; integers unless an argument is a float.

    >>> import ckpt
    >>> ckpt.arange(3).tolist()
    [0, 1, 2]
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "arange")
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, (int, np.integer)) for v in (start, end, step)) else _DEFAULT_FLOAT
    return _result(np.arange(start, end, step, dtype=dtype), requires_grad, out)


def linspace(start, end, steps, dtype=None, requires_grad=False, device=None, out=None):
    """``steps`` values from ``start`` to ``end`` inclusive.

    >>> import ckpt
    >>> ckpt.linspace(0, 1, 3).tolist()
    [0.0, 0.5, 1.0]
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "linspace")
    return _result(np.linspace(start, end, steps, dtype=_dtype(dtype)), requires_grad, out)


def eye(n, m=None, dtype=None, requires_grad=False, device=None, out=None):
    """The identity matrix.

    >>> import ckpt
    >>> ckpt.eye(2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "eye")
    return _result(np.eye(n, m, dtype=_dtype(dtype)), requires_grad, out)


def randn(*size, dtype=None, requires_grad=False, generator=None, device=None, out=None):
    """Standard-normal samples from ckpt's generator.

    >>> import ckpt
    >>> ckpt.randn(2, 3).shape
    (2, 3)
    """
    _check_device(device)
    dtype = _dtype(_out_dtype(out, dtype, "randn"))
    g = (generator or default_generator).numpy
    samples = g.standard_normal(_shape(size), dtype=dtype if dtype in (float32, float64) else float64)
    return _result(samples.astype(dtype, copy=False), requires_grad, out)


def rand(*size, dtype=None, requires_grad=False, generator=None, device=None, out=None):
    """Uniform samples in [0, 1) from ckpt's generator.

    >>> import ckpt
    >>> bool((ckpt.rand(5) < 1).all())
    True
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "rand")
    g = (generator or default_generator).numpy
    return _result(g.random(_shape(size), dtype=float64).astype(_dtype(dtype), copy=False),
                   requires_grad, out)


def randint(low, high=None, size=(), dtype=None, generator=None, device=None, out=None):
    """Integers in ``[low, high)`` from ckpt's generator.

    >>> import ckpt
    >>> ckpt.randint(0, 3, (4,)).shape, ckpt.randint(3, (2, 2)).shape   # (low,) high, size
    ((4,), (2, 2))
    """
    _check_device(device)
    dtype = _out_dtype(out, dtype, "randint")
    if high is None:
        low, high = 0, low
    elif isinstance(high, (tuple, list)) and size == ():   # torch's randint(high, size)
        low, high, size = 0, low, high
    g = (generator or default_generator).numpy
    return _result(g.integers(low, high, size=tuple(size), dtype=np.dtype(dtype or int64)), False, out)


def randn_like(t, dtype=None, requires_grad=False, device=None):
    """``randn`` with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.randn_like(ckpt.zeros(2, 3)).shape
    (2, 3)
    """
    _check_device(device)
    return randn(*t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def rand_like(t, dtype=None, requires_grad=False, device=None):
    """``rand`` with ``t``'s shape and dtype.

    >>> import ckpt
    >>> ckpt.rand_like(ckpt.zeros(4)).shape
    (4,)
    """
    _check_device(device)
    return rand(*t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def is_tensor(obj):
    """True for ckpt tensors.

    >>> import ckpt
    >>> ckpt.is_tensor(ckpt.ones(1)), ckpt.is_tensor([1.0])
    (True, False)
    """
    return isinstance(obj, Tensor)


def _legacy_constructor(dtype, name):
    def construct(*data_or_size):
        if len(data_or_size) == 1 and isinstance(data_or_size[0], (list, tuple, np.ndarray)):
            return tensor(data_or_size[0], dtype=dtype)
        return zeros(*data_or_size, dtype=dtype)
    construct.__name__ = construct.__qualname__ = name
    construct.__doc__ = (f"torch's legacy ``{name}(data)`` (a tensor of these values) or "
                         f"``{name}(*size)`` (zeros; torch leaves them uninitialised), {dtype}.")
    return construct


LongTensor = _legacy_constructor(int64, "LongTensor")
FloatTensor = _legacy_constructor(float32, "FloatTensor")
DoubleTensor = _legacy_constructor(float64, "DoubleTensor")
BoolTensor = _legacy_constructor(bool_, "BoolTensor")
