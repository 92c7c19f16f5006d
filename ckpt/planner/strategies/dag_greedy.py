"""Strategy ``dag_greedy``: checkpoint selection on a graph, greedily (a heuristic, no
bound). A set K of forward values is kept from the forward pass into the backward pass;
every other forward value is dropped after its last forward reader and, when a backward op
needs it, recomputed from what is resident (with what it needs in turn) and then kept until
its last reader, as Chen et al. (2016) recompute a segment between checkpoints. Starting
from K = every forward value (store-all), the value whose removal buys the most peak memory
per unit of added compute leaves K, until the schedule fits the budget; then values whose
return lowers compute and still fits come back. Every candidate is replayed by the
simulator; the schedules are in Checkmate's stage class, so they start ``dag_optimal``'s
solver.

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> tg = Graph.from_chain(zoo.uniform(4, nbytes=10)).training()
>>> ops, info = dag_greedy(tg, budget=50)
>>> info["objective"], info["kept"]
(13.0, 3)
"""
import time

from ..errors import BudgetError
from ..graph_simulate import simulate_graph
from .dag_stages import closure, stage_ops

__all__ = ["dag_greedy", "keep_set_stages"]


def keep_set_stages(tg, keep, hold=True):
    """(R, S) of the schedule that keeps the forward values in ``keep`` (indices) through
    the forward pass (see the module doc); with ``hold`` False, a value recomputed in the
    backward pass is dropped after its stage (recomputed again when read later) instead of
    kept until its last reader.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(list("xyb"), [1] * 3, [1] * 3, [[], [0], [0, 1]],
    ...                    backward=[False, False, True])
    >>> keep_set_stages(tg, {1})
    ([[0], [1], [0, 2]], [set(), {0}, {1}])
    >>> keep_set_stages(tg, {1}, hold=False)[0]
    [[0], [1], [0, 2]]
    """
    n = len(tg)
    bwd = tg.backward.tolist()
    last_fwd = [max([j for j in u if not bwd[j]], default=-1) for u in tg.users]
    last = [max(u, default=-1) for u in tg.users]
    R, S, resident = [], [], set()
    for t in range(n):
        S.append(set(resident))
        R.append(closure(tg, t, resident))
        resident |= set(R[-1])
        held = hold and bwd[t]
        resident = {i for i in resident if last[i] > t and (
            bwd[i] or i in keep or held or last_fwd[i] > t)}
    return R, S


def _cost(tg, keep, hold):
    R, S = keep_set_stages(tg, keep, hold)
    ops = stage_ops(tg, R, S)
    sim = simulate_graph(tg, ops)
    return sim.peak, sim.compute, ops, sim.peak_step


def _alive_at(tg, ops, step):
    """The values resident while op ``step`` runs."""
    idx = {nm: k for k, nm in enumerate(tg.names)}
    alive = set()
    for op in ops[:step + 1]:
        (alive.add if op.kind == "compute" else alive.discard)(idx[op.name])
    return alive


def dag_greedy(tg, budget=None, time_limit=30.0, candidates=24, keep=None):
    """Returns (ops, info) (see the module doc): ``info`` has the ``objective`` (compute),
    the ``peak`` and how many forward values stay ``kept``. Each step tries the
    ``candidates`` values of K alive at the peak with the most bytes per unit of compute;
    on graphs of more than 150 forward ops, while the peak is more than 5% over the budget,
    the best quarter of them leave at once (faster, and worse: on the zoo's U-Net at 0.7
    of store-all's peak, 10.7% overhead against 2.5% one at a time).
    ``time_limit`` seconds bound the search (checked before each candidate's replay): past
    it the best schedule within the budget found so far is returned. ``keep``: the keep set
    to start from instead of every forward value (``dag_keep_bound``'s). Raises
    ``BudgetError`` when no keep set fits.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])
    >>> dag_greedy(tg, budget=4)
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: strategy 'dag_greedy': no keep set fits 4 bytes (the least peak found: 8 bytes)
    """
    t0 = time.monotonic()
    found, least = [], None
    for hold, share in ((True, 0.5), (False, 1.0)):     # half the time each, at least
        got, peak = _search(tg, budget, hold, t0 + share * time_limit, candidates, keep)
        least = peak if least is None else min(least, peak)
        if got:
            found.append(got)
    if not found:
        raise BudgetError(f"strategy 'dag_greedy': no keep set fits {budget} bytes (the least "
                          f"peak found: {least} bytes)", budget=budget, strategy="dag_greedy")
    return min(found, key=lambda f: f[1]["objective"])


def _search(tg, budget, hold, deadline, candidates, start):
    fwd = [i for i in range(len(tg)) if not tg.backward[i]]
    keep = set(fwd) if start is None else set(fwd) & set(start)
    peak, comp, ops, at = _cost(tg, keep, hold)
    if budget is None or peak <= budget:
        return (ops, {"objective": comp, "peak": peak, "kept": len(keep)}), peak
    least = peak
    while peak > budget and time.monotonic() < deadline:
        pool = sorted(keep & _alive_at(tg, ops, at),
                      key=lambda i: -tg.size[i] / (tg.cost[i] + 1e-9 * tg.cost.max()))
        if not pool:
            break
        tried = []
        for i in pool[:candidates]:
            if tried and time.monotonic() > deadline:
                break
            p, c, o, a = _cost(tg, keep - {i}, hold)
            drop = peak - p
            tried.append(((0 if drop > 0 else 1, (c - comp) / drop if drop > 0 else c - comp),
                          i))
        tried.sort()
        far = len(fwd) > 150 and peak - budget > 0.05 * budget   # several leave at once
        out = {i for _, i in tried[:max(1, len(tried) // 4) if far else 1]}
        keep -= out
        peak, comp, ops, at = _cost(tg, keep, hold)
        least = min(least, peak)
    if peak > budget:
        return None, least
    better = True
    while better and time.monotonic() < deadline:
        better = False
        for i in sorted(set(fwd) - keep):
            if time.monotonic() > deadline:
                break
            p, c, o, _ = _cost(tg, keep | {i}, hold)
            if p <= budget and c < comp:
                keep.add(i)
                peak, comp, ops, better = p, c, o, True
    return (ops, {"objective": comp, "peak": peak, "kept": len(keep)}), peak
