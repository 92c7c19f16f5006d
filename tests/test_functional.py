"""The functional API (ckpt.autograd.functional) and the composable transforms (ckpt.func):
the issue's worked examples, then differential tests against torch.autograd.functional and
torch.func on the same functions (single Tensors and tuples on both sides, every strategy,
looped and vectorized, create_graph and strict), then errors at the public boundary."""
import numpy as np
import pytest
import torch
import torch.autograd.functional as TAF
import torch.func as TF

import ckpt
from ckpt import func as CF
from ckpt.autograd import functional as AF

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
F64 = ckpt.float64
STRATEGIES = ["reverse-mode", "forward-mode"]

def t(a):
    return ckpt.tensor(np.asarray(a, dtype=np.float64))


def close(ours, theirs, rtol=1e-10, atol=1e-12, what=""):
    """Nested tuples of ckpt / torch tensors: same nesting, shapes and values."""
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), f"{what}: nesting differs"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            close(a, b, rtol, atol, f"{what}[{i}]")
        return
    assert isinstance(ours, ckpt.Tensor), f"{what}: {type(ours).__name__} is not a Tensor"
    b = theirs.detach().numpy()
    assert ours.shape == b.shape, f"{what}: shape {ours.shape} != {b.shape}"
    np.testing.assert_allclose(ours.data, b, rtol=rtol, atol=atol, err_msg=what)


# ---- the examples -------------------------------------------------------------------

RNG = np.random.default_rng(0)
N_IN, N_H1, N_H2, N_OUT = 5, 7, 6, 4
W1, W2, W3 = (RNG.standard_normal(s) for s in [(N_H1, N_IN), (N_H2, N_H1), (N_OUT, N_H2)])
B1, B2, B3 = RNG.standard_normal(N_H1), RNG.standard_normal(N_H2), RNG.standard_normal(N_OUT)
PRODUCT = W3 @ W2 @ W1


def affine3(x):
    """x -> W3 (W2 (W1 x + b1) + b2) + b3, whose Jacobian is W3 W2 W1 everywhere."""
    return t(W3) @ (t(W2) @ (t(W1) @ x + t(B1)) + t(B2)) + t(B3)


X0 = RNG.standard_normal(N_IN)


