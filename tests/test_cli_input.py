"""The command line on bad input (issue 12): every mistake is one line on stderr naming what
is wrong and what would be right, exit status 2, no traceback, nothing written, and nothing
hangs on a strange file. Also the sweep table's columns and digits, progress on a terminal
only, and ``ckpt demo --json``.

Commands run in-process (``cli.main`` with capsys), except where the test is about the
process itself (a FIFO, ``/dev/full``, a real terminal)."""
import io
import json
import os
import re
import subprocess
import sys
import warnings

import pytest

from ckpt import cli
from ckpt.cli import commands, output
from ckpt.planner import BudgetError, Chain, format_size, parse_size, plan, zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=ROOT)


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(capsys, *argv):
    """The one error line of a command that must fail with exit status 2 and print nothing
    on stdout."""
    rc, out, err = run(capsys, *argv)
    assert rc == 2, f"exit {rc}, expected 2\n{out}\n{err}"
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ckpt ")
    return lines[0]


@pytest.fixture
def chain_file(tmp_path):
    path = tmp_path / "chain.json"
    path.write_text(zoo.uniform(6, nbytes="1MiB").to_json())
    return str(path)


# ---- strategies and budgets ---------------------------------------------------------------
@pytest.mark.parametrize("command, option", [("plan", "--strategy"), ("sweep", "--strategies")])
@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_an_empty_strategy_is_an_error_not_store_all_or_the_defaults(capsys, command, option,
                                                                      value):
    line = one_error(capsys, command, "uniform", option, value)
    assert f"{option} {value!r} names no strategy; choose from store_all, sqrt" in line


def test_plan_takes_one_strategy(capsys):
    line = one_error(capsys, "plan", "uniform", "--strategy", "optimal,sqrt")
    assert "--strategy takes one strategy, got 2 (optimal, sqrt)" in line
    assert "ckpt sweep --strategies optimal,sqrt" in line


def test_a_fractional_budget_count_is_an_error_not_a_4_byte_budget(capsys):
    line = one_error(capsys, "sweep", "uniform", "--budgets", "3.5")
    assert "--budgets 3.5: give a count from 1 to 1000 (a whole number)" in line
    assert "like 3.5MiB" in line
    line = one_error(capsys, "sweep", "uniform", "--budgets", "3.5", "8MiB")
    assert "a number without a unit is bytes and must be whole" in line
    line = one_error(capsys, "plan", "uniform", "--budget", "3.5")
    assert "budget 3.5: a number without a unit is bytes and must be whole" in line
    line = one_error(capsys, "sweep", "uniform", "--budgets", ",")
    assert "--budgets ',' gives no budget" in line
    for value in ("0", "1e400"):    # no example that is itself a mistake (0MiB, 1e400MiB)
        line = one_error(capsys, "sweep", "uniform", "--budgets", value)
        assert line.endswith(f"--budgets {value}: give a count from 1 to 1000 (a whole "
                             "number), or sizes with a unit, like 512MiB,1GiB")


@pytest.mark.parametrize("value", ["1e400", "1e300TiB", "99999999999999999999GiB",
                                   "99999999999999999999"])
def test_a_huge_budget_is_too_large(capsys, value):
    line = one_error(capsys, "plan", "uniform", "--budget", value)
    assert f"budget {value!r} is too large: at most" in line
    assert "NaN" not in line


