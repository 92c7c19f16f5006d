"""ckpt.torch's compiled plans (ckpt/torch/compiled.py): which blocks run under
torch.utils.checkpoint inside one torch.compile graph. The plan is checked by the simulator;
the compiled step against torch's plain eager step (gradients, BatchNorm statistics) and
against the compiled model without a plan (its allocator peak)."""
import copy
import itertools
import random

import pytest
import torch

import ckpt.torch as ct
from ckpt import planner
from ckpt.planner.chain import Chain, Stage
from ckpt.planner.errors import BudgetError
from ckpt.torch import compiled, examples
from ckpt.torch.measure import CpuAllocatorPeak
from ckpt.torch.stages import resolve


def random_chain(rng, L):
    stages = [Stage(f"s{i}", rng.uniform(0.5, 3), rng.uniform(1, 6), out,
                    out + rng.randint(0, 60), rng.randint(0, 10), rng.randint(0, 10))
              for i in range(L) for out in [rng.randint(1, 20)]]
    return Chain(stages, input_bytes=rng.randint(1, 20))


def budgets(chain, allowed, n=6):
    lo = planner.Plan(chain, compiled.lowered_ops(len(chain), set(allowed))).peak
    hi = planner.plan(chain, "store_all").peak
    return [lo + (hi - lo) * k // (n - 1) for k in range(n)]


@pytest.mark.parametrize("seed", range(12))
def test_plan_fits_and_is_the_cheapest_of_its_class(seed):
    rng = random.Random(seed)
    chain = random_chain(rng, rng.randint(2, 7))
    L = len(chain)
    allowed = range(2, L) if seed % 2 else range(1, L)
    # every plan of the class, replayed by the simulator
    every = [planner.Plan(chain, compiled.lowered_ops(L, set(s)))
             for k in range(len(allowed) + 1) for s in itertools.combinations(allowed, k)]
    slack = 0.01 * every[0].store_all_compute      # like blocks' timing noise (the docs)
    for b in budgets(chain, allowed):
        p = compiled.block_checkpoint_plan(chain, b, checkpointable=allowed)
        chosen = compiled.checkpointed_stages(p)
        assert p.peak <= b and set(chosen) <= set(allowed)
        least = min(q.compute for q in every if q.peak <= b)
        assert least <= p.compute <= least + slack
    # below the class's least peak (which checkpointing everything need not reach: a
    # recomputation runs beside the gradient coming back) no plan fits, and the error says
    # the least peak
    least = min(every, key=lambda q: q.peak)
    with pytest.raises(BudgetError) as e:
        compiled.block_checkpoint_plan(chain, least.peak - 1, checkpointable=allowed)
    assert e.value.minimum == least.peak


@pytest.mark.parametrize("seed", range(8))
def test_min_memory_has_the_least_peak_then_keeps_the_least(seed):
    rng = random.Random(200 + seed)
    chain = random_chain(rng, rng.randint(2, 7))
    L = len(chain)
    every = [planner.simulate(chain, compiled.lowered_ops(L, set(s)))
             for k in range(L) for s in itertools.combinations(range(1, L), k)]
    p = compiled.block_checkpoint_min_memory(chain)
    assert p.peak == min(sim.peak for sim in every)
    # memory alive when the first backward begins, over the plans of that least peak
    first = next(k for k, op in enumerate(p.ops) if op.kind == "backward")
    kept = planner.simulate(chain, p.ops).timeline[first].before
    assert kept == min(sim.timeline[k].before for sim in every if sim.peak == p.peak
                       for k in [next(i for i, e in enumerate(sim.timeline)
                                      if e.op.kind == "backward")])
    with pytest.raises(BudgetError, match="the least-memory one .checkpointing"):
        compiled.block_checkpoint_min_memory(chain, budget=p.peak - 1)


def test_like_blocks_are_checkpointed_first_to_last():
    """Of equally cheap plans, the one holding the least memory over the step: the earliest
    blocks (their recomputation runs when the least is alive)."""
    chain = Chain([Stage("prologue", 1, 2, 10, 10)]
                  + [Stage(f"block{i}", 1 + 0.001 * (i % 3), 2, 10, 40) for i in range(6)]
                  + [Stage("epilogue", 1, 2, 1, 1)], input_bytes=10)
    blocks = range(2, 8)
    seen = set()
    for b in budgets(chain, blocks, n=12):
        chosen = compiled.checkpointed_stages(
            compiled.block_checkpoint_plan(chain, b, checkpointable=blocks))
        assert chosen == list(range(2, 2 + len(chosen)))
        seen.add(len(chosen))
    assert len(seen) >= 4


@pytest.mark.parametrize("seed", range(12))
def test_greedy_fits_and_keeps_no_needless_checkpoint(seed, monkeypatch):
    rng = random.Random(100 + seed)
    chain = random_chain(rng, rng.randint(3, 8))
    allowed = range(1, len(chain))
    monkeypatch.setattr(compiled, "EXHAUSTIVE_MAX", 0)
    for b in budgets(chain, allowed):
        p = compiled.block_checkpoint_plan(chain, b, checkpointable=allowed)
        chosen = set(compiled.checkpointed_stages(p))
        assert p.options["search"] == "greedy" and p.peak <= b
        for i in chosen:          # put any one back and the plan no longer fits
            assert planner.Plan(chain, compiled.lowered_ops(len(chain), chosen - {i})).peak > b


def test_a_recomputation_beside_a_large_transient_is_not_forced():
    """Checkpointing stage 1 raises this chain's peak (its recomputation holds a 100-byte
    transient while the gradient of stage 2 is alive): store-all fits 102 bytes, the plan
    with stage 1 checkpointed does not."""
    chain = Chain([Stage("a", 1, 2, 1, 1, 100), Stage("b", 1, 2, 1, 50)], input_bytes=1)
    store_all, checkpointed = (planner.Plan(chain, compiled.lowered_ops(2, s)).peak
                               for s in (set(), {1}))
    assert store_all < checkpointed
    assert compiled.checkpointed_stages(
        compiled.block_checkpoint_plan(chain, store_all)) == []


def test_budget_below_the_class_names_its_least_peak():
    chain = Chain([Stage(f"b{i}", 1, 2, 10, 40) for i in range(4)], input_bytes=10)
    least = planner.Plan(chain, compiled.lowered_ops(4, {2, 3})).peak
    with pytest.raises(BudgetError, match="peaks at") as e:
        compiled.block_checkpoint_plan(chain, least - 1, checkpointable=[2, 3])
    assert e.value.minimum == least
    assert compiled.checkpointed_stages(
        compiled.block_checkpoint_plan(chain, least, checkpointable=[2, 3])) == [2, 3]
    with pytest.raises(ValueError, match="in 1..4"):
        compiled.block_checkpoint_plan(chain, least, checkpointable=[0, 2])


def test_checkpointed_stages_round_trip_and_refusals():
    chain = Chain([Stage(f"b{i}", 1, 2, 10, 40) for i in range(4)], input_bytes=10)
    for k in range(4):
        for s in itertools.combinations(range(1, 5), k):
            p = planner.Plan(chain, compiled.lowered_ops(4, set(s)))
            assert compiled.checkpointed_stages(p) == list(s)
    for strategy in ("recompute_all", "sqrt", "min_memory"):   # they drop kept outputs
        with pytest.raises(ValueError, match="not a compiled plan"):
            compiled.checkpointed_stages(planner.plan(chain, strategy))
    # revolve with snapshots for every stage keeps every output: a compiled plan
    assert compiled.checkpointed_stages(planner.plan(chain, "revolve")) == [1, 2, 3]


# ---- the compiled step ----------------------------------------------------------------------

def eager_step(model, x, loss_fn):
    ref = copy.deepcopy(model)
    loss_fn(ref(x)).backward()
    return ref


def close(a, b):
    return torch.allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def resnet_compiled():
    """A small ResNet (BatchNorm, in-place ReLU, stages="auto"), planned with compile=True
    at a budget that checkpoints some blocks, and the same model compiled without a plan."""
    torch.manual_seed(0)
    model, x, loss_fn = examples.resnet(batch=4, channels=8, size=16, blocks=4)
    model.train()
    chain = ct.profile(model, x, loss_fn, repeats=1)
    budget = (planner.Plan(chain, compiled.lowered_ops(len(chain), {2, 3, 4, 5})).peak
              + planner.plan(chain, "store_all").peak) // 2
    before = copy.deepcopy(model)
    wrapped = ct.plan(model, x, loss_fn, budget=budget, compile=True, repeats=1)
    loss_fn(wrapped(x)).backward()                      # compiles
    # the first step's gradients and statistics, as the other tests leave the model changed
    first = ({n: p.grad.clone() for n, p in model.named_parameters()},
             {n: b.clone() for n, b in model.named_buffers()})
    unplanned = copy.deepcopy(before)
    plain_compiled = ct.plan(unplanned, x, loss_fn, compile=True, repeats=1)
    loss_fn(plain_compiled(x)).backward()
    return before, model, wrapped, unplanned, plain_compiled, x, loss_fn, budget, first


def test_compiled_step_matches_the_eager_step(resnet_compiled):
    before, model, wrapped, _, _, x, loss_fn, budget, (grads, buffers) = resnet_compiled
    chosen = compiled.checkpointed_stages(wrapped.plan)
    assert chosen and set(chosen) <= {2, 3, 4, 5} and wrapped.plan.peak <= budget
    ref = eager_step(before, x, loss_fn)
    for name, q in ref.named_parameters():
        assert close(grads[name], q.grad), name
    # BatchNorm statistics updated once, as by the eager step (a recomputation in the
    # compiled backward does not update them again)
    for name, r in ref.named_buffers():
        b = buffers[name]
        assert (torch.equal(b, r) if b.dtype == torch.long else close(b, r)), name


def test_checkpointed_blocks_lower_the_compiled_peak(resnet_compiled):
    _, model, wrapped, unplanned, plain_compiled, x, loss_fn, _, _ = resnet_compiled
    peaks = []
    for m, fn in ((model, wrapped), (unplanned, plain_compiled)):
        for p in m.parameters():
            p.grad = torch.zeros_like(p)
        with CpuAllocatorPeak() as measured:
            loss_fn(fn(x)).backward()
        peaks.append(measured.bytes)
    assert peaks[0] < peaks[1]
    # the plan's checkpoints cut the eager prediction; the compiled step, measured, falls
    # by at least half of that cut
    cut = plain_compiled.plan.peak - wrapped.plan.peak
    assert peaks[1] - peaks[0] >= cut // 2


def test_eval_and_no_grad_run_the_compiled_model(resnet_compiled):
    _, model, wrapped, _, _, x, _, _, _ = resnet_compiled
    wrapped.eval()
    try:
        with torch.no_grad():
            assert close(wrapped(x), model(x))
    finally:
        wrapped.train()


def test_compile_refuses_what_it_cannot_lower():
    net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(3)])
    x = torch.randn(2, 8)
    with pytest.raises(ValueError, match="'optimal' .* or 'min_memory'"):
        ct.plan(net, x, strategy="revolve", compile=True, repeats=1)
    chain = ct.profile(net, x, repeats=1)
    with pytest.raises(ValueError, match="not a compiled plan"):
        ct.PlannedModule(net, planner.plan(chain, "recompute_all"), compile=True)
    model, x, _ = examples.resnet(blocks=4)
    chain = ct.profile(model, x, repeats=1)
    prologue = planner.Plan(chain, compiled.lowered_ops(len(chain), {1}))
    with pytest.raises(ValueError, match="prologue and epilogue"):
        ct.PlannedModule(model, prologue, compile=True)
    # strategy="min_memory": the blocks only, at the least peak of the class
    least = ct.plan(model, x, compile=True, strategy="min_memory", repeats=1)
    blocks = set(range(2, len(chain)))
    assert set(compiled.checkpointed_stages(least.plan)) <= blocks
    assert least.plan.peak == planner.Plan(chain, compiled.lowered_ops(len(chain), blocks)).peak


