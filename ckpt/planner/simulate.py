"""Replay an op list on a chain: validate it and account for every byte.

Memory accounting (what an executor must mirror, byte for byte):

- Alive from the start to the end: the constant ``param_bytes`` (parameters and their
  gradients) and the input x_0 (``input_bytes``; owned by the caller, never dropped) — but
  the chain's ``input_late_bytes`` only from the end of stage 1's first forward (while it
  runs, its transient holds them), and ``param_late_bytes`` only from the end of
  ``backward L`` (its transient holds them while it runs).
- Buffers the ops create and free (each counted once, with its chain size):
  x_i (ω_x^i) from ``forward i`` until ``drop i``; x̄_i (ω_x̄^i, *including* x_i) from
  ``forward_save i`` until ``backward i``; δ_i (ω_x^i, for 1 <= i < L) from ``backward i+1``
  until ``backward i``. δ_L (the loss seed) and δ_0 (a gradient for the data) are not
  buffers: the first is part of o_b^L, the second is never computed.
- While an op runs, memory is (alive before) + (what it creates) + its transient:
  ``forward i``: + ω_x^i + o_f^i; ``forward_save i``: + ω_x̄^i + ō_f^i;
  ``backward i``: + ω_δ^{i-1} + o_b^i (x̄_i and δ_i are freed when it finishes), or
  + ω_δ^{i-1} + ō_b^i where the chain gives ``direct_backward_transient`` (measured as the
  autograd engine runs B_i, freeing δ_i once used: ``ckpt.torch`` runs every B_i so);
  ``drop i``: nothing (memory falls by ω_x^i).
- The predicted peak is the maximum of that "during" memory over all ops (and of the
  memory before the first op).

A plan is valid when every op finds its inputs alive, creates nothing that is already alive
(one buffer per logical value), drops no x_{i-1} while x̄_i is alive (x̄_i excludes its input
because the input stays alive with it: a real stage saves its input, and the executor keeps
the detached input to read δ_{i-1} from), backpropagates every stage exactly once, and leaves
only x_0 alive at the end. The first violation raises ``InvalidPlanError`` with its step index.

>>> from ckpt.planner.chain import Chain, Stage
>>> from ckpt.planner.schedule import Op
>>> c = Chain([Stage("a", 1, 2, 10, 10), Stage("b", 1, 2, 20, 30)], input_bytes=5)
>>> r = simulate(c, [Op("forward_save", 1), Op("forward_save", 2), Op("backward", 2),
...                  Op("backward", 1)])
>>> r.peak, r.compute   # x0 + x̄1 + x̄2 + δ1 while backward 2 runs
(55, 6.0)
"""
from typing import NamedTuple

from .errors import InvalidPlanError
from .schedule import OP_KINDS, Op

__all__ = ["simulate", "Simulation", "Event"]


class Event(NamedTuple):
    """One replayed op: memory (bytes) ``before``, ``during`` and ``after`` it, the cost it
    adds, and the names of the buffers alive after it (``"x3"``, ``"x̄3"``, ``"δ3"``).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> simulate(Chain([Stage("a", 1, 2, 8, 8)], input_bytes=4), ["forward_save 1",
    ...          "backward 1"]).timeline[0]
    Event(step=0, op=forward_save 1, before=4, during=12, after=12, cost=1.0, alive=('x0', 'x̄1'))
    """
    step: int
    op: Op
    before: int
    during: int
    after: int
    cost: float
    alive: tuple


class Simulation(NamedTuple):
    """What ``simulate`` returns: ``peak`` bytes, total ``compute`` (chain's cost unit), the
    ``timeline`` of ``Event``s, and ``peak_step`` (index of the op at the peak; -1 = start).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> r = simulate(Chain([Stage("a", 1, 2, 8, 8)]), ["forward_save 1", "backward 1"])
    >>> r.peak, r.compute, r.peak_step
    (8, 3.0, 0)
    """
    peak: int
    compute: float
    timeline: list
    peak_step: int


def _name(key):
    kind, i = key
    return {"x": "x", "xbar": "x̄", "delta": "δ"}[kind] + str(i)


