"""Differential tests: forward values and gradients (including un-broadcast gradients) equal
torch's on hypothesis-generated shapes; float64 tight, float32 at rtol 1e-5."""
import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st
from hypothesis.extra import numpy as hnp

import ckpt

from conftest import assert_close, to_torch

DTYPES = [np.float64, np.float32]
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}

seeds = st.integers(0, 2**32 - 1)
pair_shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=4)
any_shape = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)
nonscalar_shape = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)


def run_both(ck_fn, th_fn, arrays, dtype, rng, requires_grad=None):
    """Run ``ck_fn`` on ckpt leaves and ``th_fn`` on torch leaves built from ``arrays``; check
    the outputs, then backpropagate one random cotangent per output and check every grad."""
    dtype = np.dtype(dtype)
    requires_grad = requires_grad or [True] * len(arrays)
    ck_in = [ckpt.Tensor(np.asarray(a, dtype=dtype), requires_grad=r) for a, r in zip(arrays, requires_grad)]
    th_in = [to_torch(t) for t in ck_in]
    ck_out, th_out = ck_fn(*ck_in), th_fn(*th_in)
    ck_outs = ck_out if isinstance(ck_out, (tuple, list)) else (ck_out,)
    th_outs = th_out if isinstance(th_out, (tuple, list)) else (th_out,)
    assert len(ck_outs) == len(th_outs)
    for i, (c, t) in enumerate(zip(ck_outs, th_outs)):
        assert_close(c, t, dtype, what=f"output {i}")
        assert c.dtype == dtype, f"output {i} dtype {c.dtype} != {dtype}"
        assert c.requires_grad == t.requires_grad
    diff = [(c, t) for c, t in zip(ck_outs, th_outs) if t.requires_grad]
    if not diff:
        return ck_in, th_in
    cots = [rng.standard_normal(t.shape).astype(dtype) for _, t in diff]
    ckpt.autograd.backward([c for c, _ in diff], [ckpt.Tensor(g) for g in cots])
    torch.autograd.backward([t for _, t in diff], [torch.from_numpy(g) for g in cots])
    for i, (c, t) in enumerate(zip(ck_in, th_in)):
        if t.requires_grad and t.grad is None:  # unused input
            assert c.grad is None, f"input {i} got a gradient torch does not give"
        elif t.requires_grad:
            assert c.grad is not None, f"input {i} got no gradient"
            assert_close(c.grad, t.grad, dtype, what=f"grad of input {i}")
            assert c.grad.dtype == dtype
            assert c.grad.shape == c.shape  # un-broadcast back to the input's shape
    return ck_in, th_in


# ---- binary elementwise with broadcasting ------------------------------------------------

def _pos(a):
    return np.abs(a) + 0.5


def _away0(a):
    return np.where(a >= 0, a + 0.5, a - 0.5)


BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, None, None),
    "add_alpha": (lambda a, b: ckpt.add(a, b, alpha=0.5), lambda a, b: torch.add(a, b, alpha=0.5),
                  None, None),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, None, None),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, None, None),
    "div": (lambda a, b: a / b, lambda a, b: a / b, None, _away0),
    "pow": (lambda a, b: a ** b, lambda a, b: a ** b, _pos, None),
    "maximum": (ckpt.maximum, torch.maximum, None, None),
    "minimum": (ckpt.minimum, torch.minimum, None, None),
    "max_binary": (ckpt.max, torch.max, None, None),
    "matmul_as_mul_sum": (lambda a, b: (a * b).sum(), lambda a, b: (a * b).sum(), None, None),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(BINARY))
@given(shapes=pair_shapes, seed=seeds)
def test_binary_broadcast(name, dtype, shapes, seed):
    ck_fn, th_fn, tf_a, tf_b = BINARY[name]
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    a = tf_a(a) if tf_a else a
    b = tf_b(b) if tf_b else b
    run_both(ck_fn, th_fn, [a, b], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=seeds)
def test_where_broadcast(dtype, shapes, seed):
    rng = np.random.default_rng(seed)
    sc, sa, sb = shapes.input_shapes
    cond = rng.random(sc) > 0.5
    run_both(lambda a, b: ckpt.where(ckpt.tensor(cond), a, b),
             lambda a, b: torch.where(torch.from_numpy(np.array(cond)), a, b),
             [rng.standard_normal(sa), rng.standard_normal(sb)], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shapes=pair_shapes, seed=seeds)
def test_one_side_requires_grad(dtype, shapes, seed):
    """Only the input that requires grad gets a (correctly un-broadcast) gradient."""
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    ck_in, _ = run_both(lambda a, b: a * b + b, lambda a, b: a * b + b,
                        [rng.standard_normal(sa), rng.standard_normal(sb)], dtype, rng,
                        requires_grad=[False, True])
    assert ck_in[0].grad is None


PROMOTION_CASES = [
    "lib.arange(3) * 0.5", "lib.arange(3) / 2", "lib.arange(3) / lib.arange(1, 4)",
    "lib.ones(2) * lib.tensor(2.0, dtype=lib.float64)", "lib.ones(2, dtype=lib.float64) + lib.ones(2)",
    "lib.arange(3) + lib.ones(3)", "lib.ones(2) ** 2", "2 ** lib.arange(3)", "0.5 ** lib.arange(3)",
    "lib.arange(3) ** 0.5", "lib.tensor(1.0, dtype=lib.float64) * lib.tensor(2.0)",
    "lib.arange(3) * lib.tensor(2.0, dtype=lib.float64)", "lib.ones(2, dtype=lib.float64) * 2.0",
    "lib.maximum(lib.arange(3), lib.ones(3))", "1.5 - lib.arange(3)", "lib.arange(3) - 1",
    "lib.arange(3, dtype=lib.int32) * 2.5", "lib.ones(2, dtype=lib.float16) * 2.5",
]


