"""Elementwise math. Each op: its numpy forward, then its node with the VJP beside it.

VJPs are written with ckpt ops, so they are themselves differentiable (double backward,
Hessians). Broadcasting is undone by the engine, not here.
"""
import math

import numpy as np

from ..node import Node, OUTPUT, record
from ..tensor import Tensor, _scalar_name, _wrap
from .out_arg import into_out
from ._util import chunked, data_of, for_jvp, saved_tensor, shape_error, total as _total


_F64, _F32 = np.dtype(np.float64), np.dtype(np.float32)


class _Elementwise(Node):
    """Elementwise ops broadcast, so their rules take batched gradients/tangents as they are."""
    _batched_rule = True
    _elementwise = True


class _DiagonalOfInput(_Elementwise):
    """A unary elementwise op whose VJP reads its input: the Jacobian is diagonal, so the
    JVP is the same product with the tangent in place of the gradient."""

    def jvp(self, tangents, primals, out):
        return self.vjp(tangents[0], primals[0])


class _DiagonalOfOutput(_Elementwise):
    """As ``_DiagonalOfInput``, for an op whose VJP reads its output."""

    def jvp(self, tangents, primals, out):
        return self.vjp(tangents[0], out)


class _PerInputDiagonal(_Elementwise):
    """An elementwise op of several inputs whose VJP reads exactly its inputs: each input's
    Jacobian block is diagonal, so the JVP sums the VJP's per-input products, taken with
    each tangent in place of the gradient."""

    def jvp(self, tangents, primals, out):
        return _total(*(None if t is None else self.vjp(t, *primals)[i]
                        for i, t in enumerate(tangents)))


def _binary(op_name, fn, a, b):
    a_data = a._data if a.__class__ is Tensor else a
    b_data = (b._data if b.__class__ is Tensor else b if b.__class__ is np.ndarray
              else _number_operand(b, a_data))
    if a_data is a:
        a_data = _number_operand(a, b_data)
    try:
        out = fn(a_data, b_data)
    except ValueError as error:
        raise _value_error(op_name, error, data_of(a), data_of(b)) from None
    return _torch_promotion(out, a, b) if out.dtype is _F64 else out


def _number_operand(x, other):
    """``x``, or for a Python number beside a float32/float64 array a 0-d array of that dtype
    holding the same value numpy's weak-scalar rule would cast it to: numpy takes ~450 ns
    longer to convert the Python number itself (30% of a 16x16 product; 2026-12-06).

    >>> import numpy as np
    >>> _number_operand(1.5, np.ones(2, np.float32)).dtype, _number_operand(1.5, 2.0)
    (dtype('float32'), 1.5)
    """
    cls = x.__class__
    if (cls is not float and cls is not int) or other.__class__ is not np.ndarray:
        return x
    dtype = other.dtype
    cache = _F32_NUMBERS if dtype is _F32 else _F64_NUMBERS if dtype is _F64 else None
    if cache is None or not x or not -_EXACT < x < _EXACT:   # (zeros: 0.0 == -0.0 as keys)
        return x
    array = cache.get(x)
    if array is None:
        if len(cache) >= 256:
            cache.clear()
        array = cache[x] = np.array(x, other.dtype)
    return array


# per dtype, the 0-d arrays of the Python numbers seen; numbers of magnitude up to _EXACT
# convert without overflow (and ints exactly)
_F32_NUMBERS, _F64_NUMBERS = {}, {}
_EXACT = 2.0 ** 24
# 1 per float dtype, for ``_ONE.get(x.dtype, 1) - x`` in the tanh and sigmoid rules: numpy
# takes 0.69 µs for ``one - x`` on a 16x16 array against 1.08 µs for ``1 - x``
_ONE = {_F32: np.array(1, _F32), _F64: np.array(1, _F64)}


