"""Every core op passes gradcheck and gradgradcheck in float64 (central differences), on
several shapes including broadcasting; and the checkers reject a wrong derivative rule."""
import math

import numpy as np
import pytest

import ckpt
from ckpt.autograd import Function, gradcheck, gradgradcheck
from ckpt.autograd.gradcheck import GradcheckError
from ckpt.autograd.node import Node, record

from conftest import rand_tensor


# ---- input specs ------------------------------------------------------------------------
# An input spec is a shape (standard normal values) or a callable rng -> Tensor.

def pos(*shape, low=0.5, high=2.0):
    return lambda rng: rand_tensor(shape, rng, low=low, high=high)


def away(*shape, point=0.0, margin=0.2):
    return lambda rng: rand_tensor(shape, rng, away_from=point, margin=margin)


def distinct(*shape, gap=0.05):
    """Values with no ties (pairwise gap > 2 * gradcheck's eps), for max/min/amax."""
    def make(rng):
        n = int(np.prod(shape)) if shape else 1
        vals = rng.permutation(n) * gap + rng.uniform(0, gap / 4, size=n)
        return ckpt.Tensor(vals.reshape(shape).astype(np.float64), requires_grad=True)
    return make


def _maxmin_inputs(shape_a, shape_b, gap=0.3):
    """Inputs for maximum/minimum of any two broadcastable shapes: every value of ``a`` is at
    least ~gap/2 from every value of ``b`` (no ties, so each output has one winner), and
    each input wins somewhere (both gradient branches are exercised)."""
    def make(rng):
        na, nb = int(np.prod(shape_a)), int(np.prod(shape_b))
        for _ in range(100):
            vals = (rng.permutation(na + nb) - (na + nb) / 2) * gap
            vals += rng.uniform(0, gap / 4, size=na + nb)
            a, b = vals[:na].reshape(shape_a), vals[na:].reshape(shape_b)
            a_wins = np.broadcast_arrays(a, b)[0] > np.broadcast_arrays(a, b)[1]
            if a_wins.any() and not a_wins.all():
                break
        else:
            raise AssertionError(f"no input where both operands win: {shape_a}, {shape_b}")
        return (ckpt.Tensor(a, requires_grad=True), ckpt.Tensor(b, requires_grad=True))
    return make


# ---- the op table -----------------------------------------------------------------------
# (id, function, input specs[, gradcheck kwargs])

def _setitem_slice(x, v):
    y = x * 1
    y[1:] = v
    return y


def _setitem_mask(x, v):
    y = x * 2
    y[y.detach().data > 0] = v  # v is 0-d: broadcast into the masked positions
    return y


def _setitem_int_array(x, v):
    y = x + 0
    y[[0, 2], 1:] = v
    return y


def _inplace_chain(a, b, c):
    x = a * 1
    x.mul_(b)
    x.add_(c)
    x.sub_(a)
    x.div_(c)
    x.mul_(2.0)
    return x


def _inplace_through_views(a, b):
    x = a * 1
    row = x[0]
    x[1:].mul_(b)
    x.T[0].add_(b[0] * 2)
    x.reshape(-1)[1:3].tanh_()
    return x, row * 3


def _inplace_unary(a):
    x = a * 1
    x.tanh_()
    x.exp_()
    x.sigmoid_()
    return x


def _clamp_input(rng):
    # keep every value at least 0.15 away from the clamp edges -0.5 and 0.5
    vals = rng.choice([-1.2, -0.9, -0.3, 0.0, 0.2, 0.8, 1.1], size=(3, 4))
    vals = vals + rng.uniform(-0.1, 0.1, size=vals.shape)
    return ckpt.Tensor(vals, requires_grad=True)


# Unary elementwise ops: (id, function, input maker) -- the maker keeps inputs away from
# non-differentiable points or outside the domain (None = standard normal). Each op gets a
# row per shape in _UNARY_SHAPES; (2, 3) keeps the bare id.
_UNARY = [
    ("exp", ckpt.exp, None),
    ("log", ckpt.log, pos),
    ("sqrt", ckpt.sqrt, pos),
    ("abs", ckpt.abs, away),
    ("sin", ckpt.sin, None),
    ("cos", ckpt.cos, None),
    ("tanh", ckpt.tanh, None),
    ("sigmoid", ckpt.sigmoid, None),
    ("relu", ckpt.relu, away),
    ("gelu", ckpt.gelu, None),
    ("gelu_tanh", lambda x: ckpt.gelu(x, approximate="tanh"), None),
    ("erf", ckpt.erf, None),
]
_UNARY_SHAPES = [(2, 3), (), (5,), (2, 3, 4)]