@pytest.mark.parametrize("expr", PROMOTION_CASES)
def test_type_promotion_and_values_match_torch(expr):
    ours, theirs = eval(expr, {"lib": ckpt}), eval(expr, {"lib": torch})
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_allclose(ours.data, theirs.numpy(), rtol=1e-3)


def test_mixed_dtype_gradients_keep_each_leaf_dtype():
    x32 = ckpt.tensor([1.0, 2.0], requires_grad=True)
    y64 = ckpt.tensor([3.0, 4.0], dtype=ckpt.float64, requires_grad=True)
    s64 = ckpt.tensor(0.5, dtype=ckpt.float64, requires_grad=True)
    out = (x32 * y64).sum() + (x32 * s64).sum()
    tx, ty, ts = (to_torch(t) for t in (x32, y64, s64))
    tout = (tx * ty).sum() + (tx * ts).sum()
    assert str(out.dtype) == str(tout.dtype).replace("torch.", "")
    out.backward()
    tout.backward()
    for ours, theirs in ((x32, tx), (y64, ty), (s64, ts)):
        assert ours.grad.dtype == ours.dtype
        assert_close(ours.grad, theirs.grad, np.float32)


SCALAR_OPS = {
    "add": (lambda x: x + 1.5, lambda x: x + 1.5),
    "radd": (lambda x: 1.5 + x, lambda x: 1.5 + x),
    "rsub": (lambda x: 1.5 - x, lambda x: 1.5 - x),
    "rmul": (lambda x: 3 * x, lambda x: 3 * x),
    "rdiv": (lambda x: 2.0 / x, lambda x: 2.0 / x),
    "pow_int": (lambda x: x ** 3, lambda x: x ** 3),
    "pow_float": (lambda x: x.abs() ** 1.5, lambda x: x.abs() ** 1.5),
    "pow_zero": (lambda x: x ** 0, lambda x: x ** 0),
    "rpow": (lambda x: 2.0 ** x, lambda x: 2.0 ** x),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), lambda x: x.clamp(-0.5, 0.7)),
    "clamp_min": (lambda x: ckpt.clamp(x, min=0.1), lambda x: torch.clamp(x, min=0.1)),
    "clamp_max": (lambda x: ckpt.clamp(x, max=0.1), lambda x: torch.clamp(x, max=0.1)),
    "where_scalar": (lambda x: ckpt.where(x > 0, x, 0.5), lambda x: torch.where(x > 0, x, 0.5)),
}

UNARY = {
    "neg": (ckpt.neg, torch.neg, None),
    "exp": (ckpt.exp, torch.exp, None),
    "log": (ckpt.log, torch.log, _pos),
    "sqrt": (ckpt.sqrt, torch.sqrt, _pos),
    "abs": (ckpt.abs, torch.abs, _away0),
    "sin": (ckpt.sin, torch.sin, None),
    "cos": (ckpt.cos, torch.cos, None),
    "tanh": (ckpt.tanh, torch.tanh, None),
    "sigmoid": (ckpt.sigmoid, torch.sigmoid, lambda a: 4 * a),
    "relu": (ckpt.relu, torch.relu, _away0),
    "gelu": (ckpt.gelu, torch.nn.functional.gelu, lambda a: 2 * a),
    "gelu_tanh": (lambda x: ckpt.gelu(x, approximate="tanh"),
                  lambda x: torch.nn.functional.gelu(x, approximate="tanh"), lambda a: 2 * a),
    "erf": (ckpt.erf, torch.erf, None),
    "clone": (ckpt.clone, torch.clone, None),
    "square_via_mul": (lambda x: x * x, lambda x: x * x, None),
    **{f"scalar_{k}": (f, g, None) for k, (f, g) in SCALAR_OPS.items()},
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(UNARY))
@given(shape=any_shape, seed=seeds)
def test_unary(name, dtype, shape, seed):
    ck_fn, th_fn, transform = UNARY[name]
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    run_both(ck_fn, th_fn, [transform(a) if transform else a], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=seeds)
def test_clamp_tensor_bounds(dtype, shapes, seed):
    """Tensor min/max broadcast and receive the gradient where the output took their value
    (including min > max, where max wins)."""
    rng = np.random.default_rng(seed)
    _, slo, shi = shapes.input_shapes
    sx = shapes.result_shape  # torch's backward needs x to have the full broadcast shape
    x, lo, hi = rng.standard_normal(sx), rng.standard_normal(slo) - 0.3, rng.standard_normal(shi) + 0.3
    run_both(lambda a, b, c: a.clamp(b, c), lambda a, b, c: a.clamp(b, c), [x, lo, hi], dtype, rng)
    run_both(lambda a, b: ckpt.clamp(a, min=b), lambda a, b: torch.clamp(a, min=b), [x, lo], dtype, rng)
    run_both(lambda a, c: ckpt.clamp(a, max=c), lambda a, c: torch.clamp(a, max=c), [x, hi], dtype, rng)
    run_both(lambda a, b: a.clamp(b, 0.2), lambda a, b: a.clamp(b, torch.tensor(0.2, dtype=b.dtype)),
             [x, lo], dtype, rng)


@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")
def test_tie_gradients_match_torch():
    """Ties: maximum/minimum split evenly, clamp passes at the boundary, max()/amax share,
    relu/abs give 0 at 0."""
    a = np.array([1.0, 2.0, 2.0, 0.0, -1.0])
    b = np.array([1.0, 3.0, 2.0, 0.0, 0.5])
    rng = np.random.default_rng(0)
    for ck_fn, th_fn in [(ckpt.maximum, torch.maximum), (ckpt.minimum, torch.minimum)]:
        run_both(ck_fn, th_fn, [a, b], np.float64, rng)
    for ck_fn, th_fn in [(ckpt.relu, torch.relu), (ckpt.abs, torch.abs),
                         (lambda x: x.clamp(0.0, 2.0), lambda x: x.clamp(0.0, 2.0)),
                         (lambda x: x.max(), lambda x: x.max()),
                         (lambda x: x.min(), lambda x: x.min()),
                         (lambda x: ckpt.amax(x.reshape(1, 5), 1), lambda x: torch.amax(x.reshape(1, 5), 1)),
                         (lambda x: x ** 0.0, lambda x: x ** 0.0)]:
        run_both(ck_fn, th_fn, [a], np.float64, rng)
    # a single element has no degrees of freedom: nan, as torch (not a ZeroDivisionError)
    run_both(lambda x: x.var(), lambda x: x.var(), [np.array([1.5])], np.float64, rng)
    # tensor ** tensor at base 0 with non-negative exponent: zero exponent-gradient, as torch
    run_both(lambda x, y: x ** y, lambda x, y: x ** y,
             [np.array([0.0, 0.0, 2.0]), np.array([2.0, 0.0, 1.5])], np.float64, rng)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "longdouble"])
