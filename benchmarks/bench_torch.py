"""ckpt.torch's plans against torch's own activation checkpointing: measured peak vs step time.

Two models from ``ckpt.torch.examples`` (CPU, float32, ``torch.set_num_threads(1)``), sized
so that activations dominate the parameters: the GPT-like model (token ids, causal mask as a
keyword of every block) and the ResNet-like net (BatchNorm, in-place ReLU). Contenders, all
on the same model, weights and input, in one run:

- ``plain``: ``loss_fn(model(x)).backward()``, torch storing everything;
- ``ckpt optimal @B``: the model profiled once (``ckpt.torch.profile``), then
  ``ckpt.planner.plan(chain, "optimal", budget=B)`` for 6 budgets from the chain's
  ``min_budget`` to its store-all peak, and ``min_memory``; each run by a
  ``ckpt.torch.PlannedModule``;
- ``torch seq k``: ``torch.utils.checkpoint.checkpoint_sequential`` over the blocks, k = 2 ..
  n segments (``use_reentrant=False``; the GPT's blocks wrapped to take the mask, embeddings
  before and head after run as the model runs them; k = 1 checkpoints nothing: it is plain);
- ``torch SAC mm``/``SAC none``: every block under ``torch.utils.checkpoint.checkpoint`` with
  ``create_selective_checkpoint_contexts`` and a policy: save the matrix products
  (``aten.mm/addmm/bmm``, and for the ResNet ``aten.convolution``, its products) as
  ``MUST_SAVE``, recompute the rest (``PREFER_RECOMPUTE``); or save nothing;
- ``ckpt compiled B MiB`` and ``ckpt compiled min_memory`` (with ``--compile``): ``ckpt.torch.PlannedModule(..., compile=True)``
  on a copy of the model, the plan from ``ckpt.torch.compiled.block_checkpoint_plan`` for 5
  budgets and ``block_checkpoint_min_memory`` (which blocks run under
  ``torch.utils.checkpoint`` inside one compiled graph),
  compiled and timed under the same memory budget as torch's compiled rows;
- ``--compile B``: ``torch.compile`` of a copy of the model with
  ``torch._functorch.config.activation_memory_budget = B`` (default 0.5), timed in turns with
  the others. One budget per run: the copies of one model class share dynamo's compiled
  graph, so a second budget in the same process would run the first one's graph.
  ``--compile-checkpoint K,...`` adds, under the same budget, ``torch.compile`` of copies
  whose first k blocks run under ``torch.utils.checkpoint`` (torch's own checkpointing inside
  one compiled graph: the partitioner recomputes those blocks in the compiled backward).

``--channels-last`` gives the ResNet-like net and its input the channels-last memory format
(``torch.channels_last``) for every contender: on this CPU its eager step runs about 0.8x the
default layout's, and inductor picks that layout for a compiled model by itself.

Every contender is measured the same way. Peak: ``ckpt.torch.Ledger`` around one step —
parameters, their gradients (each parameter gets a zero ``.grad`` first), buffers and the
input registered, then ``with ledger, ledger.hooks(): loss_fn(step(x)).backward()`` — so
the peaks are the same logical quantity for everyone (each storage once, from creation to
its last reference). Beside it the allocator peak: the same registered bytes plus the peak
of ``torch.profiler``'s memory events over one step. Time: the median of ``--steps`` steps
without ledger or profiler, the contenders taking turns step by step (this machine is
shared); a ckpt plan that keeps everything (store-all) is the model itself
(``PlannedModule.plain``), so the plain row's time is its time.

Goals (issue 11): no torch point is both lower in measured peak and faster than ckpt's front
(for each torch point, ckpt's fastest plan at a peak no higher than it: the time ratio must
be <= 1, or its 95% interval, by bootstrap over the timed steps, must reach 1: a difference
the steps' own spread cannot tell from none is a tie, not a faster torch — with ``--steps``
15 or more; with fewer the interval is too wide to call anything a tie), and ckpt reaches a
lower measured peak than any torch contender.

    python benchmarks/bench_torch.py [--quick] [--plot bench_torch.png] [--compile]
                                     [--compile-checkpoint 2,4,8] [--channels-last]
"""
import argparse
import functools
import os
import random
import statistics
import sys
import time
from typing import NamedTuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.checkpoint import (CheckpointPolicy, checkpoint,  # noqa: E402
                                    checkpoint_sequential,
                                    create_selective_checkpoint_contexts)

