"""``dag_optimal``'s ``progress(objective, bound)``: what a long solve reports while it runs
(the CLI draws it on a terminal) — schedules only get cheaper, bounds only rise, and the last
call is what the plan says."""
from ckpt.planner import graph_zoo, plan_graph


def _heard(graph, budget):
    heard = []
    p = plan_graph(graph, "dag_optimal", budget=budget, time_limit=30,
                   progress=lambda objective, bound: heard.append((objective, bound)))
    return p, heard


def test_progress_improves_and_ends_at_the_plans_objective_and_bound():
    graph = graph_zoo.random_layered(nodes=30)        # the MILP runs and raises the bound
    p, heard = _heard(graph, 0.8)
    bounds = [b for _, b in heard]
    objectives = [o for o, _ in heard if o is not None]
    assert len(heard) >= 3 and len(set(bounds)) >= 2, heard
    assert bounds == sorted(bounds) and objectives == sorted(objectives, reverse=True)
    assert heard[-1] == (p.info["objective"], p.bound) == (p.compute, p.bound)
    assert all(o is None or b <= o for o, b in heard)
    assert len(set(heard)) == len(heard)           # each call says something new


def test_a_budget_store_all_meets_is_one_call():
    graph = graph_zoo.random_layered(nodes=12)
    p, heard = _heard(graph, None)
    assert heard == [(p.compute, graph.store_all_compute)]