def _value_error(op_name, error, a, b):
    """numpy's ValueError as torch's RuntimeError: shapes that don't broadcast are named;
    anything else (an integer to a negative integer power) keeps numpy's words."""
    try:
        np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        return shape_error(op_name, a, b)
    return RuntimeError(f"{op_name}: {error}")


def _torch_promotion(out, a, b):
    """numpy gave float64; torch keeps float64 only if a float64 operand has priority:
    tensors with dims over 0-d tensors over Python/numpy numbers, and an int result of a
    float number or true division is float32 (torch's default). ``arange(3) * 0.5``,
    ``int64 + float32`` and ``float32 * float64 0-d`` are float32, as in torch."""
    arrays = [x for x in (a.data if a.__class__ is Tensor else a, b.data if b.__class__ is Tensor else b)
              if isinstance(x, np.ndarray)]
    for group in ([x for x in arrays if x.ndim] or arrays, arrays):
        floats = [x.dtype for x in group if x.dtype.kind == "f"]
        if floats:
            dtype = max(floats, key=lambda d: d.itemsize)
            return out if dtype == _F64 else out.astype(dtype)
    return out.astype(_F32)


class AddBackward0(_Elementwise):
    def vjp(self, g):
        return g, g

    def jvp(self, tangents, primals, out):
        return _total(*tangents)


def add(a, b, alpha=1, *, out=None):
    """``a + alpha * b`` with broadcasting (into ``out`` if given).

    >>> import ckpt
    >>> ckpt.add(ckpt.tensor([1.0, 2.0]), 10).tolist()
    [11.0, 12.0]
    """
    if out is not None:
        return into_out("add", add, (a, b, alpha), out)
    if alpha != 1:
        b = mul(b, alpha) if b.__class__ is Tensor else data_of(b) * alpha
    return record(AddBackward0, _binary("add", np.add, a, b), (a, b))


class SubBackward0(_Elementwise):
    def vjp(self, g):
        # -g only for a subtrahend that needs it (``pred - target`` is the common case)
        return g, (None if self.next_functions[1][0] is None else -g)

    def jvp(self, tangents, primals, out):
        ta, tb = tangents
        return _total(ta, None if tb is None else -tb)


def sub(a, b):
    """``a - b`` with broadcasting.

    >>> import ckpt
    >>> ckpt.sub(ckpt.tensor([1.0, 2.0]), 1).tolist()
    [0.0, 1.0]
    """
    return record(SubBackward0 if a.__class__ is Tensor else RsubBackward1,
                  _binary("sub", np.subtract, a, b), (a, b))


class RsubBackward1(SubBackward0):
    """``number - x``."""


def _needs_grad(x):
    return x.__class__ is Tensor and x.requires_grad


class MulBackward0(_PerInputDiagonal):
    """Saves each factor only if the other one needs a gradient (as torch does)."""
    _saved_names = ("self", "other")

    def vjp(self, g, a, b):
        return (None if b is None else g * b), (None if a is None else g * a)


def mul(a, b, *, out=None):
    """``a * b`` with broadcasting (into ``out`` if given).

    >>> import ckpt
    >>> ckpt.mul(ckpt.tensor([1.0, 2.0]), ckpt.tensor([3.0])).tolist()
    [3.0, 6.0]
    """
    if out is not None:
        return into_out("mul", mul, (a, b), out)
    if b.__class__ is not Tensor and a.__class__ is Tensor:  # a number saved as numpy likes it
        b = _number_operand(b, a._data)
    # (_needs_grad inline: the two calls cost 1% of the 300-op chain's forward)
    return record(MulBackward0, _binary("mul", np.multiply, a, b), (a, b),
                  (a if b.__class__ is Tensor and b.requires_grad else None,
                   b if a.__class__ is Tensor and a.requires_grad else None))


class DivBackward0(_PerInputDiagonal):
    """Saves the numerator only if the denominator needs a gradient."""
    _saved_names = ("self", "other")

    def vjp(self, g, a, b):
        ga = g / b
        return ga, (None if a is None else -ga * a / b)