import ckpt.torch  # noqa: E402
from ckpt import planner  # noqa: E402
from ckpt.planner.schedule import ops_from_tree, store_all_tree  # noqa: E402
from ckpt.torch import examples  # noqa: E402

MiB = 1024 * 1024
aten = torch.ops.aten

SIZES = {
    "gpt": dict(batch=8, seq=128, vocab=256, width=128, heads=4, layers=8),
    "resnet": dict(batch=16, channels=32, size=32, blocks=8),
}
# per-stage times are the median of this many profiled steps: the plans are chosen by them
PROFILE_REPEATS = 7

QUICK = {
    "gpt": dict(batch=2, seq=32, vocab=64, width=32, heads=4, layers=4),
    "resnet": dict(batch=2, channels=8, size=16, blocks=4),
}


# ---- torch's contenders: each a function x -> model output ---------------------------------

class _Masked(torch.nn.Module):
    """A GPT block taking only the hidden state (the mask bound), for checkpoint_sequential."""

    def __init__(self, block, mask):
        super().__init__()
        self.block, self.mask = block, mask

    def forward(self, x):
        return self.block(x, mask=self.mask)


def _gpt_run(model, blocks_fn):
    """The GPT-like model's forward with its block loop replaced by ``blocks_fn(h, mask)``."""
    def run(idx):
        T = idx.shape[1]
        h = model.drop(model.wte(idx) + model.wpe.weight[:T])
        h = blocks_fn(h, model.causal[:T, :T])
        return model.head(model.ln(h))
    return run


def _resnet_run(model, blocks_fn):
    def run(x):
        return model.fc(blocks_fn(model.stem(x), None).mean((2, 3)))
    return run


def _blocks(kind, model):
    return model.blocks if kind == "gpt" else model.layers


def _call(kind, block, h, mask, checkpointed=False, **ckw):
    if checkpointed or ckw:
        if kind == "gpt":
            return checkpoint(block, h, mask=mask, use_reentrant=False, **ckw)
        return checkpoint(block, h, use_reentrant=False, **ckw)
    return block(h, mask=mask) if kind == "gpt" else block(h)


