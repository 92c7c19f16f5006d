"""Plans run as one compiled graph: ``ckpt.torch.plan(..., compile=True)``.

``torch.compile`` of a whole model runs its step faster than eager here (the ResNet-like net
0.78-0.88x, benchmarks/README.md), which no eager schedule reaches. Inside one compiled
graph a block called under ``torch.utils.checkpoint`` is recomputed in the compiled
backward, and inductor still fuses across blocks. So a compiled plan is a set of stages to
checkpoint: every stage keeps its output; a checkpointed stage saves nothing in the forward
and recomputes its saved values just before its backward; the others save them in the
forward. In ckpt's op language, for stages 1..L:

    forward phase:  forward_save i (kept) or forward i (checkpointed), i = 1..L
    backward phase: for i = L..1: drop i, forward_save i (checkpointed only), backward i

``block_checkpoint_plan`` picks the set: the least recomputation whose predicted peak (eager
sizes, ``ckpt.torch.profile``) fits the budget; ``block_checkpoint_min_memory`` the least
memory. The compiled step's own peak is measured, not predicted: inductor saves less than
eager code where it recomputes cheap ops inside fused kernels, and frees in its own order
(benchmarks/README.md has both).

>>> from ckpt.planner.chain import Chain, Stage
>>> chain = Chain([Stage(f"block{i}", 1, 2, output_bytes=10, saved_bytes=40)
...                for i in range(4)], input_bytes=10)
>>> p = block_checkpoint_plan(chain, budget=130)
>>> checkpointed_stages(p), p.peak, p.compute        # store-all: 180 bytes, compute 12
([1, 2], 120, 14.0)
"""
import dataclasses
import itertools

import torch
from torch.utils.checkpoint import checkpoint

from ..planner.errors import BudgetError
from ..planner.plan import Plan
from ..planner.simulate import simulate
from ..units import format_size_exact, parse_size
from .runner import run_in_order

__all__ = ["block_checkpoint_plan", "block_checkpoint_min_memory", "checkpointed_stages",
           "lowered_ops", "compiled_step", "checkpoint_call", "EXHAUSTIVE_MAX"]

STRATEGY = "checkpoint_blocks"

# every subset of at most this many checkpointable stages is tried (4096 replays: 0.6 s,
# min_memory the same, with 14 stages);
# above it, stages are checkpointed greedily
EXHAUSTIVE_MAX = 12


def lowered_ops(L, checkpointed):
    """The op list of a compiled plan on ``L`` stages checkpointing ``checkpointed``.

    >>> lowered_ops(2, {1})
    ['forward 1', 'forward_save 2', 'backward 2', 'drop 1', 'forward_save 1', 'backward 1']
    """
    ops = [f"{'forward' if i in checkpointed else 'forward_save'} {i}" for i in range(1, L + 1)]
    for i in range(L, 0, -1):
        if i in checkpointed:
            ops += [f"drop {i}", f"forward_save {i}"]
        ops.append(f"backward {i}")
    return ops


def checkpointed_stages(plan):
    """The stages a compiled plan checkpoints; ``ValueError`` when ``plan`` is not of that
    form (it drops a kept output, or recomputes a stage twice or out of place).

    >>> from ckpt.planner import zoo, plan
    >>> checkpointed_stages(plan(zoo.uniform(3), "store_all"))
    []
    >>> checkpointed_stages(plan(zoo.uniform(3), "recompute_all"))
    Traceback (most recent call last):
    ...
    ValueError: plan 'recompute_all' is not a compiled plan (each stage kept or checkpointed once, every output kept); make one with block_checkpoint_plan(chain, budget) or ckpt.torch.plan(..., compile=True)
    """
    L = len(plan.chain)
    first = {}
    for op in plan.ops:
        first.setdefault(op.stage, op.kind)
    chosen = sorted(i for i, kind in first.items() if kind == "forward")
    if [str(op) for op in plan.ops] != lowered_ops(L, set(chosen)):
        raise ValueError(
            f"plan {plan.strategy!r} is not a compiled plan (each stage kept or checkpointed "
            "once, every output kept); make one with block_checkpoint_plan(chain, budget) or "
            "ckpt.torch.plan(..., compile=True)")
    return chosen


def _plan(chain, checkpointed, budget, search):
    return Plan(chain, lowered_ops(len(chain), checkpointed), strategy=STRATEGY, budget=budget,
                options={"search": search})