def test_budget_mistakes_are_found_before_the_model_is_profiled(capsys, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("the chain was made before the arguments were checked")
    monkeypatch.setattr(commands, "resolve", no_work)
    assert "too large" in one_error(capsys, "plan", "mlp-run", "--budget", "1e400")
    assert "no strategy" in one_error(capsys, "sweep", "mlp-run", "--strategies", ",")
    assert "whole number" in one_error(capsys, "sweep", "mlp-run", "--budgets", "2.5")
    assert "too large" in one_error(capsys, "demo", "--budget", "1e400")


# ---- strange files ------------------------------------------------------------------------
def test_deeply_nested_json_is_one_line(capsys, tmp_path):
    for text in ("[" * 200000, '{"stages": ' + "[" * 200000):
        path = tmp_path / "deep.json"
        path.write_text(text)
        line = one_error(capsys, "plan", str(path))
        assert "deep.json" in line and "too deeply" in line
        assert "deep.json" in one_error(capsys, "simulate", "uniform", str(path))


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_at_once(capsys, monkeypatch, device):
    from ckpt.cli import inputs

    real_open = os.open

    def guarded(path, *a, **k):
        assert str(path) != device, "the device was opened"
        return real_open(path, *a, **k)
    monkeypatch.setattr(inputs.os, "open", guarded)
    line = one_error(capsys, "plan", device)
    assert f"'{device}' is a character device, not a regular file" in line
    assert "expected a chain JSON file" in line
    line = one_error(capsys, "simulate", "uniform", device)
    assert "not a regular file (expected a plan JSON file" in line


def test_a_file_over_the_cap_is_refused_naming_the_cap(capsys, tmp_path, monkeypatch):
    from ckpt.cli import inputs
    assert inputs.MAX_READ_BYTES == 64 * 2 ** 20
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 5000 + zoo.uniform(2).to_json().encode())
    monkeypatch.setattr(inputs, "MAX_READ_BYTES", 4096)
    monkeypatch.setattr(inputs.read_file, "__defaults__", (4096,))
    line = one_error(capsys, "plan", str(path))
    assert "big.json" in line and "input files are read up to 4.0 KiB" in line


def test_a_fifo_without_a_writer_is_refused_and_never_opened(tmp_path):
    fifo = str(tmp_path / "chain.json")
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-m", "ckpt", "plan", fifo], capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "is a FIFO (named pipe), not a regular file" in r.stderr


def test_a_utf8_byte_order_mark_is_accepted(capsys, tmp_path):
    chain = zoo.uniform(4, nbytes="1MiB")
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + chain.to_json().encode())
    rc, out, _ = run(capsys, "plan", str(path), "--budget", "6MiB", "--json")
    assert rc == 0
    assert json.loads(out)["peak_bytes"] == plan(chain, "optimal", budget="6MiB").peak
    p = tmp_path / "plan.json"
    p.write_bytes(b"\xef\xbb\xbf" + plan(chain, "optimal", budget="6MiB").to_json().encode())
    rc, out, _ = run(capsys, "simulate", str(path), str(p))
    assert rc == 0 and "valid: yes" in out


# ---- every bad input: its option or field named, nothing written ---------------------------
BAD = {  # argv ({in}: a folder of bad files, {out}: an empty folder) -> what the line names
    "empty strategy": (["plan", "uniform", "--strategy", "", "-o", "{out}/p.json"],
                       "--strategy '' names no strategy"),
    "comma strategy": (["plan", "uniform", "--strategy", ",", "--json", "-o", "{out}/p.json"],
                       "--strategy ',' names no strategy"),
    "empty strategies": (["sweep", "uniform", "--strategies", "", "--plot", "{out}/t.png"],
                         "--strategies '' names no strategy"),
    "budget count 3.5": (["sweep", "uniform", "--budgets", "3.5", "--plot", "{out}/t.png"],
                         "--budgets 3.5: give a count from 1 to 1000"),
    "huge budget": (["plan", "uniform", "--budget", "1e400", "-o", "{out}/p.json"],
                    "budget '1e400' is too large"),
    "huge demo budget": (["demo", "--budget", "1e400", "-o", "{out}/d"],
                         "budget '1e400' is too large"),
    "nested JSON": (["plan", "{in}/deep.json", "-o", "{out}/p.json"], "nests too deeply"),
    "nested JSON, demo": (["demo", "--model", "{in}/deep.json", "-o", "{out}/d"],
                          "nests too deeply"),
    "device": (["plan", "/dev/zero", "-o", "{out}/p.json"], "'/dev/zero' is a character"),
    "cost_unit object": (["plan", "{in}/unit.json", "-o", "{out}/p.json"],
                         "field 'cost_unit' must be a string"),
    "fractional bytes": (["sweep", "{in}/half.json", "--budgets", "2", "--plot", "{out}/t.png"],
                         "output_bytes must be a whole number of bytes, got 1.5"),
    "no such folder": (["sweep", "uniform", "--plot", "{out}/nodir/t.png"],
                       "cannot write plot '{out}/nodir/t.png': no directory"),
}


