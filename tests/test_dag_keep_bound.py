"""The keep-set relaxation (``dag_keep_bound``): a lower bound on every schedule, checked
against the brute-force searches of test_graph_plan, and the proofs it gives ``dag_optimal``."""
import pytest

from test_graph_plan import cheapest, feasible_budget, random_graph, store_all_peak

from ckpt.planner import BudgetError, graph_zoo
from ckpt.planner.graph_simulate import simulate_graph
from ckpt.planner.graph_training import TrainingGraph
from ckpt.planner.strategies.dag_baselines import dag_recompute_all
from ckpt.planner.strategies.dag_greedy import keep_set_stages
from ckpt.planner.strategies.dag_keep_bound import keep_bound
from ckpt.planner.strategies.dag_lazy import solve_lazy
from ckpt.planner.strategies.dag_milp import solve_milp
from ckpt.planner.strategies.dag_optimal import dag_optimal
from ckpt.planner.strategies.dag_stages import ops_stages, stage_ops


@pytest.mark.parametrize("seed", range(12))
def test_bound_never_exceeds_the_brute_force_optimum_of_any_op_order(seed):
    tg = random_graph(seed, nodes=5).training()
    peak = store_all_peak(tg)
    for frac in (0.9, 0.75, 0.6, 0.45):
        budget = int(frac * peak)
        anything = cheapest(tg, budget, stage_class=False)
        r = keep_bound(tg, budget, time_limit=30, rel_gap=0.0)
        if r.status == "infeasible":
            assert anything is None          # infeasible means no schedule at all fits
            continue
        assert r.status == "optimal"
        if anything is not None:
            assert r.bound <= anything + 1e-9
            sim = simulate_graph(tg, stage_ops(tg, *keep_set_stages(tg, r.keep)))
            if sim.peak <= budget:                    # its keep set as a schedule
                assert sim.compute >= r.bound - 1e-9


def test_bound_is_not_trivial_and_is_reached_on_small_graphs():
    lifted = reached = total = 0
    for seed in range(30):
        tg = random_graph(seed, nodes=5).training()
        for frac in (0.9, 0.8, 0.7, 0.6):
            budget = int(frac * store_all_peak(tg))
            want = cheapest(tg, budget, stage_class=True)
            if want is None or want == tg.store_all_compute:
                continue
            r = keep_bound(tg, budget, time_limit=30, rel_gap=0.0)
            total += 1
            lifted += r.bound > tg.store_all_compute + 1e-9
            reached += abs(r.bound - want) < 1e-9
    assert total >= 20 and lifted == total and reached >= total // 2     # 31, 31, 26


def test_dag_optimal_is_proven_by_the_bound_without_the_milp(monkeypatch):
    # a transformer block at 0.9: the relaxation's keep set is a schedule at its bound
    g = graph_zoo.transformer(layers=1, d_model=256, heads=4, seq=128, batch=4)
    tg = g.training()
    budget = int(0.9 * store_all_peak(tg))
    from ckpt.planner.strategies import dag_optimal as module
    monkeypatch.setattr(module, "solve_lazy", None)        # never called
    ops, info = dag_optimal(tg, budget, rel_gap=0.0)
    sim = simulate_graph(tg, ops)
    assert sim.peak <= budget and sim.compute == info["objective"]
    assert info["proven"] and info["solver_status"] == "optimal" and info["gap"] == 0.0
    assert info["keep_bound"] == pytest.approx(info["objective"], rel=1e-12)
    assert info["source"] == "keep_set" and info["objective"] > tg.store_all_compute


def test_infeasible_relaxation_is_a_budget_error():
    tg = random_graph(0, nodes=4).training()
    with pytest.raises(BudgetError, match="keep-set relaxation: infeasible"):
        dag_optimal(tg, tg.constant_bytes + 1)


def test_milp_stops_at_a_target_it_reaches():
    # HiGHS is interrupted once its incumbent costs at most the target (a bound proved
    # elsewhere); the start reaches it at once
    tg = graph_zoo.random_layered(nodes=30, seed=0).training()
    budget = feasible_budget(tg, 0.7)
    ops = dag_recompute_all(tg)
    cost = simulate_graph(tg, ops).compute
    r = solve_milp(tg, budget, start=ops_stages(tg, ops), target=cost)
    assert r.status == "target" and r.objective <= cost + 1e-9
    free = solve_milp(tg, budget, start=ops_stages(tg, ops), rel_gap=0.0)
    assert free.status == "optimal" and free.objective < cost     # the target stopped it
    lazy = solve_lazy(tg, budget, start_ops=ops, target=cost)
    assert lazy.status == "target" and lazy.objective <= cost


