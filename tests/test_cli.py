"""The ``ckpt`` command line end to end: every subcommand runs in a subprocess (``python -m
ckpt``), its output is parsed and checked against the planner computed here, JSON outputs go
back through the planner's own readers (``Chain.from_json``, ``Plan.from_json``: the schema,
and a replay of the ops), and user mistakes exit with status 2 and one line on stderr.

The subprocesses are independent (their inputs are written in-process first), so they all
run at once from one module fixture; each test reads its own result."""
import csv
import io
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from ckpt import cli, models, planner
from ckpt.planner import (STRATEGIES, BudgetError, Chain, Plan, format_size, parse_size, plan,
                          simulate, zoo)
from ckpt.planner.strategies.store_all import store_all
from ckpt.planner.sweep import Row, pareto_front
from ckpt.plot.graphs import graph_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"


def _commands(d):
    chain, plan_file = os.path.join(d, "chain.json"), os.path.join(d, "plan.json")
    bad_plan, malformed = os.path.join(d, "bad_plan.json"), os.path.join(d, "malformed.json")
    return {
        "list": ["profile", "--list"],
        "profile": ["profile", "resnet", "--batch", "8", "-o", os.path.join(d, "out_chain.json")],
        "profile_stdout": ["profile", "transformer", "--batch", "2"],
        "profile_run": ["profile", "resnet-run", "--batch", "2", "-o",
                        os.path.join(d, "run_chain.json")],
        "graph_run": ["graph", "transformer-run", "--batch", "1"],
        "plan_table": ["plan", chain, "--budget", "600MiB"],
        "plan_json": ["plan", "resnet", "--budget", "600MiB", "--strategy", "revolve", "--json",
                      "-o", os.path.join(d, "out_plan.json")],
        "sweep_json": ["sweep", chain, "--strategies", "optimal,sqrt", "store_all",
                       "--budgets", "4", "--json", "--plot", os.path.join(d, "tradeoff.png")],
        "sweep_csv": ["sweep", "uniform", "--budgets", "5MiB,8MiB", "12MiB", "--csv"],
        "sweep_table": ["sweep", "mlp", "--strategies", "optimal", "--budgets", "2"],
        "simulate": ["simulate", chain, plan_file],
        "simulate_invalid": ["simulate", "uniform", bad_plan],
        "graph_dot": ["graph", chain],
        "graph_png": ["graph", "mlp", "-o", os.path.join(d, "graph.png")],
        "demo": ["demo", "--model", "resnet", "-o", os.path.join(d, "demo")],
        "demo_run": ["demo", "-o", os.path.join(d, "demo_run")],
        # user mistakes
        "malformed": ["plan", malformed, "--budget", "1GiB"],
        "unknown_model": ["plan", "resnet51", "--budget", "1GiB"],
        "negative_budget": ["plan", "resnet", "--budget", "-5MiB"],
        "infeasible_budget": ["plan", "resnet", "--budget", "100MiB"],
        "missing_file": ["simulate", os.path.join(d, "nope.json"), plan_file],
        "bad_usage": ["sweep", "resnet", "--frobnicate"],
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("cli"))
    chain = zoo.resnet()
    with open(os.path.join(d, "chain.json"), "w") as f:
        f.write(chain.to_json())
    with open(os.path.join(d, "plan.json"), "w") as f:
        f.write(plan(chain, "optimal", budget="550MiB").to_json())
    with open(os.path.join(d, "bad_plan.json"), "w") as f:
        json.dump({"format": "ckpt.plan", "ops": ["forward_save 1", "backward 2"]}, f)
    with open(os.path.join(d, "malformed.json"), "w") as f:
        f.write('{"name": "x",\n "stages": [\n  {"name": "a", "forward_cost": 1,, }]}')
    environ = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=ROOT)

    def run(argv):
        r = subprocess.run([sys.executable, "-m", "ckpt", *argv], capture_output=True,
                           text=True, cwd=d, env=environ, timeout=300)
        return r.returncode, r.stdout, r.stderr

    cmds = _commands(d)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cmds, pool.map(run, cmds.values())))
    return {"dir": d, "chain": chain, "results": results}