def _shape_id(shape):
    return "" if shape == (2, 3) else "_0d" if shape == () else "_" + "x".join(map(str, shape))


_UNARY_CASES = [(name + _shape_id(shape), fn, [make(*shape) if make else shape])
                for name, fn, make in _UNARY for shape in _UNARY_SHAPES]

_ROW_MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])

CASES = [
    ("neg", ckpt.neg, [(3, 4)]),
    ("neg_0d", lambda x: -x, [()]),
    ("add_bcast", ckpt.add, [(3, 4), (4,)]),
    ("add_bcast_both", ckpt.add, [(2, 1, 3), (4, 1)]),
    ("add_scalar", lambda x: x + 2.5, [(2, 3)]),
    ("radd_scalar", lambda x: 2.5 + x, [(2, 3)]),
    ("add_alpha", lambda a, b: ckpt.add(a, b, alpha=-2.0), [(3, 2), (2,)]),
    ("sub_bcast", ckpt.sub, [(3, 4), (3, 1)]),
    ("rsub", lambda x: 5.0 - x, [(4,)]),
    ("mul_bcast", ckpt.mul, [(2, 3), (3,)]),
    ("mul_0d", ckpt.mul, [(), (2, 3)]),
    ("mul_self", lambda x: x * x, [(3,)]),
    ("div_bcast", ckpt.div, [(2, 3), away(3, margin=0.5)]),
    ("rdiv", lambda x: 2.0 / x, [away(2, 3, margin=0.5)]),
    ("pow_int", lambda x: x ** 3, [(2, 3)]),
    ("pow_frac", lambda x: x ** 2.5, [pos(2, 3)]),
    ("pow_neg", lambda x: x ** -1.5, [pos(4)]),
    ("pow_zero", lambda x: x ** 0, [(3,)]),
    ("pow_tensor", ckpt.pow, [pos(3, 2), (2,)]),
    ("pow_tensor_bcast_base", ckpt.pow, [pos(2,), (3, 2)]),
    ("pow_scalar_base", lambda x: 2.0 ** x, [(2, 3)]),
    ("pow_scalar_base_fn", lambda x: ckpt.pow(1.7, x), [(4,)]),
    *_UNARY_CASES,
    ("maximum", ckpt.maximum, [_maxmin_inputs((3, 4), (4,))]),
    ("maximum_bcast_row", ckpt.maximum, [_maxmin_inputs((2, 3), (3,))]),
    ("maximum_bcast_outer", ckpt.maximum, [_maxmin_inputs((4, 1), (1, 5))]),
    ("maximum_0d", ckpt.maximum, [_maxmin_inputs((), (2, 3))]),
    ("minimum", ckpt.minimum, [_maxmin_inputs((2, 3), (2, 3))]),
    ("minimum_bcast_row", ckpt.minimum, [_maxmin_inputs((3,), (2, 3))]),
    ("minimum_bcast_outer", ckpt.minimum, [_maxmin_inputs((4, 1), (1, 5))]),
    ("minimum_bcast_3d", ckpt.minimum, [_maxmin_inputs((2, 1, 4), (3, 1))]),
    ("clamp", lambda x: ckpt.clamp(x, -0.5, 0.5), [_clamp_input]),
    ("clamp_min", lambda x: x.clamp(min=0.1), [away(3, 3, point=0.1)]),
    ("clamp_max", lambda x: x.clamp(max=-0.2), [away(3, 3, point=-0.2)]),
    ("clamp_tensor_bounds", lambda x, lo, hi: x.clamp(lo, hi), [_clamp_input, away(4, point=-0.5),
                                                                 away(3, 1, point=0.5)]),
    ("where_bcast", lambda a, b: ckpt.where(ckpt.tensor(_ROW_MASK), a, b), [(4,), (3, 1)]),
    ("where_scalar", lambda a: ckpt.where(ckpt.tensor(_ROW_MASK), a, 0.0), [(3, 4)]),
    ("where_bcast_row", lambda a, b: ckpt.where(ckpt.tensor(_ROW_MASK[:2, :3]), a, b),
     [(2, 3), (3,)]),
    ("where_bcast_outer", lambda a, b: ckpt.where(ckpt.tensor(_ROW_MASK[0, :]).unsqueeze(1), a, b),
     [(4, 1), (1, 5)]),
    ("where_bcast_cond", lambda a, b: ckpt.where(ckpt.tensor(_ROW_MASK[:, :1]), a, b),
     [(2, 1, 4), (4,)]),
    ("sum_all", ckpt.sum, [(2, 3)]),
    ("sum_dim", lambda x: x.sum(1), [(2, 3, 2)]),
    ("sum_dims_keep", lambda x: x.sum((0, 2), keepdim=True), [(2, 3, 2)]),
    ("sum_neg_dim", lambda x: x.sum(-1), [(3, 2)]),
    ("mean_all", ckpt.mean, [(2, 3)]),
    ("mean_dim", lambda x: x.mean(0), [(2, 3)]),
    ("mean_dims_keep", lambda x: x.mean((0, 1), keepdim=True), [(2, 3, 2)]),
    ("max_all", ckpt.max, [distinct(2, 3)]),
    ("min_all", ckpt.min, [distinct(2, 3)]),
    ("max_dim", lambda x: x.max(1).values, [distinct(3, 4)]),
    ("max_dim_keep", lambda x: x.max(0, keepdim=True)[0], [distinct(3, 4)]),
    ("min_dim", lambda x: x.min(-1).values, [distinct(2, 3, 2)]),
    ("amax_dim", lambda x: x.amax(1), [distinct(3, 4)]),
    ("amax_dims_keep", lambda x: ckpt.amax(x, (0, 2), keepdim=True), [distinct(2, 3, 2)]),
    ("var_all", ckpt.var, [(2, 3)]),
    ("var_dim", lambda x: x.var(1), [(3, 4)]),
    ("var_biased_keep", lambda x: x.var(0, unbiased=False, keepdim=True), [(3, 4)]),
    ("std_all", ckpt.std, [(2, 3)]),
    ("std_dim_keep", lambda x: x.std(1, keepdim=True), [(3, 4)]),
    ("logsumexp", lambda x: ckpt.logsumexp(x, 1), [(3, 4)]),
    ("logsumexp_keep", lambda x: x.logsumexp((0, 2), keepdim=True), [(2, 3, 2)]),
    ("matmul_2d", ckpt.matmul, [(3, 4), (4, 2)]),
    ("matmul_1d_1d", ckpt.matmul, [(4,), (4,)]),
    ("matmul_1d_2d", ckpt.matmul, [(3,), (3, 2)]),
    ("matmul_2d_1d", ckpt.matmul, [(2, 3), (3,)]),
    ("matmul_batched", ckpt.matmul, [(2, 3, 4), (4, 2)]),
    ("matmul_batch_bcast", ckpt.matmul, [(2, 1, 2, 3), (3, 3, 2)]),
    ("matmul_1d_3d", ckpt.matmul, [(3,), (2, 3, 2)]),
    ("matmul_3d_1d", ckpt.matmul, [(2, 2, 3), (3,)]),
    ("reshape", lambda x: x.reshape(3, 2) * x.reshape(-1, 2), [(2, 3)]),
    ("view", lambda x: x.view(6), [(2, 3)]),
    ("flatten", lambda x: x.flatten(1), [(2, 3, 2)]),
    ("transpose", lambda x: x.transpose(0, 2), [(2, 3, 2)]),
    ("permute", lambda x: x.permute(2, 0, 1), [(2, 3, 2)]),
    ("T", lambda x: x.T, [(2, 3)]),
    ("mT", lambda x: x.mT, [(2, 2, 3)]),
    ("expand", lambda x: x.expand(2, 3, 4), [(3, 1)]),
    ("expand_minus1", lambda x: x.expand(-1, 3), [(2, 1)]),
    ("squeeze_all", lambda x: x.squeeze(), [(1, 3, 1)]),
    ("squeeze_dim", lambda x: x.squeeze(2), [(2, 3, 1)]),
    ("unsqueeze", lambda x: x.unsqueeze(1), [(2, 3)]),
    ("getitem_slice", lambda x: x[1:, ::2], [(3, 4)]),
    ("getitem_int", lambda x: x[1], [(3, 4)]),
    ("getitem_int_int", lambda x: x[1, -1], [(3, 4)]),
    ("getitem_none_ellipsis", lambda x: x[None, ..., 1:3], [(2, 3, 4)]),
    ("getitem_neg_step", lambda x: x[::-1, 1], [(3, 4)]),
    ("getitem_int_array_repeats", lambda x: x[[0, 2, 0, 0]], [(3, 4)]),
    ("getitem_2_arrays", lambda x: x[np.array([0, 1, 1]), np.array([3, 3, 0])], [(3, 4)]),
    ("getitem_mixed", lambda x: x[:, [1, 1, 3]], [(3, 4)]),
    ("getitem_tensor_index", lambda x: x[ckpt.tensor([2, 2, 1])], [(3, 4)]),
    ("getitem_bool_mask", lambda x: x[_ROW_MASK], [(3, 4)]),
    ("getitem_bool_rows", lambda x: x[np.array([True, False, True])], [(3, 4)]),
    ("setitem_slice", _setitem_slice, [(3, 4), (4,)]),
    ("setitem_mask", _setitem_mask, [away(3, 4), ()]),
    ("setitem_int_array", _setitem_int_array, [(3, 4), (2, 3)]),
    ("inplace_chain", _inplace_chain, [(2, 3), (3,), pos(2, 3)]),
    ("inplace_unary", _inplace_unary, [(2, 3)]),
    ("inplace_through_views", _inplace_through_views, [(3, 4), (4,)]),
    ("cat_dim0", lambda a, b: ckpt.cat([a, b]), [(2, 3), (1, 3)]),
    ("cat_dim1", lambda a, b: ckpt.cat([a, b, a], dim=-1), [(2, 3), (2, 1)]),
    ("stack", lambda a, b: ckpt.stack([a, b], dim=1), [(2, 3), (2, 3)]),
    ("split_int", lambda x: x.split(2, dim=1), [(2, 5)]),
    ("split_sections", lambda x: ckpt.split(x, [1, 3], 0), [(4, 2)]),
    ("chunk", lambda x: x.chunk(2, -1), [(2, 3)]),
    ("unbind", lambda x: x.unbind(1), [(2, 3)]),
    ("clone", lambda x: x.clone() * x, [(2, 3)]),
    ("to_float32", lambda x: x.to(ckpt.float32).to(ckpt.float64) * 1, [(2, 3)],
     dict(eps=1e-2, atol=1e-4, rtol=1e-3)),
    ("softmax", lambda x: ckpt.softmax(x, -1), [(3, 4)]),
    ("softmax_dim0", lambda x: x.softmax(0), [(3, 4)]),
    ("log_softmax", lambda x: ckpt.log_softmax(x, 1), [(2, 3, 2)]),
    ("log_softmax_method", lambda x: x.log_softmax(-1), [(4,)]),
    ("linear", ckpt.linear, [(2, 3), (4, 3), (4,)]),
    ("composite", lambda x, w: ckpt.tanh(x @ w).sum(1).exp() / (1 + (x * x).mean()),
     [(2, 3), (3, 2)]),
]


