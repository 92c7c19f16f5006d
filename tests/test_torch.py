"""ckpt.torch: plans run on PyTorch models — the same program in torch and under a plan gives
the same gradients, BatchNorm statistics and RNG state; the measured peak is the predicted one."""
import contextlib
import copy

import pytest
import torch

import ckpt.torch as ct
from ckpt import planner
from ckpt.planner.errors import PlanMismatchError
from ckpt.torch import clock, examples
from ckpt.torch.stages import StageError, resolve

STRATEGIES = sorted(planner.STRATEGIES)
RNG_STATE = torch.get_rng_state().numel()


def plain_step(model, x, loss_fn, rng):
    ref = copy.deepcopy(model)
    for p in ref.parameters():
        p.grad = torch.zeros_like(p)
    torch.set_rng_state(rng)
    loss_fn(ref(x)).backward()
    return ref


def same_state(a, b):
    grads = all(torch.equal(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters()))
    buffers = all(torch.equal(p, q) for p, q in zip(a.buffers(), b.buffers()))
    return grads and buffers


@pytest.fixture(scope="module", params=["mlp", "gpt", "resnet"])
def profiled(request):
    model, x, loss_fn = getattr(examples, request.param)()
    return request.param, model, x, loss_fn, ct.profile(model, x, loss_fn, repeats=1)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_execute_matches_plain_step_and_prediction(profiled, strategy):
    name, model, x, loss_fn, chain = profiled
    budget = (chain.min_budget + planner.plan(chain, "store_all").peak) // 2
    p = planner.plan(chain, strategy, budget=budget if strategy == "optimal" else None)
    rng = torch.get_rng_state()
    ref = plain_step(model, x, loss_fn, rng)
    torch.set_rng_state(rng)
    for q in model.parameters():
        q.grad = None
    r = ct.execute(model, p, x, loss_fn)
    assert torch.equal(torch.get_rng_state(), _rng_after(ref, x, loss_fn, rng))
    assert same_state(model, ref), "gradients or BatchNorm statistics differ from torch's"
    assert r.predicted_peak_bytes == r.measured_peak_bytes
    if p.budget is not None:
        assert r.measured_peak_bytes <= p.budget
    # op by op: to the byte, but for the ResNet's B_L, within the tolerance of one
    # RNG state tensor (over by at most its 160-byte output, which the loss saves)
    predicted = [e.during for e in r.simulation.timeline]
    assert all(0 <= q - m <= RNG_STATE for m, q in zip(r.op_peaks, predicted))
    if name != "resnet":
        assert list(r.op_peaks) == predicted
    assert r.allocator_peak_bytes >= r.measured_peak_bytes


def _rng_after(ref, x, loss_fn, rng):
    saved = torch.get_rng_state()
    torch.set_rng_state(rng)
    loss_fn(copy.deepcopy(ref)(x))
    after = torch.get_rng_state()
    torch.set_rng_state(saved)
    return after