@pytest.mark.parametrize("case", BAD)
def test_every_bad_input_names_what_is_wrong_and_writes_nothing(capsys, tmp_path, case):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir(), out.mkdir()
    (src / "deep.json").write_text("[" * 100000)
    data = json.loads(zoo.uniform(2, nbytes="1MiB").to_json())
    (src / "unit.json").write_text(json.dumps(dict(data, cost_unit={"x": 1})))
    data["stages"][0]["output_bytes"] = 1.5
    (src / "half.json").write_text(json.dumps(data))
    argv, names = BAD[case]
    line = one_error(capsys, *[a.format(**{"in": src, "out": out}) for a in argv])
    assert names.format(out=out) in line
    assert os.listdir(out) == []


# ---- names that would drive the terminal --------------------------------------------------
CONTROL = "\n\x00\t\x1b"


def evil_chain(tmp_path, name):
    """A 3-stage chain file named ``name`` whose stage names hold control characters."""
    data = json.loads(zoo.uniform(3, nbytes="1MiB").to_json())
    data["name"] = name
    for st, stage_name in zip(data["stages"], ["a\nb", "c\x00d\te", "\x1b[31mred"]):
        st["name"] = stage_name
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(data))
    return path, Chain.from_dict(data)


def test_control_characters_in_names_are_escaped_everywhere(capsys, tmp_path):
    path, chain = evil_chain(tmp_path, "evil\x1b[2J\nchain")
    commands_ = [["plan", path, "--budget", "5MiB"], ["plan", path, "--explain"],
                 ["sweep", path, "--budgets", "2"], ["demo", "--model", path, "-o",
                                                    tmp_path / "d"]]
    for argv in commands_:
        rc, out, err = run(capsys, *argv)
        assert rc == 0, err
        assert not any(c in out.replace("\n", "") for c in CONTROL), argv
        assert "evil\\x1b[2J\\nchain" in out
    rc, out, _ = run(capsys, "plan", path, "--budget", "5MiB")
    assert "a\\nb" in out and "c\\x00d\\te" in out and "\\x1b[31mred" in out
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s", line)]
    assert len(rows) == len(chain)               # a newline in a name makes no extra row
    line = one_error(capsys, "plan", path, "--budget", "1KiB")
    assert not any(c in line for c in CONTROL)


def test_control_characters_in_names_are_escaped_in_graphs_and_pictures(capsys, tmp_path):
    path, _ = evil_chain(tmp_path, "evil\x1b]0;title\x07")
    rc, out, err = run(capsys, "graph", path)          # DOT on stdout
    assert rc == 0, err
    assert not any(c in out.replace("\n", "") for c in CONTROL + "\x07"), out
    assert '"1: a\\\\nb\\n' in out and "c\\\\x00d\\\\te" in out   # DOT-quoted \\n, \\x00
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, err = run(capsys, "demo", "--model", path, "-o", tmp_path / "d")
    assert rc == 0, err
    # matplotlib warns of each control character it cannot draw, printing it raw
    assert not [w for w in caught if "Glyph" in str(w.message)]