def ok(env, name):
    rc, out, err = env["results"][name]
    assert rc == 0, f"{name}: exit {rc}\n{err}"
    assert "Traceback" not in err
    return out, err


def error_line(env, name):
    rc, out, err = env["results"][name]
    assert rc == 2, f"{name}: exit {rc}, expected 2\n{out}\n{err}"
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def store_all_peak(chain):
    return simulate(chain, store_all(chain)).peak


# ---- profile ------------------------------------------------------------------------------
def test_profile_list_names_every_builtin_model(env):
    out, _ = ok(env, "list")
    runnable, formulas, own = out.strip().split("\n\n")
    assert "FILE.py:FACTORY" in own and "--torch" in own
    rows = [line.split() for line in runnable.splitlines()[2:]]
    assert [r[0] for r in rows] == sorted(models.NAMES)
    for r in rows:
        assert int(r[1]) == len(models.build(r[0], batch=1)[0])
    rows = [line.split() for line in formulas.splitlines()[2:]]
    assert [r[0] for r in rows] == sorted(zoo.NAMES)
    for r in rows:
        assert int(r[1]) == len(zoo.NAMES[r[0]]())
        assert " ".join(r[2:4]) == format_size(store_all_peak(zoo.NAMES[r[0]]()))


def test_profile_runs_a_runnable_model_and_measures_its_bytes(env):
    out, _ = ok(env, "profile_run")
    with open(os.path.join(env["dir"], "run_chain.json")) as f:
        written = Chain.from_json(f.read())
    here = planner.profile(*models.build("resnet-run", batch=2), repeats=1)
    assert written.cost_unit == "s" and len(written) == 6
    for field in ("x", "xbar", "of", "ofs", "ob"):  # bytes are exact; times are measured anew
        assert getattr(written, field).tolist() == getattr(here, field).tolist(), field
    assert (written.uf[1:] > 0).all() and (written.ub[1:] > 0).all()
    assert "source: measured by running the model" in out


def test_graph_of_a_runnable_model_is_its_recorded_autograd_graph(env):
    out, _ = ok(env, "graph_run")
    model, x = models.build("transformer-run", batch=1)
    params = dict(model.named_parameters())
    g = graph_data(model(x).sum(), params)
    ops = [d for _, d in g.nodes(data=True) if d["kind"] == "op"]
    assert out.count("Backward0") == sum(d["name"].endswith("Backward0") for d in ops)
    assert out.count(" -> ") == g.number_of_edges()
    for name in params:
        assert name in out, name


def test_profile_writes_the_chain_json(env):
    out, _ = ok(env, "profile")
    with open(os.path.join(env["dir"], "out_chain.json")) as f:
        written = Chain.from_json(f.read())          # the planner's schema
    assert written == zoo.resnet(batch=8)
    assert "wrote" in out and "16 stages" in out and "not a measurement" in out
    out, _ = ok(env, "profile_stdout")
    assert Chain.from_json(out) == zoo.transformer(batch=2)


# ---- plan ---------------------------------------------------------------------------------
def test_plan_table_matches_the_planner(env):
    out, _ = ok(env, "plan_table")
    expected = plan(env["chain"], "optimal", budget="600MiB")
    peak = int(re.search(r"predicted peak\s+\S+ \S+ \((\d+) bytes\)", out).group(1))
    assert peak == expected.peak
    overhead = float(re.search(r"store-all \+ ([\d.]+)% overhead", out).group(1))
    assert overhead == pytest.approx(100 * expected.overhead, abs=0.05)
    forwards = {}
    for op in expected.ops:
        if op.kind != "backward" and op.kind != "drop":
            forwards[op.stage] = forwards.get(op.stage, 0) + 1
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s+block", line)]
    assert len(rows) == len(env["chain"])
    for r in rows:
        i, n, status = int(r[0]), int(r[2]), r[3]
        assert n == forwards[i]
        assert status == ("recomputed" if n > 1 else "kept")
    kept = sum(1 for r in rows if r[3] == "kept")
    assert f"{kept} kept, {len(rows) - kept} recomputed" in out


