"""The cheapest op list over *every* op order within a budget, by a shortest-path search.

The persistent class (``ckpt.planner.schedule``) keeps each checkpoint until its segment is
done; outside it, a schedule may drop a checkpoint and recompute it later, which on some
heterogeneous chains is cheaper when memory is tight (docs/planner.md, "Known limits"). For
small chains every op order can be searched: a state is what is alive -- the set of x_i, the
set of x̄_i, and the next stage to backpropagate b (backward runs L, L-1, ..., 1, so δ_b is
alive exactly when 1 <= b < L) -- and an op (``forward i``, ``forward_save i``, ``drop i``,
``backward b``) is an edge costing its compute, allowed when the simulator's rules accept it
and the memory while it runs fits the budget. Dijkstra's algorithm from "only x_0" to "all
stages backpropagated, only x_0 alive" gives the cheapest valid plan; the memory of a state
is a function of the state, so the budget check is exact. The states number at most
4^L (L + 1), which is why ``optimal`` uses this only for L <= ``EXHAUSTIVE_MAX_STAGES``.

>>> from ckpt.planner import zoo
>>> exhaustive(zoo.uniform(4, nbytes=10), budget=50)    # store-all needs 60
[forward 1, forward 2, drop 1, forward_save 3, forward_save 4, backward 4, backward 3, drop 2, forward_save 1, forward_save 2, backward 2, backward 1]
"""
import heapq

from ..schedule import Op

__all__ = ["exhaustive", "EXHAUSTIVE_MAX_STAGES"]

EXHAUSTIVE_MAX_STAGES = 6


def exhaustive(chain, budget):
    """The cheapest op list whose peak fits ``budget`` over every op order (ties: fewer ops
    first), or None when none fits. Exponential in the chain's length: meant for L <= 8.

    >>> from ckpt.planner.chain import Chain, Stage
    >>> exhaustive(Chain([Stage("a", 1, 2, 8, 8)]), budget=7) is None
    True
    """
    L = len(chain)
    x, xbar = chain.x.tolist(), chain.xbar.tolist()
    of, ofs, ob, delta = chain.of.tolist(), chain.ofs.tolist(), chain.ob.tolist(), \
        chain.delta.tolist()
    uf, ub = chain.uf.tolist(), chain.ub.tolist()
    base = chain.param_bytes + x[0]
    if base > budget:
        return None

    def memory(xs, xbars, b):
        held = base + (delta[b] if 1 <= b < L else 0)
        for i in range(1, L + 1):
            if xs >> i & 1:
                held += x[i]
            if xbars >> i & 1:
                held += xbar[i]
        return held

    start, goal = (0, 0, L), (0, 0, 0)
    best = {start: (0.0, 0)}
    parent = {start: None}
    heap = [(0.0, 0, start)]
    while heap:
        cost, nops, state = heapq.heappop(heap)
        if best.get(state) != (cost, nops):
            continue
        if state == goal:
            break
        xs, xbars, b = state
        mem = memory(xs, xbars, b)
        for op, during, nxt, step_cost in _moves(xs, xbars, b, mem, x, xbar, of, ofs, ob,
                                                 delta, uf, ub):
            if during > budget:
                continue
            key = (cost + step_cost, nops + 1)
            if nxt not in best or key < best[nxt]:
                best[nxt] = key
                parent[nxt] = (state, op)
                heapq.heappush(heap, (key[0], key[1], nxt))
    if goal not in parent:
        return None
    ops, state = [], goal
    while parent[state] is not None:
        state, op = parent[state]
        ops.append(op)
    return ops[::-1]


def _moves(xs, xbars, b, mem, x, xbar, of, ofs, ob, delta, uf, ub):
    """``(op, memory while it runs, next state, cost)`` of every op the simulator accepts."""
    def has_x(i):
        return i == 0 or (xs | xbars) >> i & 1

    for i in range(1, b + 1):        # a stage already backpropagated is never needed again
        bit = 1 << i
        if has_x(i - 1) and not (xs | xbars) & bit:
            yield Op("forward", i), mem + x[i] + of[i], (xs | bit, xbars, b), uf[i]
            yield Op("forward_save", i), mem + xbar[i] + ofs[i], (xs, xbars | bit, b), uf[i]
    for i in range(1, len(x)):
        if xs >> i & 1 and not xbars >> (i + 1) & 1:
            yield Op("drop", i), mem, (xs & ~(1 << i), xbars, b), 0.0
    if b >= 1 and xbars >> b & 1 and has_x(b - 1):
        yield Op("backward", b), mem + delta[b - 1] + ob[b], (xs, xbars & ~(1 << b), b - 1), ub[b]