def div(a, b):
    """``a / b`` (true division) with broadcasting.

    >>> import ckpt
    >>> ckpt.div(ckpt.tensor([1.0, 3.0]), 2).tolist()
    [0.5, 1.5]
    """
    if (b.__class__ is int or b.__class__ is float) and not b:  # inf/nan as torch: no warning
        with np.errstate(divide="ignore", invalid="ignore"):
            out = _binary("div", np.true_divide, a, b)
    else:
        out = _binary("div", np.true_divide, a, b)
    return record(DivBackward0, out, (a, b),
                  (a if _needs_grad(b) else None, b))


class PowBackward0(_DiagonalOfInput):
    """Tensor base, number exponent."""
    _saved_names = ("self",)

    def vjp(self, g, x):
        e = self.exponent
        if e == 0:
            return g * 0.0
        return g * e * (x if e == 2 else x ** (e - 1))


class PowBackward1(_Elementwise):
    """Tensor base and tensor exponent (either may be a number)."""

    def vjp(self, g, base, exponent, out):
        return (_pow_d_base(g, base, exponent) if self.base_grad else None,
                _pow_d_exponent(g, base, exponent, out) if self.exponent_grad else None)

    def jvp(self, tangents, primals, out):
        (t_base, t_exp), (base, exponent) = tangents, primals
        return _total(None if t_base is None else _pow_d_base(t_base, base, exponent),
                      None if t_exp is None else _pow_d_exponent(t_exp, base, exponent, out))


class PowBackward2(PowBackward1):
    """``number ** x``."""


def _pow_d_base(g, base, exponent):
    """``g * d(base ** exponent)/d base``; 0 where the exponent is 0 (even at base 0), as torch."""
    return where(data_of(exponent) == 0, 0.0, g * exponent * base ** (exponent - 1))


def _pow_d_exponent(g, base, exponent, out):
    """``g * d(base ** exponent)/d exponent = g * out * log(base)``; 0 at base 0, as torch."""
    if isinstance(base, (Tensor, np.ndarray)):
        return where((data_of(base) == 0) & (data_of(exponent) >= 0), 0.0, g * out * log(base))
    if base == 0:   # log(0) = -inf, as torch: -inf for a negative exponent
        return where(data_of(exponent) >= 0, 0.0, g * out * -math.inf)
    return g * out * (math.log(base) if base > 0 else math.nan)


def pow(base, exponent):
    """``base ** exponent`` with broadcasting.

    >>> import ckpt
    >>> ckpt.pow(ckpt.tensor([2.0, 3.0]), 2).tolist()
    [4.0, 9.0]
    """
    if exponent.__class__ is not Tensor and base.__class__ is Tensor:
        d = base.data
        try:  # ndarray's ** squares, roots, inverts without pow(); it would square bool to int8
            out = d ** exponent if d.dtype.kind != "b" else np.power(d, exponent)
        except ValueError as error:
            raise _value_error("pow", error, d, exponent) from None
        if out.dtype is _F64:
            out = _torch_promotion(out, base, exponent)
        return record(PowBackward0, out, (base,), (base,), exponent=exponent)
    out = _binary("pow", np.power, base, exponent)
    base_grad = isinstance(base, Tensor) and base.requires_grad
    exp_grad = isinstance(exponent, Tensor) and exponent.requires_grad
    return record(PowBackward1 if isinstance(base, Tensor) else PowBackward2, out,
                  (base, exponent), (base, exponent, OUTPUT), base_grad=base_grad,
                  exponent_grad=exp_grad)


class _DiagonalOfNothing(_Elementwise):
    """As ``_DiagonalOfInput``, for an op whose VJP reads nothing saved."""

    def jvp(self, tangents, primals, out):
        return self.vjp(tangents[0])


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf_np(a):
    a = np.asarray(a)
    return np.asarray(_erf_scalar(a)).astype(a.dtype if a.dtype.kind == "f" else np.float64)  # 0-d: a float


