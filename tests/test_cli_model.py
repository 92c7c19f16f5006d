"""A user's own model on the command line (issues 11 and 12): ``ckpt profile|plan|sweep|demo
FILE.py:FACTORY`` (or ``MODULE:FACTORY``) for a ckpt model, ``--torch FILE.py:FACTORY`` for a
PyTorch one. The CLI's chain is the planner's own profile of the same model, the demo's
measured peak is the prediction, and every mistake in the factory is one line."""
import json
import sys
import textwrap

import pytest

from ckpt import planner
from ckpt.planner import Chain, plan
from test_cli_input import one_error, run

CKPT_MODEL = '''
import ckpt
from own_helper import WIDTH      # a neighbour module: the file's folder is on the path


def make():
    ckpt.manual_seed(0)
    blocks = [ckpt.nn.Sequential(ckpt.nn.Linear(WIDTH, WIDTH), ckpt.nn.Tanh())
              for _ in range(6)]
    return ckpt.nn.Sequential(*blocks), ckpt.randn(16, WIDTH), lambda out: (out ** 2).mean()


def boom():
    raise ValueError("the data set\\nis missing")


def two():
    return 1, 2


def not_a_dict():
    return {"model": 1}


def not_sequential():
    return ckpt.nn.Linear(4, 4), ckpt.randn(2, 4), None


def numpy_sample():
    import numpy
    return make()[0], numpy.zeros((16, 32)), None


def bad_loss():
    return make()[0], make()[1], "mse"


def four():
    return make() + ("auto",)


NOT_CALLABLE = 3
'''

