"""Strategy ``dag_optimal``: the cheapest schedule of Checkmate's stage class within the
budget, from the MILP of ``dag_milp`` solved lazily (``dag_lazy``: peak rows first, the
step-by-step memory of a stage only once a replay finds it over the budget) under a hard
wall-clock limit, never worse than the baselines (their schedules compete with the
solver's, and win when it found nothing better in time).

What it reports (``info``): ``solver_status`` ("optimal": proven; "store_all": the budget
needs no recomputation; "time_limit"/"killed"/"memory"/"error"/"skipped": not proven),
``objective`` (compute of the returned schedule), ``bound`` (a lower bound on the compute
of every schedule of the class: the best of the MILP's dual bound, the keep-set
relaxation's (``dag_keep_bound``, also in ``keep_bound``), the LP relaxation's value, and
store-all's compute, which every schedule pays), ``rounds`` (per round of
``solve_lazy``: status, rows, stages over budget, seconds), ``gap`` = (objective - bound) /
(objective - store-all compute), the gap on the *overhead* (0 when the objective is
store-all's), ``source`` (which schedule won) and ``start`` (which schedule started the
MILP).

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> tg = Graph.from_chain(zoo.uniform(4, nbytes=10)).training()
>>> ops, info = dag_optimal(tg, budget=50, time_limit=30)
>>> info["solver_status"], info["objective"], info["gap"]
('optimal', 13.0, 0.0)
"""
from ..errors import BudgetError
from ..graph_simulate import simulate_graph
from .dag_baselines import dag_recompute_all, dag_store_all
from .dag_greedy import dag_greedy
from .dag_keep_bound import keep_bound
from .dag_lazy import LazyResult, solve_lazy
from .dag_stages import ops_stages

__all__ = ["dag_optimal", "overhead_gap", "BestSoFar"]


def overhead_gap(objective, bound, store_all):
    """(objective - bound) / (objective - store_all), 0 when the objective is store-all's.

    >>> overhead_gap(110.0, 105.0, 100.0)
    0.5
    """
    extra = objective - store_all
    if extra <= 1e-12 * max(1.0, abs(store_all)):
        return 0.0
    return max(0.0, (objective - bound) / extra)


class BestSoFar:
    """The cheapest schedule's compute (``objective``, None before one) and the best lower
    ``bound`` found so far (at least store-all's compute ``base``, at most the objective, as
    ``dag_optimal`` reports it); ``progress(objective, bound)`` hears of every change (None:
    nothing is kept or called). Every bound given must be a valid lower bound, at most any
    schedule's compute: then the cap only trims rounding, and the bounds heard never fall.

    >>> heard = []
    >>> best = BestSoFar(lambda *a: heard.append(a), base=100.0)
    >>> best.update(bound=104.0); best.update(objective=110.0); best.update(objective=120.0)
    >>> heard
    [(None, 104.0), (110.0, 104.0)]
    """

    def __init__(self, progress, base):
        self.progress, self.base = progress, base
        self.objective, self.bound, self.sent = None, base, None

    def update(self, objective=None, bound=None):
        """Take a schedule's compute and a lower bound (either may be None)."""
        if self.progress is None:
            return
        if objective is not None and (self.objective is None or objective < self.objective):
            self.objective = objective
        if bound is not None:
            self.bound = max(self.bound, bound)
        capped = self.bound if self.objective is None else min(self.bound, self.objective)
        self.send(self.objective, max(self.base, capped))

    def send(self, objective, bound):
        """Tell ``progress`` of (objective, bound) unless it was the last thing told."""
        if self.progress is not None and (objective, bound) != self.sent:
            self.sent = (objective, bound)
            self.progress(objective, bound)