def _make_inputs(specs, seed):
    rng = np.random.default_rng(seed)
    out = []
    for spec in specs:
        if callable(spec):
            made = spec(rng)
            out.extend(made if isinstance(made, tuple) else (made,))
        else:
            out.append(rand_tensor(spec, rng))
    return tuple(out)


def _case_params():
    for case in CASES:
        name, fn, specs = case[:3]
        kwargs = case[3] if len(case) > 3 else {}
        yield pytest.param(fn, specs, kwargs, id=name)


@pytest.mark.parametrize("fn, specs, kwargs", list(_case_params()))
def test_gradcheck(fn, specs, kwargs):
    inputs = _make_inputs(specs, seed=0)
    assert gradcheck(fn, inputs, **kwargs)


@pytest.mark.parametrize("fn, specs, kwargs", list(_case_params()))
def test_gradgradcheck(fn, specs, kwargs):
    inputs = _make_inputs(specs, seed=1)
    assert gradgradcheck(fn, inputs, **kwargs)


def test_gradcheck_covers_every_listed_op():
    """The table above exercises each op the brief lists (guards against silent removal)."""
    names = [c[0] for c in CASES]
    for op in ["neg", "add", "sub", "mul", "div", "pow", "exp", "log", "sqrt", "abs", "sin", "cos",
               "tanh", "sigmoid", "relu", "gelu", "erf", "maximum", "minimum", "clamp", "where",
               "sum", "mean", "max", "min", "amax", "var", "std", "logsumexp", "matmul", "reshape",
               "view", "flatten", "transpose", "permute", "T", "mT", "expand", "squeeze",
               "unsqueeze", "getitem", "setitem", "cat", "stack", "split", "chunk", "unbind", "to",
               "clone", "softmax", "log_softmax"]:
        assert any(n == op or n.startswith(op + "_") for n in names), op
    for name, _, _ in _UNARY:  # every unary op on every shape, incl. 0-d
        for shape in _UNARY_SHAPES:
            assert name + _shape_id(shape) in names
    for op in ["maximum", "minimum", "where"]:  # operands of different shapes
        assert sum(n.startswith(op + "_bcast") for n in names) >= 2, op