def simulate(chain, plan, timeline=True):
    """Validate ``plan`` (a ``Plan`` or a list of ``Op``/``"kind stage"`` strings) on
    ``chain`` and return a ``Simulation`` (peak bytes, compute, timeline; pass
    ``timeline=False`` to skip recording it, e.g. when scoring many candidates).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> c = Chain([Stage("a", 1, 2, 10, 10), Stage("b", 1, 2, 20, 30)], input_bytes=5)
    >>> simulate(c, ["forward_save 1", "backward 1"])
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.InvalidPlanError: step 1 (backward 1): δ1 is not alive (backward 2 must run first)

    A ``Graph`` or ``TrainingGraph`` (with a ``GraphPlan`` or graph ops) is replayed by
    ``ckpt.planner.graph_simulate.simulate_graph`` (its ``GraphSimulation`` is returned).
    """
    if not hasattr(chain, "xbar"):
        from .graph_simulate import simulate_graph
        tg = chain.training() if hasattr(chain, "training") and callable(chain.training) \
            else chain
        return simulate_graph(tg, getattr(plan, "ops", plan))
    ops = getattr(plan, "ops", plan)
    L = len(chain)
    x, xbar, of, ofs, ob, delta = (chain.x.tolist(), chain.xbar.tolist(), chain.of.tolist(),
                                   chain.ofs.tolist(), chain.ob.tolist(), chain.delta.tolist())
    uf, ub = chain.uf.tolist(), chain.ub.tolist()
    alive = {("x", 0): x[0]}
    mem = chain.param_bytes - chain.param_late_bytes + x[0] - chain.input_late_bytes
    late_input = chain.input_late_bytes
    peak, peak_step, compute = mem, -1, 0.0
    done = [False] * (L + 1)
    events = [] if timeline else None

    def has_x(i):
        return ("x", i) in alive or ("xbar", i) in alive

    for step, op in enumerate(ops):
        if not isinstance(op, Op):
            try:
                op = Op(*op) if isinstance(op, (tuple, list)) else Op.parse(op)
            except (TypeError, ValueError) as e:
                raise InvalidPlanError(step, op, f"not an op: {e}") from None

        def fail(reason):
            raise InvalidPlanError(step, op, reason)

        kind, i = op
        if kind not in OP_KINDS:
            fail(f"unknown op kind {kind!r} (expected one of {OP_KINDS})")
        if not isinstance(i, int) or not 1 <= i <= L:
            if kind == "drop" and i == 0:
                fail("x0 is the input, owned by the caller; it cannot be dropped")
            fail(f"stage {i!r} is not in 1..{L}")
        before = mem
        if kind in ("forward", "forward_save"):
            if not has_x(i - 1):
                fail(f"x{i - 1} is not alive (run forward {i - 1} first, or keep a "
                     f"checkpoint of it)")
            if ("x", i) in alive:
                fail(f"x{i} is already alive; drop it before computing it again")
            if ("xbar", i) in alive:
                fail(f"x̄{i} is already alive (it holds x{i}); backward {i} must consume it "
                     "first")
            key, size, tmp = ((("x", i), x[i], of[i]) if kind == "forward" else
                              (("xbar", i), xbar[i], ofs[i]))
            during = mem + size + tmp
            alive[key] = size
            mem += size
            if i == 1:
                mem += late_input
                late_input = 0
            cost = uf[i]
        elif kind == "backward":
            if done[i]:
                fail(f"stage {i} was already backpropagated")
            if ("xbar", i) not in alive:
                fail(f"x̄{i} is not alive (run forward_save {i} first)")
            if not has_x(i - 1):
                fail(f"x{i - 1} (the input of stage {i}) is not alive")
            if i < L and ("delta", i) not in alive:
                fail(f"δ{i} is not alive (backward {i + 1} must run first)")
            during = mem + delta[i - 1] + ob[i]
            mem -= alive.pop(("xbar", i))
            if i < L:
                mem -= alive.pop(("delta", i))
            if i > 1:
                alive[("delta", i - 1)] = delta[i - 1]
                mem += delta[i - 1]
            if i == L:
                mem += chain.param_late_bytes
            done[i] = True
            cost = ub[i]
        else:  # drop
            if ("x", i) not in alive:
                fail(f"x{i} is not alive" + (f" (x̄{i} is: it is freed by backward {i})"
                                            if ("xbar", i) in alive else ""))
            if ("xbar", i + 1) in alive:
                fail(f"x{i} is still held by x̄{i + 1} (stage {i + 1} keeps its input until "
                     f"backward {i + 1})")
            mem -= alive.pop(("x", i))
            during, cost = before, 0.0
        compute += cost
        if during > peak:
            peak, peak_step = during, step
        if timeline:
            events.append(Event(step, op, before, during, mem, cost,
                                tuple(_name(k) for k in alive)))
    end = len(ops)
    missing = [i for i in range(1, L + 1) if not done[i]]
    if missing:
        raise InvalidPlanError(end, None, f"stage {missing[-1]} was never backpropagated"
                               + (f" (nor stages {missing[:-1]})" if len(missing) > 1 else ""))
    leftover = sorted(k for k in alive if k != ("x", 0))
    if leftover:
        raise InvalidPlanError(end, None, "still alive at the end of the plan: "
                               + ", ".join(_name(k) for k in leftover)
                               + " (drop checkpoints once their segment is done)")
    return Simulation(int(peak), float(compute), events, peak_step)