def dag_optimal(tg, budget=None, time_limit=60.0, mem_limit=4 * 2**30, rel_gap=1e-4,
                baselines=(), lp_share=0.0, greedy_share=0.15, milp_max_nodes=300,
                keep_share=0.25, progress=None):
    """Returns (ops, info) (see the module doc). ``time_limit`` seconds of wall time in all
    (the solver process is killed at its share), ``mem_limit`` bytes of address space for
    it, ``rel_gap`` the stopping gap on the overhead; ``baselines`` are extra candidate op
    lists (a chain plan, for one). First the keep-set relaxation (``dag_keep_bound``, up to
    ``keep_share`` of the time, half above ``milp_max_nodes``): its bound, and its keep set
    as a schedule and as the start of ``dag_greedy``; then ``dag_greedy`` from every forward
    value (up to ``greedy_share`` of the time, 40% above 200 nodes); ``lp_share`` goes to
    ``dag_lp_rounding`` (0: skip it). When the cheapest candidate is within ``rel_gap`` of the bound it is proven and
    the stage MILP is not run; else the cheapest candidate within the budget starts it as
    its first incumbent (with highspy), and it stops once its incumbent is within
    ``rel_gap`` of the keep-set bound. On graphs of more than ``milp_max_nodes`` nodes the
    MILP is not tried (on ResNet-50, 350 nodes, HiGHS had not solved the root LP of the
    peak-row model after 50 s) and ``dag_greedy`` runs until 85% of the time;
    ``solver_status`` is then "skipped" unless the keep-set bound proves the schedule.
    ``progress(objective, bound)``, if given, hears of every cheaper schedule found within
    the budget (``objective``, None before one: each candidate, each MILP solution that
    fits) and every better bound (the keep-set relaxation's, the MILP's as it rises), the
    bound capped at the objective as ``info``'s is; its last call gives ``info``'s objective
    and bound.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])
    >>> dag_optimal(tg, budget=4)
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: budget 4 bytes: no schedule found (keep-set relaxation: infeasible); store-all needs 8 bytes
    """
    import time
    t0 = time.monotonic()
    sa = dag_store_all(tg)
    sa_sim = simulate_graph(tg, sa)
    base = tg.store_all_compute
    best = BestSoFar(progress, base)
    if budget is None or sa_sim.peak <= budget:
        best.send(sa_sim.compute, base)
        return sa, {"solver_status": "store_all", "objective": sa_sim.compute, "bound": base,
                    "gap": 0.0, "source": "store_all", "proven": True}
    skip = len(tg) > milp_max_nodes
    share = max(keep_share, 0.5) if skip else keep_share
    kb = keep_bound(tg, budget, time_limit=max(1.0, share * time_limit), rel_gap=rel_gap,
                    mem_limit=mem_limit)
    if kb.status == "infeasible":
        raise BudgetError(f"budget {budget} bytes: no schedule found (keep-set relaxation: "
                          f"infeasible); store-all needs {sa_sim.peak} bytes", budget=budget)
    scored, g0 = [], time.monotonic()

    def consider(src, ops):
        sim = simulate_graph(tg, ops)
        if sim.peak <= budget:
            scored.append((sim.compute, src, ops))
            scored.sort(key=lambda c: c[0])
            best.update(objective=sim.compute)

    def proven(bound):
        return bool(scored) and bound is not None and \
            overhead_gap(scored[0][0], bound, base) <= rel_gap

    for src, ops in [("recompute_all", dag_recompute_all(tg))] + [("baseline", list(b))
                                                                 for b in baselines]:
        consider(src, ops)
    best.update(bound=kb.bound)        # after the baselines: the bound is capped at them
    share = greedy_share if len(tg) <= 200 else max(greedy_share, 0.4)
    end = t0 + 0.85 * time_limit if skip else g0 + share * time_limit    # a replay's margin
    for src, keep in (("keep_set", kb.keep), ("greedy", None)):
        left = end - time.monotonic()
        if (src == "keep_set" and keep is None) or proven(kb.bound) or left <= 0 and scored:
            continue
        try:
            consider(src, dag_greedy(tg, budget, max(left, 0.5), keep=keep)[0])
        except BudgetError:
            pass
    lp_bound = None
    if lp_share > 0 and not proven(kb.bound):
        from .dag_lp_rounding import dag_lp_rounding
        try:
            lp_ops, lp = dag_lp_rounding(tg, budget, time_limit=lp_share * time_limit,
                                         mem_limit=mem_limit)
            consider("lp_rounding", lp_ops)
            lp_bound = lp["bound"]
            best.update(bound=lp_bound)
        except BudgetError:
            pass
    start_src, start_ops = next(((src, ops) for _, src, ops in scored
                                 if ops_stages(tg, ops)), (None, None))
    left = max(1.0, time_limit - (time.monotonic() - t0))
    if proven(kb.bound):
        res = LazyResult("optimal", None, None, None, [], [], "proven by the keep-set bound")
    elif skip:
        res = LazyResult("skipped", None, None, None, [], [],
                         f"{len(tg)} nodes > milp_max_nodes={milp_max_nodes}")
    else:
        res = solve_lazy(tg, budget, time_limit=left, mem_limit=mem_limit, rel_gap=rel_gap,
                         start_ops=start_ops,      # stop where the keep-set bound proves it
                         target=None if kb.bound is None else
                         (kb.bound - rel_gap * base) / (1 - rel_gap),
                         progress=None if progress is None else best.update)
    if res.ops is not None and res.ops is not start_ops:
        scored.insert(0, (res.objective, "milp", res.ops))
    if not scored:
        raise BudgetError(f"budget {budget} bytes: no schedule found (MILP: {res.status}); "
                          f"store-all needs {sa_sim.peak} bytes", budget=budget)
    obj, src, ops = min(scored, key=lambda c: c[0])
    bound = max([base] + [min(b, obj) for b in (res.bound, lp_bound, kb.bound)
                          if b is not None])
    gap = overhead_gap(obj, bound, base)
    info = {"solver_status": "optimal" if gap <= rel_gap else res.status, "objective": obj,
            "bound": bound, "gap": gap, "source": src,
            "proven": res.status == "optimal" or gap <= rel_gap,
            "solver_seconds": round(sum(r[3] for r in res.rounds), 3),
            "rounds": res.rounds, "stepwise_stages": res.stepwise, "message": res.message,
            "start": start_src, "keep_bound": kb.bound, "keep_status": kb.status}
    best.send(obj, bound)
    return ops, info