TORCH_MODEL = '''
import torch


def make():
    torch.manual_seed(0)
    blocks = [torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Tanh()) for _ in range(4)]
    return torch.nn.Sequential(*blocks), torch.randn(8, 32), None


def with_stages():
    model, x, _ = make()
    return model, x, lambda out: out.pow(2).mean(), [model[0], model[1], model[2:]]


def ckpt_model():
    import ckpt
    return ckpt.nn.Sequential(ckpt.nn.Linear(4, 4)), ckpt.randn(2, 4), None
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("own")
    (d / "own_helper.py").write_text("WIDTH = 32\n")
    (d / "own_net.py").write_text(CKPT_MODEL)
    (d / "tnet.py").write_text(TORCH_MODEL)
    (d / "broken.py").write_text("def make(:\n")
    (d / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (d / "model.txt").write_text("def make(): pass\n")
    return d


def the_model(files):
    sys.path.insert(0, str(files))
    try:
        ns = {}
        exec(compile(CKPT_MODEL, "own_net.py", "exec"), ns)
        return ns["make"]()
    finally:
        sys.path.remove(str(files))
        sys.modules.pop("own_helper", None)


def test_profile_a_users_file_gives_the_planners_chain(capsys, files):
    spec = f"{files}/own_net.py:make"
    rc, out, err = run(capsys, "profile", spec, "-o", files / "chain.json")
    assert rc == 0 and err == ""
    assert "source: measured by running own_net.py:make" in out
    written = Chain.from_json((files / "chain.json").read_text())
    model, x, loss = the_model(files)
    here = planner.profile(model, x, loss_fn=loss, repeats=1)
    assert written.name == "own_net.py:make" and len(written) == 6
    for field in ("x", "xbar", "of", "ofs", "ob"):   # bytes exact; times measured anew
        assert getattr(written, field).tolist() == getattr(here, field).tolist(), field
    rc, out, _ = run(capsys, "profile", spec)     # no -o: the JSON on stdout
    assert rc == 0 and Chain.from_json(out).xbar.tolist() == here.xbar.tolist()


def test_plan_sweep_and_demo_take_a_users_model(capsys, files, monkeypatch):
    chain = Chain.from_json((files / "chain.json").read_text()) if (
        files / "chain.json").exists() else None
    spec = f"{files}/own_net.py:make"
    rc, out, _ = run(capsys, "plan", spec, "--budget", "100KiB", "--json")
    assert rc == 0
    p = planner.Plan.from_json(out)
    assert p.chain.name == "own_net.py:make" and p.peak <= 100 * 1024
    if chain is not None:
        assert p.chain.xbar.tolist() == chain.xbar.tolist()
    rc, out, _ = run(capsys, "sweep", spec, "--budgets", "3", "--strategies", "optimal",
                     "--json")
    assert rc == 0 and len(json.loads(out)["rows"]) == 3
    rc, out, _ = run(capsys, "demo", "--model", spec, "--json", "-o", files / "demo")
    data = json.loads(out)
    assert rc == 0 and data["measured"] and data["engine"] == "ckpt"
    for r in data["strategies"]:        # the user's model, run under every plan
        assert r["measured_peak_bytes"] == r["predicted_peak_bytes"], r["strategy"]
    # MODULE:FACTORY, found from the current directory
    monkeypatch.chdir(files)
    try:
        rc, out, _ = run(capsys, "plan", "own_net:make", "--budget", "100KiB", "--json")
    finally:
        sys.modules.pop("own_net", None)
        sys.modules.pop("own_helper", None)
    assert rc == 0 and planner.Plan.from_json(out).peak == p.peak


@pytest.mark.parametrize("spec, expected", [
    ("nope.py:make", "no such file: 'nope.py' (expected a Python file defining the factory"),
    ("own_net.py", "'own_net.py': name the factory too, as own_net.py:FACTORY"),
    ("own_net.py:missing", "own_net.py has no 'missing' (it defines bad_loss, boom, four, "
                           "make,"),
    ("own_net.py:NOT_CALLABLE", "NOT_CALLABLE is a int, not a function"),
    ("own_net.py:boom", "own_net.py:boom raised ValueError: the data set is missing (it is "
                        "called with no arguments"),
    ("own_net.py:two", "own_net.py:two returned a tuple of 2 items; expected (model, sample, "
                       "loss_fn)"),
    ("own_net.py:not_a_dict", "returned a builtins.dict; expected (model, sample, loss_fn)"),
    ("own_net.py:four", "returned 4 items; a ckpt model takes (model, sample, loss_fn)"),
    ("own_net.py:not_sequential", "returned model a ckpt.nn.linear.Linear; expected a "
                              "ckpt.nn.Sequential"),
    ("own_net.py:numpy_sample", "returned sample a numpy.ndarray; expected a ckpt.Tensor"),
    ("own_net.py:bad_loss", "returned loss_fn a builtins.str; expected a function"),
    ("broken.py:make", "broken.py: importing it raised SyntaxError"),
    ("exits.py:make", "exits.py: importing it raised SystemExit: 3"),
    ("model.txt:make", "'model.txt' is not a .py file"),
    ("no_such_module_xyz:make", "no module named 'no_such_module_xyz'"),
    ("tnet.py:make", "expected a ckpt.nn.Sequential (each child a stage); for a PyTorch "
                     "model use --torch tnet.py:make"),
])
def test_factory_mistakes_are_one_line(capsys, files, monkeypatch, spec, expected):
    monkeypatch.chdir(files)
    line = one_error(capsys, "plan", spec, "--budget", "1MiB")
    assert expected in line, line


def test_factory_option_mistakes(capsys, files, monkeypatch):
    monkeypatch.chdir(files)
    assert "--batch applies to built-in models; a factory builds its own sample" in \
        one_error(capsys, "plan", "own_net.py:make", "--batch", "4")
    assert "give either a model ('own_net.py:make') or --torch, not both" in \
        one_error(capsys, "plan", "own_net.py:make", "--torch", "tnet.py:make")
    assert "--torch 'tnet.py': expected FILE.py:FACTORY or MODULE:FACTORY" in \
        one_error(capsys, "sweep", "--torch", "tnet.py")
    assert "give a model: a built-in name" in one_error(capsys, "plan")
    assert "is a file; profile takes a built-in model name" in \
        one_error(capsys, "profile", "own_helper.py.json")


# ---- --torch ------------------------------------------------------------------------------
def test_torch_model_profile_plan_sweep_demo(capsys, files, monkeypatch):
    import torch
    import ckpt.torch
    monkeypatch.chdir(files)
    rc, out, err = run(capsys, "profile", "--torch", "tnet.py:make", "-o", "tchain.json")
    assert rc == 0 and err == "" and "ckpt.torch.profile" in out
    written = Chain.from_json((files / "tchain.json").read_text())
    ns = {}
    exec(compile(TORCH_MODEL, "tnet.py", "exec"), ns)
    model, x, _ = ns["make"]()
    here = ckpt.torch.profile(model, x, repeats=1)
    assert len(written) == 4 and written.xbar.tolist() == here.xbar.tolist()
    rc, out, _ = run(capsys, "plan", "--torch", "tnet.py:make", "--strategy",
                     "recompute_all", "--json")
    assert rc == 0
    p = planner.Plan.from_json(out)
    assert p == plan(p.chain, "recompute_all")
    rc, out, _ = run(capsys, "sweep", "--torch", "tnet.py:with_stages", "--budgets", "2",
                     "--json")
    assert rc == 0 and json.loads(out)["chain"]["stages"] == 3     # the factory's stages
    rc, out, _ = run(capsys, "demo", "--torch", "tnet.py:make", "--json", "-o", "tdemo")
    data = json.loads(out)
    assert rc == 0 and data["engine"] == "torch" and data["measured"]
    for r in data["strategies"]:
        # ckpt.torch's logical count: the prediction plus the loss and its seed (2 x 4 B)
        assert 0 <= r["predicted_peak_bytes"] - r["measured_peak_bytes"] <= 8, r
        assert r["allocator_peak_bytes"] > 0 and r["step_seconds"] > 0
    assert isinstance(torch.__version__, str)


def test_torch_mistakes_are_one_line(capsys, files, monkeypatch):
    monkeypatch.chdir(files)
    line = one_error(capsys, "plan", "--torch", "tnet.py:ckpt_model")
    assert "--torch tnet.py:ckpt_model returned model a ckpt.nn.container.Sequential; " \
           "expected a torch.nn.Module; for a ckpt model drop --torch" in line
    assert "own_net.py:boom raised ValueError" in one_error(capsys, "plan", "--torch",
                                                        "own_net.py:boom")
    monkeypatch.setitem(sys.modules, "torch", None)       # as if torch were not installed
    line = one_error(capsys, "profile", "--torch", "tnet.py:make")
    assert line == 'ckpt profile: error: --torch needs PyTorch: pip install "ckpt[torch]"'


def test_a_failing_user_model_is_one_line(capsys, tmp_path):
    (tmp_path / "wrong.py").write_text(textwrap.dedent('''
        import ckpt
        def make():
            model = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.Linear(9, 9))
            return model, ckpt.randn(2, 8), None
    '''))
    line = one_error(capsys, "plan", f"{tmp_path}/wrong.py:make")
    assert f"profiling {tmp_path}/wrong.py:make failed: " in line