def _zeros_like(g):
    """A zero gradient shaped as ``g`` (batch dims included), an array or a Tensor as ``g``
    is: not differentiable, as torch's ``zeros_like(grad)`` in a rule."""
    zeros = np.zeros_like(data_of(g))
    return zeros if g.__class__ is np.ndarray else _wrap(zeros)


def _sign_np(a):
    """-1, 0 or 1 as torch's sign gives them: 0 (not NaN) for NaN, +0 for -0; bools as they are."""
    if a.dtype == np.bool_:
        return a.copy()
    if a.dtype.kind == "c":
        raise NotImplementedError("Unlike NumPy, torch.sign is not intended to support complex "
                                  "numbers. Please use torch.sgn instead.")
    return np.subtract(a > 0, a < 0, dtype=a.dtype)


# The unary ops whose rule is one line: the gradient ``g`` times the derivative, read from
# the input ``x`` or the output ``out``. Each Jacobian is diagonal, so the same rule with the
# tangent in place of ``g`` is the JVP. Rules use ckpt ops, so they differentiate again.
_UNARY_RULES = {
    # name: (numpy forward,        reads,  rule)
    "neg": (np.negative,           None,  lambda g: -g),
    "exp": (np.exp,                "out", lambda g, out: g * out),
    "log": (np.log,                "x",   lambda g, x: g / x),
    "sqrt": (np.sqrt,              "out", lambda g, out: g / (2 * out)),
    "abs": (np.abs,                "x",   lambda g, x: g * np.sign(data_of(x))),
    "sin": (np.sin,                "x",   lambda g, x: g * cos(x)),
    "cos": (np.cos,                "x",   lambda g, x: -g * sin(x)),
    "tanh": (np.tanh,              "out", lambda g, out: g * (_ONE.get(out.dtype, 1) - out * out)),
    "erf": (_erf_np,               "x",   lambda g, x: g * (2 / math.sqrt(math.pi)) * exp(-(x * x))),
    "sign": (_sign_np,             None,  lambda g: _zeros_like(g)),
}

# name: (what it computes, an example call, its result)
_UNARY_DOCS = {
    "neg": ("``-x``.", "ckpt.neg(ckpt.tensor([1.0, -2.0])).tolist()", "[-1.0, 2.0]"),
    "exp": ("``e ** x``.", "ckpt.exp(ckpt.tensor([0.0])).tolist()", "[1.0]"),
    "log": ("Natural logarithm.", "ckpt.log(ckpt.tensor([1.0])).tolist()", "[0.0]"),
    "sqrt": ("Square root.", "ckpt.sqrt(ckpt.tensor([4.0])).tolist()", "[2.0]"),
    "abs": ("Absolute value (gradient ``sign(x)``, 0 at 0 as in torch).",
            "ckpt.abs(ckpt.tensor([-2.0])).tolist()", "[2.0]"),
    "sin": ("Sine.", "ckpt.sin(ckpt.tensor([0.0])).tolist()", "[0.0]"),
    "cos": ("Cosine.", "ckpt.cos(ckpt.tensor([0.0])).tolist()", "[1.0]"),
    "tanh": ("Hyperbolic tangent.", "ckpt.tanh(ckpt.tensor([0.0])).tolist()", "[0.0]"),
    "erf": ("The error function.", "round(ckpt.erf(ckpt.tensor([1.0])).item(), 4)", "0.8427"),
    "sign": ("Sign of each element (its gradient is 0, even where ``g`` is NaN, as in torch).",
             "ckpt.sign(ckpt.tensor([-3.0, 0.0, 2.0])).tolist()", "[-1.0, 0.0, 1.0]"),
}


