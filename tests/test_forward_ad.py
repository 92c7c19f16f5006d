"""Forward-mode AD (ckpt.autograd.forward_ad) for every op of the core, in float64.

For each op of the gradcheck tables (tests/test_ops_gradcheck.py, tests/test_nn_ops.py):
the JVP agrees with the VJP (``<v, J u> == <J^T v, u>`` on random u, v) and with central
differences; forward over reverse (the tangent of a gradient) agrees with reverse over
reverse and with central differences of the gradient; forward mode alone records no graph.
Then the protocol: levels, dropped tangents, errors, custom ``Function.jvp``, and checkers
that fail on a wrong JVP rule.
"""
import importlib
import math

import numpy as np
import pytest

import ckpt
import ckpt.autograd.forward_ad as fwAD
from ckpt.autograd import Function
from ckpt.autograd.ops import elementwise
from ckpt.autograd.ops.nn import conv as nn_conv, norm as nn_norm

from conftest import Double
import test_nn_ops
import test_ops_gradcheck


# ---- the op table: every case of both gradcheck tables -------------------------------------

def _core_case(case):
    name, fn, specs = case[:3]
    kwargs = case[3] if len(case) > 3 else {}
    return name, lambda seed: (fn, test_ops_gradcheck._make_inputs(specs, seed)), kwargs


def _nn_case(case):
    name, make = case
    return "nn_" + name, lambda seed: make(np.random.default_rng(seed)), {}


CASES = [_core_case(c) for c in test_ops_gradcheck.CASES] + [_nn_case(c) for c in test_nn_ops.CASES]
IDS = [c[0] for c in CASES]

def _outputs(result):
    items = result if isinstance(result, (tuple, list)) else (result,)
    return [o for o in items if isinstance(o, ckpt.Tensor) and o.dtype.kind == "f"]


def _differentiable(inputs):
    return [i for i, x in enumerate(inputs) if isinstance(x, ckpt.Tensor) and x.requires_grad]


def _random_like(rng, t):
    return ckpt.Tensor(rng.standard_normal(t.shape).astype(t.dtype))


def _jvp(fn, inputs, us):
    """Primal outputs (arrays) and their tangents (arrays, zeros where None) for tangents
    ``us`` ({input index: tangent})."""
    with fwAD.dual_level():
        args = [fwAD.make_dual(x, us[i]) if i in us else x for i, x in enumerate(inputs)]
        outs = _outputs(fn(*args))
        unpacked = [fwAD.unpack_dual(o) for o in outs]
        return ([p.data.copy() for p, _ in unpacked],
                [np.zeros(p.shape) if t is None else t.data.copy() for p, t in unpacked])


def _shifted(inputs, us, step):
    """``inputs`` moved by ``step * u`` (fresh leaves for the differentiable ones)."""
    return [ckpt.Tensor(x.data + step * us[i].data, requires_grad=True) if i in us else x
            for i, x in enumerate(inputs)]


def _case(name):
    return next(c[1] for c in CASES if c[0] == name)


def _dot(a, b):
    return sum(float(np.sum(x * y)) for x, y in zip(a, b))


def _duals(inputs, tangents, diff):
    """``inputs`` with the differentiable ones made dual (inside a level)."""
    duals = list(inputs)
    for i in diff:
        duals[i] = fwAD.make_dual(inputs[i], tangents[i])
    return duals


def _setup(make, seed=0):
    fn, inputs = make(seed)
    inputs = tuple(inputs)
    rng = np.random.default_rng(seed + 100)
    us = {i: _random_like(rng, inputs[i]) for i in _differentiable(inputs)}
    return fn, inputs, us, rng


# ---- first derivatives ------------------------------------------------------------------------