def test_plan_json_is_a_valid_plan_and_is_written(env):
    out, _ = ok(env, "plan_json")
    p = Plan.from_json(out)                    # schema + replay + predictions checked
    assert p.strategy == "revolve" and p.budget == parse_size("600MiB")
    assert p == plan(zoo.resnet(), "revolve", budget="600MiB")
    with open(os.path.join(env["dir"], "out_plan.json")) as f:
        assert Plan.from_json(f.read()) == p


# ---- sweep --------------------------------------------------------------------------------
def test_sweep_json_rows_match_the_planner_and_the_plot_is_written(env):
    out, err = ok(env, "sweep_json")
    data = json.loads(out)
    chain = env["chain"]
    assert data["format"] == "ckpt.sweep" and data["version"] == 1
    assert data["strategies"] == ["optimal", "sqrt", "store_all"]
    assert data["chain"]["min_budget"] == chain.min_budget
    assert data["chain"]["store_all_peak_bytes"] == store_all_peak(chain)
    budgets = data["budgets"]
    assert len(budgets) == 4 and budgets[0] == chain.min_budget
    assert budgets[-1] == store_all_peak(chain)
    keys = {"strategy", "budget", "feasible", "peak_bytes", "compute", "overhead", "pareto"}
    rows = []
    for r in data["rows"]:
        assert set(r) == keys
        try:
            p = plan(chain, r["strategy"], budget=r["budget"])
            assert r["feasible"] and r["peak_bytes"] == p.peak
            assert r["compute"] == pytest.approx(p.compute)
            assert r["overhead"] == pytest.approx(p.overhead)
        except BudgetError:
            assert not r["feasible"]
            assert r["peak_bytes"] is None and r["overhead"] is None
        rows.append(Row(r["strategy"], r["budget"], r["peak_bytes"], r["compute"]))
    assert len(rows) == 3 * 4
    front = {(r.strategy, r.budget) for r in pareto_front(rows)}
    assert {(r["strategy"], r["budget"]) for r in data["rows"] if r["pareto"]} == front
    with open(os.path.join(env["dir"], "tradeoff.png"), "rb") as f:
        assert f.read(8) == PNG
    assert "wrote" in err and "tradeoff.png" in err     # stdout stays pure JSON


def test_sweep_csv_and_table(env):
    out, err = ok(env, "sweep_csv")
    assert err == ""                              # no progress bar when stderr is a pipe
    rows = list(csv.DictReader(io.StringIO(out)))
    chain = zoo.uniform()
    names = [s for s in cli.STRATEGY_ORDER]
    assert [r["strategy"] for r in rows] == [s for s in names for _ in range(3)]
    for r in rows:
        b = int(r["budget_bytes"])
        assert b in (parse_size("5MiB"), parse_size("8MiB"), parse_size("12MiB"))
        if r["feasible"] == "1":
            assert int(r["peak_bytes"]) == plan(chain, r["strategy"], budget=b).peak
        else:
            assert r["peak_bytes"] == ""
    out, _ = ok(env, "sweep_table")
    lines = [line.split() for line in out.splitlines() if line.startswith("optimal")]
    chain = zoo.mlp()
    budgets = [chain.min_budget, store_all_peak(chain)]
    assert len(lines) == 2
    for line, b in zip(lines, budgets):
        assert " ".join(line[3:5]) == format_size(plan(chain, "optimal", budget=b).peak)


# ---- simulate -----------------------------------------------------------------------------
def test_simulate_reports_validity_peak_and_compute(env):
    out, _ = ok(env, "simulate")
    p = plan(env["chain"], "optimal", budget="550MiB")
    assert "valid: yes" in out
    assert int(re.search(r"peak: .* \((\d+) bytes\)", out).group(1)) == p.peak
    step = int(re.search(r"at step (\d+)", out).group(1))
    assert step == p.peak_step
    assert float(re.search(r"store-all \+ ([\d.]+)%", out).group(1)) == \
        pytest.approx(100 * p.overhead, abs=0.05)