@pytest.mark.parametrize("n", [5, 200_000])   # (200,000 elements: the rule works in chunks)
def test_relu_passes_the_gradient_where_its_output_is_nan_and_none_where_it_is_zero(dtype, n):
    """torch's rule selects (``result <= 0 ? 0 : grad``): a NaN input passes its gradient on,
    a dead unit gives 0 even for an infinite or NaN gradient (a product with the mask would
    give NaN), -0.0 counts as 0; once-differentiated, the rule differentiates again alike.
    (torch has no long double: it runs the same values in float64.)"""
    inputs = np.resize(np.array([np.nan, -1.0, 0.0, 2.0, -0.0]), n).astype(dtype)
    grads = np.resize(np.array([1.0, np.inf, np.nan, 3.0, -np.inf]), n).astype(dtype)
    seen = {}
    for lib in (ckpt, torch):
        as_lib = np.copy if lib is ckpt or dtype != "longdouble" else (lambda a: a.astype(np.float64))
        x = lib.tensor(as_lib(inputs), requires_grad=True)
        x.relu().backward(lib.tensor(as_lib(grads)))
        z = lib.tensor([-1.0, 0.0, -0.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
        first, = lib.autograd.grad((z.relu() ** 3).sum(), z, create_graph=True)
        ((first * first).sum()).backward()
        seen[lib.__name__] = (np.asarray(x.grad.tolist(), np.float64), first.tolist(),
                              z.grad is None or z.grad.tolist())
    np.testing.assert_array_equal(seen["ckpt"][0], seen["torch"][0])
    assert seen["ckpt"][1:] == seen["torch"][1:]


# ---- reductions -------------------------------------------------------------------------

@st.composite
def shape_and_dims(draw, allow_none=True, single=False):
    shape = draw(nonscalar_shape)
    ndim = len(shape)
    if single:
        dim = draw(st.integers(-ndim, ndim - 1))
    else:
        choices = [st.integers(-ndim, ndim - 1),
                   st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)]
        if allow_none:
            choices.append(st.none())
        dim = draw(st.one_of(*choices))
    keepdim = draw(st.booleans())
    return shape, dim, keepdim


def _kw(dim, keepdim):
    return {} if dim is None else {"dim": dim, "keepdim": keepdim}


REDUCTIONS = {
    "sum": (lambda x, d, k: x.sum(**_kw(d, k)), lambda x, d, k: x.sum(**_kw(d, k))),
    "mean": (lambda x, d, k: x.mean(**_kw(d, k)), lambda x, d, k: x.mean(**_kw(d, k))),
    "amax": (lambda x, d, k: x.amax(**_kw(d, k)), lambda x, d, k: x.amax(**_kw(d, k))),
    "var": (lambda x, d, k: x.var(**_kw(d, k)), lambda x, d, k: x.var(**_kw(d, k))),
    "var_biased": (lambda x, d, k: x.var(**_kw(d, k), unbiased=False),
                   lambda x, d, k: x.var(**_kw(d, k), unbiased=False)),
    "var_correction0": (lambda x, d, k: ckpt.var(x, d, keepdim=k, correction=0),
                        lambda x, d, k: torch.var(x, d, keepdim=k, correction=0)),
    "std": (lambda x, d, k: x.std(**_kw(d, k)), lambda x, d, k: x.std(**_kw(d, k))),
    "logsumexp": (lambda x, d, k: ckpt.logsumexp(x, d, k), lambda x, d, k: torch.logsumexp(x, d, k)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(REDUCTIONS))
@given(sdk=shape_and_dims(), seed=seeds)
def test_reductions(name, dtype, sdk, seed):
    shape, dim, keepdim = sdk
    ck_fn, th_fn = REDUCTIONS[name]
    if name == "logsumexp" and dim is None:
        dim = tuple(range(len(shape)))
    if name.startswith(("var", "std")):
        n = np.prod([shape[d] for d in (range(len(shape)) if dim is None else np.atleast_1d(dim))])
        assume(n > 1)  # a single element has 0 degrees of freedom (nan in torch)
    rng = np.random.default_rng(seed)
    run_both(lambda x: ck_fn(x, dim, keepdim), lambda x: th_fn(x, dim, keepdim),
             [rng.standard_normal(shape)], dtype, rng)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [[], ()], ids=["list", "tuple"])
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "var", "var_biased", "std"])
def test_an_empty_dim_reduces_every_dim_as_in_torch(name, dim, keepdim):
    """torch reads ``dim=[]`` or ``dim=()`` as every dim in these reductions (ckpt returned the
    input unreduced, and var and std NaN); values, gradients, the node's name and double
    backward agree. ``squeeze(dim=[])`` squeezes nothing in both.

    torch 2.13's var and std take every dim forward but none backward (an infinite gradient
    with the default correction); ckpt's gradient is the one of its value, compared with
    torch's over ``dim=(0, 1)``, the same value."""
    rng = np.random.default_rng(0)
    ck_fn, th_fn = REDUCTIONS[name]
    th_dim = (0, 1) if name.startswith(("var", "std")) else dim
    ck_in, th_in = run_both(lambda x: ck_fn(x, dim, keepdim), lambda x: th_fn(x, th_dim, keepdim),
                            [rng.standard_normal((2, 3))], np.float64, rng)
    assert th_fn(th_in[0], dim, keepdim).item() == th_fn(th_in[0], th_dim, keepdim).item()
    seen = []
    for lib, x in (("ckpt", ck_in[0]), ("torch", th_in[0])):
        out = (ck_fn if lib == "ckpt" else th_fn)(x, dim if lib == "ckpt" else th_dim, keepdim)
        first, = (ckpt if lib == "ckpt" else torch).autograd.grad(out.sum() ** 2, x, create_graph=True)
        seen.append((out.grad_fn.name(), tuple(out.shape), first.tolist(),
                     tuple(x.detach()[:1].squeeze(dim=dim).shape)))
    ck_seen, th_seen = seen
    assert ck_seen[0] == th_seen[0] and ck_seen[1] == th_seen[1] and ck_seen[3] == th_seen[3]
    np.testing.assert_allclose(ck_seen[2], th_seen[2], rtol=1e-12)