def torch_contenders(kind, model):
    """name -> callable(x) computing the model's output with one of torch's checkpointings."""
    wrap = _gpt_run if kind == "gpt" else _resnet_run
    blocks = _blocks(kind, model)
    out = {}
    for k in range(2, len(blocks) + 1):
        def seq(h, mask, k=k):
            fns = (torch.nn.Sequential(*[_Masked(b, mask) for b in blocks]) if kind == "gpt"
                   else blocks)
            return checkpoint_sequential(fns, k, h, use_reentrant=False)
        out[f"torch seq {k}"] = wrap(model, seq)
    save = {aten.mm.default, aten.addmm.default, aten.bmm.default}
    if kind == "resnet":
        save |= {aten.convolution.default}

    def save_mm(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in save else CheckpointPolicy.PREFER_RECOMPUTE

    def save_none(ctx, op, *args, **kwargs):
        return CheckpointPolicy.PREFER_RECOMPUTE

    for name, policy in (("SAC mm", save_mm), ("SAC none", save_none)):
        ctx = functools.partial(create_selective_checkpoint_contexts, policy)

        def sac(h, mask, ctx=ctx):
            for b in blocks:
                h = _call(kind, b, h, mask, context_fn=ctx)
            return h
        out[f"torch {name}"] = wrap(model, sac)
    return out


# ---- measuring a contender, the same way for all --------------------------------------------

def _entry_tensors(model, x):
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
    return [*model.parameters(), *[p.grad for p in model.parameters() if p.grad is not None],
            *model.buffers(), x]


def ledger_peak(model, fn, x, loss_fn):
    """The logical peak (bytes) of one step ``loss_fn(fn(x)).backward()``."""
    ledger = ckpt.torch.Ledger()
    ledger.register(*_entry_tensors(model, x))
    with ledger, ledger.hooks():
        loss_fn(fn(x)).backward()
    return ledger.peak


def allocator_peak(model, fn, x, loss_fn):
    """Registered bytes plus the peak of torch.profiler's memory events over one step."""
    from ckpt.torch.ledger import storage_bytes
    from ckpt.torch.measure import CpuAllocatorPeak
    entry = storage_bytes(_entry_tensors(model, x))
    with CpuAllocatorPeak() as measured:
        loss_fn(fn(x)).backward()
    return entry + measured.bytes


class Timing(NamedTuple):
    """Medians over a contender's timed steps: wall seconds, the thread's CPU seconds (all
    the work with one torch thread; time given to other processes left out) and minor page
    faults (fresh memory from the system, ~1.5 µs each here: they depend on the heap the
    steps before left, not on the schedule alone)."""
    wall: float
    cpu: float
    faults: float
    rounds: tuple = ()       # (call, ((wall, cpu), ...)): every step, in round order


_CALLS = iter(range(1 << 30))


def timed_rounds(model, fns, x, loss_fn, steps):
    """A ``Timing`` per contender, the contenders taking turns step by step, in a shuffled
    order each round (seeded): a step's page faults depend on the step before it."""
    from ckpt.torch.clock import minor_faults
    runs = {name: [] for name in fns}
    order = random.Random(0)
    for _ in range(steps):
        names = list(fns)
        order.shuffle(names)
        for name in names:
            f, c, t = minor_faults(), time.thread_time(), time.perf_counter()
            loss_fn(fns[name](x)).backward()
            runs[name].append((time.perf_counter() - t, time.thread_time() - c,
                               minor_faults() - f))
    call = next(_CALLS)
    return {name: Timing(*(statistics.median(col) for col in zip(*r)),
                         rounds=(call, tuple((w, c) for w, c, _ in r)))
            for name, r in runs.items()}


def ratio_interval(ours, theirs, clock, draws=2000):
    """The 95% interval of median(ours) / median(theirs) by bootstrap over the timed steps
    (seeded); rounds of one ``timed_rounds`` call are resampled in pairs (a round's steps ran
    side by side, under the same load)."""
    col = 0 if clock == "wall" else 1
    (call_a, a), (call_b, b) = ours.rounds, theirs.rounds
    a = np.array([r[col] for r in a])
    b = np.array([r[col] for r in b])
    rng = np.random.default_rng(0)
    ia = rng.integers(0, len(a), (draws, len(a)))
    paired = call_a == call_b and len(a) == len(b)
    ib = ia if paired else rng.integers(0, len(b), (draws, len(b)))
    ratios = np.median(a[ia], axis=1) / np.median(b[ib], axis=1)
    return tuple(np.percentile(ratios, [2.5, 97.5]))


def seq_schedule(L, blocks, segments):
    """torch's ``checkpoint_sequential(blocks, segments)`` as ckpt ops on a chain of
    ``L = blocks + 2`` stages (stage 1 the code before the blocks, L the code after, both
    stored): segments of ``blocks // segments`` blocks from the first on keep only their
    input and are recomputed when their backward begins, the rest is stored.

    >>> [str(op) for op in seq_schedule(4, 2, 2)]
    ['forward_save 1', 'forward 2', 'forward_save 3', 'forward_save 4', 'backward 4', 'backward 3', 'drop 2', 'forward_save 2', 'backward 2', 'backward 1']
    """
    size = blocks // segments
    starts = [2 + m * size for m in range(segments)]
    tree = store_all_tree(starts[-1], L)
    for a, b in zip(starts[-2::-1], starts[:0:-1]):
        tree = ("split", a, b, tree, store_all_tree(a, b - 1))
    return ops_from_tree(("save", 1, tree))


def build(kind, sizes, channels_last=False):
    """``(model, x, loss_fn)`` from ``ckpt.torch.examples`` in training mode; the ResNet's
    weights and input channels-last when asked."""
    model, x, loss_fn = getattr(examples, kind)(**sizes)
    model.train()
    if channels_last and kind == "resnet":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x, loss_fn


def run_model(kind, sizes, steps, compile_budget, log, copies=False, channels_last=False,
              compile_checkpoint=()):
    model, x, loss_fn = build(kind, sizes, channels_last)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    t0 = time.perf_counter()
    chain = ckpt.torch.profile(model, x, loss_fn, repeats=PROFILE_REPEATS)
    prof_s = time.perf_counter() - t0
    store_all = planner.plan(chain, "store_all")
    lo, hi = chain.min_budget, store_all.peak
    theirs = {"plain": model, **torch_contenders(kind, model)}
    peaks, alloc = {}, {}
    for name, fn in theirs.items():
        peaks[name] = ledger_peak(model, fn, x, loss_fn)
        alloc[name] = allocator_peak(model, fn, x, loss_fn)
    # ckpt: 6 budgets from min_budget to store-all, min_memory, and (the same memory as
    # each torch point) a plan with that point's measured peak as its budget
    ours, predicted = {}, {"plain": store_all}
    wanted = [(f"ckpt optimal {int(b) / MiB:.2f}MiB", int(b)) for b in np.linspace(lo, hi, 6)]
    wanted += [(f"ckpt optimal @{n.replace('torch ', '')} {peaks[n] / MiB:.2f}MiB", peaks[n])
               for n in theirs if lo <= peaks[n] < hi]
    seen = set()
    for name, b in wanted:
        p = planner.plan(chain, "optimal", budget=b)
        if (p.peak, p.compute) in seen:     # the same plan as one already in the table
            continue
        seen.add((p.peak, p.compute))
        ours[name] = ckpt.torch.PlannedModule(model, p)
        predicted[name] = p
    p = planner.plan(chain, "min_memory")
    ours["ckpt min_memory"] = ckpt.torch.PlannedModule(model, p)
    predicted["ckpt min_memory"] = p
    if copies:   # torch's schedules run by ckpt: the cost model's check, not a contender
        blocks = len(_blocks(kind, model))
        for k in range(2, blocks + 1):
            p = planner.Plan(chain, seq_schedule(len(chain), blocks, k))
            ours[f"copy of seq {k}"] = ckpt.torch.PlannedModule(model, p)
            predicted[f"copy of seq {k}"] = p
    for name, fn in ours.items():
        peaks[name] = ledger_peak(model, fn, x, loss_fn)
        alloc[name] = allocator_peak(model, fn, x, loss_fn)
    # a plan that keeps everything runs the model itself (PlannedModule.plain): the plain
    # step's timing is its timing
    same_as_plain = [name for name, fn in ours.items() if fn.plain]
    fns = {"plain": model, **{n: f for n, f in ours.items() if n not in same_as_plain},
           **{n: f for n, f in theirs.items() if n != "plain"}}

    log(f"\n### {kind}: {sizes}\n\n{sum(1 for _ in model.parameters())} parameter tensors, "
        f"{params / MiB:.1f} MiB of parameters; chain of {len(chain)} stages profiled in "
        f"{prof_s:.1f} s; min_budget {lo / MiB:.1f} MiB, store-all peak {hi / MiB:.1f} MiB "
        "(predicted)\n")
    # the compiled contender (its own copy of the model, the same weights) takes turns with
    # the others: a step's page faults depend on the steps before it. Its budget stays set
    # while it is timed, so that a recompile partitions under the same budget.
    import torch._functorch.config as fconfig
    with fconfig.patch(activation_memory_budget=(
            fconfig.activation_memory_budget if compile_budget is None else compile_budget)):
        got = [] if compile_budget is None else [
            *(compiled(kind, sizes, compile_budget, x, log, channels_last, checkpointed=k)
              for k in [0, *compile_checkpoint]),
            *ckpt_compiled(kind, sizes, chain, x, log, channels_last)]
        for name, fn, peak, plan in filter(None, got):
            fns[name], alloc[name] = fn, peak
            if plan is not None:
                predicted[name] = plan
            # the ledger is a TorchDispatchMode: under it the compiled model runs as eager
            # code (its ledger peak is the plain step's), so this row has the allocator peak
            peaks[name] = float("nan")
        secs = timed_rounds(model, fns, x, loss_fn, steps)
    for name in same_as_plain:
        secs[name] = secs["plain"]
        log(f"({name} runs the plain step: it is timed as the plain row)\n")
    rows = {name: (peaks[name], alloc[name], secs[name])
            for name in ["plain", *ours, *(n for n in theirs if n != "plain"),
                         *(n for n in fns if n.startswith(("torch compile", "ckpt compiled")))]}
    return rows, predicted


# budgets of ckpt's compiled rows: this many, evenly from its least peak to store-all's
COMPILED_BUDGETS = 5


def ckpt_compiled(kind, sizes, chain, x, log, channels_last=False):
    """``ckpt.torch.PlannedModule(..., compile=True)`` on a copy of the model for
    ``COMPILED_BUDGETS`` budgets and the least-memory compiled plan (distinct plans only),
    compiled under the caller's
    activation_memory_budget: ``(name, step function, allocator peak, plan)`` each."""
    from ckpt.torch.compiled import (block_checkpoint_min_memory, block_checkpoint_plan,
                                     checkpointed_stages, lowered_ops)
    model, _, loss_fn = build(kind, sizes, channels_last)
    inner = range(2, len(chain))          # the blocks: prologue and epilogue are the model's
    lo = planner.Plan(chain, lowered_ops(len(chain), set(inner))).peak
    hi = block_checkpoint_plan(chain, None, checkpointable=inner).peak
    out, seen = [], set()
    plans = [(f"ckpt compiled {int(b) / MiB:.2f}MiB",
              block_checkpoint_plan(chain, int(b), checkpointable=inner))
             for b in np.linspace(lo, hi, COMPILED_BUDGETS)]
    plans.append(("ckpt compiled min_memory",
                  block_checkpoint_min_memory(chain, checkpointable=inner)))
    for name, plan in plans:
        chosen = tuple(checkpointed_stages(plan))
        if chosen in seen:
            log(f"({name} checkpoints stages {list(chosen)}, as a row above: not repeated)\n")
            continue
        seen.add(chosen)
        try:
            fn = ckpt.torch.PlannedModule(model, plan, compile=True)
            t = time.perf_counter()
            _entry_tensors(model, x)
            loss_fn(fn(x)).backward()          # the compile
            log(f"({name}, checkpointing stages {list(chosen)}: compiled in "
                f"{time.perf_counter() - t:.0f} s)\n")
            out.append((name, fn, allocator_peak(model, fn, x, loss_fn), plan))
        except Exception as e:
            log(f"({name} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]})\n")
    return out


def compiled(kind, sizes, budget, x, log, channels_last=False, checkpointed=0):
    """torch.compile of a copy of the model, the caller having set activation_memory_budget
    to ``budget``, with its first ``checkpointed`` blocks under torch's ``checkpoint``:
    ``(name, step function, allocator peak)``, or None with the error logged."""
    name = f"torch compile amb={budget}" + (f" + checkpoint {checkpointed} blocks"
                                            if checkpointed else "")
    model, _, loss_fn = build(kind, sizes, channels_last)

    def blocks_fn(h, mask):
        for i, b in enumerate(_blocks(kind, model)):
            h = _call(kind, b, h, mask, checkpointed=i < checkpointed)
        return h
    try:
        cmodel = torch.compile(model if not checkpointed else
                               (_gpt_run if kind == "gpt" else _resnet_run)(model, blocks_fn))
        t = time.perf_counter()
        _entry_tensors(model, x)
        loss_fn(cmodel(x)).backward()          # the compile
        log(f"({name}: compiled in {time.perf_counter() - t:.0f} s)\n")
        return name, cmodel, allocator_peak(model, cmodel, x, loss_fn), None
    except Exception as e:
        log(f"({name} failed: {type(e).__name__}: {str(e).splitlines()[0][:300]})\n")
        return None


# ---- verdicts ------------------------------------------------------------------------------

# fewest timed steps for a ratio above 1 whose interval reaches 1 to count as a tie: with 5
# steps, a true 1.05x at 3% noise per step has an interval reaching 1 in half the runs
TIE_STEPS = 15


def verdicts(rows, clock="wall", ties=True):
    """Goal 1 per torch point: ckpt's fastest plan at a peak no higher than the point's, its
    time (``Timing``'s ``clock``: "wall" or "cpu") over the point's (by ledger peak; rows
    without one, the compiled ones, by allocator peak); ``ties``: a ratio above 1 whose 95%
    interval reaches 1 counts as met. Goal 2: ckpt's lowest ledger peak over torch's lowest.
    The copies of torch's schedules take no part."""
    timings = {n: t for n, (_, _, t) in rows.items()}
    rows = {n: (p, a, getattr(t, clock)) for n, (p, a, t) in rows.items()
            if not n.startswith("copy")}
    ours = [(p, a, s, n) for n, (p, a, s) in rows.items() if n.startswith("ckpt")]
    theirs = [n for n in rows if not n.startswith("ckpt")]

    # torch's point is faster only when the whole interval says so: a ratio above 1 whose
    # interval reaches 1 is a tie within the noise of the timed steps
    def met(ratio, lo):
        return ratio <= 1.0 or ties and lo <= 1.0

    lines = _goal1_lines(rows, ours, theirs, timings, clock)
    worst = max(lines, key=lambda line: line[1])
    ok1 = all(met(r, lo) for _, r, (lo, _), _ in lines)
    # the same with ckpt's eager plans against torch's eager points only (compiled code is
    # faster than any eager schedule on the ResNet)
    eager = _goal1_lines(rows, [o for o in ours if o[0] == o[0]],
                         [n for n in theirs if rows[n][0] == rows[n][0]], timings, clock)
    eager_ok = all(met(r, lo) for _, r, (lo, _), _ in eager)
    eager_worst = max(eager, key=lambda line: line[1])
    ledger = {n: rows[n][0] for n in theirs if rows[n][0] == rows[n][0]}
    ckpt_min = min(p for p, _, _, _ in ours if p == p)
    torch_min_name = min(ledger, key=ledger.get)
    ratio2 = ckpt_min / ledger[torch_min_name]
    return ok1, worst, lines, ratio2 < 1.0, ratio2, torch_min_name, eager_ok, eager_worst


def _goal1_lines(rows, ours, theirs, timings, clock):
    """Per torch point of ``theirs``: (its label, ckpt's fastest row of ``ours`` at no higher
    peak over it in time, that ratio's 95% interval, that row's name)."""
    lines = []
    for n in theirs:
        p, a, s = rows[n]
        # by ledger peak where both rows have one, else (compiled rows) by allocator peak
        at = [(cs, cn) for cp, ca, cs, cn in ours
              if (cp <= p if p == p and cp == cp else ca <= a)]
        if at:
            cs, cn = min(at)
            interval = ratio_interval(timings[cn], timings[n], clock)
        else:
            cs, cn, interval = float("inf"), "none", (float("inf"), float("inf"))
        lines.append((n + ("" if p == p else " (allocator)"), cs / s, interval, cn))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small models (a smoke test)")
    parser.add_argument("--models", default="gpt,resnet")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per contender")
    parser.add_argument("--plot", help="save peak-vs-time plots to this file")
    parser.add_argument("--compile", nargs="?", const=0.5, default=None, type=float,
                        metavar="BUDGET",
                        help="also torch.compile with this activation_memory_budget "
                             "(default 0.5; one per run)")
    parser.add_argument("--compile-checkpoint", default="", metavar="K,...",
                        help="with --compile: also compiled copies whose first k blocks run "
                             "under torch.utils.checkpoint, for each k")
    parser.add_argument("--channels-last", action="store_true",
                        help="the ResNet-like net and its input in torch.channels_last memory "
                             "format, for every contender")
    parser.add_argument("--copies", action="store_true",
                        help="also ckpt running each of torch's checkpoint_sequential "
                             "schedules (rows 'copy of seq k': predicted against measured "
                             "time on the same schedule; not contenders)")
    args = parser.parse_args(argv)
    try:
        checkpointed = [int(k) for k in args.compile_checkpoint.split(",") if k]
    except ValueError:
        parser.error(f"--compile-checkpoint takes block counts such as 2,4,8, got "
                     f"{args.compile_checkpoint!r}")
    if checkpointed and args.compile is None:
        parser.error("--compile-checkpoint needs --compile (the budget its graphs compile under)")
    sizes = QUICK if args.quick else SIZES
    least_blocks = min(sizes[m].get("blocks") or sizes[m]["layers"]
                       for m in args.models.split(","))
    if any(not 1 <= k <= least_blocks for k in checkpointed):
        parser.error(f"--compile-checkpoint: each count must be 1..{least_blocks} (the blocks "
                     f"of the models asked for), got {checkpointed}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # every compiled row of a model compiles its forward's code object once (up to 4 torch
    # rows and 6 ckpt rows): past dynamo's default of 8 graphs, a row would run eagerly
    torch._dynamo.config.recompile_limit = 64

    def log(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    log(f"# bench_torch: torch {torch.__version__}, 1 thread, {time.strftime('%Y-%m-%d')}"
        f"{', ResNet channels-last' if args.channels_last else ''}\n")
    results = {}
    for kind in args.models.split(","):
        sizes = (QUICK if args.quick else SIZES)[kind]
        rows, predicted = run_model(kind, sizes, args.steps, args.compile, log, args.copies,
                                    args.channels_last, checkpointed)
        results[kind] = rows
        plain_p, _, plain_t = rows["plain"]
        log("\n| contender | measured peak MiB | allocator peak MiB | predicted MiB | step ms "
            "| CPU ms | predicted ms | faults/step | peak / plain | time / plain | CPU / plain |"
            "\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
        for n, (p, a, t) in rows.items():
            plan = predicted.get(n)
            pred = f"{plan.peak / MiB:.2f} | " if plan else " | "
            pred_ms = f"{plan.compute * 1e3:.1f}" if plan else ""
            shown = f"{p / MiB:.2f}" if p == p else "- (allocator only)"
            log(f"| {n} | {shown} | {a / MiB:.2f} | {pred}{t.wall * 1e3:.1f} | "
                f"{t.cpu * 1e3:.1f} | {pred_ms} | {t.faults:.0f} | "
                f"{(p if p == p else a) / plain_p:.2f} | {t.wall / plain_t.wall:.2f}x | "
                f"{t.cpu / plain_t.cpu:.2f}x |\n")
        for clock in ("wall", "cpu"):
            ok1, worst, lines, ok2, ratio2, tname, eager_ok, eager_worst = verdicts(
                rows, clock, ties=args.steps >= TIE_STEPS)
            ties = [n for n, r, (lo, _), _ in lines if r > 1.0 and lo <= 1.0]
            tied = ("" if not ties else f" (ties within the noise: {', '.join(ties)})"
                    if args.steps >= TIE_STEPS else f" (not called ties with fewer than "
                    f"{TIE_STEPS} timed steps: {', '.join(ties)})")
            log(f"\n{kind}: goal 1 by {clock} time (no torch point lower in peak and faster "
                f"than ckpt's front): {'MET' if ok1 else 'NOT MET'}{tied}; worst torch point "
                f"{worst[0]}: ckpt's fastest plan at no higher peak takes {worst[1]:.3f}x "
                f"its time (95% interval {worst[2][0]:.3f}-{worst[2][1]:.3f})\n")
            log(f"  per torch point, ckpt {clock} time / torch {clock} time at <= its peak "
                "(95% interval; ckpt's row): " + ", ".join(
                    f"{n} {r:.3f}x ({lo:.3f}-{hi:.3f}; {cn})" for n, r, (lo, hi), cn in lines)
                + "\n")
            log(f"  ckpt's eager plans against torch's eager points alone: "
                f"{'MET' if eager_ok else 'NOT MET'}; worst {eager_worst[0]} "
                f"{eager_worst[1]:.3f}x ({eager_worst[2][0]:.3f}-{eager_worst[2][1]:.3f}; "
                f"{eager_worst[3]})\n")
        log(f"{kind}: goal 2 (ckpt reaches a lower peak than any torch contender): "
            f"{'MET' if ok2 else 'NOT MET'}; ckpt's lowest peak = {ratio2:.2f}x that of "
            f"{tname} (torch's lowest)\n")
    if args.plot:
        plot(results, args.plot)
        log(f"\nplot: {args.plot}\n")
    return 0


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), squeeze=False)
    for ax, (kind, rows) in zip(axes[0], results.items()):
        for label, style, wanted in (
                ("ckpt (optimal sweep, min_memory)", "o-", lambda p: p == p),
                ("ckpt compiled (allocator peak)", "o--", lambda p: p != p)):
            ours = sorted((p / MiB if p == p else a / MiB, t.wall * 1e3)
                          for n, (p, a, t) in rows.items()
                          if n.startswith("ckpt") and wanted(p))
            if ours:
                ax.plot(*zip(*ours), style, color="C0", label=label)
        for n, (p, a, t) in rows.items():
            if n.startswith(("ckpt", "copy")):
                continue
            peak, s = (p if p == p else a) / MiB, t.wall * 1e3
            marker, color = (("s", "C1") if "seq" in n else ("^", "C2") if "SAC" in n
                             else ("D", "C3") if "compile" in n else ("*", "k"))
            ax.plot(peak, s, marker, color=color)
            ax.annotate(n.replace("torch ", ""), (peak, s),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("measured peak (MiB: logical ledger; compiled rows: allocator)")
        ax.set_ylabel("step time (ms, median)")
        ax.set_title(kind)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
