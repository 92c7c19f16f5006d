"""Bad input at the library's boundary (issue 12, "Bad input"; issue 11, torch objects): each
raises one specific error naming what is wrong and what would be right, and leaves nothing
changed behind."""
import json
import subprocess
import sys

import pytest
import torch

import ckpt
from ckpt import nn, planner
from ckpt.planner import Chain, ChainError, ChainFormatError, Plan
from ckpt.planner.strategies import STRATEGIES

# use_reentrant is left out as a shorthand here; test_checkpoint_like_torch.py checks the
# warning torch and ckpt give for that
pytestmark = pytest.mark.filterwarnings("ignore:ckpt.checkpoint.*use_reentrant:UserWarning")

STAGE = {"name": "a", "forward_cost": 1, "backward_cost": 2, "output_bytes": 8,
         "saved_bytes": 8}


def chain_text(**fields):
    return json.dumps({"name": "c", "stages": [dict(STAGE, **fields)]})


# ---- sizes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_format_size_refuses_what_is_not_a_size(bad):
    with pytest.raises(ValueError, match="finite number of bytes"):
        planner.format_size(bad)
    with pytest.raises(TypeError, match="number of bytes"):
        planner.format_size("12")


@pytest.mark.parametrize("big", ["1e400", 1e400, "1e30 GiB", 2**63, "1e19"])
def test_parse_size_says_too_large(big):
    with pytest.raises(ValueError, match=r"budget .* is too large: at most 9223372036854775807"):
        planner.parse_size(big, what="budget")
    assert planner.parse_size(2**63 - 1) == 2**63 - 1


def test_parse_size_nan_and_negative_infinity_named():
    with pytest.raises(ValueError, match="must be a number of bytes, got nan"):
        planner.parse_size(float("nan"))
    with pytest.raises(ValueError, match="non-negative"):
        planner.parse_size(-float("inf"))


# ---- chain and plan JSON -------------------------------------------------------------------