def test_planned_module_trains_as_the_plain_model():
    model, x, loss_fn = examples.gpt()
    ref = copy.deepcopy(model)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    wrapped = ct.PlannedModule(model, planner.plan(chain, "revolve"))
    opt = torch.optim.Adam(wrapped.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for step in range(3):
        rng = torch.get_rng_state()
        opt.zero_grad()
        loss = loss_fn(wrapped(x))
        loss.backward()
        opt.step()
        torch.set_rng_state(rng)
        ref_opt.zero_grad()
        ref_loss = loss_fn(ref(x))
        ref_loss.backward()
        ref_opt.step()
        assert torch.equal(loss, ref_loss)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


def test_resnet_batchnorm_updates_once_per_step():
    model, x, loss_fn = examples.resnet()
    chain = ct.profile(model, x, loss_fn, repeats=1)
    wrapped = ct.PlannedModule(model, planner.plan(chain, "recompute_all"))
    loss_fn(wrapped(x)).backward()
    assert all(int(m.num_batches_tracked) == 1 for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


def test_eval_and_no_grad_run_the_plain_model():
    model, x, loss_fn = examples.mlp(depth=3, width=16, batch=4)
    wrapped = ct.plan(model, x, loss_fn, strategy="recompute_all", repeats=1)
    rng = torch.get_rng_state()
    with torch.no_grad():
        got = wrapped(x)
        torch.set_rng_state(rng)
        assert torch.equal(got, model(x))
    wrapped.eval()
    assert wrapped(x).grad_fn.name() == model(x).grad_fn.name()   # no planned nodes


def test_an_explicit_list_of_stages_runs_in_every_mode_not_the_models_forward():
    # stages given as a list compute what the model computes, perhaps differently (compiled
    # blocks): a plan that keeps everything, eval mode and no_grad run them, not model(x)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    calls = []

    def counted(module):
        def stage(h):
            calls.append(module)
            return module(h)
        return stage
    stages = [counted(m) for m in model]
    x = torch.randn(4, 8)
    wrapped = ct.plan(model, x, strategy="store_all", stages=stages, repeats=1)
    assert wrapped.plain
    for mode in ("train", "no_grad", "eval"):
        calls.clear()
        with torch.no_grad() if mode == "no_grad" else contextlib.nullcontext():
            wrapped.train(mode != "eval")
            out = wrapped(x)
        assert calls == list(model) and torch.equal(out, model(x))
    with pytest.raises(ct.PlanRunError, match="no positional argument"):
        wrapped(input=x)   # (eval mode, as the training step says it)


def test_input_gradient_is_returned():
    model, x, loss_fn = examples.mlp(depth=4, width=16, batch=4)
    model.eval()                 # no dropout: compare with one plain backward
    x = x.requires_grad_()
    chain = ct.profile(model, x, loss_fn, repeats=1)
    wrapped = ct.PlannedModule(model, planner.plan(chain, "recompute_all"))
    wrapped.train()
    model.eval()
    loss_fn(wrapped(x)).backward()
    got = x.grad.clone()
    x.grad = None
    loss_fn(model(x)).backward()
    assert torch.equal(got, x.grad)


def test_huggingface_gpt2():
    model, x, loss_fn = examples.gpt2(layers=2)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    assert [s.name for s in chain.stages][1] == "transformer.h.0:GPT2Block"
    budget = (chain.min_budget + planner.plan(chain, "store_all").peak) // 2
    for strategy in ("store_all", "sqrt", "recompute_all", "revolve", "optimal"):
        rng = torch.get_rng_state()
        ref = plain_step(model, x, loss_fn, rng)
        torch.set_rng_state(rng)
        for q in model.parameters():
            q.grad = None
        p = planner.plan(chain, strategy, budget=budget if strategy == "optimal" else None)
        r = ct.execute(model, p, x, loss_fn)
        assert same_state(model, ref)
        assert 0 <= r.predicted_peak_bytes - r.measured_peak_bytes <= RNG_STATE
        # op by op too: the masks HuggingFace's forward makes before the first block and the
        # tied head's gradient (held from B_L until the embedding's part is in) are counted
        # from when they appear (the chain's late bytes)
        assert chain.input_late_bytes > 0 and chain.param_late_bytes > 8
        predicted = [e.during for e in r.simulation.timeline]
        assert all(0 <= q - m <= RNG_STATE for m, q in zip(r.op_peaks, predicted))


def test_stages_resolve():
    model, x, _ = examples.gpt()
    s = resolve(model, "auto")
    assert s.kind == "auto" and s.names[0] == "prologue" and s.names[-1] == "epilogue"
    assert len(s) == len(model.blocks) + 2
    seq = resolve(model, [model.wte, model.ln])
    assert seq.kind == "sequence" and len(seq) == 2
    with pytest.raises(StageError, match="no nn.ModuleList"):
        resolve(torch.nn.Linear(2, 2))
    with pytest.raises(StageError, match="not a module or callable"):
        resolve(model, [model.wte, 3])


def test_stage_modifying_its_input_in_place_is_named():
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(inplace=True),
                              torch.nn.Linear(8, 8))
    with pytest.raises(StageError, match="stage 2 .* modifies its input in place"):
        ct.profile(net, torch.randn(4, 8), repeats=1)


def test_plan_for_another_model_is_refused():
    model, x, loss_fn = examples.mlp(depth=3, width=16, batch=4)
    other, _, _ = examples.mlp(depth=4, width=16, batch=4)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    with pytest.raises(ValueError, match="chain of 3 stages"):
        ct.execute(other, planner.plan(chain, "store_all"), x, loss_fn)
    with pytest.raises(ValueError, match="chain of 3 stages"):
        ct.PlannedModule(other, planner.plan(chain, "store_all"))


def test_chain_is_an_ordinary_chain():
    model, x, loss_fn = examples.gpt(layers=2)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    assert planner.Chain.from_json(chain.to_json()) == chain
    rows = planner.sweep(chain, ["sqrt", "optimal"], [chain.min_budget, 2 * chain.min_budget])
    assert len(rows.rows) == 4 and rows.rows[-1].peak <= 2 * chain.min_budget


def test_block_hooks_run_on_every_forward_the_plan_makes():
    model, x, loss_fn = examples.gpt(layers=3)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    p = planner.plan(chain, "recompute_all")
    calls = []
    handle = model.blocks[1].register_forward_pre_hook(lambda m, a: calls.append(1))
    loss_fn(ct.PlannedModule(model, p)(x)).backward()
    handle.remove()
    forwards = sum(op.stage == 3 and op.kind in ("forward", "forward_save") for op in p.ops)
    assert forwards > 1 and len(calls) == forwards      # once per run, recomputations too


def test_a_block_with_its_own_instance_forward_keeps_it():
    model, x, loss_fn = examples.gpt(layers=2)
    block = model.blocks[1]
    seen = []

    def forward(h, **kw):
        seen.append(1)
        return type(block).forward(block, h, **kw)
    block.forward = forward
    chain = ct.profile(model, x, loss_fn, repeats=1)
    seen.clear()
    loss_fn(ct.PlannedModule(model, planner.plan(chain, "recompute_all"))(x)).backward()
    assert seen and vars(block)["forward"] is forward


def test_memory_timeline_draws_a_torch_execution():
    import matplotlib
    matplotlib.use("Agg")
    from ckpt.plot import memory_timeline
    model, x, loss_fn = examples.mlp(depth=3, width=16, batch=4)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    p = planner.plan(chain, "recompute_all")
    fig = memory_timeline(p, measured=ct.execute(model, p, x, loss_fn))
    gids = {a.get_gid() for a in fig.axes[0].patches}
    assert {"measured", "measured_op_peaks", "predicted"} <= gids


class _BiasedLinear(torch.nn.Linear):
    def forward(self, x, bias):
        return super().forward(x) + bias


class _BiasedBlocks(torch.nn.Module):
    """Blocks given a learned tensor as a keyword: as a constant, it would get no gradient."""

    def __init__(self, leaf):
        super().__init__()
        self.blocks = torch.nn.ModuleList(_BiasedLinear(4, 4) for _ in range(3))
        self.bias = torch.nn.Parameter(torch.zeros(4))
        self.leaf = leaf

    def forward(self, x):
        bias = self.bias if self.leaf else self.bias * 2
        for b in self.blocks:
            x = b(x, bias=bias)
        return x


@pytest.mark.parametrize("leaf", [True, False])
def test_a_block_argument_requiring_grad_is_refused_naming_it(leaf):
    with pytest.raises(ct.PlanRunError, match="keyword argument 'bias' requiring grad"):
        ct.profile(_BiasedBlocks(leaf), torch.randn(2, 4), repeats=1)


def test_a_sequential_whose_first_stage_returns_a_tuple_runs_recomputing_plans():
    class Pair(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.lin(x).tanh(), "side output"

    first, rest = Pair(), [torch.nn.Linear(4, 4) for _ in range(3)]
    stages = [first, *rest]

    def model(x):
        h = first(x)[0]
        for lin in rest:
            h = lin(h)
        return h
    params = torch.nn.ModuleList(stages)
    x = torch.randn(2, 4)
    model(x).sum().backward()
    expected = [p.grad.clone() for p in params.parameters()]
    params.zero_grad(set_to_none=True)
    holder = torch.nn.Module()
    holder.stages = params
    chain = ct.profile(holder, x, stages=stages, repeats=1)
    ct.execute(holder, planner.plan(chain, "recompute_all"), x, stages=stages)
    for p, g in zip(params.parameters(), expected):
        assert torch.allclose(p.grad, g)


def test_a_second_backward_of_a_planned_step_is_a_clear_error():
    model, x, loss_fn = examples.mlp(depth=3, width=8, batch=2)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    loss = loss_fn(ct.PlannedModule(model, planner.plan(chain, "recompute_all"))(x))
    loss.backward(retain_graph=True)
    with pytest.raises(ct.PlanRunError, match="backpropagated already"):
        loss.backward()


def _plain_ledger_peak(model, x, loss_fn, forward=None):
    """The ledger's peak of one step of a copy of ``model`` (``forward(copy, x)``: its own
    call unless given), parameters, zero gradients, buffers and ``x`` registered."""
    from ckpt.torch.ledger import Ledger
    ref = copy.deepcopy(model)
    for q in ref.parameters():
        q.grad = torch.zeros_like(q)
    ledger = Ledger()
    ledger.register(*ref.parameters(), *[q.grad for q in ref.parameters()], *ref.buffers(), x)
    with ledger, ledger.hooks():
        loss_fn(ref(x) if forward is None else forward(ref, x)).backward()
    return ledger.peak


def test_store_all_holds_what_the_plain_step_holds(profiled):
    # every stage's first run kept, torch's engine backpropagating it: the plain step
    name, model, x, loss_fn, chain = profiled
    p = planner.plan(chain, "store_all")
    for q in model.parameters():
        q.grad = None
    r = ct.execute(model, p, x, loss_fn)
    assert r.measured_peak_bytes == r.predicted_peak_bytes == _plain_ledger_peak(model, x,
                                                                                   loss_fn)


def test_execute_refuses_a_plan_for_another_model_leaving_it_as_it_was():
    # the same shapes, but GELU keeps its input for backward where ReLU keeps its output:
    # the first stage that keeps other bytes stops the step before any backward
    relu = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(),
                                                     torch.nn.Linear(16, 16))
                                 for _ in range(3)])
    gelu = copy.deepcopy(relu)
    for block in gelu:
        block[1] = torch.nn.GELU()
    gelu.append(torch.nn.BatchNorm1d(16))
    relu.append(torch.nn.BatchNorm1d(16))
    x = torch.randn(8, 16)
    p = planner.plan(ct.profile(relu, x, repeats=1), "store_all")
    rng, stats = torch.get_rng_state(), gelu[-1].running_mean.clone()
    with pytest.raises(PlanMismatchError, match=r"stage 1 \(0:Sequential\) keeps \d+ bytes "
                                                r"for backward where the plan's chain says"):
        ct.execute(gelu, p, x)
    assert all(q.grad is None for q in gelu.parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(gelu[-1].running_mean, stats)


def test_autograd_grad_through_a_planned_module_is_the_plain_models():
    # the planned step is the plain graph: torch.autograd.grad reaches every parameter,
    # recomputing where the plan says, and nothing is accumulated into .grad
    model, x, loss_fn = examples.gpt(layers=3)
    chain = ct.profile(model, x, loss_fn, repeats=1)
    wrapped = ct.PlannedModule(model, planner.plan(chain, "recompute_all"))
    params = list(model.parameters())
    for q in params:
        q.grad = None
    rng = torch.get_rng_state()
    got = torch.autograd.grad(loss_fn(wrapped(x)), params)
    torch.set_rng_state(rng)
    expected = torch.autograd.grad(loss_fn(model(x)), params)
    assert all(torch.equal(g, e) for g, e in zip(got, expected))
    assert all(q.grad is None for q in params)


def _checkpoint_sequential_ops(L, blocks, segments):
    """The schedule of torch's checkpoint_sequential(blocks, segments) as ckpt ops, stages
    1 (stem) .. L (head): the first segments' blocks run without saving and are recomputed
    together during backward, the last segment's are stored (segments = 2 here)."""
    recomputed = list(range(2, 2 + blocks - blocks // segments))
    last = recomputed[-1]
    ops = ["forward_save 1"]
    for i in recomputed:
        ops += [f"forward {i}"] + ([f"drop {i - 1}"] if i > 2 else [])
    ops += [f"forward_save {i}" for i in range(last + 1, L + 1)]
    ops += [f"backward {i}" for i in range(L, last, -1)] + [f"drop {last}"]
    ops += [f"forward_save {i}" for i in recomputed]
    return ops + [f"backward {i}" for i in range(last, 0, -1)]


def test_resnet_torch_schedule_run_by_ckpt_holds_no_more_than_torch():
    # torch's checkpoint_sequential over the ResNet's blocks, 2 segments, and the same
    # schedule as a ckpt plan, both measured by the same ledger: ckpt's step runs inside
    # torch's backward, each parameter gradient accumulated as computed, as torch's does
    from torch.utils.checkpoint import checkpoint_sequential
    model, x, loss_fn = examples.resnet()
    chain = ct.profile(model, x, loss_fn, repeats=1)
    n = len(model.layers)
    p = planner.Plan(chain, [planner.Op.parse(op) for op in
                             _checkpoint_sequential_ops(len(chain), n, 2)])

    def torch_schedule(ref, x):
        h = checkpoint_sequential(ref.layers, 2, ref.stem(x), use_reentrant=False)
        return ref.fc(h.mean((2, 3)))
    torch_peak = _plain_ledger_peak(model, x, loss_fn, torch_schedule)
    r = ct.execute(model, p, x, loss_fn)
    assert r.measured_peak_bytes <= torch_peak
    assert 0 <= r.predicted_peak_bytes - r.measured_peak_bytes <= RNG_STATE


class _FreshMemory(torch.nn.Module):
    """Touches 64 MiB of memory the system has not given yet (above glibc's largest mmap
    threshold) on every call: page faults each time."""

    def forward(self, x):
        return x + torch.ones(1 << 24).sum() * 0


@pytest.mark.skipif(not clock.minor_faults(), reason="the system counts no page faults")
def test_profile_takes_page_faults_out_of_an_ops_time(monkeypatch):
    # priced at a second each, the faults of stage 2's forward (thousands, every run) take
    # all of its time; unpriced, they are part of it
    import ckpt.torch.measure as measure
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), _FreshMemory(), torch.nn.Linear(8, 8))
    x = torch.randn(4, 8)
    monkeypatch.setattr(measure, "fault_seconds", lambda: 0.0)
    assert ct.profile(net, x, repeats=2).stages[1].forward_cost > 0
    monkeypatch.setattr(measure, "fault_seconds", lambda: 1.0)
    assert ct.profile(net, x, repeats=2).stages[1].forward_cost == 0.0
    assert 0 < clock.fault_seconds(mib=64, repeats=1) < 1e-4


def test_gpu_check_runs_every_strategy_with_the_predicted_peak_on_cpu(capsys):
    """``benchmarks/gpu_check.py``, the one command for a CUDA machine, run on CPU with its
    small models: every strategy runs on the GPT-like model and HF GPT-2, each measured peak
    the predicted one (the script's CUDA table is recorded where a GPU is lent)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main(["--device", "cpu", "--quick"]) == 0
    rows = [[c.strip() for c in line.split("|")[1:-1]]
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip() in gpu_check.STRATEGIES]
    assert len(rows) == 2 * len(gpu_check.STRATEGIES)
    assert all(predicted == measured for _, predicted, measured, *_ in rows)