def _unary_op(name, forward, reads, rule):
    """The op ``name`` and its node class ``<Name>Backward0`` from one row of the table."""
    node_base = {None: _DiagonalOfNothing, "x": _DiagonalOfInput, "out": _DiagonalOfOutput}[reads]
    node_cls = type(f"{name.capitalize()}Backward0", (node_base,),
                    {"vjp": staticmethod(rule), "__module__": __name__,
                     "_saved_names": {None: (), "x": ("self",), "out": ("result",)}[reads]})
    saves_output = (OUTPUT,) if reads == "out" else ()

    def op(x):
        if x.__class__ is not Tensor:  # arrays in, arrays out (array rules)
            return forward(x)
        return record(node_cls, forward(x._data), (x,), (x,) if reads == "x" else saves_output)

    summary, example, result = _UNARY_DOCS[name]
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"{summary}\n\n    >>> import ckpt\n    >>> {example}\n    {result}\n    "
    return op, node_cls


neg, NegBackward0 = _unary_op("neg", *_UNARY_RULES["neg"])
exp, ExpBackward0 = _unary_op("exp", *_UNARY_RULES["exp"])
log, LogBackward0 = _unary_op("log", *_UNARY_RULES["log"])
sqrt, SqrtBackward0 = _unary_op("sqrt", *_UNARY_RULES["sqrt"])
abs, AbsBackward0 = _unary_op("abs", *_UNARY_RULES["abs"])
sin, SinBackward0 = _unary_op("sin", *_UNARY_RULES["sin"])
cos, CosBackward0 = _unary_op("cos", *_UNARY_RULES["cos"])
tanh, TanhBackward0 = _unary_op("tanh", *_UNARY_RULES["tanh"])
erf, ErfBackward0 = _unary_op("erf", *_UNARY_RULES["erf"])
sign, SignBackward0 = _unary_op("sign", *_UNARY_RULES["sign"])


class SigmoidBackward0(_DiagonalOfOutput):
    _saved_names = ("result",)

    def vjp(self, g, out):
        return g * out * (_ONE.get(out.dtype, 1) - out)


def sigmoid(x):
    """Logistic sigmoid ``1 / (1 + e^-x)``.

    >>> import ckpt
    >>> ckpt.sigmoid(ckpt.tensor([0.0])).tolist()
    [0.5]
    """
    d = x._data
    # Clipping keeps e^-x finite (no overflow warning); below the clip the true value is
    # under 2e-35 (float32) / 1e-304 (float64), which the clipped result matches in absolute terms.
    dtype = d.dtype
    floor, one = (_SIGMOID_F32 if dtype is _F32 else _SIGMOID_F64 if dtype is _F64 else
                  (-80.0 if dtype.itemsize <= 4 else -700.0, 1))
    t = np.maximum(d, floor)
    if t.__class__ is not np.ndarray:  # 0-d: a scalar
        t = np.asarray(t)
    # (``out`` given by position: numpy parses ``out=`` ~600 instructions slower a call)
    np.negative(t, t)
    np.exp(t, t)
    np.add(t, one, t)
    np.reciprocal(t, t)
    return record(SigmoidBackward0, t, (x,), (OUTPUT,))


# 0-d arrays of the input's dtype: numpy converts Python numbers slowly (sigmoid 30% faster)
_SIGMOID_F32 = np.array(-80.0, _F32), np.array(1.0, _F32)
_SIGMOID_F64 = np.array(-700.0, _F64), np.array(1.0, _F64)


class ReluBackward0(_DiagonalOfOutput):
    _saved_names = ("result",)

    def vjp(self, g, out):
        return threshold_backward(g, out)


class ThresholdBackwardBackward0(_Elementwise):
    """relu's rule recorded as an op (a ``create_graph`` pass), as torch records it: its
    gradient reaches ``g`` selected alike, and relu's output as zeros."""
    _saved_names = ("self",)

    def vjp(self, gg, out):
        return threshold_backward(gg, out), _zeros_like(gg)

    def jvp(self, tangents, primals, out):
        return None if tangents[0] is None else threshold_backward(tangents[0], primals[1])