@pytest.mark.parametrize("dim", [0, -1, [0], (-1,), 1, (0, -1)])
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "var_correction0", "std", "logsumexp",
                                  "prod"])
def test_a_reduction_over_the_one_place_of_a_0d_tensor_as_in_torch(name, dim):
    """dim 0 or -1 of a 0-d tensor is its one place (torch): the reduction keeps the value
    (ckpt raised numpy's AxisError); dim 1 is out of range and a dim named twice an error in
    both. (torch's prod takes one int dim only, as ckpt's.)"""
    ck_fn, th_fn = (REDUCTIONS[name] if name != "prod" else
                    (lambda x, d, k: ckpt.prod(x, d, k), lambda x, d, k: torch.prod(x, d, k)))
    outcome = {}
    for lib, fn in (("ckpt", ck_fn), ("torch", th_fn)):
        x = (ckpt if lib == "ckpt" else torch).tensor(3.0, dtype=(ckpt if lib == "ckpt" else torch).float64,
                                                      requires_grad=True)
        try:
            out = fn(x, dim, True)
            grad, = (ckpt if lib == "ckpt" else torch).autograd.grad(out, x)
            outcome[lib] = (tuple(out.shape), out.item(), grad.item(), out.grad_fn.name())
        except (RuntimeError, IndexError, TypeError) as error:
            outcome[lib] = type(error).__name__
    assert repr(outcome["ckpt"]) == repr(outcome["torch"])   # (std's NaN: 0 degrees of freedom)


