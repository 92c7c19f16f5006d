"""The stage MILP of ``dag_milp`` with its memory rows added lazily, stage by stage.

Every stage starts with its peak row alone (``dag_milp.peak_rows``: memory checked only when
the stage computes its own node, with its deps and what it keeps). That model is a
relaxation of Checkmate's: its optimum is a lower bound on every schedule of the class, and
it is a fraction of the size (on random layered n = 100: 16 k rows against 84 k). Its
solution is replayed (``stage_ops`` + ``simulate_graph``); the stages where the replay passes
the budget get Checkmate's step-by-step running sum in the next round, until a solution
fits: then its cost is the relaxation's optimum, so it is optimal within the solver's gap.
Every incumbent the solver reports is replayed too: one that fits is a schedule. Each
round is a killable ``solve_milp``, warm-started from the best schedule that fits (the first
round: cold, then warm; see ``solve_lazy``).

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> tg = Graph.from_chain(zoo.uniform(4, nbytes=10)).training()
>>> r = solve_lazy(tg, budget=50, time_limit=30)
>>> r.status, r.objective, r.bound
('optimal', 13.0, 13.0)
"""
import time
from typing import NamedTuple

from ..graph_simulate import GraphOp, simulate_graph
from .dag_milp import solve_milp
from .dag_stages import ops_stages, stage_ops

__all__ = ["LazyResult", "solve_lazy", "stages_over_budget"]


class LazyResult(NamedTuple):
    """``status`` (the last round's ``solve_milp`` status; "optimal" only when its schedule
    fits), the best schedule that fits (``ops``, None without one) and its ``objective``
    (compute), the best lower ``bound`` of any round (None: none), the ``stepwise`` stages
    of the last round, the ``rounds`` as [status, rows, stages over budget, seconds], and the
    last round's ``message``.

    >>> LazyResult("killed", None, None, None, [], [], "").status
    'killed'
    """
    status: str
    ops: list
    objective: float
    bound: float
    stepwise: list
    rounds: list
    message: str


def stages_over_budget(tg, ops, budget):
    """The stages (stage t ends with the first computation of node t) where a schedule in
    the stage class needs more than ``budget`` bytes.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(list("xyz"), [1] * 3, [4, 4, 4], [[], [0], [1]])
    >>> ops = ["compute x", "compute y", "free x", "compute z", "free y", "free z"]
    >>> stages_over_budget(tg, ops, 8), stages_over_budget(tg, ops, 7)
    ([], [1, 2])
    """
    during = simulate_graph(tg, ops).during
    idx = {nm: k for k, nm in enumerate(tg.names)}
    done, over = set(), set()
    for op, mem in zip(map(GraphOp.parse, ops), during):
        if op.kind == "compute":
            if mem > budget:
                over.add(len(done))
            done.add(idx[op.name])
    return sorted(over)


def solve_lazy(tg, budget, time_limit=60.0, mem_limit=4 * 2**30, rel_gap=1e-4,
               start_ops=None, max_rounds=100, cold_share=0.5, target=None, progress=None):
    """Rounds of ``solve_milp`` (see the module doc) within ``time_limit`` seconds of wall
    time in all; ``start_ops``, a schedule within the budget, is the first incumbent. With
    a start, the first round runs cold for ``cold_share`` of the time and, unproven, goes on
    warm-started: neither wins everywhere (60 s, load 7–10: warm, the U-Net at 0.7 of
    store-all's peak kept a 66% gap, cold it was proven in 46 s; at 0.9 warm proved it in
    29 s, cold left a 60% gap). A cold round, or one with no schedule yet, that stalls ends
    early (its stages over the budget get their rows), and a warm one as soon as it finds a
    schedule with half its start's overhead (10 s or more before the end), for a round
    started from that: HiGHS proves from a good start what it does not after finding it
    (U-Net at 0.6: proven in 55 s; without the two rules the bound stays 7.3–7.5% against
    8.5%; at 0.5 a schedule, +26.8%, where there was none). ``target``: a round stops at a
    solution of at most this compute (``solve_milp``); one that fits ends the search
    (status "target"). ``progress(objective, bound)``, if given, is called whenever a
    schedule that fits gets cheaper (``objective``, None before one) or a round's solver
    reports a better ``bound`` (None before one). Returns a ``LazyResult``.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> solve_lazy(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=4).status
    'infeasible'
    """
    end = time.monotonic() + time_limit
    best = None if start_ops is None else (simulate_graph(tg, start_ops).compute, start_ops)
    bound, stepwise, rounds = None, set(), []
    status, message = "time_limit", "no time for a round"
    base = tg.store_all_compute

    def report():
        if progress is not None:
            progress(None if best is None else best[0], bound)

    def over_budget(R, S):     # the stages where a solution passes the budget (none: kept)
        nonlocal best
        ops = stage_ops(tg, R, S)
        over = stages_over_budget(tg, ops, budget)
        cost = None if over else simulate_graph(tg, ops).compute    # a replay only if it fits
        if not over and (best is None or cost < best[0]):
            best = (cost, ops)
            report()
        return over

    def raise_bound(b):
        nonlocal bound
        if bound is None or b > bound:
            bound = b
            report()
    while len(rounds) < max_rounds:
        left = end - time.monotonic()
        if left < 1.0:
            status, message = "time_limit", "the time limit passed between rounds"
            break
        cold = not rounds and best is not None and cold_share > 0
        began, start_cost = time.monotonic(), None if best is None else best[0]
        last = [began]           # when the round's last incumbent came
        replayed = [None, None]  # the last incumbent and its stages over the budget

        def seen(R, S):
            last[0] = time.monotonic()
            replayed[:] = (R, S), over_budget(R, S)

        def stop():
            now = time.monotonic()
            if cold or best is None:    # stalled: no better incumbent for half its age, 5 s
                return last[0] > began and now - last[0] > max(5.0, 0.5 * (last[0] - began))
            # warm: a schedule with half the overhead of the round's start; again, from it
            return (start_cost is not None and end - now > 10.0
                    and best[0] - base < 0.5 * (start_cost - base))

        res = solve_milp(tg, budget, time_limit=max(1.0, left * cold_share) if cold else left,
                         mem_limit=mem_limit, rel_gap=rel_gap, stages=sorted(stepwise),
                         start=None if cold or best is None else ops_stages(tg, best[1]),
                         target=target, on_incumbent=seen, stop=stop, on_bound=raise_bound)
        status, message = res.status, res.message
        if res.bound is not None:
            raise_bound(res.bound)
        over = ([] if res.R is None else replayed[1] if replayed[0] == (res.R, res.S)
                else over_budget(res.R, res.S))
        rounds.append([res.status, res.rows, over, round(res.seconds, 3)])
        if res.status == "stopped" or cold and res.status in ("time_limit", "killed"):
            if res.status == "stopped" and best is None and not set(over) - stepwise:
                break            # the same round again would stall the same way
            stepwise.update(over)
            continue
        if res.status not in ("optimal", "target") or not over:
            break
        stepwise.update(over)
    if status in ("optimal", "target") and rounds[-1][2] or status == "stopped":
        status, message = "time_limit", (   # out of rounds, or the last one ended early
            "out of rounds: the last one was ended early" if status == "stopped" else
            "out of rounds: the last solution passes the budget")
    return LazyResult(status, None if best is None else best[1],
                      None if best is None else best[0], bound, sorted(stepwise), rounds,
                      message)
