"""profile_graph and the op-level executor of graph plans on ckpt models that are not chains.

Every plan runs on the model itself: gradients are compared bit for bit with a plain
``loss.backward()`` from the same RNG state, and the measured logical bytes with the
simulator's, op by op (``during`` and ``after``).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import ckpt
from ckpt import nn, planner
from ckpt.planner.errors import BudgetError, ExecutionError, PlanMismatchError
from ckpt.planner.graph_profile import GraphProfileError  # noqa: F401  (public error type)
from ckpt.planner.op_trace import TraceError


class UNet(nn.Module):
    """Two levels: the first level's activations skip to the decoder (a long skip)."""

    def __init__(self, c=4):
        super().__init__()
        self.down1 = nn.Conv2d(2, c, 3, padding=1)
        self.down2 = nn.Conv2d(c, 2 * c, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Conv2d(3 * c, c, 3, padding=1)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        a = self.down1(x).relu()
        b = self.down2(self.pool(a)).relu()
        n, ch, h, w = b.shape
        up = b[:, :, :, None, :, None].expand(n, ch, h, 2, w, 2).reshape(n, ch, 2 * h, 2 * w)
        return self.head(self.up(ckpt.cat([up, a], 1)).relu())


class ResidualMLP(nn.Module):
    def __init__(self, width=16, blocks=3):
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(width, width), nn.GELU(),
                                                   nn.Linear(width, width))
                                     for _ in range(blocks)])

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


class FanOut(nn.Module):
    """One activation read by four ops, and one layer applied twice."""

    def __init__(self, width=16):
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        h = self.d(x).tanh()
        return self.a(h).tanh() * self.b(h).sigmoid() + self.c(h).relu() + self.a(h.exp())


def models():
    _ = ckpt.manual_seed(0)
    return {
        "fan-out": (FanOut(), ckpt.randn(8, 16), None),
        "unet": (UNet(), ckpt.randn(2, 2, 8, 8), None),
        "residual": (ResidualMLP(), ckpt.randn(4, 16), None),
        "resnet-eval-bn": (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1),
                                         nn.ResidualBlock(4)).eval(),
                           ckpt.randn(2, 3, 8, 8), None),
        "transformer": (nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1,
                                                   batch_first=True, norm_first=True),
                        ckpt.randn(2, 5, 16), None),
        "classifier": _classifier(),
    }


def _classifier():
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    target = ckpt.tensor(np.array([0, 2, 1, 1, 0]))
    return net, ckpt.randn(5, 8), lambda out: nn.functional.cross_entropy(out, target)


def plain_step(model, x, loss_fn):
    """Gradients, loss and end RNG state of a plain ``loss.backward()``."""
    params = list(model.parameters())
    for p in params:
        p.grad = None
    out = model(x)
    loss = loss_fn(out) if loss_fn else out.sum()
    loss.backward()
    grads = [None if p.grad is None else p.grad.data.copy() for p in params]
    for p in params:
        p.grad = None
    return grads, float(loss.data), ckpt.get_rng_state()


def run_plan(model, x, loss_fn, plan):
    params = list(model.parameters())
    for p in params:
        p.grad = None
    result = planner.execute(model, plan, x, loss_fn)
    grads = [None if p.grad is None else p.grad.data.copy() for p in params]
    return result, grads


def assert_step_matches(model, x, loss_fn, plan):
    rng = ckpt.get_rng_state()
    want, want_loss, want_rng = plain_step(model, x, loss_fn)
    ckpt.set_rng_state(rng)
    result, got = run_plan(model, x, loss_fn, plan)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            assert g.dtype == w.dtype and g.shape == w.shape
            assert g.tobytes() == w.tobytes()       # bit for bit
    assert result.loss == want_loss
    sim = plan.simulate()
    assert list(result.op_peaks) == sim.during.tolist()
    assert list(result.op_after) == sim.after.tolist()
    assert result.peak_bytes == result.predicted_peak == plan.peak
    assert draws(ckpt.get_rng_state()) == draws(want_rng)   # the RNG ends where backward's
    return result


def draws(state):
    """Four numbers drawn from RNG state ``state`` (two states are equal if these are)."""
    ckpt.set_rng_state(state)
    return ckpt.rand(4).tolist()


def budget_between(graph, share):
    """A budget ``share`` of the way from recompute-all's peak to store-all's."""
    low = planner.plan_graph(graph, "recompute_all").peak
    high = planner.plan_graph(graph, "store_all").peak
    return int(low + share * (high - low))


