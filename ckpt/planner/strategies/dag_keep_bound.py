"""A lower bound on the compute of every schedule, from a small MILP over which values are
ever recomputed (the *keep-set relaxation*), and the keep set it picks.

Binary x_i: node i is computed more than once (cost C_i, counted once). At the moment a
schedule first computes node t, node t, its transient and its deps are resident, and so is
every value i < t that some node after t reads (i ∈ L_t), unless x_i: computed once and
read after t, it has stayed resident since. A value dropped there must be computed again
after t, so its deps are needed after t too: resident then, or recomputed in turn. Per stage
t whose live values do not all fit (the others constrain nothing), continuous z[t,i]
(resident at that moment) and need[t,i] (needed after t) over the ancestors of L_t:

- z[t,i] >= 1 - x_i for i ∈ L_t, z[t,i] >= need[t,i] - x_i for the other ancestors
- need[t,d] >= need[t,j] - z[t,j] (need[t,j] = 1 for j ∈ L_t) for each dep d of j
- M_t + T_t + Σ_{deps(t)} M_d + Σ_i M_i z[t,i] <= B
- minimize Σ_i C_i x_i.

Every schedule whose first computations run in index order meets these rows with x_i = [i
computed twice or more] (the stage class and the brute force's wider class alike), so the
optimum bounds them all. It leaves out the memory of the recomputations themselves and
counts each recomputed node once, but it has n binaries and, per constrained stage, rows
over its live values only: HiGHS solves it to optimality in seconds up to 1000 nodes where
the stage MILP's root LP does not finish above 300. Its x is often a schedule: keep the
forward values with x_i = 0 (``dag_greedy.keep_set_stages``).

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> tg = Graph.from_chain(zoo.uniform(4, nbytes=10)).training()
>>> r = keep_bound(tg, budget=50)
>>> r.status, r.bound, len(r.keep)          # one forward value is recomputed
('optimal', 13.0, 3)
"""
import time
from typing import NamedTuple

import numpy as np

from .dag_highs import have_highspy, solve_model
from .dag_milp import MilpModel, Rows, compute_of, live_windows
from .killable import run_killable

__all__ = ["KeepBound", "keep_model", "keep_bound"]


class KeepBound(NamedTuple):
    """``status`` of the solve ("optimal", "time_limit", "infeasible"; "killed", "memory",
    "error": the child's end, with what it had reported), the lower
    ``bound`` on every schedule's compute (store-all's compute included; None when unknown)
    and ``keep``, the forward values the best solution never recomputes (None without one).

    >>> KeepBound("infeasible", None, None).status
    'infeasible'
    """
    status: str
    bound: float
    keep: set


def keep_model(tg, budget):
    """The keep-set relaxation for ``budget`` bytes (see the module doc) as a ``MilpModel``:
    columns 0..n-1 are x, costs in units of the dearest node, memory in units of the budget
    left over the constant bytes.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(list("xyzb"), [1] * 4, [4, 4, 4, 0], [[], [0], [1], [0, 2]],
    ...                    backward=[False, False, False, True])
    >>> m = keep_model(tg, budget=11)      # z runs with y: no room for x, which b reads
    >>> m.A.shape, m.row_lb.tolist(), (m.row_ub * 11).round(6).tolist()
    ((2, 5), [1.0, -inf], [inf, 3.0])
    >>> r = keep_bound(tg, budget=11)
    >>> r.status, r.bound, sorted(r.keep)             # x is computed twice
    ('optimal', 5.0, [1, 2])
    """
    n = len(tg)
    last_use, _ = live_windows(tg)
    scale = float(max(1, budget - tg.constant_bytes))
    M, T = tg.size / scale, tg.transient / scale
    rows, ncol, binary = Rows(), n, [1.0] * n
    for t in range(n):
        dep = set(tg.deps[t])
        live = [i for i in range(t) if last_use[i] > t and i not in dep]
        room = (budget - tg.constant_bytes) / scale - M[t] - T[t] - sum(M[i] for i in dep)
        if sum(M[i] for i in live) <= room:
            continue
        anc, stack = set(live), list(live)
        while stack:
            for d in tg.deps[stack.pop()]:
                if d not in dep and d not in anc:
                    anc.add(d)
                    stack.append(d)
        z, need = {}, {}
        for i in sorted(anc):
            z[i], ncol = ncol, ncol + 1
            if i not in live:
                need[i], ncol = ncol, ncol + 1
        binary += [0.0] * (ncol - len(binary))
        for i in sorted(anc):
            if i in need:
                rows.add([(z[i], 1.0), (need[i], -1.0), (i, 1.0)], 0.0, np.inf)
                for j in tg.users[i]:
                    if j in anc:
                        e = [(need[i], 1.0), (z[j], 1.0)]
                        rows.add(e + [(need[j], -1.0)] if j in need else e,
                                 0.0 if j in need else 1.0, np.inf)
            else:
                rows.add([(z[i], 1.0), (i, 1.0)], 1.0, np.inf)
        rows.add([(z[i], M[i]) for i in sorted(anc)], -np.inf, room)
    A, lo, hi = rows.matrix(ncol)
    unit = float(max(tg.cost.max(), 1e-300))
    c = np.zeros(ncol)
    c[:n] = tg.cost / unit
    return MilpModel(c, np.array(binary), np.zeros(ncol), np.ones(ncol), A, lo, hi, {}, {},
                     unit)


def keep_bound(tg, budget, time_limit=10.0, rel_gap=1e-4, mem_limit=4 * 2**30):
    """Solve the keep-set relaxation (see the module doc) with HiGHS to relative gap
    ``rel_gap`` in a child process (``killable``: killed ``time_limit`` seconds after it
    started, with at most ``mem_limit`` bytes of address space; HiGHS is given 80% of the
    time left after the model is built, and what it reported before a kill is kept).
    Returns a ``KeepBound``; "infeasible" means no schedule fits ``budget``.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> keep_bound(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=4).status
    'infeasible'
    """
    have_highspy()                  # imported once here, inherited by the forked child
    last = {"bound": None, "keep": None}

    def seen(msg):                    # ("progress", bound, keep or None)
        if msg[1] is not None:
            last["bound"] = msg[1] if last["bound"] is None else max(last["bound"], msg[1])
        if msg[2] is not None:
            last["keep"] = msg[2]
    r = run_killable(_solve_keep, (tg, budget, time_limit, rel_gap), time_limit, mem_limit,
                     on_message=seen, grace=0.5)
    if r.how == "done":
        return r.done[1]
    return KeepBound(r.how, last["bound"], last["keep"])


def _solve_keep(send, tg, budget, time_limit, rel_gap):
    """Child process: build and solve the model, send ("progress", bound, keep) as HiGHS
    improves, then ("done", KeepBound)."""
    began = time.monotonic()
    m = keep_model(tg, budget)

    def keep_of(x):
        return None if x is None else {
            i for i in range(len(tg)) if not tg.backward[i] and x[i] < 0.5}

    res = solve_model(m, max(0.1, 0.8 * (time_limit - (time.monotonic() - began))), rel_gap,
                      progress=lambda obj, bound, x: send(("progress", compute_of(tg, m, bound),
                                                           keep_of(x))))
    if res.status == "infeasible":
        send(("done", KeepBound(res.status, None, None)))
    else:
        send(("done", KeepBound(res.status, compute_of(tg, m, res.bound), keep_of(res.x))))
