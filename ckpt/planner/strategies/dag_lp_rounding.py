"""Strategy ``dag_lp_rounding``: Checkmate's LP relaxation with deterministic rounding (Jain
et al. 2020, section 5): solve the relaxation of ``dag_milp``'s model, keep at the start of
stage t the values whose S[t,i] reaches a threshold τ (and that exist), recompute in each
stage what its node needs from what is kept (``dag_stages.closure``), and free eagerly.
Every τ in ``THRESHOLDS`` is tried; the cheapest schedule within the budget wins.

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> tg = Graph.from_chain(zoo.uniform(4, nbytes=10)).training()
>>> ops, info = dag_lp_rounding(tg, budget=50)
>>> info["solver_status"], info["objective"] >= 13.0
('optimal', True)
"""
from ..errors import BudgetError
from ..graph_simulate import simulate_graph
from .dag_baselines import dag_store_all
from .dag_milp import solve_milp
from .dag_optimal import overhead_gap
from .dag_stages import closure, stage_ops

__all__ = ["dag_lp_rounding", "rounded_schedule", "THRESHOLDS"]

THRESHOLDS = (0.01, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99)


def rounded_schedule(tg, S_lp, tau):
    """Ops keeping at stage t's start the existing values with S_lp[t][i] >= ``tau``.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]])
    >>> rounded_schedule(tg, [{}, {0: 0.7}], 0.5)
    [compute x, compute y, free x, free y]
    """
    R, S, resident = [], [], set()
    for t in range(len(tg)):
        start = {i for i, v in S_lp[t].items() if v >= tau} & resident
        S.append(start)
        R.append(closure(tg, t, start))
        resident = start | set(R[-1])
    return stage_ops(tg, R, S)


def dag_lp_rounding(tg, budget=None, time_limit=60.0, mem_limit=4 * 2**30):
    """Returns (ops, info): the cheapest rounding within ``budget`` (see the module doc);
    ``info`` has the LP's ``bound`` and the overhead ``gap`` to it. Raises ``BudgetError``
    when no rounding fits.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])
    >>> dag_lp_rounding(tg, budget=8)[1]["solver_status"]
    'store_all'
    """
    sa = dag_store_all(tg)
    base = tg.store_all_compute
    if budget is None or simulate_graph(tg, sa).peak <= budget:
        return sa, {"solver_status": "store_all", "objective": base, "bound": base, "gap": 0.0}
    res = solve_milp(tg, budget, time_limit=time_limit, mem_limit=mem_limit, relax=True)
    best = None
    for tau in THRESHOLDS if res.S is not None else ():
        ops = rounded_schedule(tg, res.S, tau)
        sim = simulate_graph(tg, ops)
        if sim.peak <= budget and (best is None or sim.compute < best[0]):
            best = (sim.compute, ops, tau)
    if best is None:
        raise BudgetError(f"strategy 'dag_lp_rounding': no rounding fits {budget} bytes (LP: "
                          f"{res.status})", budget=budget, strategy="dag_lp_rounding")
    obj, ops, tau = best
    bound = base if res.bound is None else max(base, min(res.bound, obj))
    return ops, {"solver_status": res.status, "objective": obj, "bound": bound,
                 "gap": overhead_gap(obj, bound, base), "threshold": tau,
                 "solver_seconds": round(res.seconds, 3)}