def plan_for(graph, strategy, share):
    options = {"time_limit": 10} if strategy.startswith("dag_") else {}
    if strategy in ("store_all", "recompute_all"):
        return planner.plan_graph(graph, strategy)
    try:
        return planner.plan_graph(graph, strategy, budget=budget_between(graph, share),
                                  **options)
    except BudgetError:    # chain's stages may not fit between: give it store-all's peak
        return planner.plan_graph(graph, strategy,
                                  budget=planner.plan_graph(graph, "store_all").peak,
                                  **options)


STRATEGIES = sorted(planner.GRAPH_STRATEGIES)      # every graph strategy, run on a model


@pytest.fixture(scope="module")
def profiled():
    out = {}
    for name, (model, x, loss_fn) in models().items():
        out[name] = (model, x, loss_fn, planner.profile_graph(model, x, loss_fn, repeats=1))
    return out


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ["unet", "residual", "resnet-eval-bn", "transformer",
                                  "classifier", "fan-out"])
def test_every_strategy_runs_bit_identical_and_as_predicted(profiled, name, strategy):
    model, x, loss_fn, graph = profiled[name]
    plan = plan_for(graph, strategy, 0.4)
    assert_step_matches(model, x, loss_fn, plan)


def test_recomputation_is_of_single_ops_and_saves_memory(profiled):
    model, x, loss_fn, graph = profiled["residual"]
    plan = plan_for(graph, "dag_optimal", 0.5)
    runs = plan.simulate().runs
    forward = range(len(graph))
    # an op computed again while every input it reads was computed once: recomputed alone
    # from kept values, not as part of a segment replayed from a checkpoint
    single = [graph.nodes[k].name for k in forward if runs[k] > 1
              and all(runs[graph.order.index(i)] == 1 for i in graph.nodes[k].inputs)
              and graph.nodes[k].inputs]
    assert single
    store = planner.plan_graph(graph, "store_all")
    assert plan.peak < store.peak
    result = assert_step_matches(model, x, loss_fn, plan)
    assert result.peak_bytes < store.peak


def test_profile_sizes_from_shapes():
    _ = ckpt.manual_seed(1)
    net = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 3))
    x = ckpt.randn(5, 8)
    target = ckpt.randn(5, 3)
    graph = planner.profile_graph(net, x, lambda out: ((out - target) ** 2).mean(), repeats=1)
    f32 = 4
    assert [n.name for n in graph.nodes] == ["linear_0", "dropout_1", "linear_2", "sub_3",
                                             "pow_4", "mean_5"]
    assert [n.output_bytes for n in graph.nodes] == [5 * 16 * f32, 5 * 16 * f32, 5 * 3 * f32,
                                                     5 * 3 * f32, 5 * 3 * f32, f32]
    # dropout keeps its mask (one bool per element), nothing else keeps an extra buffer
    assert [n.saved_bytes for n in graph.nodes] == [0, 5 * 16, 0, 0, 0, 0]
    assert graph["linear_2"].backward_reads == ("inputs",)
    assert graph["pow_4"].backward_reads == ("inputs",)
    assert graph.input_bytes == x.data.nbytes + target.data.nbytes
    params = sum(p.data.nbytes for p in net.parameters())
    assert graph.param_bytes == 2 * params               # parameters and their gradients
    assert all(n.forward_cost > 0 and n.backward_cost > 0 for n in graph.nodes)


def test_profiling_leaves_gradients_and_rng_alone():
    _ = ckpt.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    x = ckpt.randn(3, 4)
    net[0].weight.grad = ckpt.ones(4, 4)
    before = ckpt.get_rng_state()
    planner.profile_graph(net, x, repeats=2)
    assert net[0].weight.grad.tolist() == ckpt.ones(4, 4).tolist()
    assert net[0].bias.grad is None
    assert draws(ckpt.get_rng_state()) == draws(before)


def test_plan_for_another_graph_is_refused_naming_both():
    _ = ckpt.manual_seed(3)
    net = ResidualMLP(blocks=2)
    plan = planner.plan_graph(planner.profile_graph(net, ckpt.randn(4, 16), repeats=1,
                                                    name="batch4"), "store_all")
    with pytest.raises(PlanMismatchError, match=r"graph 'batch4'.*graph 'ResidualMLP'.*"
                                                r"node 'linear_0' holds 256 bytes there and "
                                                r"512 bytes here"):
        planner.execute(net, plan, ckpt.randn(8, 16))
    other = UNet()
    with pytest.raises(PlanMismatchError, match="nodes there"):
        planner.execute(other, plan, ckpt.randn(2, 2, 8, 8))
    assert all(p.grad is None for p in net.parameters())