def test_simulate_an_invalid_plan_exits_1_with_the_reason(env):
    rc, out, err = env["results"]["simulate_invalid"]
    assert rc == 1 and err == ""
    assert "valid: no" in out
    assert "reason: step 1 (backward 2): x̄2 is not alive" in out


# ---- graph --------------------------------------------------------------------------------
def test_graph_prints_dot_and_draws_png(env):
    out, _ = ok(env, "graph_dot")
    chain = env["chain"]
    assert out.startswith('digraph "resnet" {') and out.rstrip().endswith("}")
    for i, st in enumerate(chain.stages, 1):
        assert f'"stage{i}" [label="{i}: {st.name}' in out
        assert f"x̄{i} saved\\n{format_size(st.saved_bytes)}" in out
    assert out.count("->") == 2 * len(chain) + 1
    ok(env, "graph_png")
    with open(os.path.join(env["dir"], "graph.png"), "rb") as f:
        assert f.read(8) == PNG


# ---- demo ---------------------------------------------------------------------------------
def test_demo_plans_every_strategy_and_writes_the_pngs(env):
    out, _ = ok(env, "demo")
    chain = zoo.resnet()
    budget = parse_size(re.search(r"^budget (.*)$", out, re.M).group(1))
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in STRATEGIES}
    assert set(rows) == set(STRATEGIES)
    for name, r in rows.items():
        try:
            p, fits = plan(chain, name, budget=budget), "yes"
        except BudgetError:
            p, fits = plan(chain, name), "no"
        assert " ".join(r[1:3]) == format_size(p.peak)
        assert r[3] == fits
        assert float(r[4].rstrip("%")) == pytest.approx(100 * p.overhead, abs=0.05)
    # a chain of formulas can't be run: predictions only, and the table says so
    assert "measured peak: not shown" in out
    written = [line.strip() for line in out.split("wrote:")[1].strip().splitlines()]
    assert {os.path.basename(w) for w in written} >= {"tradeoff.png", "memory_timeline.png",
                                                      "schedule_optimal.png"}
    for w in written:
        with open(w, "rb") as f:
            assert f.read(8) == PNG


def test_demo_runs_every_plan_and_the_measured_peak_is_the_predicted_one(env):
    """The default demo profiles a runnable ckpt.nn model, plans it with every strategy and
    executes each plan: ckpt.memory's measured logical peak must equal the prediction."""
    out, _ = ok(env, "demo_run")
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in STRATEGIES}
    assert set(rows) == set(STRATEGIES)
    for name, r in rows.items():
        predicted, measured = " ".join(r[1:3]), " ".join(r[-2:])
        assert measured == predicted, name
    assert "measured peak: not shown" not in out
    budget = parse_size(re.search(r"^budget (.*)$", out, re.M).group(1))
    assert parse_size(" ".join(rows["optimal"][1:3])) <= budget
    written = [line.strip() for line in out.split("wrote:")[1].strip().splitlines()]
    assert {os.path.basename(w) for w in written} >= {"tradeoff.png", "memory_timeline.png"}


# ---- user mistakes ------------------------------------------------------------------------
def test_malformed_json_names_the_line_and_column(env):
    line = error_line(env, "malformed")
    assert line.startswith("ckpt plan: error: ")
    assert "malformed.json: malformed chain JSON at line 3, column 35" in line


def test_unknown_model_lists_the_names(env):
    line = error_line(env, "unknown_model")
    assert "unknown model 'resnet51'" in line
    assert ("mlp, mlp-run, resnet, resnet-run, transformer, transformer-run, uniform, vgg16"
            in line)


def test_negative_budget_says_it_is_negative_and_gives_the_minimum(env):
    line = error_line(env, "negative_budget")
    assert "budget -5MiB is negative" in line
    assert f"at least {format_size(zoo.resnet().min_budget)}" in line


def test_infeasible_budget_gives_the_minimum(env):
    line = error_line(env, "infeasible_budget")
    m = zoo.resnet().min_budget
    assert f"is below the minimum feasible {format_size(m)} ({m} bytes)" in line


