"""Graph schedules: the simulator's rules, every strategy's plan replayed within its budget,
and ``dag_optimal`` against brute-force searches written here (not from the MILP)."""
import heapq
import json
import random

import pytest

from ckpt.planner import BudgetError, Chain, InvalidPlanError, Stage, graph_zoo, plan
from ckpt.planner.errors import GraphFormatError
from ckpt.planner.graph import Graph, Node
from ckpt.planner.graph_plan import GRAPH_STRATEGIES, GraphPlan, plan_graph
from ckpt.planner.graph_simulate import simulate_graph
from ckpt.planner.graph_training import TrainingGraph
from ckpt.planner.strategies.dag_baselines import dag_recompute_all, dag_store_all
from ckpt.planner.strategies.dag_chain import chain_ops_on_graph
from ckpt.planner.strategies.dag_lazy import solve_lazy, stages_over_budget
from ckpt.planner.strategies.dag_highs import solve_model
from ckpt.planner.strategies import dag_milp
from ckpt.planner.strategies.dag_milp import build_milp, solve_milp
from ckpt.planner.strategies.dag_greedy import dag_greedy, keep_set_stages
from ckpt.planner.strategies.dag_stages import eager_frees, ops_stages, stage_ops
from ckpt.planner.strategies.dag_optimal import dag_optimal

EXACT = {"time_limit": 60, "rel_gap": 0.0}


def random_graph(seed, nodes=None):
    """A small random forward graph (2..4 ops) with every field exercised."""
    rng = random.Random(seed)
    out = []
    for v in range(nodes or rng.randint(2, 4)):
        ins = rng.sample(range(v), rng.randint(1, min(v, 2))) if v else []
        out.append(Node(f"n{v}", [f"n{i}" for i in ins], rng.randint(1, 5), rng.randint(1, 5),
                        rng.randint(1, 6), rng.choice([0, 0, 2]),
                        rng.choice([("inputs", "output"), ("inputs",), ("output",), ()]),
                        rng.choice([0, 0, 3]), rng.choice([0, 0, 2])))
    return Graph(out, input_bytes=rng.randint(0, 3), param_bytes=rng.randint(0, 2))


def store_all_peak(tg):
    return simulate_graph(tg, dag_store_all(tg)).peak


def feasible_budget(tg, frac):
    """frac x store-all's peak, raised to recompute-all's peak (so a schedule fits)."""
    return max(int(frac * store_all_peak(tg)), simulate_graph(tg, dag_recompute_all(tg)).peak)


def cheapest(tg, budget, stage_class):
    """Dijkstra over every op sequence (compute/free), first computations in index order.
    With ``stage_class``, a node is computed at most once between two first computations
    and those in index order (Checkmate's stages); otherwise in any order."""
    n = len(tg)
    need = [sum(1 << i for i in d) for d in tg.deps]
    start = (0, 0, -1)
    dist, heap = {start: 0.0}, [(0.0, start)]
    while heap:
        c, state = heapq.heappop(heap)
        if dist[state] < c:
            continue
        res, t, last = state
        if t == n and res == 0:
            return c
        mem = tg.constant_bytes + sum(int(tg.size[i]) for i in range(n) if res >> i & 1)
        moves = [((res & ~(1 << i), t, last), c) for i in range(n) if res >> i & 1]
        for k in range(last + 1 if stage_class else 0, min(t, n - 1) + 1):
            if res >> k & 1 or need[k] & ~res or \
                    mem + int(tg.size[k] + tg.transient[k]) > budget:
                continue
            nxt_t = t + 1 if k == t else t
            nxt = (res | 1 << k, nxt_t, -1 if (k == t or not stage_class) else k)
            moves.append((nxt, c + float(tg.cost[k])))
        for nxt, nc in moves:
            if nc < dist.get(nxt, float("inf")):
                dist[nxt] = nc
                heapq.heappush(heap, (nc, nxt))
    return None


# ---- the simulator ---------------------------------------------------------------------

def tiny():
    return Graph([Node("a", [], 1, 2, 8), Node("b", ["a"], 1, 2, 4)], input_bytes=2).training()


@pytest.mark.parametrize("ops, step, reason", [
    (["compute b"], 0, "b reads a, which is not resident (compute it first)"),
    (["compute a", "compute a"], 1, "a is already resident"),
    (["compute a", "free a", "compute b"], 2, "b reads a, which is not resident (freed at step 1)"),
    (["free a"], 0, "a is not resident"),
    (["compute c"], 0, "'c' is not a node of the training graph"),
    (["run a"], 0, "cannot read graph op 'run a'"),
    (["compute a", "free a"], 2, "b was never computed (nor 2 other nodes)"),
    (["compute a", "compute b", "compute backward(b)", "compute backward(a)", "free a",
      "free b", "free backward(a)"], 7, "still resident at the end: backward(b)"),
])
def test_simulator_rejects_with_step_and_reason(ops, step, reason):
    with pytest.raises(InvalidPlanError) as e:
        simulate_graph(tiny(), ops)
    assert e.value.step == step and reason in str(e.value)