def bn_resnet():
    """A residual net with BatchNorm in training mode (one with ``momentum=None``: the
    factor comes from the batch count) and ReLU (one in place)."""
    _ = ckpt.manual_seed(4)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None),
                         nn.ReLU(inplace=True), nn.ResidualBlock(4), nn.ResidualBlock(4))


def buffers_of(model):
    return [b.data.copy() for b in model.buffers()]


def set_buffers(model, arrays):
    for b, a in zip(model.buffers(), arrays):
        b.data[...] = a


@pytest.mark.parametrize("share", [0.2, 0.7])
def test_batchnorm_in_training_updates_statistics_once_and_runs_as_predicted(share):
    model, x = bn_resnet(), ckpt.randn(2, 3, 8, 8)
    start = buffers_of(model)
    graph = planner.profile_graph(model, x, repeats=1)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(buffers_of(model), start))
    plan = plan_for(graph, "dag_optimal", share)
    runs = plan.simulate().runs
    assert any(runs[k] > 1 for k in range(len(graph)))
    rng = ckpt.get_rng_state()
    want, want_loss, _ = plain_step(model, x, None)
    want_stats = buffers_of(model)
    set_buffers(model, start)
    ckpt.set_rng_state(rng)
    result, got = run_plan(model, x, None, plan)
    assert all(g.tobytes() == w.tobytes() for g, w in zip(got, want))
    assert result.loss == want_loss
    assert [b.tobytes() for b in buffers_of(model)] == [b.tobytes() for b in want_stats]
    assert int(model[1].num_batches_tracked.item()) == 1
    assert list(result.op_peaks) == plan.simulate().during.tolist()
    assert list(result.op_after) == plan.simulate().after.tolist()
    assert result.peak_bytes == plan.peak


def test_a_plan_for_another_graph_updates_no_statistics():
    model = bn_resnet()
    plan = planner.plan_graph(planner.profile_graph(model, ckpt.randn(2, 3, 8, 8), repeats=1),
                              "store_all")
    start = buffers_of(model)
    with pytest.raises(PlanMismatchError):
        planner.execute(model, plan, ckpt.randn(4, 3, 8, 8))
    assert all(a.tobytes() == b.tobytes() for a, b in zip(buffers_of(model), start))


class InPlace(nn.Module):
    """In-place writes: one read before the write, one that saves its old value (``mul_``
    keeps a copy), ``+=``, and ``ReLU(inplace=True)``."""

    def __init__(self, width=8):
        super().__init__()
        self.a, self.b, self.c = (nn.Linear(width, width) for _ in range(3))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.a(x)
        before = h * 2
        h.relu_()
        h.mul_(self.b(x))
        h += before
        return self.act(self.c(h) + h.tanh())


@pytest.mark.parametrize("strategy", ["recompute_all", "dag_optimal"])
@pytest.mark.parametrize("share", [0.2, 0.6])
def test_in_place_writes_run_as_their_out_of_place_ops(strategy, share):
    _ = ckpt.manual_seed(5)
    model, x = InPlace(), ckpt.randn(4, 8)
    graph = planner.profile_graph(model, x, repeats=1)
    assert [n.name for n in graph.nodes][:5] == ["linear_0", "mul_1", "relu_2", "linear_3",
                                                 "mul_4"]
    assert graph["relu_2"].inputs == ("linear_0",) and graph["mul_4"].inputs == ("relu_2",
                                                                                 "linear_3")
    assert graph["add_5"].inputs == ("mul_4", "mul_1")
    assert_step_matches(model, x, None, plan_for(graph, strategy, share))


def test_in_place_writes_that_cannot_be_replayed_are_refused_naming_the_op():
    x = ckpt.randn(3, 4)
    w = ckpt.randn(4, 4, requires_grad=True)

    def into_view(t):
        y = t @ w
        y[0].relu_()
        return y

    def into_sample(t):
        return t.relu_() @ w

    def assigned(t):
        y = t @ w
        y[0] = 1.0
        return y
    cases = [(into_view, r"\(relu_\) into memory that another value shares"),
             (into_sample, r"\(relu_\) into a tensor no op of it made \(the sample"),
             (assigned, r"\(setitem\): .*write it out of place"),
             (lambda t: (t @ w).zero_(), r"\(zero_\)")]
    for program, message in cases:
        with pytest.raises(TraceError, match="the program writes in place " + message):
            planner.profile_graph(program, x)