@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deeply_nested_json_is_a_format_error(depth):
    for text in ["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth, "[" * depth]:
        with pytest.raises(ChainFormatError, match="^chain JSON nests too deeply .*; a chain "
                                                   "is an object holding a list of flat stage"):
            Chain.from_json(text)
        with pytest.raises(ChainFormatError, match="^plan JSON nests too deeply .*; a plan is "
                                                   "an object holding its chain and a list of "
                                                   "op strings"):
            Plan.from_json(text)


def test_a_utf8_byte_order_mark_is_accepted():
    text = chain_text()
    plain = Chain.from_json(text)
    assert Chain.from_json("\ufeff" + text) == plain
    assert Chain.from_json(("\ufeff" + text).encode("utf-8")) == plain
    p = planner.plan(plain, "store_all")
    assert Plan.from_json("\ufeff" + p.to_json()) == p
    assert Plan.from_json(p.to_json().encode("utf-8-sig")) == p
    with pytest.raises(ChainFormatError, match="not UTF-8"):
        Chain.from_json(b"\xff\xfe{}")


@pytest.mark.parametrize("field, value, message", [
    ("cost_unit", {"x": 1}, "chain field 'cost_unit' must be a string, got dict"),
    ("name", 3, "chain field 'name' must be a string, got int"),
    ("input_bytes", 1.5, "input_bytes' must be a whole number of bytes, got 1.5"),
    ("param_bytes", [1], "param_bytes' must be a number of bytes"),
])
def test_chain_fields_of_the_wrong_kind_are_named(field, value, message):
    data = json.loads(chain_text())
    data[field] = value
    with pytest.raises(ChainFormatError, match=message.replace("(", r"\(")):
        Chain.from_json(json.dumps(data))


@pytest.mark.parametrize("field, value", [("output_bytes", 1.5), ("saved_bytes", 8.25),
                                          ("forward_transient", 0.5)])
def test_fractional_stage_bytes_are_refused_with_the_field(field, value):
    with pytest.raises(ChainError, match=f"stage 1 \\('a'\\): {field} must be a whole number "
                                         f"of bytes, got {value}"):
        Chain.from_json(chain_text(**{field: value}))
    # whole numbers written as floats (1e3) stay fine
    assert Chain.from_json(chain_text(output_bytes=8.0, saved_bytes=1e3)).xbar[1] == 1000


def test_stage_name_must_be_a_string():
    with pytest.raises(ChainFormatError, match=r"stages\[0\] field 'name' must be a string"):
        Chain.from_json(chain_text(name=["x"]))


# ---- strategies and their options ----------------------------------------------------------

def test_sweep_takes_one_strategy_name_or_a_list():
    c = planner.zoo.uniform(6, nbytes=1024)
    one = planner.sweep(c, "optimal", ["5KiB", "8KiB"])
    assert [r.strategy for r in one.rows] == ["optimal", "optimal"]
    assert one.rows == planner.sweep(c, ["optimal"], ["5KiB", "8KiB"]).rows
    assert [r.budget for r in planner.sweep(c, "sqrt", "8KiB").rows] == [8192]
    with pytest.raises(ValueError, match=r"unknown strategy 'optimum'; choose from"):
        planner.sweep(c, ["sqrt", "optimum"], [8192])
    with pytest.raises(ValueError, match="strategies is empty"):
        planner.sweep(c, [], [8192])
    with pytest.raises(TypeError, match="budgets must be a list"):
        planner.sweep(c, "sqrt", None)
    with pytest.raises(TypeError, match="options must map a strategy name"):
        planner.sweep(c, "optimal", [8192], {"optimal": 64})


def test_sweep_table_marks_infeasible_rows_and_tells_close_budgets_apart():
    c = planner.zoo.uniform(2, nbytes=1024)
    lines = planner.sweep(c, "store_all", [3072, 4096, 4100]).table().splitlines()
    assert lines[0].split() == ["strategy", "budget", "fits", "peak", "compute"]
    assert lines[1].split() == ["store_all", "3.000", "KiB", "no", "-", "-"]
    assert lines[2].split()[1:4] == ["4.000", "KiB", "yes"]
    assert lines[3].split()[1:4] == ["4.004", "KiB", "yes"]
    assert "infeasible" not in "\n".join(lines)


@pytest.mark.parametrize("strategy, options, error, message", [
    ("optimal", {"slots": 10**7}, ValueError, "slots must be an integer from 1 to 100000, got 10000000: the program's time"),
    ("optimal", {"slots": 0}, ValueError, "slots must be an integer from 1 to 100000, got 0"),
    ("optimal", {"slots": 2.5}, TypeError, "slots must be an integer"),
    ("optimal", {"exhaustive_max": 12}, ValueError, "exhaustive_max must be an integer from 0 to 8"),
    ("sqrt", {"segments": 0}, ValueError, "segments must be an integer from 1 to 8 \\(the chain's length\\), got 0"),
    ("sqrt", {"segments": -3}, ValueError, "segments must be an integer from 1 to 8"),
    ("greedy", {"threshold": -1}, ValueError, "threshold must be non-negative, got -1"),
    ("greedy", {"threshold": "many"}, ValueError, "threshold 'many': expected a number"),
    ("recursive", {"leaf": 9}, ValueError, "leaf must be an integer from 1 to 8"),
    ("revolve", {"snapshots": 0}, ValueError, "snapshots must be an integer from 1 to 8"),
    ("store_all", {"slots": 10}, TypeError, "strategy 'store_all' takes no options, got 'slots'"),
    ("optimal", {"slot": 10}, TypeError, "takes the options \\['exhaustive_max', 'slots'\\], got 'slot'"),
])
def test_plan_checks_strategy_options_before_planning(strategy, options, error, message,
                                                      monkeypatch):
    c = planner.zoo.uniform(8, nbytes="1MiB")
    budget = c.min_budget + 2**20

    def planned(*a, **k):
        raise AssertionError("the strategy ran before its options were checked")
    monkeypatch.setitem(STRATEGIES, strategy, planned)
    with pytest.raises(error, match=f"strategy '{strategy}': {message}|{message}"):
        planner.plan(c, strategy, budget=budget, **options)


def test_valid_options_still_plan_and_thresholds_take_units():
    c = planner.zoo.uniform(8, nbytes="1MiB")
    p = planner.plan(c, "greedy", threshold="3MiB")
    assert p.options == {"threshold": 3 * 2**20}
    assert planner.plan(c, "greedy", threshold=3 * 2**20).ops == p.ops
    assert planner.plan(c, "sqrt", segments=8).ops == planner.plan(c, "sqrt", segments=8).ops
    assert planner.plan(c, "optimal", budget=c.min_budget, slots=None).peak <= c.min_budget
    with pytest.raises(TypeError, match="strategy must be a name"):
        planner.plan(c, ["optimal"])


# ---- checkpoint_sequential -----------------------------------------------------------------

def test_checkpoint_sequential_refuses_a_function_or_a_list_input():
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    x = ckpt.randn(2, 4)
    with pytest.raises(TypeError, match="got a function; to checkpoint one function use "
                                        r"ckpt.checkpoint\(function, input\)"):
        ckpt.checkpoint_sequential(lambda t: t * 2, 1, x)
    with pytest.raises(TypeError, match="got a Linear; to checkpoint one function"):
        ckpt.checkpoint_sequential(nn.Linear(4, 4), 1, x)
    with pytest.raises(TypeError, match="one input Tensor through the functions, got a list; "
                                        "pass the tensor itself"):
        ckpt.checkpoint_sequential(net, 2, [x])
    assert ckpt.checkpoint_sequential([net[0], net[1]], 2, x).shape == (2, 4)


# ---- torch objects at ckpt's entry points (issue 11) ---------------------------------------

def torch_cases():
    module, tensor = torch.nn.Linear(4, 4), torch.ones(2, 4)
    c = planner.zoo.uniform(1)
    p = planner.plan(c, "store_all")
    return [
        ("ckpt.checkpoint", lambda: ckpt.checkpoint(module, tensor), "torch.utils.checkpoint"),
        ("ckpt.checkpoint", lambda: ckpt.checkpoint(lambda t: t, tensor), "ckpt.torch.plan"),
        ("ckpt.checkpoint_sequential",
         lambda: ckpt.checkpoint_sequential(torch.nn.Sequential(module), 1, tensor),
         "ckpt.torch.plan"),
        ("ckpt.memory.track", lambda: ckpt.memory.track(module), "ckpt.torch.execute"),
        ("ckpt.memory.track", lambda: ckpt.memory.track(ckpt.ones(2), [tensor]),
         "ckpt.torch.execute"),
        ("ckpt.planner.profile", lambda: planner.profile(module, tensor), "ckpt.torch.profile"),
        ("ckpt.planner.profile", lambda: planner.profile(nn.Sequential(nn.Linear(4, 4)), tensor),
         "ckpt.torch.profile"),
        ("ckpt.planner.execute", lambda: planner.execute(module, p, tensor), "ckpt.torch.execute"),
        ("ckpt.planner.apply", lambda: planner.apply(module, p), "ckpt.torch.plan"),
    ]


@pytest.mark.parametrize("index", range(9))
def test_torch_objects_are_refused_naming_ckpt_torch(index):
    api, call, instead = torch_cases()[index]
    with pytest.raises(TypeError) as info:
        call()
    msg = str(info.value)
    assert msg.startswith(f"{api} got a torch.")
    assert instead in msg and "ckpt.torch" in msg


def test_a_user_subclass_of_a_torch_module_is_recognized():
    class Net(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match=r"ckpt.checkpoint got a torch.nn.Module \(Net\)"):
        ckpt.checkpoint(Net(), ckpt.ones(2))


def test_import_ckpt_never_imports_torch():
    code = ("import sys, ckpt, ckpt.planner.profile, ckpt.planner.execute, ckpt.planner.apply;"
            "ckpt.checkpoint(lambda t: t * 2, ckpt.ones(2, requires_grad=True));"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"