@pytest.mark.parametrize("dims", [(0, 0), (1, -1), (0, -2, 1)])
def test_a_dim_named_twice_is_refused_as_in_torch(dims):
    messages = []
    for x in (ckpt.ones(2, 3), torch.ones(2, 3)):
        with pytest.raises(RuntimeError) as error:
            x.sum(dims)
        messages.append(str(error.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("dim", [None, 1])
def test_std_of_a_constant_gives_zero_gradient_as_in_torch(dim):
    """torch's std rule is 0 where the std is 0 (``sqrt``'s rule would give NaN), in reverse,
    twice-reverse and forward mode."""
    values = np.array([[2.0, 2.0, 2.0], [1.0, 3.0, 4.0]])
    seen = {}
    for lib in (ckpt, torch):
        x = lib.tensor(values, requires_grad=True)
        first, = lib.autograd.grad(x.std(dim).sum(), x, create_graph=True)
        (first ** 2).sum().backward()
        with lib.autograd.forward_ad.dual_level():
            dual = lib.autograd.forward_ad.make_dual(x.detach(), lib.ones_like(x))
            tangent = lib.autograd.forward_ad.unpack_dual(dual.std(dim)).tangent
        seen[lib.__name__] = [np.asarray(t.tolist()) for t in (first, x.grad, tangent)]
    for ours, theirs in zip(seen["ckpt"], seen["torch"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("which", ["max", "min"])
@given(sdk=shape_and_dims(single=True), seed=seeds)
def test_max_min_along_dim(which, dtype, sdk, seed):
    shape, dim, keepdim = sdk
    rng = np.random.default_rng(seed)
    ck_in = [ckpt.Tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)]
    ck_res = getattr(ck_in[0], which)(dim, keepdim=keepdim)
    th_res = getattr(to_torch(ck_in[0]), which)(dim, keepdim=keepdim)
    np.testing.assert_array_equal(ck_res.indices.data, th_res.indices.numpy())
    assert not ck_res.indices.requires_grad
    run_both(lambda x: getattr(x, which)(dim, keepdim=keepdim).values,
             lambda x: getattr(x, which)(dim, keepdim=keepdim).values,
             [ck_in[0].data], dtype, rng)
    run_both(lambda x: getattr(x, which)(), lambda x: getattr(x, which)(), [ck_in[0].data], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(sdk=shape_and_dims(single=True), seed=seeds)
def test_softmax_family(name, dtype, sdk, seed):
    shape, dim, _ = sdk
    rng = np.random.default_rng(seed)
    run_both(lambda x: getattr(ckpt, name)(x, dim), lambda x: getattr(torch, name)(x, dim),
             [3 * rng.standard_normal(shape)], dtype, rng)


# ---- matmul -----------------------------------------------------------------------------

@st.composite
def matmul_shapes(draw):
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    a_vec, b_vec = draw(st.booleans()), draw(st.booleans())
    sa = (k,) if a_vec else batch.input_shapes[0] + (n, k)
    sb = (k,) if b_vec else batch.input_shapes[1] + (k, m)
    return sa, sb


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shapes=matmul_shapes(), seed=seeds)
def test_matmul(dtype, shapes, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes
    run_both(lambda a, b: a @ b, lambda a, b: a @ b,
             [rng.standard_normal(sa), rng.standard_normal(sb)], dtype, rng)


@pytest.mark.parametrize("which", [(True, False), (False, True)], ids=["a_only", "b_only"])
@given(shapes=matmul_shapes(), seed=seeds)
def test_matmul_one_side_requires_grad(which, shapes, seed):
    """Only one factor needs a gradient (``x @ W`` with data ``x``): the other is not saved."""
    rng = np.random.default_rng(seed)
    sa, sb = shapes
    run_both(lambda a, b: a @ b, lambda a, b: a @ b,
             [rng.standard_normal(sa), rng.standard_normal(sb)], np.float64, rng,
             requires_grad=list(which))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_linear_matches_torch(dtype, rng):
    run_both(ckpt.linear, torch.nn.functional.linear,
             [rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)],
             dtype, rng)


# ---- shape ops --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shape=nonscalar_shape, data=st.data(), seed=seeds)
def test_view_ops(dtype, shape, data, seed):
    rng = np.random.default_rng(seed)
    ndim = len(shape)
    perm = tuple(data.draw(st.permutations(range(ndim))))
    d0, d1 = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
    start = data.draw(st.integers(0, ndim - 1))
    end = data.draw(st.integers(start, ndim - 1))
    usq = data.draw(st.integers(-ndim - 1, ndim))
    sq = data.draw(st.integers(-ndim, ndim - 1))
    lead = data.draw(st.integers(0, 2))
    target = (2,) * lead + tuple(data.draw(st.sampled_from([1, 3])) if s == 1 else s for s in shape)
    x = rng.standard_normal(shape)
    cases = [
        (lambda t: t.permute(*perm), lambda t: t.permute(*perm)),
        (lambda t: t.transpose(d0, d1), lambda t: t.transpose(d0, d1)),
        (lambda t: t.reshape(-1), lambda t: t.reshape(-1)),
        (lambda t: t.reshape(shape[0], -1), lambda t: t.reshape(shape[0], -1)),
        (lambda t: t.view(*reversed(shape)), lambda t: t.reshape(*reversed(shape))),
        (lambda t: t.T.reshape(-1), lambda t: t.permute(*reversed(range(ndim))).reshape(-1)),
        (lambda t: t.flatten(start, end), lambda t: t.flatten(start, end)),
        (lambda t: t.unsqueeze(usq), lambda t: t.unsqueeze(usq)),
        (lambda t: t.squeeze(), lambda t: t.squeeze()),
        (lambda t: t.squeeze(sq), lambda t: t.squeeze(sq)),
        (lambda t: t.expand(*target), lambda t: t.expand(*target)),
        (lambda t: t.clone(), lambda t: t.clone()),
    ]
    if ndim >= 2:
        cases.append((lambda t: t.mT, lambda t: t.mT))
    for ck_fn, th_fn in cases:
        run_both(lambda t: ck_fn(t) * 1.0, lambda t: th_fn(t) * 1.0, [x], dtype, rng)


def _no_negative_steps(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(not (isinstance(i, slice) and i.step is not None and i.step < 0) for i in items)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(data=st.data(), shape=hnp.array_shapes(min_dims=2, max_dims=4, max_side=4), seed=seeds)
def test_basic_indexing(dtype, data, shape, seed):
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True).filter(_no_negative_steps))
    rng = np.random.default_rng(seed)
    run_both(lambda t: t[index] * 1.0, lambda t: t[index] * 1.0, [rng.standard_normal(shape)], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds)
def test_advanced_indexing(dtype, data, shape, seed):
    """Integer arrays (with repeats: the gradient accumulates) and boolean masks."""
    index = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(max_dims=2, max_side=5)))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    th_index = tuple(torch.from_numpy(np.array(i)) for i in index)
    run_both(lambda t: t[index], lambda t: t[th_index], [x], dtype, rng)
    mask = rng.random(shape) > 0.4
    run_both(lambda t: t[mask], lambda t: t[torch.from_numpy(mask)], [x], dtype, rng)
    rows = rng.random(shape[0]) > 0.5
    run_both(lambda t: t[ckpt.tensor(rows)], lambda t: t[torch.from_numpy(rows)], [x], dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shapes=st.lists(hnp.array_shapes(min_dims=2, max_dims=2, max_side=3), min_size=1, max_size=3),
       dim=st.integers(-2, 1), seed=seeds)
def test_cat_stack(dtype, shapes, dim, seed):
    rng = np.random.default_rng(seed)
    axis = dim % 2
    base = shapes[0]
    cat_shapes = [tuple(s[axis] if i == axis else base[i] for i in range(2)) for s in shapes]
    arrays = [rng.standard_normal(s) for s in cat_shapes]
    run_both(lambda *ts: ckpt.cat(ts, dim), lambda *ts: torch.cat(ts, dim), arrays, dtype, rng)
    same = [rng.standard_normal(base) for _ in shapes]
    run_both(lambda *ts: ckpt.stack(ts, dim), lambda *ts: torch.stack(ts, dim), same, dtype, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(shape=nonscalar_shape, data=st.data(), seed=seeds)
def test_split_chunk_unbind(dtype, shape, data, seed):
    ndim = len(shape)
    dim = data.draw(st.integers(-ndim, ndim - 1))
    size = shape[dim]
    step = data.draw(st.integers(1, size + 1))
    chunks = data.draw(st.integers(1, size + 1))
    first = data.draw(st.integers(0, size))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    run_both(lambda t: t.split(step, dim), lambda t: t.split(step, dim), [x], dtype, rng)
    run_both(lambda t: ckpt.split(t, [first, size - first], dim),
             lambda t: torch.split(t, [first, size - first], dim), [x], dtype, rng)
    run_both(lambda t: t.chunk(chunks, dim), lambda t: t.chunk(chunks, dim), [x], dtype, rng)
    run_both(lambda t: t.unbind(dim), lambda t: t.unbind(dim), [x], dtype, rng)


def test_to_dtype_gradients_match_torch(rng):
    x = rng.standard_normal((2, 3))
    c = ckpt.Tensor(x.astype(np.float32), requires_grad=True)
    t = to_torch(c)
    (c.double() * 3).exp().sum().backward()
    (t.double() * 3).exp().sum().backward()
    assert c.grad.dtype == np.float32
    assert_close(c.grad, t.grad)
    c64 = ckpt.Tensor(x, requires_grad=True)
    t64 = to_torch(c64)
    y = c64.to(ckpt.float32)
    assert y.dtype == np.float32 and y.grad_fn.name() == "ToCopyBackward0"
    (y * y).sum().backward()
    (t64.float() * t64.float()).sum().backward()
    assert c64.grad.dtype == np.float64
    assert_close(c64.grad, t64.grad, np.float32)


# ---- in-place ops on non-leaves ---------------------------------------------------------

def _inplace_program(lib):
    def program(a, b, c, d):
        x = a * 1
        x.mul_(b)
        x.add_(c)
        x[1:] = d
        x.sub_(a)
        y = x.exp()
        x2 = y * 1
        x2[0, ::2] = 0.0
        x2.div_(2.0)
        x2 += c
        x2 *= b
        return x2.tanh()
    return program


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@given(seed=seeds)
def test_inplace_program_matches_torch(dtype, seed):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (3, 4), (2, 4)]
    run_both(_inplace_program(ckpt), _inplace_program(torch), [rng.standard_normal(s) for s in shapes],
             dtype, rng)