def test_bad_programs_are_refused_with_the_reason():
    x = ckpt.randn(3, 4)
    w = ckpt.randn(4, 4, requires_grad=True)
    with pytest.raises(TraceError, match=r"scalar Tensor, got shape \[3, 4\]"):
        planner.profile_graph(lambda t: t @ w, x, loss_fn=lambda out: out)
    with pytest.raises(TraceError, match=r"op mul reads .* output of op tanh .*detach\(\)"):
        planner.profile_graph(lambda t: (t @ w).tanh().detach() * (t @ w), x)
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        planner.profile_graph(lambda t: t @ w, x, repeats=0)
    plan = planner.plan_graph(planner.profile_graph(lambda t: t @ w, x, repeats=1), "store_all")
    with pytest.raises(ExecutionError, match="tracemalloc"):
        planner.execute(lambda t: t @ w, plan, x, tracemalloc=True)
    with pytest.raises(ExecutionError, match="sample must be a ckpt.Tensor"):
        planner.execute(lambda t: t @ w, plan, np.ones((3, 4)))


# ---- random DAG models -------------------------------------------------------------------
class RandomDAG(nn.Module):
    """Node k combines one or two earlier values (the input is value 0) and applies an op;
    a value may be read by any number of later nodes (gradients summed in the engine's
    order)."""

    def __init__(self, spec, width):
        super().__init__()
        self.spec = spec
        self.lins = nn.ModuleList([nn.Linear(width, width) for _ in spec])

    def forward(self, x):
        values = [x]
        for (a, b, op), lin in zip(self.spec, self.lins):
            h = values[a] if b is None else (values[a] + values[b] if op % 2 else
                                             values[a] * values[b])
            h = lin(h)
            h = [h.tanh(), h.relu(), nn.functional.gelu(h), h.sigmoid() * h][op % 4]
            values.append(h)
        return values[-1]


@st.composite
def dag_specs(draw):
    n = draw(st.integers(2, 8))
    spec = []
    for k in range(1, n + 1):
        a = draw(st.integers(0, k - 1))
        b = draw(st.one_of(st.none(), st.integers(0, k - 1).filter(lambda i: i != a))) \
            if k > 1 else None
        spec.append((a, b, draw(st.integers(0, 7))))
    return spec


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=dag_specs(), strategy=st.sampled_from(STRATEGIES), share=st.floats(0.0, 1.0),
       seed=st.integers(0, 2 ** 16))
def test_random_dag_models(spec, strategy, share, seed):
    _ = ckpt.manual_seed(seed)
    model = RandomDAG(spec, 6)
    x = ckpt.randn(3, 6)
    graph = planner.profile_graph(model, x, repeats=1)
    plan = plan_for(graph, strategy, share)
    assert_step_matches(model, x, None, plan)


def _marker():
    return 1


def test_tracing_gives_the_interpreter_its_profiler_back():
    import cProfile
    import pstats
    import sys
    x, w = ckpt.randn(2, 3), ckpt.randn(3, 3, requires_grad=True)
    calls = []

    def python_profiler(frame, event, arg):
        calls.append(event)
    sys.setprofile(python_profiler)
    try:
        planner.profile_graph(lambda t: t @ w, x, repeats=1)
        assert sys.getprofile() is python_profiler
    finally:
        sys.setprofile(None)
    prof = cProfile.Profile()
    prof.enable()
    try:
        planner.profile_graph(lambda t: t @ w, x, repeats=1)
        _marker()                       # seen only if cProfile was switched on again
    finally:
        prof.disable()
    names = {key[2] for key in pstats.Stats(prof).stats}
    assert "_marker" in names


def test_gradients_accumulate_into_existing_ones_and_memory_is_still_predicted(profiled):
    model, x, loss_fn, graph = profiled["residual"]
    want, _, _ = plain_step(model, x, loss_fn)
    plan = plan_for(graph, "dag_optimal", 0.5)
    params = list(model.parameters())
    for p in params:
        p.grad = ckpt.ones(*p.shape)
    result = planner.execute(model, plan, x, loss_fn)
    assert list(result.op_peaks) == plan.simulate().during.tolist()
    for p, w in zip(params, want):           # each parameter has one contribution here
        assert p.grad.data.tobytes() == (np.float32(1) + w).tobytes()
    for p in params:
        p.grad = None