def threshold_backward(g, out):
    """relu's gradient: ``g`` where relu's output ``out`` is not 0 (positive, or NaN), else
    0; for a Tensor ``g`` a recorded op, differentiable again, as torch's.

    >>> import ckpt
    >>> threshold_backward(ckpt.tensor([5.0, 5.0]), ckpt.tensor([0.0, 2.0])).tolist()
    [0.0, 5.0]
    """
    o = data_of(out)
    if g.__class__ is np.ndarray:
        return chunked(_relu_grad, g.dtype, g, o)
    return record(ThresholdBackwardBackward0, _relu_grad(None, g._data, o), (g, out), (out,))


def _relu_grad(res, g, o):
    """``g`` where relu's output ``o`` is not 0 (it is positive, or NaN), and 0 where it is,
    as torch's ``threshold_backward`` selects: ``g``'s bits times the 0/1 mask, in integers
    (a float product would turn an infinite ``g`` at a dead unit into NaN), as fast as the
    float product (``np.where`` takes 3.5x as long at 64x512, float32)."""
    words = _WORDS.get(g.dtype)
    if words is None:                       # (no integer as wide: float128)
        res = np.zeros_like(g) if res is None else res
        np.copyto(res, 0)
        np.copyto(res, g, where=o != 0)
        return res
    chosen = np.multiply(g.view(words), o != 0, out=None if res is None else res.view(words))
    return chosen.view(g.dtype) if res is None else res


_WORDS = {np.dtype(t): np.dtype(f"i{np.dtype(t).itemsize}") for t in (np.float16, np.float32, np.float64)}