@pytest.mark.parametrize("method", ["exp_", "tanh_", "sigmoid_", "relu_", "neg_", "clamp_", "pow_"])
def test_inplace_unary_methods_match_torch(method, rng):
    args = {"clamp_": (-0.3, 0.4), "pow_": (2,)}.get(method, ())

    def program(a):
        x = a * 1
        out = getattr(x, method)(*args)
        assert out is x
        return x * a

    run_both(program, program, [_away0(rng.standard_normal((3, 4)))], np.float64, rng)


def test_setitem_value_gradient_matches_torch(rng):
    def program(a, v):
        x = a.clone()
        x[[0, 2]] = v * 2
        x[:, 1] = 0.0
        return x

    run_both(program, program, [rng.standard_normal((3, 4)), rng.standard_normal(4)], np.float64, rng)


def test_copy_fill_zero_match_torch(rng):
    def program(a, b):
        x = a * 2
        y = a * 3
        y.zero_()
        z = a * 4
        z.fill_(1.5)
        x.copy_(b.exp())
        return x + y + z * a

    run_both(program, program, [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))], np.float64, rng)


# ---- in-place writes through views ------------------------------------------------------

VIEWS = {
    "row": lambda t: t[1],
    "cols": lambda t: t[:, 1:],
    "T": lambda t: t.T,
    "flat": lambda t: t.reshape(-1),
    "strided": lambda t: t[::2, ::2],
    "unsqueeze": lambda t: t.unsqueeze(0),
    "T_row": lambda t: t.T[2],
    "cols_T": lambda t: t[:, 1:].transpose(0, 1),
    "scalar": lambda t: t[2, 3],
}
WRITES = {
    "mul_": lambda v, w: v.mul_(w.reshape(-1)[0]),
    "add_": lambda v, w: v.add_(w.reshape(-1)[1] * 2),
    "exp_": lambda v, w: v.exp_(),
    "tanh_": lambda v, w: v.tanh_(),
    "setitem": lambda v, w: v.__setitem__(0, w.reshape(-1)[2]) if v.ndim else v.mul_(w.reshape(-1)[2]),
    "fill_all": lambda v, w: v.__setitem__(Ellipsis, 0.5),
    "div_": lambda v, w: v.div_(2.0),
}


SAVES_OUTPUT = ("exp_", "tanh_")  # torch refuses later writes into their saved output


@st.composite
def view_write_programs(draw):
    targets = st.sampled_from(sorted(VIEWS) + ["base"])
    plain = sorted(w for w in WRITES if w not in SAVES_OUTPUT)
    steps = draw(st.lists(st.tuples(targets, st.sampled_from(plain)), min_size=1, max_size=4))
    if draw(st.booleans()):
        steps.append((draw(targets), draw(st.sampled_from(SAVES_OUTPUT))))
    readers = draw(st.lists(st.sampled_from(sorted(VIEWS)), min_size=0, max_size=3))
    early = draw(st.booleans())
    return steps, readers, early


@given(program=view_write_programs(), seed=seeds)
def test_inplace_through_views_matches_torch(program, seed):
    """Random in-place writes into a base and its views, then a loss reading the base and
    views created before (``early``) or after the writes: gradients equal torch's."""
    steps, readers, early = program
    rng = np.random.default_rng(seed)

    def run(a, w):
        x = a * 1
        held = [VIEWS[r](x) for r in readers] if early else []
        for target, write in steps:
            WRITES[write](x if target == "base" else VIEWS[target](x), w)
        if not early:
            held = [VIEWS[r](x) for r in readers]
        loss = (x * x).sum()
        for k, v in enumerate(held):
            loss = loss + (v * (k + 2)).sum()
        return loss

    run_both(run, run, [rng.standard_normal((4, 5)), rng.standard_normal((2, 2))], np.float64, rng)


def test_inplace_through_view_of_view_keeps_sibling_views_right():
    def run(a):
        x = a * 1
        row = x[0]
        col = x[:, 2]
        v = x.T[1:]          # a view of a view
        v[0].mul_(3.0)       # x.T[1:][0] is column 1 of x
        col.add_(1.0)
        return (x.exp() * 2).sum() + (row * row).sum() + (v ** 3).sum() + col.sum()

    rng = np.random.default_rng(0)
    run_both(run, run, [rng.standard_normal((4, 3))], np.float64, rng)