# ---- output paths: checked first, written whole or not at all -----------------------------
def test_output_paths_are_checked_before_the_work(capsys, monkeypatch, tmp_path):
    def no_work(*a, **k):
        raise AssertionError("the work ran before the output path was checked")
    monkeypatch.setattr(commands, "resolve", no_work)
    monkeypatch.setattr(commands, "model_graph", no_work)
    monkeypatch.chdir(tmp_path)
    cases = [(["sweep", "resnet", "--plot", "nodir/t.png"], "cannot write plot 'nodir/t.png'"),
             (["plan", "resnet", "-o", "nodir/x.json"], "cannot write the plan 'nodir/x.json'"),
             (["profile", "resnet", "-o", "nodir/c.json"], "cannot write the chain"),
             (["graph", "resnet", "-o", "nodir/g.dot"], "cannot write the graph"),
             (["sweep", "resnet", "--plot", "t.jpg"], "use a file name ending in .png, .svg "
                                                       "or .pdf"),
             (["plan", "resnet", "-o", "."], "it is a directory"),
             (["demo", "-o", "/dev/null/x"], "'/dev/null' is not a directory")]
    for argv, expected in cases:
        line = one_error(capsys, *argv)
        assert expected in line, line
        assert "no directory 'nodir' (create it first)" in line or "nodir" not in argv[-1]
    assert os.listdir(tmp_path) == []


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    target = tmp_path / "plan.json"
    target.write_text("old")

    def broken(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(output.os, "replace", broken)
    with pytest.raises(cli.UsageError, match="No space left on device"):
        output.write_text(str(target), "new")
    assert os.listdir(tmp_path) == ["plan.json"] and target.read_text() == "old"
    import matplotlib.figure
    with pytest.raises(cli.UsageError):
        output.save_figure(matplotlib.figure.Figure(), str(tmp_path / "t.png"))
    assert os.listdir(tmp_path) == ["plan.json"]


def test_stdout_on_a_full_disk_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "ckpt", "plan", "resnet", "--budget",
                            "600MiB"], stdout=full, stderr=subprocess.PIPE, text=True,
                           env=ENV, timeout=120)
    assert r.returncode == 2
    assert r.stderr == ("ckpt plan: error: cannot write to standard output: No space left "
                        "on device\n")


@pytest.mark.parametrize("argv, prog", [(["--help"], "ckpt"), (["--version"], "ckpt"),
                                        (["plan", "--help"], "ckpt plan")])
def test_help_and_version_on_a_full_disk_are_one_line(argv, prog):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "ckpt", *argv], stdout=full,
                           stderr=subprocess.PIPE, text=True, env=ENV, timeout=120)
    assert r.returncode == 2
    assert r.stderr == (f"{prog}: error: cannot write to standard output: No space left "
                        "on device\n")


# ---- tables -------------------------------------------------------------------------------
def test_sweep_table_puts_infeasible_under_peak(capsys):
    rc, out, _ = run(capsys, "sweep", "uniform", "--strategies", "store_all,optimal",
                     "--budgets", "5MiB,12MiB")
    assert rc == 0
    head = next(line for line in out.splitlines() if line.startswith("strategy"))
    bad = [line for line in out.splitlines() if "infeasible" in line and
           line.startswith("store_all")]
    assert len(bad) == 1
    assert bad[0].index("infeasible") + len("infeasible") == head.index("peak") + len("peak")
    assert bad[0].split()[-2:] == ["-", "-"]         # overhead and compute: none
    assert "infeasible: no plan of the strategy fits the budget" in out