def relu(x):
    """``max(x, 0)``; gradient 0 at 0, as in torch.

    >>> import ckpt
    >>> ckpt.relu(ckpt.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return record(ReluBackward0, np.maximum(x._data, 0), (x,), (OUTPUT,))


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


class GeluBackward0(_DiagonalOfInput):
    def vjp(self, g, x):
        if self.approximate == "tanh":
            u = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
            t = tanh(u)
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
        cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
        pdf = _INV_SQRT_2PI * exp(-0.5 * x * x)
        return g * (cdf + x * pdf)


def gelu(x, approximate="none"):
    """Gaussian error linear unit ``x * Phi(x)``; ``approximate='tanh'`` uses the tanh form.

    >>> import ckpt
    >>> ckpt.gelu(ckpt.tensor([0.0])).tolist()
    [0.0]
    """
    d = x.data
    if approximate == "tanh":
        out = 0.5 * d * (1 + np.tanh(_SQRT_2_OVER_PI * (d + 0.044715 * d ** 3)))
    elif approximate == "none":
        out = d * 0.5 * (1 + _erf_np(d / math.sqrt(2)))
    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return record(GeluBackward0, out.astype(d.dtype, copy=False), (x,), (x,), approximate=approximate)


def _tie_split(g, da, db):
    """Gradients of maximum(a, b): to the larger input, half each on ties."""
    tie = (da == db).astype(g.dtype) * 0.5
    return g * ((da > db) + tie), g * ((db > da) + tie)


class MaximumBackward0(_PerInputDiagonal):
    def vjp(self, g, a, b):
        return _tie_split(g, data_of(a), data_of(b))


def maximum(a, b):
    """Elementwise maximum; ties split the gradient evenly, as in torch.

    >>> import ckpt
    >>> ckpt.maximum(ckpt.tensor([1.0, 5.0]), ckpt.tensor([3.0, 2.0])).tolist()
    [3.0, 5.0]
    """
    return record(MaximumBackward0, _binary("maximum", np.maximum, a, b), (a, b), (a, b))


class MinimumBackward0(_PerInputDiagonal):
    def vjp(self, g, a, b):
        gb, ga = _tie_split(g, data_of(a), data_of(b))
        return ga, gb


def minimum(a, b):
    """Elementwise minimum; ties split the gradient evenly, as in torch.

    >>> import ckpt
    >>> ckpt.minimum(ckpt.tensor([1.0, 5.0]), ckpt.tensor([3.0, 2.0])).tolist()
    [1.0, 2.0]
    """
    return record(MinimumBackward0, _binary("minimum", np.minimum, a, b), (a, b), (a, b))


class ClampBackward1(_DiagonalOfInput):
    def vjp(self, g, x):
        d = data_of(x)
        mask = np.ones(d.shape, dtype=bool)
        if self.min is not None:
            mask &= d >= data_of(self.min)
        if self.max is not None:
            mask &= d <= data_of(self.max)
        return g * mask


class ClampBackward0(_PerInputDiagonal):
    """Tensor bounds: the gradient goes to whichever of ``x``, ``min``, ``max`` the output
    took its value from (torch's rule; where ``min > max``, ``max`` wins)."""

    def vjp(self, g, x, lo, hi):
        d = data_of(x)
        lo_d = None if lo is None else data_of(lo)
        hi_d = None if hi is None else data_of(hi)
        to_x, to_lo, to_hi = True, None, None
        if lo_d is not None:
            to_x = d >= lo_d
            to_lo = d < lo_d if hi_d is None else (d < lo_d) & (lo_d < hi_d)
        if hi_d is not None:
            to_x = to_x & (d <= hi_d)
            to_hi = d > hi_d if lo_d is None else (d > hi_d) | (hi_d < lo_d)
        return g * to_x, None if to_lo is None else g * to_lo, None if to_hi is None else g * to_hi


def clamp(x, min=None, max=None):
    """Limit ``x`` to ``[min, max]``; the gradient passes where ``min <= x <= max``.
    Tensor bounds broadcast and get their share of the gradient, as in torch.

    >>> import ckpt
    >>> ckpt.clamp(ckpt.tensor([-2.0, 0.5, 3.0]), -1, 1).tolist()
    [-1.0, 0.5, 1.0]
    """
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    out = x.data
    for bound, fn in ((min, np.maximum), (max, np.minimum)):
        if bound is not None:
            try:
                out = fn(out, data_of(bound))
            except ValueError:
                raise shape_error("clamp", out, data_of(bound)) from None
    out = out.astype(x.data.dtype, copy=False)
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        return record(ClampBackward0, out, (x, min, max), (x, min, max))
    return record(ClampBackward1, out, (x,), (x,), min=min, max=max)


class WhereBackward0(_Elementwise):
    def vjp(self, g, condition):
        return None, where(condition, g, 0.0), where(condition, 0.0, g)

    def jvp(self, tangents, primals, out):
        _, ta, tb = tangents
        return where(self.condition, 0.0 if ta is None else ta, 0.0 if tb is None else tb)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b`` (broadcasting all three).

    >>> import ckpt
    >>> ckpt.where(ckpt.tensor([True, False]), ckpt.tensor([1.0, 2.0]), 0.0).tolist()
    [1.0, 0.0]
    """
    c = np.asarray(data_of(condition), dtype=bool)
    try:
        out = np.where(c, data_of(a), data_of(b))
    except ValueError:
        raise shape_error("where", data_of(a), data_of(b)) from None
    if a.__class__ is not Tensor and b.__class__ is not Tensor:
        return out
    ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if ref is not None and out.dtype != ref.data.dtype and not (isinstance(a, Tensor) and isinstance(b, Tensor)):
        out = out.astype(ref.data.dtype)
    return record(WhereBackward0, out, (None, a, b), (saved_tensor(condition),), **for_jvp(condition=c))


def _comparison(fn):
    def compare(a, b):
        return _wrap(np.asarray(fn(data_of(a), data_of(b))))
    compare.__name__ = fn.__name__
    compare.__doc__ = f"Elementwise ``{fn.__name__}`` as a bool tensor (not differentiable)."
    return compare


eq, ne, lt, le, gt, ge = (_comparison(f) for f in (np.equal, np.not_equal, np.less, np.less_equal,
                                                    np.greater, np.greater_equal))



def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``|input - other| <= atol + rtol * |other|`` elementwise, as a bool tensor (not
    differentiable); both must be Tensors of one dtype, as in torch.

    >>> import ckpt
    >>> ckpt.isclose(ckpt.tensor([1.0, 2.0]), ckpt.tensor([1.0 + 1e-9, 2.1])).tolist()
    [True, False]
    """
    return _wrap(_close_mask("isclose", input, other, rtol, atol, equal_nan))


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether ``isclose`` holds everywhere (a Python bool).

    >>> import ckpt
    >>> ckpt.allclose(ckpt.ones(2), ckpt.ones(2) + 1e-9)
    True
    """
    return bool(_close_mask("allclose", input, other, rtol, atol, equal_nan).all())


def _close_mask(op_name, input, other, rtol, atol, equal_nan):
    """``isclose``'s bool array, after torch's checks of the arguments."""
    for position, (name, value) in enumerate((("input", input), ("other", other)), 1):
        if not isinstance(value, Tensor):
            raise TypeError(f"{op_name}(): argument '{name}' (position {position}) must be "
                            f"Tensor, not {type(value).__name__}")
    a, b = input.data, other.data
    if a.dtype != b.dtype:
        raise RuntimeError(f"{_scalar_name(a.dtype)} did not match {_scalar_name(b.dtype)}")
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        dim = next(-k for k in range(1, min(a.ndim, b.ndim) + 1)
                   if a.shape[-k] != b.shape[-k] and 1 not in (a.shape[-k], b.shape[-k]))
        raise RuntimeError(f"The size of tensor a ({a.shape[dim]}) must match the size of tensor "
                           f"b ({b.shape[dim]}) at non-singleton dimension {a.ndim + dim}") from None
    if a.dtype.kind in "biu":
        a, b = a.astype(np.float64), b.astype(np.float64)
    return np.asarray(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def logical_not(x):
    """``not x`` elementwise, as a bool tensor (not differentiable).

    >>> import ckpt
    >>> ckpt.logical_not(ckpt.tensor([True, False])).tolist()
    [False, True]
    """
    return _wrap(np.logical_not(data_of(x)))


def isin(elements, test_elements, *, assume_unique=False, invert=False):
    """Whether each element is among ``test_elements`` (either may be a number), as a bool
    tensor (not differentiable); ``invert`` negates it.

    >>> import ckpt
    >>> ckpt.isin(ckpt.tensor([1, 2, 3]), ckpt.tensor([2, 3])).tolist()
    [False, True, True]
    """
    if not (isinstance(elements, Tensor) or isinstance(test_elements, Tensor)):
        raise TypeError(f"isin() received an invalid combination of arguments - got "
                        f"({type(elements).__name__}, {type(test_elements).__name__})")
    return _wrap(np.isin(data_of(elements), data_of(test_elements), invert=invert))


def signbit(x):
    """Whether each element's sign bit is set (``-0.0`` and negative NaNs included), as a
    bool tensor (not differentiable).

    >>> import ckpt
    >>> ckpt.signbit(ckpt.tensor([-0.0, 0.0, -2.0])).tolist()
    [True, False, True]
    """
    return _wrap(np.signbit(data_of(x)))


def bitwise_not(x):
    """``~x``: the negation of a bool tensor, the bitwise not of an integer one (not
    differentiable; as in torch, floats have none).

    >>> import ckpt
    >>> (~ckpt.tensor([True, False])).tolist(), (~ckpt.tensor([0, 5])).tolist()
    ([False, True], [-1, -6])
    """
    d = data_of(x)
    if d.dtype.kind not in "biu":
        raise RuntimeError(f"bitwise_not: defined for bool and integer tensors, got {d.dtype}; "
                           f"for a float mask use logical_not or x == 0")
    return _wrap(np.invert(d))