@pytest.mark.parametrize("name,make,kwargs", CASES, ids=IDS)
def test_jvp_agrees_with_vjp_and_central_differences(name, make, kwargs):
    """Forward and reverse agree on the primal and on <v, J u> = <J^T v, u>; J u matches
    (f(x + eps u) - f(x - eps u)) / 2 eps."""
    fn, inputs, us, rng = _setup(make)
    primals, tangents = _jvp(fn, inputs, us)
    outs = _outputs(fn(*inputs))
    for p, o in zip(primals, outs):
        np.testing.assert_array_equal(p, o.data)  # forward mode does not change the values
    vs = [_random_like(rng, o) for o in outs]
    diff = _differentiable(inputs)
    pairs = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    grads = ckpt.autograd.grad([o for o, _ in pairs], [inputs[i] for i in diff],
                               [v for _, v in pairs], allow_unused=True)
    grads = [np.zeros(inputs[i].shape) if g is None else g.data for g, i in zip(grads, diff)]
    lhs = _dot([v.data for v in vs], tangents)
    rhs = _dot(grads, [us[i].data for i in diff])
    tol = 1e-6 if kwargs else 1e-9  # cases with kwargs pass through float32
    assert math.isclose(lhs, rhs, rel_tol=tol, abs_tol=tol), (lhs, rhs)

    eps = kwargs.get("eps", 1e-6)
    plus = [o.data for o in _outputs(fn(*_shifted(inputs, us, eps)))]
    minus = [o.data for o in _outputs(fn(*_shifted(inputs, us, -eps)))]
    for t, a, b in zip(tangents, plus, minus):
        np.testing.assert_allclose(t, (a - b) / (2 * eps), rtol=kwargs.get("rtol", 1e-4),
                                   atol=kwargs.get("atol", 1e-6))


def _gradient(fn, inputs, vs, diff, create_graph=False):
    outs = _outputs(fn(*inputs))
    pairs = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    if not pairs:
        return [None] * len(diff)
    return list(ckpt.autograd.grad([o for o, _ in pairs], [inputs[i] for i in diff],
                                   [v for _, v in pairs], create_graph=create_graph,
                                   allow_unused=True))