def test_logical_and_bitwise_not_and_where_method_match_torch(rng):
    mask = rng.standard_normal((3, 4)) > 0
    ints = rng.integers(-5, 5, size=(3, 4))
    for lib_fn, torch_fn in ((lambda t: ~t, lambda t: ~t), (ckpt.logical_not, torch.logical_not),
                             (ckpt.bitwise_not, torch.bitwise_not)):
        for a in (mask, ints):
            np.testing.assert_array_equal(lib_fn(ckpt.tensor(a)).data, torch_fn(torch.tensor(a)).numpy())
    with pytest.raises(RuntimeError, match="bitwise_not: defined for bool and integer"):
        ~ckpt.ones(2)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((4,))
    cx = ckpt.tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    out, t_out = cx.where(ckpt.tensor(mask), ckpt.tensor(y)), tx.where(torch.tensor(mask), torch.tensor(y))
    assert_close(out, t_out)
    out.sum().backward()
    t_out.sum().backward()
    assert_close(cx.grad, tx.grad)


def test_integer_and_bool_powers_keep_torchs_dtypes():
    for base in ([True, False], [1, 2, 3]):
        for exponent in (2, 3, 0.5):
            ours, theirs = ckpt.tensor(base) ** exponent, torch.tensor(base) ** exponent
            assert ours.dtype == to_torch(ours).numpy().dtype == theirs.numpy().dtype
            np.testing.assert_allclose(ours.data, theirs.numpy())


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64])
@pytest.mark.parametrize("shape, dim, keepdim", [((64, 512), None, False), ((3, 4, 5), 1, True),
                                                 ((3, 4, 5), (0, 2), False), ((), None, False)])
def test_mean_is_numpys_mean_bit_for_bit(dtype, shape, dim, keepdim):
    """ckpt's mean skips np.mean's Python wrapper but computes what it computes (float16
    summed in float32, as numpy does), so its values are numpy's exactly."""
    d = (np.random.default_rng(0).standard_normal(shape) * 100).astype(dtype)
    ours = ckpt.mean(ckpt.tensor(d), dim, keepdim).data
    theirs = np.asarray(np.mean(d, axis=dim, keepdims=keepdim), dtype=dtype)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


# ---- t() and sign(): torch's nodes ---------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 2, 2)])
def test_t_is_a_view_with_its_own_node_as_in_torch(shape):
    """``x.t()`` transposes a matrix and gives a vector or a number as it is, each a new view
    with a TBackward0 node (ckpt returned ``x`` itself below 2 dims, and above); more than 2
    dims are refused with torch's message."""
    outcome = []
    for lib in (ckpt, torch):
        x = lib.tensor(np.arange(float(np.prod(shape))).reshape(shape), requires_grad=True)
        try:
            y = x.t()
        except RuntimeError as error:
            outcome.append(str(error))
            continue
        y.backward(lib.tensor(np.arange(float(np.prod(shape))).reshape(tuple(y.shape)) + 1))
        outcome.append((y.grad_fn.name(), tuple(y.shape), y is x, y.is_leaf, x.grad.tolist()))
    assert outcome[0] == outcome[1]


def test_sign_has_a_zero_gradient_node_as_in_torch():
    """torch records sign with a zero gradient (zeros even for a NaN incoming gradient, and
    not differentiable again); ckpt recorded no node, so ``x.sign().sum().backward()`` failed."""
    seen = []
    for lib in (ckpt, torch):
        x = lib.tensor([1.0, float("nan"), -2.0, 0.0], requires_grad=True)
        s = x.sign()
        s.backward(lib.tensor([1.0, float("nan"), 2.0, 3.0]))
        w = lib.tensor([1.0, -2.0], requires_grad=True)
        first, = lib.autograd.grad((w.sign() * w).sum(), w, create_graph=True)
        seen.append((s.grad_fn.name(), s.requires_grad, x.grad.tolist(), first.tolist(),
                     lib.tensor([3, -1]).sign().tolist()))
    assert seen[0] == seen[1]


def test_t_and_transpose_of_a_0d_tensor_under_batched_differentiation_as_in_torch():
    """A 0-d tensor's transpose passes a gradient that carries batch dims on as it is (the
    review found jacrev, jacfwd, hessian and is_grads_batched failing after t() got a node)."""
    seen = []
    for lib in (ckpt, torch):
        F, one = lib.func, lib.tensor(1.0, dtype=lib.float64)
        x = lib.tensor(1.0, dtype=lib.float64, requires_grad=True)
        batched, = lib.autograd.grad(x.t() * 2, x, lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64),
                                     is_grads_batched=True)
        seen.append((F.jacrev(lambda v: v.t() * 2)(one).item(), F.jacfwd(lambda v: v.t() * 2)(one).item(),
                     F.hessian(lambda v: v.t() ** 3)(one).item(),
                     F.jacrev(lambda v: v.transpose(0, -1) * 2)(one).item(), batched.tolist()))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("shape, dim", [((0,), None), ((2, 0), []), ((2, 0), 1), ((2, 0), 0)])
def test_the_mean_of_no_elements_backpropagates_as_in_torch(shape, dim):
    """(ckpt divided by the count of 0: ZeroDivisionError.)"""
    seen = []
    for lib in (ckpt, torch):
        x = lib.ones(*shape, requires_grad=True)
        m = x.mean() if dim is None else x.mean(dim)
        m.sum().backward()
        seen.append((tuple(m.shape), tuple(x.grad.shape)))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_means_gradient_is_torchs_to_the_bit(dtype):
    """torch divides the gradient by the count; a product with 1/count differs in the last
    bit (51 of 120 random float32 cases, the review found)."""
    rng = np.random.default_rng(3)
    for n in (3, 7, 11, 13):
        values, scale = rng.standard_normal(n).astype(dtype), float(rng.standard_normal())
        grads = []
        for lib in (ckpt, torch):
            x = lib.tensor(values.copy(), requires_grad=True)
            (x.mean() * scale).backward()
            (x[1:].mean(0) * scale).backward()
            grads.append(np.asarray(x.grad.tolist(), dtype))
        np.testing.assert_array_equal(grads[0], grads[1])