def test_sweep_table_prints_enough_digits_to_tell_budgets_and_peaks_apart(capsys):
    rc, out, _ = run(capsys, "sweep", "vgg16", "--budgets", "20", "--strategies", "optimal")
    assert rc == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("optimal")]
    assert len(rows) == 20
    budgets = [" ".join(r[1:3]) for r in rows]
    assert len(set(budgets)) == 20
    data = json.loads(run(capsys, "sweep", "vgg16", "--budgets", "20", "--strategies",
                          "optimal", "--json")[1])
    for r, text, shown in zip(data["rows"], budgets, rows):
        # the printed budget is the real one, to the digits shown
        number, unit = text.split()
        step = 10.0 ** -len(number.split(".")[1]) * parse_size("1" + unit)
        assert abs(parse_size(text) - r["budget"]) <= step
    # different plans (peak or compute) never read the same, so a Pareto mark is explained
    printed = {(r["peak_bytes"], r["compute"]): (shown[3], shown[4], shown[6])
               for r, shown in zip(data["rows"], rows)}
    assert len(set(printed.values())) == len(printed) > 3
    assert len({r["pareto"] for r in data["rows"]}) == 2


# ---- progress and demo --json --------------------------------------------------------------
class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("argv, label", [
    (["sweep", "uniform", "--budgets", "3"], "store_all @"),
    (["profile", "mlp-run", "--batch", "4"], "profiling mlp-run"),
    (["demo", "--model", "uniform", "--json"], "planning"),
])
def test_progress_on_a_terminal_and_nothing_when_piped(capsys, monkeypatch, tmp_path, argv,
                                                       label):
    if argv[0] == "demo":
        argv = argv + ["-o", str(tmp_path)]
    rc, _, err = run(capsys, *argv)                 # capsys: stderr is not a terminal
    assert rc == 0 and err == ""
    monkeypatch.setattr(output.Progress, "DELAY", 0)
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert label in tty.getvalue() and tty.getvalue().endswith("\r")   # drawn, then erased


def test_progress_reaches_a_real_terminal(tmp_path):
    import pty
    leader, follower = pty.openpty()
    code = ("import sys; from ckpt.cli import main, output; output.Progress.DELAY = 0; "
            "sys.exit(main(['sweep', 'uniform', '--budgets', '3']))")
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=follower,
                       env=ENV, timeout=120)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert r.returncode == 0 and b"/24" in seen and b"store_all @" in seen
    assert b"\r" in seen and b"infeasible" in r.stdout


def test_demo_json_has_the_chain_and_every_strategy(capsys, tmp_path, chain_file):
    """A chain file: predictions only, and it says why (tests/test_cli_model.py runs the
    demo on a user's model, where measured == predicted)."""
    rc, out, err = run(capsys, "demo", "--model", chain_file, "--json", "-o", tmp_path / "c")
    data = json.loads(out)
    chain = Chain.from_json(open(chain_file).read())
    assert rc == 0 and err == "" and data["format"] == "ckpt.demo"
    assert data["measured"] is False and data["chain"]["stages"] == len(chain)
    assert data["chain"]["min_budget"] == chain.min_budget
    assert [r["strategy"] for r in data["strategies"]] == list(cli.STRATEGY_ORDER)
    assert {os.path.basename(f) for f in data["files"]} >= {"tradeoff.png"}
    assert "chain.json is a chain, not a runnable model" in data["not_measured_because"]
    for r in data["strategies"]:
        assert r["measured_peak_bytes"] is None and r["recomputed"] >= 0
        try:
            p, fits = plan(chain, r["strategy"], budget=data["budget"]), True
        except BudgetError:
            p, fits = plan(chain, r["strategy"]), False
        assert (r["predicted_peak_bytes"], r["fits"]) == (p.peak, fits)
        assert r["overhead"] == pytest.approx(p.overhead)


def test_demo_accepts_a_chain_json_file(capsys, tmp_path, chain_file):
    rc, out, err = run(capsys, "demo", "--model", chain_file, "-o", tmp_path / "d")
    assert rc == 0 and err == ""
    assert "measured peak: not shown — " in out and "is a chain, not a runnable model" in out
    head = next(line for line in out.splitlines() if line.startswith("strategy"))
    assert "measured" not in head                          # no invented numbers
    budget = parse_size(re.search(r"^budget (.*)$", out, re.M).group(1))
    assert format_size(plan(Chain.from_json(open(chain_file).read()), "optimal",
                            budget=budget).peak) in out
