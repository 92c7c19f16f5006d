"""``planner.apply``: a ckpt model that trains under a plan, step after step, and
``execute``'s check that a plan belongs to the model and input it runs on (issue 12).

Every strategy's plan, trained for several steps with SGD (momentum) and Adam on a model
with dropout and BatchNorm, must leave the parameters, the optimizer state, the BatchNorm
statistics and the RNG exactly where the plain model's training leaves them; the plan's
recomputations must really run (counted) and save memory (measured)."""
import numpy as np
import pytest

import ckpt
from ckpt import nn, planner
from ckpt.planner.execute import ExecutionError, PlanMismatchError

WIDTH, BATCH = 32, 16


class Counted(nn.Module):
    """Counts its forwards (to see the plan's recomputations run)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def model(L=6, seed=0):
    ckpt.manual_seed(seed)
    blocks = [Counted(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.ReLU(),
                                    nn.Dropout(0.2))) for _ in range(L - 1)]
    return nn.Sequential(*blocks, Counted(nn.Linear(WIDTH, 4)))


def data(seed=1):
    ckpt.manual_seed(seed)
    return ckpt.randn(BATCH, WIDTH), ckpt.randn(BATCH, 4)


def loss_of(target):
    return lambda out: ((out - target) ** 2).mean()


def bits(t):
    return np.ascontiguousarray(t.data).view(np.uint8).tobytes()


def snapshot(net, opt=None):
    state = [bits(p) for p in net.parameters()]
    state += [bits(b) for b in net.buffers() if b is not None]
    if opt is not None:
        for p in net.parameters():
            state += [bits(v) for v in opt.state[p].values() if isinstance(v, ckpt.Tensor)]
    return state


def plans(chain):
    lo, hi = chain.min_budget, planner.plan(chain, "store_all").peak
    tight, mid = lo + (hi - lo) // 5, (lo + hi) // 2
    return [planner.plan(chain, "store_all"), planner.plan(chain, "recompute_all"),
            planner.plan(chain, "sqrt"), planner.plan(chain, "greedy", budget=mid),
            planner.plan(chain, "recursive"), planner.plan(chain, "revolve"),
            planner.plan(chain, "revolve", budget=mid), planner.plan(chain, "min_memory"),
            planner.plan(chain, "optimal", budget=tight),
            planner.plan(chain, "optimal", budget=mid)]


@pytest.fixture(scope="module")
def chain():
    x, target = data()
    return planner.profile(model(), x, loss_of(target), repeats=1)


def train(net, make_opt, steps, x, target, seed=7):
    opt = make_opt(net.parameters())
    ckpt.manual_seed(seed)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of(target)(net(x))
        loss.backward()
        opt.step()
        losses.append(bits(loss))
    return opt, losses


OPTIMIZERS = {
    "sgd": lambda ps: ckpt.optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam": lambda ps: ckpt.optim.Adam(ps, lr=1e-2),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_training_under_every_plan_matches_the_plain_model_bit_for_bit(chain, optimizer):
    x, target = data()
    make = OPTIMIZERS[optimizer]
    plain = model()
    plain_opt, plain_losses = train(plain, make, 3, x, target)
    expected, rng = snapshot(plain, plain_opt), ckpt.get_rng_state()
    all_plans = plans(chain)
    assert len({p.ops for p in all_plans}) >= 6          # the plans really differ
    for p in all_plans:
        net = model()
        planned = planner.apply(net, p)
        opt, losses = train(planned, make, 3, x, target)
        what = f"{p.strategy} (budget {p.budget})"
        assert losses == plain_losses, what
        assert snapshot(net, opt) == expected, f"{what}: parameters, state or stats differ"
        assert ckpt.get_rng_state() == rng, f"{what}: RNG not where plain training leaves it"
        # each stage ran as often as the plan says (its recomputations included), per step
        forwards = [sum(op.kind in ("forward", "forward_save") and op.stage == i
                        for op in p.ops) for i in range(1, len(net) + 1)]
        assert [m.calls for m in net] == [3 * f for f in forwards], what


def test_a_recomputing_plan_saves_the_memory_the_plan_predicts(chain):
    x, target = data()
    peaks = {}
    for strategy in ("store_all", "min_memory"):
        net = model()
        planned = planner.apply(net, planner.plan(chain, strategy))
        with ckpt.memory.track(net, x, target) as report:
            loss_of(target)(planned(x)).backward()
        peaks[strategy] = report.peak_bytes
    # min_memory keeps much less than store_all, as the chain predicts
    predicted = planner.plan(chain, "min_memory").peak, planner.plan(chain, "store_all").peak
    assert peaks["min_memory"] < peaks["store_all"]
    saved = peaks["store_all"] - peaks["min_memory"]
    assert saved >= 0.5 * (predicted[1] - predicted[0])


def test_the_input_gradient_flows_back_as_in_the_plain_model(chain):
    x, target = data()
    plain = model()
    xp = x.detach().requires_grad_()
    ckpt.manual_seed(3)
    loss_of(target)(plain(xp * 2)).backward()
    net = model()
    xq = x.detach().requires_grad_()
    ckpt.manual_seed(3)
    loss_of(target)(planner.apply(net, planner.plan(chain, "recompute_all"))(xq * 2)).backward()
    assert bits(xq.grad) == bits(xp.grad)
    assert [bits(p.grad) for p in net.parameters()] == [bits(p.grad) for p in plain.parameters()]


def test_eval_mode_and_no_grad_run_the_plain_model(chain):
    x, _ = data()
    net = model()
    planned = planner.apply(net, planner.plan(chain, "recompute_all"))
    with ckpt.no_grad():
        out = planned(x)
    assert sum(m.calls for m in net) == len(net)           # one plain forward
    assert not out.requires_grad
    planned.eval()
    assert not net.training and not net[0].inner[1].training
    y = planned(x)
    assert y.grad_fn is not None and "PlanStep" not in y.grad_fn.name()
    assert bits(y) == bits(net(x))
    planned.train()
    assert "PlanStep" in planned(x).grad_fn.name()


def test_backward_runs_once(chain):
    x, target = data()
    planned = planner.apply(model(), planner.plan(chain, "sqrt"))
    loss = loss_of(target)(planned(x))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward ran already"):
        loss.backward()


def test_the_planned_module_describes_itself(chain):
    p = planner.plan(chain, "sqrt")
    planned = planner.apply(model(), p)
    assert planned.plan is p and planned.chain is chain
    assert planned.explain() == p.explain()
    assert "plan=Plan('sqrt'" in repr(planned)


def test_apply_refuses_what_the_plan_was_not_made_for(chain):
    p = planner.plan(chain, "sqrt")
    with pytest.raises(ExecutionError, match="apply runs a ckpt.nn.Sequential .* another shape "
                                             "will run once plans for graphs exist"):
        planner.apply(nn.Linear(4, 4), p)
    with pytest.raises(ExecutionError, match="plan's chain has 6 stages but the Sequential has 5"):
        planner.apply(model(L=5), p)
    with pytest.raises(ExecutionError, match="^apply needs a ckpt.planner.Plan, got a str"):
        planner.apply(model(), "sqrt")
    net = model()
    planned = planner.apply(net, p)
    bigger = ckpt.randn(2 * BATCH, WIDTH)
    before, rng = snapshot(net), ckpt.get_rng_state()
    with pytest.raises(PlanMismatchError, match=r"stage 1 \(Counted\) outputs 2.0 KiB; this "
                                                r"model and input \(4.0 KiB\) give 4.0 KiB"):
        planned(bigger)
    assert snapshot(net) == before and ckpt.get_rng_state() == rng   # stats, RNG put back


# ---- execute: the plan must be for this model and input ------------------------------------

def test_execute_refuses_a_plan_made_for_another_batch_size():
    x, target = data()
    net = model()
    small = planner.profile(net, ckpt.randn(4, WIDTH), loss_of(ckpt.randn(4, 4)), repeats=1)
    p = planner.plan(small, "sqrt")
    before, rng = snapshot(net), ckpt.get_rng_state()
    with pytest.raises(PlanMismatchError) as info:
        planner.execute(net, p, x, loss_of(target))
    msg = str(info.value)
    big_input = x.data.nbytes      # the loss saves nothing of the target: not data it holds
    assert f"whose input (with the data the loss reads) is {planner.format_size(small.input_bytes)}" in msg
    assert f"this input and loss give {planner.format_size(big_input)}" in msg
    assert "profile this model at this batch size" in msg
    assert snapshot(net) == before and ckpt.get_rng_state() == rng
    assert all(q.grad is None for q in net.parameters())


def test_execute_refuses_a_plan_whose_stage_outputs_differ_and_leaves_nothing_changed():
    x, target = data()
    net = model()
    wide = nn.Sequential(*[nn.Linear(WIDTH, 2 * WIDTH if i == 2 else WIDTH)
                           if i != 3 else nn.Linear(2 * WIDTH, WIDTH) for i in range(5)],
                         nn.Linear(WIDTH, 4))
    p = planner.plan(planner.profile(wide, x, loss_of(target), repeats=1), "recompute_all")
    before, rng = snapshot(net), ckpt.get_rng_state()
    with pytest.raises(PlanMismatchError, match=r"whose stage 3 \(Linear\) outputs 4.0 KiB; "
                                                r"this model and input \(2.0 KiB\) give 2.0 KiB: "
                                                r"profile this model at this batch size"):
        planner.execute(net, p, x, loss_of(target))
    # stages 1 and 2 ran (BatchNorm counted a batch) before stage 3 showed the mismatch:
    assert snapshot(net) == before and ckpt.get_rng_state() == rng
    assert all(q.grad is None for q in net.parameters())


def test_a_plan_read_back_from_json_runs_and_measures_as_predicted(chain):
    x, target = data()
    p = planner.Plan.from_json(planner.plan(chain, "revolve").to_json())
    r = planner.execute(model(), p, x, loss_of(target))
    assert r.peak_bytes == r.predicted_peak == p.peak


# ---- a plan for another model whose stage outputs are the same sizes ----------------------

def blocks(activation=nn.ReLU, bias=True):
    """Six stages, each a 32 -> 32 Linear and an activation."""
    ckpt.manual_seed(0)
    return nn.Sequential(*[nn.Sequential(nn.Linear(WIDTH, WIDTH, bias=bias), activation())
                           for _ in range(6)])


# the first stage to save for backward: store_all saves as it goes, recompute_all at the end
@pytest.mark.parametrize("strategy, first", [("store_all", 1), ("recompute_all", 6)])
def test_a_plan_for_a_model_that_keeps_more_for_backward_is_refused(strategy, first):
    x = ckpt.randn(BATCH, WIDTH)
    p = planner.plan(planner.profile(blocks(), x, repeats=1), strategy)
    net = blocks(nn.GELU)           # the same parameters and outputs; GELU keeps more
    before, rng = snapshot(net), ckpt.get_rng_state()
    # planned: ReLU keeps its 16x32 float32 output (2 KiB); GELU keeps its output and its
    # input (the Linear's output), 2 KiB each
    with pytest.raises(PlanMismatchError, match=rf"whose stage {first} \(Sequential\) keeps 2.0 KiB "
                                                r"for backward; this model and input keep "
                                                r"4.0 KiB: profile this model"):
        planner.execute(net, p, x)
    assert snapshot(net) == before and ckpt.get_rng_state() == rng
    assert all(q.grad is None for q in net.parameters())
    with pytest.raises(PlanMismatchError, match=r"keeps 2.0 KiB for backward; this model and "
                                                r"input keep 4.0 KiB"):
        planner.apply(net, p)(x).sum().backward()


def test_execute_refuses_a_plan_for_a_model_with_other_parameters():
    x = ckpt.randn(BATCH, WIDTH)
    p = planner.plan(planner.profile(blocks(), x, repeats=1), "sqrt")
    net = blocks(bias=False)                 # the same activations, 6 biases fewer
    # planned: 6 x (32x32 + 32) float32 parameters and their gradients = 49.5 KiB
    with pytest.raises(PlanMismatchError, match=r"whose parameters and their gradients are "
                                                r"49.5 KiB; this model's are 48.0 KiB"):
        planner.execute(net, p, x)
    assert all(q.grad is None for q in net.parameters())