def block_checkpoint_plan(chain, budget=None, *, checkpointable=None):
    """The compiled plan for ``chain`` with the least recomputation whose predicted peak fits
    ``budget`` (bytes or "64MiB"; None: checkpoint nothing), checkpointing only stages in
    ``checkpointable`` (default: all but the last). Plans within ``COMPUTE_TOLERANCE`` of the
    step's compute of the least count as equally cheap; of those, the one holding the least
    memory over the step. Every subset is tried when there are at most ``EXHAUSTIVE_MAX``
    such stages (``plan.options["search"]`` is "exhaustive"); above that, the stage that cuts
    the peak most per unit of forward cost is checkpointed until the plan fits, then any that
    it fits without is put back ("greedy").

    >>> from ckpt.planner.chain import Chain, Stage
    >>> chain = Chain([Stage(f"block{i}", 1, 2, 10, 40) for i in range(4)], input_bytes=10)
    >>> block_checkpoint_plan(chain, budget=85)
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: no compiled plan fits 85 B (85 bytes): the least-peak one (checkpointing 1, 2, 3) peaks at 90 B (90 bytes); give at least that, or plan without compile=True (eager plans reach 80 B (80 bytes))
    """
    allowed = _allowed(chain, checkpointable)
    if budget is None:
        return _plan(chain, set(), None, "exhaustive")
    budget = parse_size(budget, what="budget")
    if len(allowed) <= EXHAUSTIVE_MAX:
        every = _every(chain, allowed, budget)
        fitting = [p for p in every if p.peak <= budget]
        if not fitting:
            raise _too_small(chain, budget, min(every, key=lambda p: p.peak), "the least-peak one")
        return _least_held(fitting)
    everything = _plan(chain, set(allowed), budget, "greedy")
    if everything.peak > budget:
        raise _too_small(chain, budget, everything, "the least peak this search reaches")
    return _greedy(chain, allowed, budget)


def _every(chain, allowed, budget):
    return [_plan(chain, set(subset), budget, "exhaustive") for k in range(len(allowed) + 1)
            for subset in itertools.combinations(allowed, k)]


def _too_small(chain, budget, least, which):
    chosen = ", ".join(map(str, checkpointed_stages(least))) or "nothing"
    return BudgetError(
        f"no compiled plan fits {format_size_exact(budget)}: {which} (checkpointing {chosen}) "
        f"peaks at {format_size_exact(least.peak)}; give at least that, or plan without "
        f"compile=True (eager plans reach {format_size_exact(chain.min_budget)})",
        budget=budget, minimum=least.peak,
        strategy=STRATEGY)


# plans whose compute exceeds the least by less than this fraction of the step's (store-all)
# compute count as equally cheap: like blocks' measured forward times differ by 2-17% of a
# block (0.2-1.4 ms of the ResNet-like net's 200-ms step, benchmarks/README.md)
COMPUTE_TOLERANCE = 0.01


def _least_held(plans):
    """Of ``plans``, one of (nearly) the least compute that holds the least memory over the
    step (the sum of each op's memory times its cost): of like blocks, the first ones are
    checkpointed, whose recomputation runs when the least is alive, and inductor's compiled
    step follows (benchmarks/README.md)."""
    least = min(p.compute for p in plans)
    slack = COMPUTE_TOLERANCE * plans[0].store_all_compute
    cheap = [p for p in plans if p.compute <= least + slack]
    return min(cheap, key=lambda p: (_held(p), p.compute))


def _kept_for_backward(plan):
    first = next(k for k, op in enumerate(plan.ops) if op.kind == "backward")
    return simulate(plan.chain, plan.ops).timeline[first].before


def _held(plan):
    return sum(e.during * e.cost for e in simulate(plan.chain, plan.ops).timeline)


def block_checkpoint_min_memory(chain, budget=None, *, checkpointable=None):
    """The compiled plan for ``chain`` with the least predicted peak, then the least memory
    kept for the backward (alive when the first backward begins: what the compiled forward
    saves), then the least recomputation: every subset of at most ``EXHAUSTIVE_MAX`` stages
    in ``checkpointable`` ("exhaustive"), above that all of them ("all"); a ``BudgetError``
    when its peak exceeds ``budget``. What ``ckpt.torch.plan(..., compile=True,
    strategy="min_memory")`` runs. A last block whose recomputation does not lower the
    predicted peak still lowers what the forward keeps, and the compiled step's peak with it
    (the ResNet-like net: 30.2 against 34.2 MiB).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> chain = Chain([Stage(f"block{i}", 1, 2, 10, 40) for i in range(4)], input_bytes=10)
    >>> checkpointed_stages(block_checkpoint_min_memory(chain))
    [1, 2, 3]
    """
    allowed = _allowed(chain, checkpointable)
    budget = None if budget is None else parse_size(budget, what="budget")
    if len(allowed) > EXHAUSTIVE_MAX:
        best = _plan(chain, set(allowed), budget, "all")
    else:
        every = _every(chain, allowed, budget)
        least = min(p.peak for p in every)     # replayed again only at the least peak
        best = min((p for p in every if p.peak == least),
                   key=lambda p: (_kept_for_backward(p), p.compute))
    if budget is not None and best.peak > budget:
        raise _too_small(chain, budget, best, "the least-memory one")
    return best


def _allowed(chain, checkpointable):
    L = len(chain)
    allowed = sorted(set(range(1, L) if checkpointable is None else checkpointable))
    if any(not 1 <= i <= L for i in allowed):
        raise ValueError(f"checkpointable stages must be in 1..{L}, got {allowed}")
    return allowed