# ---- checker sanity ---------------------------------------------------------------------

def test_gradcheck_noncontiguous_input():
    """Perturbing a transposed (non-contiguous) input must reach the function."""
    base = np.random.default_rng(0).standard_normal((4, 3))
    x = ckpt.Tensor(base.T, requires_grad=True)
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda t: (t * t).sum(0), (x,))
    assert gradgradcheck(lambda t: t.sin() @ t.T, (x,))
    np.testing.assert_array_equal(x.data, base.T)  # inputs restored after perturbation


def test_gradcheck_warns_on_float32_as_torch_does():
    x = ckpt.ones(3, requires_grad=True)
    with pytest.warns(UserWarning, match="Input #0 requires gradient and is not a double"):
        assert gradcheck(ckpt.exp, (x,), eps=1e-2, atol=1e-2, rtol=1e-2)


def test_gradcheck_non_differentiable_input_is_ignored():
    x = rand_tensor((3,), np.random.default_rng(0))
    c = rand_tensor((3,), np.random.default_rng(1), requires_grad=False)
    assert gradcheck(lambda a, b: a * b.exp(), (x, c))


# ---- the checkers catch wrong rules -----------------------------------------------------

class _WrongSquare(Function):
    """x**2 whose backward forgets the factor 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ckpt.Tensor(x.data ** 2)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * x


class _RightSquareWrongSecond(_WrongSquare):
    """x**2 with a right first derivative computed from a detached copy: the gradient is
    correct but its own derivative (2) is lost, so only gradgradcheck can see it."""

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ckpt.Tensor(2 * x.data)


class _SinWrongBackward(Node):
    def vjp(self, g, x):
        return g * ckpt.sin(x)  # should be cos


def _bad_sin(x):
    return record(_SinWrongBackward, np.sin(x.data), (x,), (x,))


def test_gradcheck_fails_on_wrong_function_rule():
    x = rand_tensor((3,), np.random.default_rng(0))
    with pytest.raises(GradcheckError, match="Jacobian mismatch"):
        gradcheck(_WrongSquare.apply, (x,))
    assert gradcheck(_WrongSquare.apply, (x,), raise_exception=False) is False


def test_gradcheck_fails_on_wrong_node_rule():
    x = rand_tensor((2, 2), np.random.default_rng(0))
    with pytest.raises(GradcheckError):
        gradcheck(_bad_sin, (x,))
    assert gradcheck(_bad_sin, (x,), raise_exception=False) is False


def test_gradgradcheck_fails_where_only_second_derivative_is_wrong():
    x = rand_tensor((3,), np.random.default_rng(0))
    assert gradcheck(_RightSquareWrongSecond.apply, (x,))
    with pytest.raises(GradcheckError):
        gradgradcheck(_RightSquareWrongSecond.apply, (x,))
    assert gradgradcheck(_RightSquareWrongSecond.apply, (x,), raise_exception=False) is False


def test_gradcheck_fails_on_monkeypatched_core_rule(monkeypatch):
    from ckpt.autograd.ops import elementwise
    x = rand_tensor((2, 3), np.random.default_rng(0))
    assert gradcheck(ckpt.tanh, (x,))
    monkeypatch.setattr(elementwise.TanhBackward0, "vjp", lambda self, g, out: g * (1 + out * out))
    assert gradcheck(ckpt.tanh, (x,), raise_exception=False) is False


def test_gradgradcheck_fails_on_wrong_double_backward(monkeypatch):
    """A first derivative that is numerically right but built from non-differentiable numpy
    (so its derivative is silently zero) must fail gradgradcheck."""
    from ckpt.autograd.ops import elementwise
    x = rand_tensor((2, 3), np.random.default_rng(0))
    monkeypatch.setattr(elementwise.SinBackward0, "vjp",
                        lambda self, g, x: g * ckpt.Tensor(np.cos(x.data)))
    assert gradcheck(ckpt.sin, (x,))
    assert gradgradcheck(ckpt.sin, (x,), raise_exception=False) is False
    assert math.isfinite(x.data.sum())