def test_var_and_std_as_torch_reads_their_arguments():
    """A bool in dim's place is ``unbiased``; a bool as a reduction's dim is refused; integer
    tensors are refused; float16 is summed in float32 (std of [200, -200, 100] is finite)."""
    data = np.arange(6.0).reshape(2, 3)
    seen = []
    for lib in (ckpt, torch):
        y = lib.tensor(data)
        half = lib.tensor([200.0, -200.0, 100.0], dtype=lib.float16, requires_grad=True)
        std = half.std()
        std.backward()
        errors = []
        for call in (lambda: lib.tensor([1, 2]).var(), lambda: lib.tensor([1, 2]).std(), lambda: y.sum(True)):
            with pytest.raises((RuntimeError, TypeError)) as error:
                call()
            errors.append(error.type.__name__)
        seen.append(([round(float(v), 6) for v in (y.std(False), y.std(True), y.var(False))],
                     y.std(0, False).tolist(), [t.tolist() for t in lib.var_mean(y, False)],
                     float(std), float(half.var()), half.grad.tolist(), errors,
                     str(pytest.raises(RuntimeError, lambda: lib.tensor([1, 2]).var()).value)))
    assert seen[0] == seen[1]


def test_sign_values_as_torch():
    """0 (not NaN) for NaN, +0 for -0, bools and integers kept in their dtype, complex
    refused with torch's message."""
    seen = []
    for lib in (ckpt, torch):
        s = lib.tensor([-0.0, float("nan"), float("inf"), -float("inf"), 0.0, 2.0, -3.0]).sign()
        with pytest.raises(NotImplementedError) as error:
            lib.tensor([1 + 1j]).sign()
        seen.append((s.tolist(), lib.signbit(s).tolist(), lib.tensor([True, False]).sign().tolist(),
                     lib.tensor([3, -2, 0]).sign().tolist(), lib.tensor([3, 0], dtype=lib.uint8).sign().tolist(),
                     str(error.value)))
    assert seen[0] == seen[1]


@pytest.mark.parametrize("create_graph", [False, True])
def test_a_float16_means_gradient_is_divided_in_float32_as_in_torch(create_graph):
    """numpy rounds the count to float16 first: inf past 65504 (a zero gradient), and 1 ulp
    off for counts float16 can't hold (the second review found both)."""
    seen = []
    for lib in (ckpt, torch):
        grads = []
        for n in (70000, 2049, 2051, 7):
            x = lib.ones(n, dtype=lib.float16, requires_grad=True)
            whole, = lib.autograd.grad(x.mean(), x, create_graph=create_graph)
            y = lib.ones(3, n, dtype=lib.float16, requires_grad=True)
            rows, = lib.autograd.grad(y.mean(1).sum(), y, create_graph=create_graph)
            grads.append((float(whole[0]), float(rows[0, 0]), str(whole.dtype).split(".")[-1]))
        seen.append(grads)
    assert seen[0] == seen[1]


@pytest.mark.parametrize("dims", [(True,), (True, 0)])
def test_a_bool_among_a_reductions_dims_is_refused_as_in_torch(dims):
    for x in (ckpt.ones(2, 3), torch.ones(2, 3)):
        for reduce in (x.sum, x.var):
            with pytest.raises(TypeError):
                reduce(dims)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op, dim", [("var", None), ("var", 1), ("var", 0), ("var_mean", 1)])
def test_var_gradients_are_torchs_to_the_bit(op, dim, dtype):
    """torch's var_backward scales g first, ``(2 / dof) * g * (x - mean)``; ckpt scaled
    ``x - mean`` (every case differed in the last bits). Data with exact means, so the
    forward values agree and only the rule's order shows."""
    rng = np.random.default_rng(0)
    for _ in range(10):
        data = (rng.integers(-50, 50, size=(4, 8)) / 4).astype(dtype)
        weights = rng.standard_normal(8).astype(dtype)
        grads = []
        for lib in (ckpt, torch):
            x = lib.tensor(data.copy(), requires_grad=True)
            if op == "var_mean":
                v, m = lib.var_mean(x, dim)
                (v * lib.tensor(weights[:4].copy()) + m * lib.tensor(weights[4:].copy())).sum().backward()
            else:
                out = x.var() if dim is None else x.var(dim)
                out.backward(lib.tensor(weights[:out.shape[0]].copy() if out.ndim else weights[0].copy()))
            grads.append(np.asarray(x.grad.tolist(), dtype))
        np.testing.assert_array_equal(grads[0], grads[1])


def test_relus_rule_under_create_graph_is_a_recorded_op_as_in_torch():
    """torch records relu's rule (ThresholdBackwardBackward0, on the incoming gradient and
    relu's output), so the first-order gradient depends on x with a zero derivative; ckpt's
    did not require grad, and differentiating it again raised (the first review found it)."""
    seen = []
    for lib in (ckpt, torch):
        x = lib.tensor([-1.0, 2.0, 0.0], requires_grad=True)
        first, = lib.autograd.grad(x.relu().sum(), x, create_graph=True)
        again, = lib.autograd.grad(first.sum(), x, allow_unused=True, retain_graph=True)
        w = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        scaled, = lib.autograd.grad((x * w).relu().sum(), x, create_graph=True)
        batched, = lib.autograd.grad(first, x, lib.eye(3), is_grads_batched=True, allow_unused=True)
        seen.append((batched.tolist(), first.tolist(), first.grad_fn.name(),
                     [None if n is None else n.name() for n, _ in first.grad_fn.next_functions],
                     again.tolist(), [t.tolist() for t in lib.autograd.grad(scaled.sum(), (x, w))],
                     lib.func.jacfwd(lib.func.grad(lambda v: (v.relu() * v).sum()))(
                         lib.tensor([-1.0, 2.0, 3.0])).tolist()))
    assert seen[0] == seen[1]