def test_simulator_memory_by_hand():
    ops = ["compute a", "compute b", "compute backward(b)", "free b", "free a",
           "compute a", "compute backward(a)", "free a", "free backward(b)",
           "free backward(a)"]
    r = simulate_graph(tiny(), ops)
    # constant 2; a = 8, b = 4, backward(b) = the gradient of a = 8, backward(a) = 0
    assert r.during.tolist() == [10, 14, 22, 22, 18, 18, 18, 18, 10, 2]
    assert r.after.tolist() == [10, 14, 22, 18, 10, 18, 18, 10, 2, 2]
    assert (r.peak, r.peak_step, r.compute) == (22, 2, 7.0)
    assert r.runs.tolist() == [2, 1, 1, 1]


# ---- every strategy --------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_every_strategy_replays_within_budget(seed):
    g = random_graph(seed, nodes=5)
    tg = g.training()
    budget = feasible_budget(tg, 0.85)
    costs = {}
    for name in sorted(GRAPH_STRATEGIES):
        try:
            p = plan_graph(g, name, budget=budget,
                           **(EXACT if name == "dag_optimal" else {}))
        except BudgetError:
            continue
        assert simulate_graph(tg, p.ops).peak == p.peak <= budget
        costs[name] = p.compute
        early = simulate_graph(tg, eager_frees(tg, p.ops))
        assert early.peak <= p.peak and early.compute == p.compute
    assert "dag_optimal" in costs
    assert costs["dag_optimal"] <= min(costs.values())


# ---- dag_optimal against brute force ------------------------------------------------------

@pytest.mark.parametrize("seed", range(10))
def test_dag_optimal_equals_brute_force_over_checkmates_stages(seed):
    tg = random_graph(seed).training()
    peak = store_all_peak(tg)
    for frac in (0.9, 0.7):
        budget = int(frac * peak)
        want = cheapest(tg, budget, stage_class=True)
        anything = cheapest(tg, budget, stage_class=False)
        try:
            ops, info = dag_optimal(tg, budget, **EXACT)
        except BudgetError:
            assert want is None
            continue
        sim = simulate_graph(tg, ops)
        assert sim.peak <= budget and sim.compute == info["objective"] == want
        assert info["proven"] and info["gap"] < 1e-9 and abs(info["bound"] - want) < 1e-9
        assert anything <= want          # the stage class is a restriction
        ref = solve_milp(tg, budget, rel_gap=0.0, variant="reference")   # Checkmate's own model
        assert ref.status == "optimal" and abs(ref.objective - want) < 1e-9


def test_peak_rows_bound_and_lazy_rounds_reach_the_brute_force_optimum():
    rounds = []
    for seed in (6, 7, 10, 24, 27):        # graphs where the peak rows alone let memory pass
        tg = random_graph(seed, nodes=5).training()
        for frac in (0.9, 0.7):
            budget = int(frac * store_all_peak(tg))
            want = cheapest(tg, budget, stage_class=True)
            relaxed = solve_milp(tg, budget, rel_gap=0.0, stages=[])
            r = solve_lazy(tg, budget, rel_gap=0.0)
            rounds.append(len(r.rounds))
            if want is None:
                assert r.status == "infeasible" and r.ops is None
                continue
            assert relaxed.status == "optimal" and relaxed.objective <= want + 1e-9
            sim = simulate_graph(tg, r.ops)
            assert r.status == "optimal" and sim.peak <= budget
            assert sim.compute == r.objective == want and abs(r.bound - want) < 1e-9
            assert stages_over_budget(tg, r.ops, budget) == []
    assert max(rounds) >= 3 and rounds.count(1) >= 1


@pytest.mark.parametrize("seed", range(4))
def test_a_start_is_taken_and_changes_no_optimum(seed):
    tg = random_graph(seed, nodes=4).training()
    budget = feasible_budget(tg, 0.7)
    want = cheapest(tg, budget, stage_class=True)
    fits = ops_stages(tg, dag_recompute_all(tg))
    too_big = ops_stages(tg, dag_store_all(tg))        # over the budget: HiGHS rejects it
    for start in (fits, too_big):
        r = solve_milp(tg, budget, rel_gap=0.0, start=start)
        assert r.status == "optimal" and abs(r.objective - want) < 1e-9
    assert solve_milp(tg, budget, rel_gap=0.0, start=fits).start_used


@pytest.mark.parametrize("seed", range(6))
def test_stage_form_of_a_schedule_replays_alike(seed):
    tg = random_graph(seed, nodes=5).training()
    ops, info = dag_greedy(tg, feasible_budget(tg, 0.8))
    R, S = ops_stages(tg, ops)
    again = stage_ops(tg, R, S)
    a, b = simulate_graph(tg, ops), simulate_graph(tg, again)
    assert b.compute == a.compute == info["objective"] and b.peak <= a.peak
    assert ops_stages(tg, again) == (R, S)
    assert ops_stages(tg, list(reversed(ops))) is None       # not a schedule of the class


