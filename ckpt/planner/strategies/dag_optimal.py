"""Strategy ``dag_optimal``: the cheapest schedule of Checkmate's stage class within the
budget, from the MILP of ``dag_milp`` under a hard wall-clock limit, never worse than the
baselines (their schedules compete with the solver's, and win when it found nothing better
in time).

What it reports (``info``): ``solver_status`` ("optimal": proven; "store_all": the budget
needs no recomputation; "time_limit"/"killed"/"memory"/"error": not proven), ``objective``
(compute of the returned schedule), ``bound`` (a lower bound on the compute of every
schedule of the class: the best of the MILP's dual bound, the LP relaxation's value, and
store-all's compute, which every schedule pays), ``gap`` = (objective - bound) / (objective - store-all compute), the gap on the
*overhead* (0 when the objective is store-all's), and ``source`` (which schedule won).

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
from .dag_milp import solve_milp
from .dag_stages import stage_ops

__all__ = ["dag_optimal", "overhead_gap"]


def overhead_gap(objective, bound, store_all):
    """(objective - bound) / (objective - store_all), 0 when the objective is store-all's.

    >>> overhead_gap(110.0, 105.0, 100.0)
    0.5
    """
    extra = objective - store_all
    if extra <= 1e-12 * max(1.0, abs(store_all)):
        return 0.0
    return max(0.0, (objective - bound) / extra)


def dag_optimal(tg, budget=None, time_limit=60.0, mem_limit=4 * 2**30, rel_gap=1e-4,
                baselines=(), lp_share=0.25):
    """Returns (ops, info) (see the module doc). ``time_limit`` seconds of wall time in all
    for the solver processes (each is killed at its share), ``mem_limit`` bytes of address
    space each, ``rel_gap`` the MILP's stopping gap on the overhead; ``baselines`` are extra
    candidate op lists (a chain plan, for one). The first ``lp_share`` of the time goes to
    ``dag_lp_rounding`` (its schedules compete too; 0: skip it), the rest to the MILP.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])
    >>> dag_optimal(tg, budget=4)
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: budget 4 bytes: no schedule found (MILP: infeasible); store-all needs 8 bytes
    """
    sa = dag_store_all(tg)
    sa_sim = simulate_graph(tg, sa)
    base = tg.store_all_compute
    if budget is None or sa_sim.peak <= budget:
        return sa, {"solver_status": "store_all", "objective": sa_sim.compute, "bound": base,
                    "gap": 0.0, "source": "store_all", "proven": True}
    cands = [("recompute_all", dag_recompute_all(tg))] + [("baseline", list(b))
                                                        for b in baselines]
    lp_bound = None
    if lp_share > 0:
        import time
        from .dag_lp_rounding import dag_lp_rounding
        t0 = time.monotonic()
        try:
            lp_ops, lp = dag_lp_rounding(tg, budget, time_limit=lp_share * time_limit,
                                         mem_limit=mem_limit)
            cands.append(("lp_rounding", lp_ops))
            lp_bound = lp["bound"]
        except BudgetError:
            pass
        time_limit = max(1.0, time_limit - (time.monotonic() - t0))
    res = solve_milp(tg, budget, time_limit=time_limit, mem_limit=mem_limit,
                     rel_gap=rel_gap)
    if res.R is not None:
        cands.insert(0, ("milp", stage_ops(tg, res.R, res.S)))
    best = None
    for src, ops in cands:
        sim = simulate_graph(tg, ops)
        if sim.peak <= budget and (best is None or sim.compute < best[2]):
            best = (src, ops, sim.compute)
    if best is None:
        raise BudgetError(f"budget {budget} bytes: no schedule found (MILP: {res.status}); "
                          f"store-all needs {sa_sim.peak} bytes", budget=budget)
    src, ops, obj = best
    bound = max([base] + [min(b, obj) for b in (res.bound, lp_bound) if b is not None])
    proven = res.status == "optimal"
    info = {"solver_status": res.status, "objective": obj, "bound": bound,
            "gap": overhead_gap(obj, bound, base), "source": src, "proven": proven,
            "solver_seconds": round(res.seconds, 3), "rows": res.rows, "columns": res.columns,
            "milp_objective": res.objective, "message": res.message}
    return ops, info