def test_milp_reports_each_improving_solution_and_stops_when_asked():
    # solve_lazy replays every incumbent (one that fits the budget is a schedule even when
    # a round's last passes it) and ends a round early (a stalled cold round; a warm one
    # that found a much cheaper start for the next): each is reported, cheaper than the one
    # before, the last is the answer; a stop ends the solve with what it had
    tg = graph_zoo.random_layered(nodes=30, seed=0).training()
    budget = feasible_budget(tg, 0.7)
    seen = []
    r = solve_milp(tg, budget, rel_gap=0.0, on_incumbent=lambda R, S: seen.append((R, S)))
    costs = [simulate_graph(tg, stage_ops(tg, R, S)).compute for R, S in seen]
    assert r.status == "optimal" and len(seen) >= 2 and seen[-1] == (r.R, r.S)
    assert costs == sorted(costs, reverse=True) and costs[-1] == pytest.approx(r.objective)
    first = []
    cut = solve_milp(tg, budget, rel_gap=0.0, on_incumbent=lambda R, S: first.append(R),
                     stop=lambda: bool(first))
    assert cut.status == "stopped" and cut.R == first[0]


def test_a_solve_that_ends_as_it_is_stopped_reports_its_own_end():
    # stop() may answer after the child has sent "done" (the solution it saw also closed
    # the gap): the result is the solver's, read from the pipe, not "stopped"
    import time
    tg = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])

    def stop():        # the first call comes before any message: by its end the solve is over
        time.sleep(2.0)
        return True
    r = solve_milp(tg, budget=8, stop=stop)
    assert r.status == "optimal" and r.objective == 2.0


def test_lazy_search_ends_when_a_stalled_round_has_no_stage_to_add(monkeypatch):
    # a round stopped on a stall, with nothing that fits yet, whose solution passes the
    # budget only at stages already modelled step by step: another round would be the same
    # round again, so the search ends there (time_limit, no schedule) instead of repeating it
    import ckpt.planner.strategies.dag_lazy as dag_lazy
    from ckpt.planner.strategies.dag_milp import MilpResult
    tg = graph_zoo.random_layered(nodes=30, seed=0).training()
    R, S = ops_stages(tg, dag_recompute_all(tg))
    monkeypatch.setattr(dag_lazy, "stages_over_budget", lambda tg, ops, budget: [5])
    monkeypatch.setattr(dag_lazy, "solve_milp", lambda *a, **kw: MilpResult(
        "stopped", None, None, R, S, 0.01, 0, 0, "stopped: stop() said so", False))
    r = solve_lazy(tg, feasible_budget(tg, 0.7), max_rounds=50)
    assert [round_[2] for round_ in r.rounds] == [[5], [5]]
    assert r.status == "time_limit" and r.ops is None and "ended early" in r.message


def test_lazy_search_out_of_rounds_after_a_stopped_one_says_time_limit(monkeypatch):
    # a round that solve_lazy stopped (stalled, or restarted from a better schedule) is
    # followed by another; out of rounds there, the search reports the time limit, never
    # the internal "stopped", and keeps the bound and the schedule it had
    import ckpt.planner.strategies.dag_lazy as dag_lazy
    tg = graph_zoo.random_layered(nodes=100, seed=0).training()   # (not solved in 0.2 s)
    budget = feasible_budget(tg, 0.7)
    real = dag_lazy.solve_milp
    monkeypatch.setattr(dag_lazy, "solve_milp",       # every round stopped at once
                        lambda *a, **kw: real(*a, **{**kw, "stop": lambda: True}))
    start = dag_recompute_all(tg)
    r = solve_lazy(tg, budget, start_ops=start, max_rounds=1)
    assert [round_[0] for round_ in r.rounds] == ["stopped"] and r.status == "time_limit"
    assert r.ops is not None and r.objective <= simulate_graph(tg, start).compute