def test_compile_argument_is_checked():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    x = torch.randn(2, 8)
    with pytest.raises(TypeError, match="True, False or a dict of torch.compile options"):
        ct.plan(net, x, compile="max-autotune", repeats=1)
    with pytest.raises(ValueError, match=r"without options; got 'optimal' with \['slots'\]"):
        ct.plan(net, x, compile=True, slots=10, repeats=1)
    with pytest.raises(ValueError, match="stages of this list are 1..2"):
        compiled.compiled_step(net, resolve(net), {3})


def test_the_checkpoint_switch_puts_forwards_back():
    """Blocks get the checkpointing forward inside the step only: an instance forward a
    block had is called inside it and put back after, also when the step raises; a module
    at two places of the container is checkpointed at both or refused."""
    blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))
    own = []

    def traced(h):
        own.append(1)
        return torch.nn.Linear.forward(blocks[1], h)
    blocks[1].forward = traced
    switch = compiled._Checkpointing(blocks, [0, 1])
    x = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="inside"):
        with switch:
            assert blocks[0].forward is not None and "forward" in vars(blocks[0])
            blocks[1](blocks[0](x)).sum().backward()      # recomputes block 1 in backward
            raise RuntimeError("inside")
    assert own == [1, 1]                   # its own forward, run again by the checkpoint
    assert "forward" not in vars(blocks[0]) and vars(blocks[1])["forward"] is traced
    assert "forward" not in vars(blocks[2])
    shared = torch.nn.ModuleList([blocks[0], blocks[2], blocks[0]])
    with pytest.raises(ValueError, match="block 0 of the container is also block 2"):
        compiled._Checkpointing(shared, [0])