@pytest.mark.parametrize("seed", range(6))
def test_greedy_keeping_every_forward_value_is_store_all(seed):
    tg = random_graph(seed, nodes=5).training()
    every = {i for i in range(len(tg)) if not tg.backward[i]}
    for hold in (True, False):
        r = simulate_graph(tg, stage_ops(tg, *keep_set_stages(tg, every, hold)))
        sa = simulate_graph(tg, dag_store_all(tg))
        assert (r.peak, r.compute) == (sa.peak, sa.compute)


def test_dag_optimal_is_store_all_when_it_fits():
    tg = random_graph(1).training()
    ops, info = dag_optimal(tg, store_all_peak(tg))
    assert info["solver_status"] == "store_all" and ops == dag_store_all(tg)


@pytest.mark.parametrize("seed", range(4))
def test_paths_chain_plans_replay_exactly_and_dag_optimal_is_never_dearer(seed):
    rng = random.Random(seed)
    stages = []
    for i in range(rng.randint(3, 6)):
        x = rng.randint(1, 6)
        stages.append(Stage(f"s{i}", rng.randint(1, 5), rng.randint(1, 5), x, x))
    c = Chain(stages, input_bytes=rng.randint(0, 4))
    g = Graph.from_chain(c)
    tg = g.training()
    for name in ("store_all", "recompute_all", "sqrt", "revolve", "min_memory"):
        p = plan(c, name)
        r = simulate_graph(tg, chain_ops_on_graph(tg, [[v] for v in g.order], p.ops))
        assert (r.peak, r.compute) == (p.peak, p.compute)
    for frac in (0.9, 0.7):
        budget = int(frac * plan(c, "store_all").peak)
        try:
            best_chain = plan(c, "optimal", budget=budget, slots=budget).compute
        except BudgetError:
            continue
        ops, info = dag_optimal(tg, budget, **EXACT)
        assert info["objective"] <= best_chain
        assert info["objective"] == cheapest(tg, budget, stage_class=True)


def test_solver_failure_falls_back_to_a_valid_schedule(monkeypatch):
    g = graph_zoo.random_layered(nodes=40, seed=2)
    tg = g.training()
    budget = int(0.8 * store_all_peak(tg))

    def out_of_memory(*args):
        raise MemoryError
    # the forked solver inherits the patch; an address-space cap (mem_limit) is not a sure
    # failure: a child may build a small model in heap its parent freed
    monkeypatch.setattr(dag_milp, "build_milp", out_of_memory)
    r = solve_milp(tg, budget)
    assert r.status == "memory" and r.R is None
    p = plan_graph(g, "dag_optimal", budget=budget)
    assert p.peak <= budget and p.info["source"] in ("chain", "recompute_all", "baseline",
                                                     "greedy", "keep_set")
    assert not p.info["proven"] and 0.0 <= p.gap <= 1.0


def test_solver_streams_its_incumbents_and_bounds():
    tg = graph_zoo.random_layered(nodes=30, seed=0).training()
    m = build_milp(tg, int(0.8 * store_all_peak(tg)), stages=[])
    seen = []
    r = solve_model(m, time_limit=60, rel_gap=0.0,
                    progress=lambda obj, bound, x: seen.append((obj, bound, x)))
    found = [(obj, x) for obj, _, x in seen if x is not None]
    assert r.status == "optimal" and found
    assert abs(found[-1][0] - r.objective) < 1e-9 and (found[-1][1] == r.x).all()
    assert all(b <= r.objective + 1e-9 for _, b, _ in seen)


def test_solver_is_killed_at_its_wall_clock_limit():
    tg = graph_zoo.random_layered(nodes=300, seed=1).training()
    r = solve_milp(tg, int(0.7 * store_all_peak(tg)), time_limit=0.5)
    assert r.status == "killed" and r.R is None


# ---- plans as JSON, and bad requests ------------------------------------------------------

def test_graph_plan_json_round_trip_and_tampering():
    g = random_graph(3)
    p = plan_graph(g, "dag_optimal", budget=feasible_budget(g.training(), 0.8), **EXACT)
    q = GraphPlan.from_json(p.to_json())
    assert q == p and q.peak == p.peak and q.info == json.loads(json.dumps(p.info))
    data = json.loads(p.to_json())
    data["compute"] += 1
    with pytest.raises(GraphFormatError, match="replaying its ops gives"):
        GraphPlan.from_json(json.dumps(data))
    data["ops"] = data["ops"][1:]
    with pytest.raises(InvalidPlanError):
        GraphPlan.from_json(json.dumps(data))


def test_bad_requests():
    g = random_graph(0)
    with pytest.raises(ValueError, match="unknown graph strategy 'optimal'"):
        plan_graph(g, "optimal")
    with pytest.raises(TypeError, match="does not take the options"):
        plan_graph(g, "store_all", slots=3)
    with pytest.raises(ValueError, match="needs the forward Graph"):
        plan_graph(g.training(), "chain", budget=0.9)
    with pytest.raises(TypeError, match="needs a Graph or a TrainingGraph"):
        plan_graph("unet", "store_all")
    with pytest.raises(BudgetError):
        plan_graph(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), "dag_optimal",
                   budget=4)