def _greedy(chain, allowed, budget):
    chosen = set()
    current = _plan(chain, chosen, budget, "greedy")
    while current.peak > budget:
        rest = [i for i in allowed if i not in chosen]
        cut = [(current.peak - _plan(chain, chosen | {i}, budget, "greedy").peak)
               / max(chain.stages[i - 1].forward_cost, 1e-12) for i in rest]
        # the most peak cut per unit of forward cost; where none cuts it, the most bytes saved
        best = max(range(len(rest)), key=lambda k: (cut[k], chain.stages[rest[k] - 1].saved_bytes
                                                    - chain.stages[rest[k] - 1].output_bytes))
        chosen.add(rest[best])
        current = _plan(chain, chosen, budget, "greedy")
    for i in sorted(chosen, key=lambda i: -chain.stages[i - 1].forward_cost):
        trial = _plan(chain, chosen - {i}, budget, "greedy")
        if trial.peak <= budget:
            chosen.discard(i)
            current = trial
    return current




class _Checkpointing:
    """Blocks ``checkpointed`` (positions in ``blocks``) called under
    ``torch.utils.checkpoint`` while in the ``with``: an instance ``forward`` on each (the
    same function objects every time, so the compiled graph's guards hold) calling the
    forward the block has on entering, put back on leaving, whatever happened inside."""

    def __init__(self, blocks, checkpointed):
        chosen = set(checkpointed)
        for b in sorted(chosen):
            others = [k for k, block in enumerate(blocks) if block is blocks[b] and k not in chosen]
            if others:
                raise ValueError(
                    f"block {b} of the container is also block {others[0]}, which the plan "
                    "does not checkpoint: a module called twice is checkpointed at every call "
                    "or at none")
        self.blocks = list({id(blocks[b]): blocks[b] for b in sorted(chosen)}.values())
        self.calls = [self._call(block) for block in self.blocks]
        self.held = []          # per entry (a nested call enters again): the forwards found

    @staticmethod
    def _call(block):
        def call(*args, **kwargs):
            return checkpoint(call.inner, *args, use_reentrant=False, **kwargs)
        call.inner = call.own_class_forward = type(block).forward.__get__(block)
        return call

    def __enter__(self):
        self.held.append([vars(block).get("forward") for block in self.blocks])
        for block, call, own in zip(self.blocks, self.calls, self.held[-1]):
            if own is not call:
                call.inner = own if own is not None else call.own_class_forward
                block.forward = call

    def __exit__(self, *exc):
        for block, call, own in zip(self.blocks, self.calls, self.held.pop()):
            if own is None:
                vars(block).pop("forward", None)
            elif own is not call:
                block.forward = own


def compiled_step(model, staging, checkpointed, options=None):
    """A function ``(*args, **kwargs) -> output`` running ``model`` compiled
    (``torch.compile(..., **options)``), the stages ``checkpointed`` (1-based) under
    ``torch.utils.checkpoint``; ``staging`` is ``ckpt.torch.stages.resolve``'s. With
    ``stages="auto"`` only the blocks (stages 2..L-1) can be checkpointed. Nothing compiles
    until the first call.

    >>> import torch
    >>> from ckpt.torch.stages import resolve
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> step = compiled_step(net, resolve(net), {2})
    >>> callable(step)
    True
    >>> compiled_step(net, resolve(net), {4})
    Traceback (most recent call last):
    ...
    ValueError: stage 4 cannot be checkpointed: the stages of this list are 1..3
    """
    L = len(staging)
    allowed = range(2, L) if staging.kind == "auto" else range(1, L + 1)
    outside = sorted(set(checkpointed) - set(allowed))
    if outside:
        raise ValueError(
            f"stage {outside[0]} cannot be checkpointed: " + (
                f"with stages='auto' the prologue and epilogue run as the model's own code; "
                f"the blocks are stages 2..{L - 1}" if staging.kind == "auto" else
                f"the stages of this list are 1..{L}"))
    options = dict(options or {})
    if staging.kind == "sequence":
        staged = dataclasses.replace(staging, callables=[
            checkpoint_call(s) if i in checkpointed else s
            for i, s in enumerate(staging.callables, 1)])
        return torch.compile(lambda *args, **kwargs: run_in_order(staged, args, kwargs),
                             **options)
    compiled = torch.compile(model, **options)
    switch = _Checkpointing(staging.blocks, [i - 2 for i in checkpointed])

    def step(*args, **kwargs):
        with switch:
            return compiled(*args, **kwargs)
    return step


def checkpoint_call(stage):
    """``stage`` called under ``torch.utils.checkpoint`` (non-reentrant): it saves only its
    arguments and recomputes in the backward.

    >>> import torch
    >>> x = torch.ones(3, requires_grad=True)
    >>> checkpoint_call(torch.sin)(x).sum().backward()
    >>> torch.allclose(x.grad, torch.cos(x))
    True
    """
    def call(*args, **kwargs):
        return checkpoint(stage, *args, use_reentrant=False, **kwargs)
    return call