def test_a_deep_copy_trains_its_own_model():
    net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(3)])
    x = torch.randn(2, 8)
    chain = ct.profile(net, x, repeats=1)
    wrapped = ct.PlannedModule(net, planner.Plan(chain, compiled.lowered_ops(3, {1})),
                               compile=True)
    twin = copy.deepcopy(wrapped)
    twin(x).sum().backward()
    assert all(p.grad is not None for p in twin.parameters())
    assert all(p.grad is None for p in net.parameters())


def test_dropout_in_checkpointed_stages_keeps_its_mask():
    """Stages listed (an nn.Sequential), dropout in every one: with the same seed, the step
    checkpointing the first two gives the output and gradients of the compiled step without
    a plan (a recomputation that drew a new mask would change the gradients)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(16, 16),
                                                    torch.nn.Dropout(0.5)) for _ in range(3)])
    x = torch.randn(8, 16)
    chain = ct.profile(net, x, repeats=1)
    results = []
    for chosen in ({1, 2}, set()):
        copy_ = copy.deepcopy(net)
        step = ct.PlannedModule(copy_, planner.Plan(chain, compiled.lowered_ops(3, chosen)),
                                compile=True)
        xx = x.clone().requires_grad_()
        torch.manual_seed(1)
        out = step(xx)
        out.pow(2).sum().backward()
        results.append((out.detach(), xx.grad, [p.grad for p in copy_.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = results
    assert torch.equal(out_a, out_b) and (out_a == 0).any()
    assert close(gx_a, gx_b) and all(close(a, b) for a, b in zip(gp_a, gp_b))