def test_missing_file_is_named(env):
    line = error_line(env, "missing_file")
    assert line.startswith("ckpt simulate: error: no such file: ") and "nope.json" in line


def test_bad_usage_is_one_line_pointing_to_help(env):
    line = error_line(env, "bad_usage")
    assert "unrecognized arguments: --frobnicate" in line and "ckpt sweep --help" in line


# ---- in-process: help, argument plumbing, progress bar -------------------------------------
def test_every_subcommand_has_help_with_examples():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"demo", "profile", "plan", "sweep", "simulate", "graph"}
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "examples:" in text and f"ckpt {name}" in text, name


def test_budget_lists_and_counts():
    chain = zoo.uniform(6, nbytes="1MiB")
    assert cli._parse_budgets(["3"], chain) == [chain.min_budget,
                                                (chain.min_budget + store_all_peak(chain)) // 2,
                                                store_all_peak(chain)]
    assert cli._parse_budgets(["8MiB,5MiB", "5MiB"], chain) == [5 * 2**20, 8 * 2**20]
    with pytest.raises(cli.UsageError, match="negative"):
        cli._parse_budgets(["-1MiB"], chain)
    assert cli._join_negative_values(["plan", "x", "--budget", "-1MiB"]) == \
        ["plan", "x", "--budget=-1MiB"]


def test_progress_bar_draws_only_on_a_terminal(capsys):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = cli._Progress(10, stream=stream, delay=0)
        for k in range(11):
            p.update(k, "optimal @ 1 MiB")
        p.close()
    assert "10/10" in tty.getvalue() and "[" + "#" * 28 + "]" in tty.getvalue()
    assert tty.getvalue().endswith("\r")                 # erased at the end
    assert pipe.getvalue() == ""
    slow = Tty()
    p = cli._Progress(10, stream=slow, delay=60)         # short work: nothing drawn
    p.update(5)
    p.close()
    assert slow.getvalue() == ""


def test_main_in_process_returns_2_for_user_errors(capsys):
    assert cli.main(["plan", "uniform", "--budget", "1KiB"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "minimum feasible 5.0 MiB" in err
    assert cli.main([]) == 2
    assert "choose a command" in capsys.readouterr().err


def test_a_batch_too_large_for_memory_is_a_usage_error(capsys):
    assert cli.main(["profile", "mlp-run", "--batch", "100000000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not enough memory" in err[0] and "--batch 100000000000" in err[0]
    assert cli.main(["profile", "--list", "--batch", "3"]) == 2
    assert "--list takes no MODEL" in capsys.readouterr().err


def test_plan_on_a_long_chain_does_not_wait_for_the_least_peak(tmp_path, capsys):
    # store_all and sqrt never need chain.min_budget (O(L^3)); the report leaves it out
    path = tmp_path / "long.json"
    path.write_text(zoo.uniform(2000, nbytes="1KiB").to_json())
    for strategy in ("store_all", "sqrt"):
        assert cli.main(["plan", str(path), "--strategy", strategy]) == 0
        out = capsys.readouterr().out
        assert "least feasible peak not computed for 2000 stages" in out
    short = tmp_path / "short.json"
    short.write_text(zoo.uniform(8, nbytes="1KiB").to_json())
    assert cli.main(["plan", str(short), "--strategy", "store_all"]) == 0
    assert "not computed" not in capsys.readouterr().out


def test_plan_table_prints_long_stage_names_whole_up_to_40_characters(tmp_path, capsys):
    names = ["transformer.h.0:GPT2Block", "x" * 60, "fc"]
    chain = planner.Chain([planner.Stage(n, 1, 2, 64, 128) for n in names])
    path = tmp_path / "named.json"
    path.write_text(chain.to_json())
    assert cli.main(["plan", str(path), "--strategy", "store_all"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any("transformer.h.0:GPT2Block " in r for r in rows)
    assert any(("x" * 37 + "...") in r and "x" * 38 not in r for r in rows)