def test_forward_jvp_with_ones_is_the_row_sums():
    out, tangent = AF.jvp(affine3, t(X0), ckpt.ones(N_IN, dtype=F64))
    np.testing.assert_allclose(tangent.data, PRODUCT.sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(out.data, affine3(t(X0)).data)
    _, tangent = CF.jvp(affine3, (t(X0),), (ckpt.ones(N_IN, dtype=F64),))
    np.testing.assert_allclose(tangent.data, PRODUCT.sum(axis=1), rtol=1e-12)


def test_reverse_vjp_with_ones_is_the_column_sums():
    _, cotangent = AF.vjp(affine3, t(X0), ckpt.ones(N_OUT, dtype=F64))
    np.testing.assert_allclose(cotangent.data, PRODUCT.sum(axis=0), rtol=1e-12)
    _, vjp_fn = CF.vjp(affine3, t(X0))
    np.testing.assert_allclose(vjp_fn(ckpt.ones(N_OUT, dtype=F64))[0].data, PRODUCT.sum(axis=0),
                               rtol=1e-12)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_jacobian_of_the_affine_chain_is_the_matrix_product(strategy, vectorize):
    J = AF.jacobian(affine3, t(X0), vectorize=vectorize, strategy=strategy)
    assert J.shape == (N_OUT, N_IN)
    np.testing.assert_allclose(J.data, PRODUCT, rtol=1e-12, atol=1e-12)
    assert not J.requires_grad


def test_func_jacobians_of_the_affine_chain():
    for jac in (CF.jacrev(affine3), CF.jacfwd(affine3), CF.jacrev(affine3, chunk_size=1),
                CF.jacrev(affine3, chunk_size=3)):
        np.testing.assert_allclose(jac(t(X0)).data, PRODUCT, rtol=1e-12, atol=1e-12)


A = RNG.standard_normal((4, 4))


def quadratic(x):
    return x @ t(A) @ x


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_hessian_of_a_quadratic_form(strategy, vectorize):
    H = AF.hessian(quadratic, t(RNG.standard_normal(4)), vectorize=vectorize,
                   outer_jacobian_strategy=strategy)
    np.testing.assert_allclose(H.data, A + A.T, rtol=1e-12, atol=1e-12)


# hessian == jacfwd(jacrev) (forward over reverse) == jacrev(jacrev) == jacrev(jacfwd) == jacfwd(grad)
COMPOSITIONS = [
    ("hessian", lambda f, argnums: CF.hessian(f, argnums)),
    ("jacfwd(jacrev)", lambda f, argnums: CF.jacfwd(CF.jacrev(f, argnums), argnums)),
    ("jacrev(jacrev)", lambda f, argnums: CF.jacrev(CF.jacrev(f, argnums), argnums)),
    ("jacrev(jacfwd)", lambda f, argnums: CF.jacrev(CF.jacfwd(f, argnums), argnums)),
    ("jacfwd(grad)", lambda f, argnums: CF.jacfwd(CF.grad(f, argnums), argnums)),
]


@pytest.mark.parametrize("name,compose", COMPOSITIONS, ids=[c[0] for c in COMPOSITIONS])
def test_func_hessian_of_a_quadratic_form(name, compose):
    x = t(RNG.standard_normal(4))
    np.testing.assert_allclose(compose(quadratic, 0)(x).data, A + A.T, rtol=1e-12, atol=1e-12)


def sum_tanh(x):
    return x.tanh().sum()


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_hessian_of_sum_tanh_is_the_analytic_diagonal(strategy, vectorize):
    x = RNG.standard_normal(5)
    H = AF.hessian(sum_tanh, t(x), vectorize=vectorize, outer_jacobian_strategy=strategy)
    y = np.tanh(x)
    np.testing.assert_allclose(H.data, np.diag(-2 * y * (1 - y * y)), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(CF.hessian(sum_tanh)(t(x)).data, H.data, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("f", [sum_tanh, quadratic,
                               lambda x: (x.exp() * x.sin()).sum() + (x @ t(A) @ x.tanh())],
                         ids=["sum_tanh", "quadratic", "mixed"])
def test_hvp_and_vhp_are_hessian_times_v(f):
    x, v = t(RNG.standard_normal(4)), t(RNG.standard_normal(4))
    H = AF.hessian(f, x).data
    out, hv = AF.hvp(f, x, v)
    out2, vh = AF.vhp(f, x, v)
    np.testing.assert_allclose(hv.data, H @ v.data, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(vh.data, v.data @ H, rtol=1e-10, atol=1e-12)
    assert out.item() == pytest.approx(f(x).item()) and out2.item() == pytest.approx(f(x).item())


# ---- differential tests against torch -------------------------------------------------------

M = RNG.standard_normal((3, 3))


def lib_const(x, a):
    """``a`` as a constant of ``x``'s library."""
    return torch.tensor(a) if isinstance(x, torch.Tensor) else t(a)


def f_single(x):
    return (x @ lib_const(x, M)).tanh() * x.sin()


def f_two_in(a, b):
    return a.sin() * b.cos() + a * b


def f_two_out(x):
    return x.exp(), (x * x).sum()


def f_two_in_two_out(a, b):
    return a * b, (a.sin() @ lib_const(a, M) @ b.cos())


def f_matrix(X):
    return (X @ X.T).tanh()


def f_broadcast(a, B):
    """Broadcasting that changes rank (a vector times a matrix, a 0-d times a vector)."""
    return (a * B).sum(0), B.sum() * a


FUNCTIONS = [
    ("single", f_single, [(3,)]),
    ("two_in", f_two_in, [(3,), (3,)]),
    ("two_out", f_two_out, [(3,)]),
    ("two_in_two_out", f_two_in_two_out, [(3,), (3,)]),
    ("matrix", f_matrix, [(2, 3)]),
    ("broadcast", f_broadcast, [(3,), (2, 3)]),
]


def inputs_for(shapes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in shapes]
    ours = tuple(t(a) for a in arrays)
    theirs = tuple(torch.tensor(a) for a in arrays)
    return (ours[0], theirs[0]) if len(shapes) == 1 else (ours, theirs)


def like(x, seed, theirs=False):
    """Random tensors shaped like ``x`` (a tensor or a tuple), for ckpt and torch alike."""
    rng = np.random.default_rng(seed)
    items = x if isinstance(x, tuple) else (x,)
    arrays = [rng.standard_normal(tuple(i.shape)) for i in items]
    ours = tuple(t(a) for a in arrays)
    ref = tuple(torch.tensor(a) for a in arrays)
    if not isinstance(x, tuple):
        ours, ref = ours[0], ref[0]
    return ours, ref


@pytest.mark.parametrize("name,f,shapes", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_vjp_and_jvp_match_torch(name, f, shapes):
    x, tx = inputs_for(shapes)
    out = f(*x) if isinstance(x, tuple) else f(x)
    v, tv = like(out, 1)
    close(AF.vjp(f, x, v), TAF.vjp(f, tx, tv), what="vjp")
    u, tu = like(x, 2)
    close(AF.jvp(f, x, u), TAF.jvp(f, tx, tu), what="jvp")


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name,f,shapes", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_jacobian_matches_torch(name, f, shapes, strategy, vectorize):
    x, tx = inputs_for(shapes)
    ours = AF.jacobian(f, x, vectorize=vectorize, strategy=strategy)
    # every setting must equal torch's reverse mode (torch's forward mode exists only
    # vectorized, and its vmap rejects some of these functions, e.g. a matrix times a vector)
    close(ours, TAF.jacobian(f, tx), what="jacobian")


def s_single(x):
    return (x.tanh() * x.exp()).sum()


def s_two(a, b):
    return ((a @ lib_const(a, M)) * b.sin()).sum() + (a ** 3).sum()


def s_matrix(X):
    return (X @ X.T).tanh().sum() * X.sum()


SCALARS = [("single", s_single, [(3,)]), ("two", s_two, [(3,), (3,)]),
           ("matrix", s_matrix, [(2, 3)])]


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name,f,shapes", SCALARS, ids=[c[0] for c in SCALARS])
def test_hessian_matches_torch(name, f, shapes, strategy, vectorize):
    x, tx = inputs_for(shapes)
    ours = AF.hessian(f, x, vectorize=vectorize, outer_jacobian_strategy=strategy)
    close(ours, TAF.hessian(f, tx), what="hessian")


@pytest.mark.parametrize("name,f,shapes", SCALARS, ids=[c[0] for c in SCALARS])
def test_hvp_vhp_match_torch(name, f, shapes):
    x, tx = inputs_for(shapes)
    v, tv = like(x, 3)
    close(AF.hvp(f, x, v), TAF.hvp(f, tx, tv), what="hvp")
    close(AF.vhp(f, x, v), TAF.vhp(f, tx, tv), what="vhp")


def _grad_of_everything(result, inputs):
    """d(sum of every tensor in ``result``)/d(inputs): checks create_graph results are
    differentiable (and correctly so)."""
    flat = []

    def collect(r):
        if isinstance(r, (tuple, list)):
            for i in r:
                collect(i)
        else:
            flat.append(r)
    collect(result)
    total = sum(r.sum() for r in flat)
    lib = torch.autograd if isinstance(total, torch.Tensor) else ckpt.autograd
    return lib.grad(total, inputs, allow_unused=True)


# (id, ckpt call, torch call): f, inputs, v -> result, all with create_graph=True
CREATE_GRAPH_CALLS = [
    ("vjp", lambda f, x, v: AF.vjp(f, x, create_graph=True),
     lambda f, x, v: TAF.vjp(f, x, create_graph=True)),
    ("jvp", lambda f, x, v: AF.jvp(f, x, v, create_graph=True),
     lambda f, x, v: TAF.jvp(f, x, v, create_graph=True)),
    ("hvp", lambda f, x, v: AF.hvp(f, x, v, create_graph=True),
     lambda f, x, v: TAF.hvp(f, x, v, create_graph=True)),
    ("vhp", lambda f, x, v: AF.vhp(f, x, v, create_graph=True),
     lambda f, x, v: TAF.vhp(f, x, v, create_graph=True)),
    ("jacobian", lambda f, x, v: AF.jacobian(f, x, create_graph=True),
     lambda f, x, v: TAF.jacobian(f, x, create_graph=True)),
    ("jacobian_vectorized", lambda f, x, v: AF.jacobian(f, x, create_graph=True, vectorize=True),
     lambda f, x, v: TAF.jacobian(f, x, create_graph=True, vectorize=True)),
    ("jacobian_forward", lambda f, x, v: AF.jacobian(f, x, create_graph=True, strategy="forward-mode"),
     lambda f, x, v: TAF.jacobian(f, x, create_graph=True)),
    ("hessian", lambda f, x, v: AF.hessian(f, x, create_graph=True),
     lambda f, x, v: TAF.hessian(f, x, create_graph=True)),
    ("hessian_forward_vectorized",
     lambda f, x, v: AF.hessian(f, x, create_graph=True, outer_jacobian_strategy="forward-mode",
                                vectorize=True),
     lambda f, x, v: TAF.hessian(f, x, create_graph=True)),
]


@pytest.mark.parametrize("call,ours,theirs", CREATE_GRAPH_CALLS, ids=[c[0] for c in CREATE_GRAPH_CALLS])
@pytest.mark.parametrize("name,f,shapes", SCALARS, ids=[c[0] for c in SCALARS])
def test_create_graph_results_are_differentiable_like_torch(name, f, shapes, call, ours, theirs):
    x, tx = inputs_for(shapes)
    xs = tuple(i.detach().requires_grad_() for i in (x if isinstance(x, tuple) else (x,)))
    txs = tuple(i.detach().requires_grad_() for i in (tx if isinstance(tx, tuple) else (tx,)))
    arg, targ = (xs, txs) if isinstance(x, tuple) else (xs[0], txs[0])
    v, tv = like(x, 4)
    result, expected = ours(f, arg, v), theirs(f, targ, tv)
    close(result, expected)
    close(_grad_of_everything(result, xs), _grad_of_everything(expected, txs), rtol=1e-9,
          what="gradient of the create_graph result")


def test_results_are_detached_without_create_graph():
    x = ckpt.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    for result in (AF.vjp(s_single, x), AF.jvp(s_single, x, x), AF.hvp(s_single, x, x),
                   AF.vhp(s_single, x, x)):
        assert not any(r.requires_grad for r in result)
    assert not AF.jacobian(f_single, t([1.0, 2.0, 3.0])).requires_grad
    assert not AF.hessian(s_single, x).requires_grad
    assert x.grad is None  # nothing accumulated into the caller's leaves


# ---- strict mode: torch's errors ------------------------------------------------------------

def _same_error(ours, theirs, match=None):
    with pytest.raises(RuntimeError) as ours_info:
        ours()
    with pytest.raises(RuntimeError) as theirs_info:
        theirs()
    if match is None:
        assert str(ours_info.value) == str(theirs_info.value)
    else:
        assert match in str(ours_info.value) and match in str(theirs_info.value)


def test_strict_mode_raises_torchs_errors():
    x, tx = t([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64)

    def constant(x):
        return lib_const(x, np.ones(2))

    _same_error(lambda: AF.vjp(constant, x, x, strict=True), lambda: TAF.vjp(constant, tx, tx, strict=True))
    _same_error(lambda: AF.jacobian(constant, x, strict=True),
                lambda: TAF.jacobian(constant, tx, strict=True))
    _same_error(lambda: AF.jacobian(lambda a, b: a * 2, (x, x), strict=True),
                lambda: TAF.jacobian(lambda a, b: a * 2, (tx, tx), strict=True))
    _same_error(lambda: AF.vjp(lambda a, b: a * 2, (x, x), x, strict=True),
                lambda: TAF.vjp(lambda a, b: a * 2, (tx, tx), tx, strict=True))
    linear = lambda x: (x * 3).sum()  # noqa: E731 -- its gradient is independent of x
    _same_error(lambda: AF.hessian(linear, x, strict=True), lambda: TAF.hessian(linear, tx, strict=True))
    _same_error(lambda: AF.vhp(linear, x, x, strict=True), lambda: TAF.vhp(linear, tx, tx, strict=True))
    _same_error(lambda: AF.hvp(linear, x, x, strict=True), lambda: TAF.hvp(linear, tx, tx, strict=True))
    _same_error(lambda: AF.jvp(constant, x, x, strict=True), lambda: TAF.jvp(constant, tx, tx, strict=True),
                match="Output 0 of the user-provided function")
    _same_error(lambda: AF.jacobian(lambda a, b: a * 2, (x, x), strict=True, vectorize=True),
                lambda: TAF.jacobian(lambda a, b: a * 2, (tx, tx), strict=True, vectorize=True))
    _same_error(lambda: AF.hessian(linear, x, strict=True, vectorize=True),
                lambda: TAF.hessian(linear, tx, strict=True, vectorize=True))
    # ckpt goes further than torch here: forward-mode strict works
    _same_error(lambda: AF.jacobian(lambda a, b: a * 2, (x, x), strict=True, strategy="forward-mode"),
                lambda: TAF.jacobian(lambda a, b: a * 2, (tx, tx), strict=True))
    with pytest.raises(RuntimeError, match="independent of the inputs"):
        AF.jacobian(constant, x, strict=True, strategy="forward-mode", vectorize=True)


def test_non_strict_independent_outputs_give_zeros_like_torch():
    x, tx = t([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64)

    def part(a, b):
        return a * 2, lib_const(a, np.ones(3))

    for strategy in STRATEGIES:
        for vectorize in (False, True):
            close(AF.jacobian(part, (x, x), vectorize=vectorize, strategy=strategy),
                  TAF.jacobian(part, (tx, tx)))
    close(AF.hessian(lambda x: (x * 3).sum(), x), TAF.hessian(lambda x: (x * 3).sum(), tx))


# ---- ckpt.func against torch.func -----------------------------------------------------------

def test_func_grad_matches_torch_with_argnums_and_aux():
    (a, b), (ta, tb) = inputs_for([(3,), (3,)])
    close(CF.grad(s_two)(a, b), TF.grad(s_two)(ta, tb))
    close(CF.grad(s_two, argnums=1)(a, b), TF.grad(s_two, argnums=1)(ta, tb))
    close(CF.grad(s_two, argnums=(0, 1))(a, b), TF.grad(s_two, argnums=(0, 1))(ta, tb))
    close(CF.grad(s_two, argnums=-1)(a, b), TF.grad(s_two, argnums=-1)(ta, tb))

    def with_aux(a, b):
        value = s_two(a, b)
        return value, (value * 2, a.sum())

    g, (aux1, aux2) = CF.grad(with_aux, has_aux=True)(a, b)
    tg, (taux1, taux2) = TF.grad(with_aux, has_aux=True)(ta, tb)
    close((g, aux1, aux2), (tg, taux1, taux2))
    (g, value) = CF.grad_and_value(s_two, argnums=(0, 1))(a, b)
    (tg, tvalue) = TF.grad_and_value(s_two, argnums=(0, 1))(ta, tb)
    close((g, value), (tg, tvalue))


def test_func_grad_of_grad_and_pytrees():
    x = ckpt.tensor(0.7, dtype=F64)
    third = CF.grad(CF.grad(CF.grad(lambda x: x.sin() * x)))(x)
    close(third, TF.grad(TF.grad(TF.grad(lambda x: x.sin() * x)))(torch.tensor(0.7, dtype=torch.float64)))
    params = {"w": t([1.0, -2.0]), "b": t(0.5)}
    g = CF.grad(lambda p, x: ((p["w"] * x).sum() + p["b"]).tanh())(params, t([0.3, 0.1]))
    tp = {k: torch.tensor(v.data) for k, v in params.items()}
    tg = TF.grad(lambda p, x: ((p["w"] * x).sum() + p["b"]).tanh())(
        tp, torch.tensor([0.3, 0.1], dtype=torch.float64))
    assert set(g) == {"w", "b"}
    close((g["w"], g["b"]), (tg["w"], tg["b"]))


@pytest.mark.parametrize("name,f,shapes", FUNCTIONS, ids=[c[0] for c in FUNCTIONS])
def test_func_jacobians_match_torch(name, f, shapes):
    x, tx = inputs_for(shapes)
    args, targs = (x, tx) if isinstance(x, tuple) else ((x,), (tx,))
    argnums = tuple(range(len(args))) if len(args) > 1 else 0
    expected = TF.jacrev(f, argnums=argnums)(*targs)
    close(CF.jacrev(f, argnums=argnums)(*args), expected, what="jacrev")
    close(CF.jacrev(f, argnums=argnums, chunk_size=2)(*args), expected, what="jacrev chunked")
    close(CF.jacfwd(f, argnums=argnums)(*args), expected, what="jacfwd")


@pytest.mark.parametrize("composition,compose", COMPOSITIONS, ids=[c[0] for c in COMPOSITIONS])
@pytest.mark.parametrize("name,f,shapes", SCALARS, ids=[c[0] for c in SCALARS])
def test_func_hessian_compositions_match_torch(name, f, shapes, composition, compose):
    """Each composition of ckpt.func equals torch.func.hessian."""
    x, tx = inputs_for(shapes)
    args, targs = (x, tx) if isinstance(x, tuple) else ((x,), (tx,))
    argnums = tuple(range(len(args))) if len(args) > 1 else 0
    close(compose(f, argnums)(*args), TF.hessian(f, argnums=argnums)(*targs), rtol=1e-9,
          what=composition)


def test_func_vjp_jvp_match_torch():
    (a, b), (ta, tb) = inputs_for([(3,), (3,)])
    out, vjp_fn = CF.vjp(f_two_in_two_out, a, b)
    tout, tvjp_fn = TF.vjp(f_two_in_two_out, ta, tb)
    close(out, tout)
    (v1, v2), (tv1, tv2) = like((out[0], out[1]), 5)
    close(vjp_fn((v1, v2)), tvjp_fn((tv1, tv2)))
    close(vjp_fn((v1 * 2, v2)), tvjp_fn((tv1 * 2, tv2)))  # callable again
    (u1, u2), (tu1, tu2) = like((a, b), 6)
    close(CF.jvp(f_two_in_two_out, (a, b), (u1, u2)), TF.jvp(f_two_in_two_out, (ta, tb), (tu1, tu2)))


def test_func_results_are_plain_tensors_at_top_level_but_differentiable_inside():
    x = t([0.5, -1.0])
    assert not CF.grad(s_single)(x).requires_grad
    assert not CF.hessian(s_single)(x).requires_grad
    xg = x.detach().requires_grad_()
    g = CF.grad(s_single)(xg)  # an argument tracked by the caller's autograd stays tracked
    assert g.requires_grad
    (h,) = ckpt.autograd.grad(g.sum(), xg)
    np.testing.assert_allclose(h.data, CF.hessian(s_single)(x).data.sum(0), rtol=1e-12)


def test_nested_forward_transforms_raise():
    with pytest.raises(RuntimeError, match="Nested forward mode AD"):
        CF.jacfwd(CF.jacfwd(s_single))(t([1.0, 2.0]))


# ---- errors at the public boundary ------------------------------------------------------------

def test_func_errors():
    x = t([1.0, 2.0])
    with pytest.raises(TypeError, match="argnums must be int or Tuple"):
        CF.grad(s_single, argnums=[0])
    with pytest.raises(TypeError, match="argnums must be int or Tuple"):
        CF.jacrev(s_single, argnums=1.0)
    with pytest.raises(ValueError, match="argnums must be non-empty"):
        CF.grad(s_single, argnums=())
    with pytest.raises(ValueError, match=r"Got argnums=2, but only 1 positional inputs"):
        CF.grad(s_single, argnums=2)(x)
    with pytest.raises(ValueError, match="must be unique"):
        CF.grad(s_two, argnums=(0, -2))(x, x)
    with pytest.raises(RuntimeError, match="Expected f\\(\\*args\\) to return a scalar Tensor"):
        CF.grad(lambda x: x * 2)(x)
    with pytest.raises(RuntimeError, match="to return a Tensor"):
        CF.grad(lambda x: 3.0)(x)
    with pytest.raises(RuntimeError, match="should be a tuple: \\(output, aux\\)"):
        CF.grad(s_single, has_aux=True)(x)
    with pytest.raises(TypeError, match="expected a callable"):
        CF.jacfwd("not a function")
    with pytest.raises(TypeError, match="floating-point"):
        CF.grad(lambda i: i.sum())(ckpt.tensor([1, 2]))
    with pytest.raises(TypeError, match="Expected primals to be a tuple"):
        CF.jvp(s_single, x, x)
    with pytest.raises(RuntimeError, match="same python structure"):
        CF.jvp(s_two, (x, x), (x,))
    with pytest.raises(ValueError, match="chunk_size"):
        CF.jacrev(s_single, chunk_size=0)
    _, vjp_fn = CF.vjp(f_single, t([1.0, 2.0, 3.0]))
    with pytest.raises(RuntimeError, match="cotangent 0 must be a Tensor of the output's shape"):
        vjp_fn(t([1.0]))


def test_functional_errors():
    x = t([1.0, 2.0])
    with pytest.raises(TypeError, match="must be either a Tensor or a tuple of Tensors"):
        AF.jacobian(s_single, [x])
    with pytest.raises(TypeError, match="value at index 1 has type"):
        AF.vjp(s_two, (x, 3.0))
    with pytest.raises(ValueError, match='Expected strategy to be either "forward-mode" or "reverse-mode"'):
        AF.jacobian(s_single, x, strategy="sideways")
    with pytest.raises(ValueError, match="Expected strategy"):
        AF.hessian(s_single, x, outer_jacobian_strategy="forward")
    _same_error(lambda: AF.vjp(lambda x: x * 2, x), lambda: TAF.vjp(lambda x: x * 2, torch.ones(2)))
    _same_error(lambda: AF.jvp(lambda x: x * 2, x), lambda: TAF.jvp(lambda x: x * 2, torch.ones(2)))
    _same_error(lambda: AF.vjp(lambda x: x * 2, x, t([1.0, 2.0, 3.0])),
                lambda: TAF.vjp(lambda x: x * 2, torch.ones(2), torch.ones(3)),
                match="v has invalid size: should be")
    o = torch.ones(2)
    _same_error(lambda: AF.jvp(s_two, (x, x), (x,)), lambda: TAF.jvp(s_two, (o, o), (o,)))
    _same_error(lambda: AF.hvp(lambda x: x * 2, x, x), lambda: TAF.hvp(lambda x: x * 2, o, o))
    _same_error(lambda: AF.vhp(f_two_out, t([1.0, 2.0, 3.0]), t([1.0, 2.0, 3.0])),
                lambda: TAF.vhp(f_two_out, torch.ones(3), torch.ones(3)))
    _same_error(lambda: AF.hessian(lambda x: x * 2, x), lambda: TAF.hessian(lambda x: x * 2, torch.ones(2)))
