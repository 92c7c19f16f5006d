"""``ckpt plan`` and ``ckpt sweep`` on graphs: graph zoo models, ckpt.graph and node-link JSON
files, and runnable models recorded op by op (``--graph``). Outputs go back through the
planner's own readers (``GraphPlan.from_json`` replays the ops) and are compared with
``plan_graph`` computed here; a plan made by the CLI from a runnable model runs on that
model with the measured peak equal to the predicted one."""
import json
import os

import pytest

from ckpt import models, planner
from ckpt.cli import main
from ckpt.planner import GraphPlan, graph_zoo

PNG = b"\x89PNG\r\n\x1a\n"


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_plan_a_graph_zoo_model_as_json(capsys, tmp_path):
    graph = graph_zoo.unet(batch=1)
    budget = planner.plan_graph(graph, "recompute_all").peak
    path = tmp_path / "plan.json"
    rc, out, err = run(capsys, "plan", "unet", "--batch", "1", "--budget", str(budget),
                       "--strategy", "recompute_all", "--json", "-o", str(path))
    assert rc == 0, err
    got = GraphPlan.from_json(out)
    want = planner.plan_graph(graph, "recompute_all", budget=budget)
    assert got.ops == want.ops and got.peak == want.peak <= budget
    assert GraphPlan.from_json(path.read_text()) == got


def test_plan_graph_files_both_forms(capsys, tmp_path):
    graph = graph_zoo.random_layered(nodes=12, seed=4)
    (tmp_path / "g.json").write_text(graph.to_json())
    (tmp_path / "t.json").write_text(graph.training().to_json())
    want = planner.plan_graph(graph, "store_all")
    rc, out, err = run(capsys, "plan", str(tmp_path / "g.json"), "-s", "store_all")
    assert rc == 0, err
    assert f"predicted peak   {planner.format_size(want.peak)} ({want.peak} bytes)" in out
    budget = planner.plan_graph(graph, "store_all").peak
    rc, out, err = run(capsys, "plan", str(tmp_path / "t.json"), "-s", "dag_lp_rounding",
                       "--budget", str(budget), "--time-limit", "10", "--json")
    assert rc == 0, err
    p = GraphPlan.from_json(out)
    assert p.peak <= budget and p.training == graph.training()


def test_sweep_a_graph_rows_match_the_planner_and_the_plot_is_written(capsys, tmp_path):
    graph = graph_zoo.unet(batch=1)
    plot = tmp_path / "t.png"
    rc, out, err = run(capsys, "sweep", "unet", "--batch", "1", "--budgets", "3",
                       "--strategies", "store_all,recompute_all", "--json", "--plot",
                       str(plot))
    assert rc == 0, err
    data = json.loads(out)
    assert data["graph"]["name"] == graph.name and data["graph"]["nodes"] == len(graph)
    lo = planner.plan_graph(graph, "recompute_all").peak
    hi = planner.plan_graph(graph, "store_all").peak
    assert data["budgets"] == [lo, lo + (hi - lo) // 2, hi]
    for row in data["rows"]:
        try:
            p = planner.plan_graph(graph, row["strategy"], budget=row["budget"])
            assert row["feasible"] and row["peak_bytes"] == p.peak
            assert row["compute"] == p.compute
        except planner.BudgetError:
            assert not row["feasible"]
    assert plot.read_bytes().startswith(PNG)


def test_sweep_of_a_node_link_graph_leaves_out_chain(capsys, tmp_path):
    graph = graph_zoo.random_layered(nodes=8, seed=2)
    (tmp_path / "t.json").write_text(graph.training().to_json())
    rc, out, err = run(capsys, "sweep", str(tmp_path / "t.json"), "--budgets", "2",
                       "--strategies", "store_all,recompute_all", "--csv")
    assert rc == 0, err
    assert out.splitlines()[0].startswith("strategy,budget_bytes")
    rc, out, err = run(capsys, "sweep", str(tmp_path / "t.json"), "--budgets", "2",
                       "--time-limit", "5", "--json")
    assert rc == 0, err
    assert json.loads(out)["strategies"] == ["store_all", "dag_lp_rounding", "dag_optimal",
                                             "recompute_all"]


def test_a_runnable_model_planned_as_a_graph_runs_as_predicted(capsys):
    rc, out, err = run(capsys, "plan", "transformer-run", "--graph", "--batch", "1",
                       "-s", "recompute_all", "--json")
    assert rc == 0, err
    p = GraphPlan.from_json(out)
    model, x = models.build("transformer-run", 1)
    result = planner.execute(model, p, x)
    assert result.peak_bytes == result.predicted_peak == p.peak


def test_shared_names_stay_chains_and_mistakes_are_one_line(capsys, tmp_path):
    rc, out, err = run(capsys, "plan", "transformer", "--budget", "2GiB")
    assert rc == 0 and out.startswith("plan 'optimal' for chain 'transformer12x768'")
    rc, out, err = run(capsys, "plan", "unet", "-s", "sqrt")
    assert rc == 2 and "'sqrt' is a chain strategy; a graph takes store_all" in err
    rc, out, err = run(capsys, "plan", "uniform", "--graph")
    assert rc == 2 and "--graph takes a graph zoo model" in err
    rc, out, err = run(capsys, "plan", "densenet", "--batch", "0")
    assert rc == 2 and "--batch must be a positive integer" in err
    graph = graph_zoo.random_layered(nodes=8)
    (tmp_path / "t.json").write_text(graph.training().to_json())
    rc, out, err = run(capsys, "plan", str(tmp_path / "t.json"), "-s", "chain",
                       "--budget", "1GiB")
    assert rc == 2 and "strategy 'chain' needs the forward Graph" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["unet", "densenet", "resnet50", "random_layered"])
def test_graph_only_zoo_names_are_graphs(capsys, name):
    rc, out, err = run(capsys, "plan", name, "-s", "store_all")
    assert rc == 0, err
    want = planner.plan_graph(graph_zoo.get(name), "store_all").peak
    assert out.startswith("graph plan 'store_all' for graph")
    assert f"predicted peak   {planner.format_size(want)} ({want} bytes)" in out
