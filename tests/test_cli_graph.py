"""``ckpt plan`` and ``ckpt sweep`` on graphs: graph zoo models, ckpt.graph and node-link JSON
files, and runnable models recorded op by op (``--graph``). Outputs go back through the
planner's own readers (``GraphPlan.from_json`` replays the ops) and are compared with
``plan_graph`` computed here; a plan made by the CLI from a runnable model runs on that
model with the measured peak equal to the predicted one."""
import json
import os
import re
import subprocess
import sys

import pytest

from ckpt import models, planner
from ckpt.cli import main
from ckpt.planner import GraphPlan, graph_zoo

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_sweep_of_a_node_link_graph_leaves_out_the_strategies_that_cut_its_forward(capsys,
                                                                                     tmp_path):
    graph = graph_zoo.random_layered(nodes=8, seed=2)
    (tmp_path / "t.json").write_text(graph.training().to_json())
    rc, out, err = run(capsys, "sweep", str(tmp_path / "t.json"), "--budgets", "2",
                       "--strategies", "store_all,recompute_all", "--csv")
    assert rc == 0, err
    assert out.splitlines()[0].startswith("strategy,budget_bytes")
    rc, out, err = run(capsys, "sweep", str(tmp_path / "t.json"), "--budgets", "2",
                       "--time-limit", "5", "--json")
    assert rc == 0, err
    assert json.loads(out)["strategies"] == ["store_all", "dag_greedy", "dag_lp_rounding",
                                             "dag_optimal", "recompute_all"]


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
    rc, out, err = run(capsys, "plan", "unet", "-s", "revolve")
    assert rc == 2 and "'revolve' is a chain strategy; a graph takes store_all" in err
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


FACTORIES = '''
import ckpt
from ckpt import nn


class Skip(nn.Module):
    """A residual net with BatchNorm in training mode: no Sequential, no chain."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = nn.ResidualBlock(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.stem(x).relu()
        h = self.block(h) + h
        return self.head(h.mean((2, 3)))


def make():
    _ = ckpt.manual_seed(0)
    target = ckpt.tensor([[1.0, 0.0], [0.0, 1.0]])
    return Skip(), ckpt.randn(2, 3, 6, 6), lambda out: ((out - target) ** 2).mean()


def function():
    _ = ckpt.manual_seed(0)
    w = ckpt.randn(4, 4, requires_grad=True)
    return (lambda x: (x @ w).tanh() * x), ckpt.randn(3, 4), None


def in_place():
    w = ckpt.randn(4, 4, requires_grad=True)
    return (lambda x: x.relu_() @ w), ckpt.randn(3, 4), None


def wrong():
    return "model", ckpt.randn(3, 4), None


def not_a_tensor():
    return nn.Linear(4, 4), [1, 2], None


def raises():
    raise RuntimeError("no data here")
'''


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(FACTORIES)
    return str(path)


def _user_model(path, factory):
    from ckpt.cli import load
    user = load.load_ckpt_model(f"{path}:{factory}", graph=True)
    return user.model, user.sample, user.loss_fn


def test_a_factory_model_is_planned_as_a_graph_and_runs_as_predicted(capsys, tmp_path,
                                                                     factory_file):
    spec = f"{factory_file}:make"
    rc, out, err = run(capsys, "plan", spec, "--graph", "-s", "recompute_all", "--json",
                       "-o", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png"))
    assert rc == 0, err
    p = GraphPlan.from_json(out)
    assert p.training.name == "nets.py:make"
    assert GraphPlan.from_json((tmp_path / "p.json").read_text()) == p
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)
    model, x, loss_fn = _user_model(factory_file, "make")
    result = planner.execute(model, p, x, loss_fn)
    assert result.peak_bytes == result.predicted_peak == p.peak
    assert int(model.block.bn1.num_batches_tracked.item()) == 1      # once, by the step
    budget = (planner.plan_graph(p.training, "recompute_all").peak +
              planner.plan_graph(p.training, "store_all").peak) // 2
    rc, out, err = run(capsys, "plan", spec, "--graph", "--budget", str(budget),
                       "--time-limit", "10")
    assert rc == 0, err
    assert out.startswith("graph plan 'dag_optimal' for graph 'nets.py:make', budget")


def test_sweep_a_factory_graph_and_a_function_from_a_module_path(capsys, tmp_path,
                                                                factory_file, monkeypatch):
    rc, out, err = run(capsys, "sweep", f"{factory_file}:make", "--graph", "--budgets", "3",
                       "--strategies", "store_all,recompute_all", "--json", "--plot",
                       str(tmp_path / "t.png"))
    assert rc == 0, err
    data = json.loads(out)
    assert data["graph"]["name"] == "nets.py:make" and len(data["rows"]) == 6
    assert (tmp_path / "t.png").read_bytes().startswith(PNG)
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "plan", "nets:function", "--graph", "-s", "store_all")
    assert rc == 0, err
    assert out.startswith("graph plan 'store_all' for graph 'nets:function'")