@pytest.mark.parametrize("name,make,kwargs", CASES, ids=IDS)
def test_forward_over_reverse_second_derivatives(name, make, kwargs):
    """The tangent of the gradient g(x) = J(x)^T v along u (forward over reverse) equals the
    gradient of <g(x), u> (reverse over reverse) and central differences of g along u."""
    fn, inputs, us, rng = _setup(make, seed=1)
    diff = _differentiable(inputs)
    vs = [_random_like(rng, o) for o in _outputs(fn(*inputs))]

    with fwAD.dual_level():
        duals = _duals(inputs, us, diff)
        grads = _gradient(fn, duals, vs, diff)
        forward_over_reverse = [np.zeros(inputs[i].shape) if g is None or fwAD.unpack_dual(g).tangent is None
                                else fwAD.unpack_dual(g).tangent.data.copy() for g, i in zip(grads, diff)]

    grads = _gradient(fn, inputs, vs, diff, create_graph=True)
    pairs = [(g, us[i]) for g, i in zip(grads, diff) if g is not None and g.requires_grad]
    if pairs:
        inner = sum((g * u).sum() for g, u in pairs)
        rr = ckpt.autograd.grad(inner, [inputs[i] for i in diff], allow_unused=True)
    else:
        rr = [None] * len(diff)
    reverse_over_reverse = [np.zeros(inputs[i].shape) if g is None else g.data for g, i in zip(rr, diff)]
    for a, b in zip(forward_over_reverse, reverse_over_reverse):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)

    eps = 1e-5
    plus = _gradient(fn, _shifted(inputs, us, eps), vs, diff)
    minus = _gradient(fn, _shifted(inputs, us, -eps), vs, diff)
    for a, gp, gm, i in zip(forward_over_reverse, plus, minus, diff):
        gp = np.zeros(inputs[i].shape) if gp is None else gp.data
        gm = np.zeros(inputs[i].shape) if gm is None else gm.data
        np.testing.assert_allclose(a, (gp - gm) / (2 * eps), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,make,kwargs", CASES, ids=IDS)
def test_reverse_over_forward_second_derivatives(name, make, kwargs):
    """The gradient of <v, J(x) u> (the JVP rules recorded as a graph, reverse over forward)
    equals forward over reverse: both are the mixed second derivative."""
    fn, inputs, us, rng = _setup(make, seed=3)
    diff = _differentiable(inputs)
    vs = [_random_like(rng, o) for o in _outputs(fn(*inputs))]
    with fwAD.dual_level():
        duals = _duals(inputs, us, diff)
        tangents = [fwAD.unpack_dual(o).tangent for o in _outputs(fn(*duals))]
    terms = [(t * v).sum() for t, v in zip(tangents, vs) if t is not None and t.requires_grad]
    ro = (ckpt.autograd.grad(sum(terms), [inputs[i] for i in diff], allow_unused=True)
          if terms else [None] * len(diff))
    with fwAD.dual_level():
        duals = _duals(inputs, us, diff)
        grads = _gradient(fn, duals, vs, diff)
        fr = [None if g is None else fwAD.unpack_dual(g).tangent for g in grads]
    for a, b, i in zip(ro, fr, diff):
        a = np.zeros(inputs[i].shape) if a is None else a.data
        b = np.zeros(inputs[i].shape) if b is None else b.data
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_second_derivative_table_has_nonlinear_ops():
    """The forward-over-reverse test above sees nonzero second derivatives for the ops that
    have them (so it is not vacuous)."""
    x = ckpt.tensor([0.3, -0.7, 1.1], dtype=ckpt.float64)
    u = ckpt.tensor([1.0, -2.0, 0.5], dtype=ckpt.float64)
    w = ckpt.tensor([1.0, 3.0, -1.0], dtype=ckpt.float64)
    for f in (ckpt.tanh, ckpt.exp, ckpt.sigmoid, lambda t: ckpt.softmax(t, 0) * w,
              lambda t: nn_norm.layer_norm(t.reshape(1, 3), 3) * w):
        with fwAD.dual_level():
            xd = fwAD.make_dual(x.detach().requires_grad_(), u)
            (g,) = ckpt.autograd.grad(f(xd).sum(), xd)
            assert np.abs(fwAD.unpack_dual(g).tangent.data).max() > 1e-3


# ---- forward mode alone records nothing ---------------------------------------------------

@pytest.mark.parametrize("name,make,kwargs", CASES, ids=IDS)
def test_forward_mode_alone_saves_nothing(name, make, kwargs):
    """With no input requiring grad, a forward pass with tangents records no graph: every
    output has no ``grad_fn`` and nothing is saved for backward (no node exists to save it);
    the tangents are still right (central differences)."""
    fn, inputs, us, _ = _setup(make, seed=2)
    plain = tuple(x.detach() if isinstance(x, ckpt.Tensor) else x for x in inputs)
    with fwAD.dual_level():
        args = [fwAD.make_dual(x, us[i]) if i in us else x for i, x in enumerate(plain)]
        outs = _outputs(fn(*args))
        assert all(o.grad_fn is None and not o.requires_grad for o in outs)
        tangents = [fwAD.unpack_dual(o).tangent for o in outs]
        assert any(t is not None for t in tangents)
        tangents = [np.zeros(o.shape) if t is None else t.data.copy() for o, t in zip(outs, tangents)]
    eps = kwargs.get("eps", 1e-6)
    plus = [o.data for o in _outputs(fn(*[ckpt.Tensor(x.data + eps * us[i].data) if i in us else x
                                          for i, x in enumerate(plain)]))]
    minus = [o.data for o in _outputs(fn(*[ckpt.Tensor(x.data - eps * us[i].data) if i in us else x
                                           for i, x in enumerate(plain)]))]
    for t, a, b in zip(tangents, plus, minus):
        np.testing.assert_allclose(t, (a - b) / (2 * eps), rtol=kwargs.get("rtol", 1e-4),
                                   atol=kwargs.get("atol", 1e-6))


def test_forward_mode_saves_no_bytes():
    """The same MLP-like pass: with grad it saves bytes; in forward mode alone, 0 bytes."""
    rng = np.random.default_rng(0)
    x = ckpt.Tensor(rng.standard_normal((4, 8)))
    w = ckpt.Tensor(rng.standard_normal((8, 8)))

    def saved_bytes(t):
        seen, total, stack = set(), 0, [t.grad_fn]
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            total += node.saved_bytes()
            stack.extend(n for n, _ in node.next_functions)
        return total

    y = ckpt.tanh(x @ w.detach().requires_grad_()).exp().sum()
    assert saved_bytes(y) > 0
    with fwAD.dual_level():
        yd = ckpt.tanh(x @ fwAD.make_dual(w, ckpt.ones(8, 8, dtype=ckpt.float64))).exp().sum()
        assert yd.grad_fn is None and saved_bytes(yd) == 0
        assert fwAD.unpack_dual(yd).tangent is not None


# ---- the protocol -------------------------------------------------------------------------

def test_dual_number_example():
    """f(x) = x^2 sin x at 3: f'(3) = 9 cos 3 + 6 sin 3."""
    with fwAD.dual_level():
        x = fwAD.make_dual(ckpt.tensor(3.0, dtype=ckpt.float64), ckpt.tensor(1.0, dtype=ckpt.float64))
        y = x ** 2 * ckpt.sin(x)
        primal, tangent = fwAD.unpack_dual(y)
    assert primal.item() == pytest.approx(9 * math.sin(3.0), rel=1e-14)
    assert tangent.item() == pytest.approx(9 * math.cos(3.0) + 6 * math.sin(3.0), rel=1e-14)


def test_make_dual_outside_a_level_raises():
    with pytest.raises(RuntimeError, match="no level exists"):
        fwAD.make_dual(ckpt.ones(2), ckpt.ones(2))


def test_make_dual_rejects_a_tangent_of_another_shape():
    with fwAD.dual_level():
        with pytest.raises(RuntimeError, match="different size"):
            fwAD.make_dual(ckpt.ones(2), ckpt.ones(3))


def test_nested_levels_raise():
    with fwAD.dual_level():
        with pytest.raises(RuntimeError, match="Nested forward mode AD is not supported"):
            with fwAD.dual_level():
                pass


def test_tangents_are_dropped_when_the_level_exits():
    with fwAD.dual_level():
        x = fwAD.make_dual(ckpt.ones(3), ckpt.ones(3))
        y = (x * 2).sin()
        assert fwAD.unpack_dual(y).tangent is not None
    assert fwAD.unpack_dual(x).tangent is None and fwAD.unpack_dual(y).tangent is None
    assert x._fw is None and y._fw is None  # dropped, not just hidden
    with fwAD.dual_level():  # a new level does not see the old tangents
        assert fwAD.unpack_dual(y).tangent is None
        assert fwAD.unpack_dual(y * 3).tangent is None


def test_in_place_write_takes_the_tangent_and_drops_it_at_exit():
    base = ckpt.zeros(2, 3, dtype=ckpt.float64)
    with fwAD.dual_level():
        v = fwAD.make_dual(ckpt.ones(3, dtype=ckpt.float64), ckpt.tensor([1.0, 2.0, 3.0], dtype=ckpt.float64))
        base[1] = v * 2
        assert fwAD.unpack_dual(base).tangent.tolist() == [[0, 0, 0], [2, 4, 6]]
    assert base._fw is None


def test_mixed_dtypes_and_non_differentiable_outputs():
    with fwAD.dual_level():
        x = fwAD.make_dual(ckpt.tensor([3.0, 1.0, 2.0]), ckpt.tensor([1.0, 2.0, 3.0]))
        values, indices = x.max(0, keepdim=True)
        assert fwAD.unpack_dual(values).tangent.tolist() == [1.0]
        assert fwAD.unpack_dual(indices).tangent is None
        assert fwAD.unpack_dual(x > 1).tangent is None
        y = x.to(ckpt.float64)
        assert fwAD.unpack_dual(y).tangent.dtype == np.float64


# ---- checkers fail on a wrong rule ------------------------------------------------------------

def test_checks_fail_on_a_wrong_jvp_rule(monkeypatch):
    """A tanh whose JVP forgets the square (1 - y instead of 1 - y^2) fails the dot-product
    and central-difference checks; a wrong conv2d JVP (the bias tangent dropped) too."""
    make = _case("tanh")
    test_jvp_agrees_with_vjp_and_central_differences("tanh", make, {})
    monkeypatch.setattr(elementwise.TanhBackward0, "jvp",
                        lambda self, tangents, primals, out: tangents[0] * (1 - out))
    with pytest.raises(AssertionError):
        test_jvp_agrees_with_vjp_and_central_differences("tanh", make, {})

    conv = _case("nn_conv2d")
    test_jvp_agrees_with_vjp_and_central_differences("nn_conv2d", conv, {})
    right = nn_conv.ConvolutionBackward0.jvp
    monkeypatch.setattr(nn_conv.ConvolutionBackward0, "jvp", lambda self, t, p, out: right(
        self, (t[0], t[1], None), p, out))
    with pytest.raises(AssertionError):
        test_jvp_agrees_with_vjp_and_central_differences("nn_conv2d", conv, {})


def test_second_order_check_fails_on_a_non_differentiable_jvp(monkeypatch):
    """A sin whose VJP is right but built from raw numpy (its derivative silently 0) fails
    the forward-over-reverse check."""
    make = _case("sin")
    test_forward_over_reverse_second_derivatives("sin", make, {})
    monkeypatch.setattr(elementwise.SinBackward0, "vjp",
                        lambda self, g, x: g * ckpt.Tensor(np.cos(x.data)))
    with pytest.raises(AssertionError):
        test_forward_over_reverse_second_derivatives("sin", make, {})


def test_every_nn_op_has_a_jvp_rule():
    """Each node class of the nn ops states its JVP beside its VJP."""
    for name in ("ScatterAddBackward0", "GatherBackward0", "NllLossBackward0", "MseLossBackward0",
                 "NativeLayerNormBackward0", "NativeBatchNormBackward0", "NativeDropoutBackward0",
                 "EmbeddingBackward0", "Im2ColBackward0", "Col2ImBackward0",
                 "ConvolutionBackward0", "Conv2dInputBackward0", "Conv2dWeightBackward0",
                 "MaxPool2DWithIndicesBackward0", "AvgPool2DBackward0",
                 "SoftmaxBackward0", "LogSoftmaxBackward0"):
        families = [importlib.import_module(f"ckpt.autograd.ops.nn.{family}") for family in (
            "_common", "conv", "dropout", "embedding", "loss", "norm", "pool", "softmax", "windows")]
        cls = next(getattr(family, name) for family in families if hasattr(family, name))
        assert callable(getattr(cls, "jvp", None)), name


def test_nn_table_covers_every_nn_op():
    names = [c[0] for c in CASES]
    for op in ("nll", "ce", "mse", "layer_norm", "batch_norm_train", "batch_norm_eval", "dropout",
               "embedding", "unfold", "fold", "conv2d", "max_pool2d", "avg_pool2d"):
        assert any(n.startswith("nn_" + op) for n in names), op


# ---- custom Function.jvp ----------------------------------------------------------------------

class _ScaledCube(Function):
    """k * x^3 with a non-tensor argument k; jvp reads what save_for_forward kept."""

    @staticmethod
    def forward(ctx, x, k):
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.k = k
        return x ** 3 * k

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 3 * x ** 2 * ctx.k, None

    @staticmethod
    def jvp(ctx, t, k_tangent):
        assert k_tangent is None  # non-tensor argument
        (x,) = ctx.saved_tensors
        return t * 3 * x ** 2 * ctx.k


class _MulAdd(Function):
    """(x * y, x + y): two outputs, two tensor inputs."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        ctx.save_for_forward(x, y)
        return x * y, x + y

    @staticmethod
    def backward(ctx, g1, g2):
        x, y = ctx.saved_tensors
        return g1 * y + g2, g1 * x + g2

    @staticmethod
    def jvp(ctx, tx, ty):
        x, y = ctx.saved_tensors
        return tx * y + x * ty, tx + ty


def test_function_jvp():
    x = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64)
    with fwAD.dual_level():
        y = _ScaledCube.apply(fwAD.make_dual(x, ckpt.tensor([1.0, 0.5], dtype=ckpt.float64)), 2.0)
        assert fwAD.unpack_dual(y).tangent.tolist() == [6.0, 12.0]


def test_function_jvp_multiple_outputs_and_materialized_zeros():
    x, y = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64), ckpt.tensor([3.0, 5.0], dtype=ckpt.float64)
    with fwAD.dual_level():
        xd = fwAD.make_dual(x, ckpt.tensor([1.0, 1.0], dtype=ckpt.float64))
        prod, total = _MulAdd.apply(xd, y)  # y has no tangent: jvp gets zeros for it
        assert fwAD.unpack_dual(prod).tangent.tolist() == [3.0, 5.0]
        assert fwAD.unpack_dual(total).tangent.tolist() == [1.0, 1.0]


def test_function_jvp_agrees_with_its_backward_and_batched_level():
    rng = np.random.default_rng(0)
    x, y = (ckpt.Tensor(rng.standard_normal(3), requires_grad=True) for _ in range(2))
    u, w = rng.standard_normal(3), rng.standard_normal(3)
    v1, v2 = rng.standard_normal(3), rng.standard_normal(3)
    with fwAD.dual_level():
        outs = _MulAdd.apply(fwAD.make_dual(x, ckpt.Tensor(u)), fwAD.make_dual(y, ckpt.Tensor(w)))
        t1, t2 = (fwAD.unpack_dual(o).tangent.data for o in outs)
    gx, gy = ckpt.autograd.grad(_MulAdd.apply(x, y), (x, y), (ckpt.Tensor(v1), ckpt.Tensor(v2)))
    assert np.dot(v1, t1) + np.dot(v2, t2) == pytest.approx(np.dot(gx.data, u) + np.dot(gy.data, w))
    with fwAD.dual_level(batch_size=3):  # jvp runs per tangent of the batch
        out = _ScaledCube.apply(fwAD.make_dual(x.detach(), ckpt.eye(3, dtype=ckpt.float64)), 1.0)
        np.testing.assert_allclose(fwAD.unpack_dual(out).tangent.data, np.diag(3 * x.data ** 2))


def test_function_jvp_is_differentiable():
    """Reverse over forward through a custom jvp written with ckpt ops."""
    x = ckpt.tensor([2.0], dtype=ckpt.float64, requires_grad=True)
    with fwAD.dual_level():
        y = _ScaledCube.apply(fwAD.make_dual(x, ckpt.ones(1, dtype=ckpt.float64)), 1.0)
        tangent = fwAD.unpack_dual(y).tangent
    (g,) = ckpt.autograd.grad(tangent.sum(), x)
    assert g.item() == pytest.approx(12.0)  # d/dx 3x^2 = 6x


def test_function_without_jvp_meeting_a_tangent_raises():
    class NoJvp(Double):
        pass

    assert NoJvp.apply(ckpt.ones(2)).tolist() == [2.0, 2.0]
    with fwAD.dual_level():
        assert NoJvp.apply(ckpt.ones(2)).tolist() == [2.0, 2.0]  # no tangent: fine
        with pytest.raises(RuntimeError, match="NoJvp.*must implement the jvp"):
            NoJvp.apply(fwAD.make_dual(ckpt.ones(2), ckpt.ones(2)))


def test_function_jvp_wrong_count_or_shape_raises():
    class Bad(Double):
        @staticmethod
        def jvp(ctx, t):
            return t.sum()

    class TooMany(Bad):
        @staticmethod
        def jvp(ctx, t):
            return t, t

    with fwAD.dual_level():
        x = fwAD.make_dual(ckpt.ones(2), ckpt.ones(2))
        with pytest.raises(RuntimeError, match="tangent of shape"):
            Bad.apply(x)
        with pytest.raises(RuntimeError, match="returned 2 tangents"):
            TooMany.apply(x)