@pytest.mark.parametrize("factory, message", [
    ("missing", r"nets.py has no 'missing' \(it defines .*make.*\); FACTORY must be a function"),
    ("wrong", r"returned model a builtins.str; expected a ckpt.nn.Module or a function"),
    ("not_a_tensor", r"returned sample a list of 2 items; expected a ckpt.Tensor"),
    ("raises", r"raises raised RuntimeError: no data here"),
    ("in_place", r"writes in place \(relu_\) into a tensor no op of it made.*out of place"),
])
def test_factory_mistakes_are_one_line(capsys, factory_file, factory, message):
    rc, out, err = run(capsys, "plan", f"{factory_file}:{factory}", "--graph")
    assert rc == 2 and out == ""
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_files_and_factories_are_one_line(capsys, tmp_path, factory_file):
    for spec, message in [(f"{tmp_path}/none.py:make", "none.py"),
                          (factory_file, "name the factory too"),
                          ("no_such_module_here:make", "no module named 'no_such_module_here'")]:
        rc, out, err = run(capsys, "sweep", spec, "--graph")
        assert rc == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1
    rc, out, err = run(capsys, "plan", f"{factory_file}:make", "--graph", "--batch", "2")
    assert rc == 2 and "--batch applies to built-in models" in err
    rc, out, err = run(capsys, "plan", f"{factory_file}:make")
    assert rc == 2 and "expected a ckpt.nn.Sequential (each child a stage); a model of " \
        "another shape is planned as a graph of ops: add --graph" in err


GRAPH = '{"format": "ckpt.graph", "nodes": [%s]}'


@pytest.mark.parametrize("text, message", [
    (GRAPH % '{"name": "a", "output_bytes": -5}', "node 'a': output_bytes must be non-negative"),
    (GRAPH % '{"name": "a", "outputs": 5}', r"nodes\[0\] \('a'\) has unknown field\(s\) "
                                            r"\['outputs'\]"),
    (GRAPH % '{"name": "a", "inputs": ["zz"]}', "node 'a' reads 'zz', which is not a node"),
    ('{"nodes": [{"name": "a", "output_bytes": -5}]}', "node 'a': output_bytes must be"),
    ('{"directed": true, "nodes": [{"id": 0, "cost_cpu": 1}], "links": []}',
     r"nodes\[0\] \(id 0\) lacks the memory field 'cost_ram'"),
    ('{"nodes": [}', "malformed graph JSON at line 1, column 12"),
])
@pytest.mark.parametrize("flag", [[], ["--graph"]])
def test_a_bad_graph_file_names_the_field(capsys, tmp_path, text, message, flag):
    path = tmp_path / "g.json"
    path.write_text(text)
    if text.endswith("[}") and not flag:          # not JSON: read as a chain, said as such
        message = "malformed chain JSON at line 1, column 12"
    for command in ("plan", "sweep"):
        rc, out, err = run(capsys, command, str(path), *flag)
        assert rc == 2 and out == "", err
        assert re.search(f"error: {re.escape(str(path))}: {message}", err), err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_graph_file_without_format_is_a_graph_and_a_chain_is_not(capsys, tmp_path):
    graph = graph_zoo.random_layered(nodes=6, seed=1)
    data = json.loads(graph.to_json())
    del data["format"], data["version"]
    (tmp_path / "g.json").write_text(json.dumps(data))
    rc, out, err = run(capsys, "plan", str(tmp_path / "g.json"), "-s", "store_all", "--json")
    assert rc == 0, err
    assert GraphPlan.from_json(out) == planner.plan_graph(graph, "store_all")
    (tmp_path / "c.json").write_text(planner.zoo.uniform(3).to_json())
    rc, out, err = run(capsys, "plan", str(tmp_path / "c.json"), "--graph")
    assert rc == 2 and "holds no graph" in err
    rc, out, err = run(capsys, "plan", str(tmp_path / "c.json"), "-s", "store_all")
    assert rc == 0 and out.startswith("plan 'store_all' for chain")


def test_json_on_stdout_is_the_plan_alone_when_highs_runs(tmp_path):
    graph = graph_zoo.random_layered(nodes=12, seed=3)
    (tmp_path / "g.json").write_text(graph.to_json())
    budget = int(0.7 * planner.plan_graph(graph, "store_all").peak)
    r = subprocess.run([sys.executable, "-m", "ckpt", "plan", "g.json", "--budget", str(budget),
                        "--time-limit", "10", "--json"], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=ROOT), timeout=120)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    p = GraphPlan.from_json(r.stdout)       # HiGHS's banner on stdout would break this
    assert p.info["keep_status"] is not None and p.peak <= budget


def test_a_solve_shows_its_progress_on_a_terminal_and_nothing_elsewhere(capsys, monkeypatch,
                                                                        tmp_path):
    from ckpt.cli.output import Progress
    graph = graph_zoo.random_layered(nodes=30)       # the MILP runs about a second
    (tmp_path / "g.json").write_text(graph.to_json())
    budget = f"{int(0.8 * planner.plan_graph(graph, 'store_all').peak)}B"
    plan = ["plan", str(tmp_path / "g.json"), "--budget", budget, "--time-limit", "20"]
    sweep = ["sweep", str(tmp_path / "g.json"), "--budgets", budget, "--strategies",
             "dag_optimal", "--time-limit", "20"]
    for argv in (plan, sweep):
        rc, out, err = run(capsys, *argv)
        assert rc == 0 and err == "", err
    labels, update = [], Progress.update        # what was shown, whether drawn or throttled
    monkeypatch.setattr(Progress, "update", lambda bar, done, label="": (
        labels.append(label), update(bar, done, label)))
    monkeypatch.setattr(Progress, "DELAY", 0.0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = r"best \+\d+\.\d\d% overhead, bound \+\d+\.\d\d%, gap \d+\.\d%"
    for argv, label in ((plan, "dag_optimal"), (sweep, r"dag_optimal @ [\d.]+ KiB")):
        labels.clear()
        rc, out, err = run(capsys, *argv)
        assert rc == 0 and out and err.startswith("\r") and err.endswith("\r"), err
        assert any(re.fullmatch(f"{label}: {shown}", text) for text in labels), labels
        assert err.split("\r")[-2].strip() == ""             # the line is erased at the end
    for argv in (plan, sweep):                  # asked for none, a terminal gets none
        rc, out, err = run(capsys, *argv, "--no-progress")
        assert rc == 0 and out and err == "", err
