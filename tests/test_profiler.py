"""ckpt.autograd.profiler: op counts, self/total time, bytes allocated and saved, the table,
the Chrome trace; ops seen however they are reached; and that it replaces nothing and leaves
nothing behind (the interpreter's profile function given back, also after an exception; no
observer; nothing recorded outside the block). And ckpt.autograd.op_calls, which it observes
through."""
import cProfile
import functools
import json
import pstats
import sys

import numpy as np
import pytest

import ckpt
from ckpt import nn
from ckpt.autograd import profiler
from ckpt.autograd.node import Extensions, Node
from ckpt.autograd import op_calls, ops
from ckpt.autograd.ops import elementwise, linalg
from ckpt.autograd.profiler import profile, record_function
from ckpt.planner import op_trace
from conftest import Double

F32 = 4


def node_classes():
    found, stack = [], [Node]
    while stack:
        found.append(stack.pop())
        stack.extend(found[-1].__subclasses__())
    return found


def snapshot():
    """Where an op or a rule could be replaced: op module globals (Tensor's methods call them
    through ``ckpt.autograd.ops``), Tensor's methods, node vjps; and the observers."""
    nodes = {cls: cls.__dict__.get("vjp") for cls in node_classes()}
    return (dict(vars(ckpt.Tensor)), dict(vars(elementwise)), dict(vars(linalg)),
            dict(vars(ckpt)), nodes, list(Extensions.observers), Extensions.active,
            dict(vars(ops)))


def test_counts_names_and_backward_nodes():
    x = ckpt.ones(32, 32, requires_grad=True)
    with profile() as prof:
        y = x
        for _ in range(5):
            y = y + 1.0
        loss = (y * x).tanh().sum()
        loss.backward()
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts["add"] == 5 and counts["mul"] == 1 and counts["tanh"] == 1
    assert counts["AddBackward0"] == 5 and counts["MulBackward0"] == 1
    assert counts["TanhBackward0"] == 1 and counts["SumBackward0"] == 1
    kinds = {e.key: e.kind for e in prof.key_averages()}
    assert kinds["add"] == "cpu_op" and kinds["MulBackward0"] == "backward"
    assert "AccumulateGrad" not in counts        # leaf accumulation is engine work
    # profiling does not change results
    np.testing.assert_allclose(x.grad.data, _grad_without_profiler())


def _grad_without_profiler():
    x = ckpt.ones(32, 32, requires_grad=True)
    y = x
    for _ in range(5):
        y = y + 1.0
    (y * x).tanh().sum().backward()
    return x.grad.data


def test_self_time_excludes_children_and_totals_nest():
    x, w, b = ckpt.randn(64, 128), ckpt.randn(256, 128, requires_grad=True), ckpt.randn(256)
    with profile() as prof:
        ckpt.linear(x, w, b)
    events = prof.events()
    lin = next(e for e in events if e.name == "linear")
    children = [e for e in events if e.parent == lin.id]
    assert sorted(e.name for e in children) == ["add", "matmul", "transpose"]
    assert lin.depth == 0 and all(e.depth == 1 for e in children)
    for e in children:       # inside the parent's interval
        assert lin.start_us <= e.start_us and e.end_us <= lin.end_us
    assert lin.self_cpu_time_total == pytest.approx(
        lin.cpu_time_total - sum(e.cpu_time_total for e in children), abs=1e-3)
    for e in events:
        assert 0 <= e.self_cpu_time_total <= e.cpu_time_total
    total = prof.total_average()
    assert total.self_cpu_time_total == pytest.approx(lin.cpu_time_total, rel=1e-9, abs=1e-3)


def test_memory_allocated_and_saved():
    x = ckpt.ones(1000, requires_grad=True)
    with profile(profile_memory=True) as prof:
        y = x.exp()               # a new 4000-byte buffer, saved for backward (its output)
        v = y.reshape(10, 100)    # a view: nothing new
        z = (v * 2.0).sum()       # mul: 4000 new bytes; sum: 4 bytes
        z.backward()
    ev = {e.key: e for e in prof.key_averages()}
    assert ev["exp"].cpu_memory_usage == 1000 * F32
    assert ev["exp"].saved_memory == 1000 * F32
    assert ev["reshape"].cpu_memory_usage == 0
    assert ev["mul"].cpu_memory_usage == 1000 * F32 and ev["mul"].saved_memory == 0
    assert ev["sum"].cpu_memory_usage == F32
    # backward: ExpBackward0 returns a new gradient buffer for x
    assert ev["ExpBackward0"].cpu_memory_usage == 1000 * F32
    # a caller's total includes what its callees allocated, its self part does not
    w = ckpt.randn(8, 16, requires_grad=True)
    with profile(profile_memory=True) as prof:
        ckpt.linear(ckpt.randn(4, 16), w, ckpt.randn(8))
    lin = next(e for e in prof.events() if e.name == "linear")
    assert lin.self_cpu_memory_usage == 0
    assert lin.cpu_memory_usage == 2 * 4 * 8 * F32       # matmul's output and the sum
    assert lin.saved_memory == 4 * 16 * F32               # matmul keeps x for w's grad


def test_without_profile_memory_there_are_no_memory_columns_or_observer():
    with profile() as prof:
        assert Extensions.observers == [] and not Extensions.active
        ckpt.ones(3).exp()
    assert all(e.cpu_memory_usage is None for e in prof.events())
    assert "Mem" not in prof.table()


def test_record_shapes_and_group_by_shape():
    with profile(record_shapes=True) as prof:
        a, b = ckpt.ones(2, 3), ckpt.ones(3, 4)
        a @ b
        b.T @ a.T
    mm = [e for e in prof.events() if e.name == "matmul"]
    assert [e.input_shapes for e in mm] == [[[2, 3], [3, 4]], [[4, 3], [3, 2]]]
    grouped = [e for e in prof.key_averages(group_by_input_shape=True) if e.key == "matmul"]
    assert len(grouped) == 2 and all(e.count == 1 for e in grouped)
    table = prof.key_averages(group_by_input_shape=True).table()
    assert "Input Shapes" in table and "[[2, 3], [3, 4]]" in table


def test_table_sorting_and_errors():
    x = ckpt.randn(200, 200, requires_grad=True)
    with profile(profile_memory=True) as prof:
        for _ in range(3):
            (x @ x).sum().backward()
        x.exp()
    table = prof.key_averages().table(sort_by="count", row_limit=2)
    lines = table.splitlines()
    assert lines[1].split()[0] == "Name" and "# of Calls" in lines[1] and "Saved" in lines[1]
    rows = [line.split() for line in lines[3:-2]]
    assert len(rows) == 2 and [int(r[-1]) for r in rows] == [3, 3]
    assert lines[-1].startswith("Self CPU time total:")
    by_self = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=-1)
    avg = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    names = [line.split()[0] for line in by_self.splitlines()[3:-2]]
    assert names == [e.key for e in avg]
    with pytest.raises(ValueError, match="sort_by='cuda_time' is not a column"):
        prof.key_averages().table(sort_by="cuda_time")


def test_chrome_trace_is_valid_and_nested(tmp_path):
    ckpt.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    with profile(record_shapes=True, profile_memory=True) as prof:
        with record_function("train_step"):
            loss = net(ckpt.randn(4, 8)).pow(2).mean()
            loss.backward()
    path = prof.export_chrome_trace(tmp_path / "trace.json")
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"]
    assert len(events) == len(prof.events()) and events
    for e in events:
        assert e["ph"] == "X" and isinstance(e["name"], str)
        assert e["dur"] >= 0 and e["ts"] >= 0 and "pid" in e and "tid" in e
    step = next(e for e in events if e["name"] == "train_step")
    assert step["cat"] == "user_annotation" and step["args"]["Depth"] == 0
    for e in events:   # every event lies inside the annotation around the whole step
        assert step["ts"] <= e["ts"] and e["ts"] + e["dur"] <= step["ts"] + step["dur"] + 1e-6
    assert any(e["cat"] == "backward" for e in events)
    assert {"Input Dims", "Saved (bytes)"} <= set(next(e for e in events
                                                       if e["name"] == "linear")["args"])
    with pytest.raises(TypeError, match="raw events"):
        prof.key_averages().export_chrome_trace(tmp_path / "x.json")


def test_nothing_is_replaced_and_the_hook_goes_also_after_an_exception():
    before = snapshot()
    assert sys.getprofile() is None
    with profile():
        ckpt.ones(2).exp()
        assert snapshot() == before                   # not even inside the block
        assert sys.getprofile() is not None
    assert snapshot() == before and sys.getprofile() is None
    with pytest.raises(ZeroDivisionError):
        with profile(profile_memory=True):
            ckpt.ones(2).exp()
            assert Extensions.active
            1 / 0
    assert snapshot() == before and sys.getprofile() is None
    assert profiler._ACTIVE is None


def test_op_errors_are_recorded_and_raised():
    with profile() as prof:
        with pytest.raises(RuntimeError, match="matmul"):
            ckpt.ones(2, 3) @ ckpt.ones(2, 3)
    assert [e.name for e in prof.events()][-1] == "matmul"


def test_nothing_recorded_outside_the_block_and_no_nesting():
    with profile() as prof:
        f = ckpt.exp                      # a wrapper taken inside the block...
        ckpt.ones(2).exp()
        with pytest.raises(RuntimeError, match="already recording"):
            with profile():
                pass
    n = len(prof.events())
    f(ckpt.ones(2))                       # ...works unrecorded afterwards
    ckpt.ones(2).exp()
    assert len(prof.events()) == n == 2
    with profile(enabled=False) as off:
        assert sys.getprofile() is None       # no hook
        ckpt.ones(2).exp()
    assert off.events() == []
    with pytest.raises(RuntimeError, match="still recording"):
        with profile() as p:
            p.events()


def test_profiles_alongside_the_memory_tracker():
    ckpt.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 16), nn.Tanh())
    x = ckpt.randn(4, 16)
    with ckpt.memory.track(net, x, tracemalloc=False) as report:
        with profile(profile_memory=True) as prof:
            net(x).sum().backward()
        assert len(Extensions.observers) == 1            # the tracker's, still there
    assert report.peak_bytes > 0
    assert {e.key for e in prof.key_averages()} >= {"linear", "tanh", "TanhBackward0"}
    assert Extensions.observers == [] and not Extensions.active


def test_subclass_nodes_report_their_own_name():
    x = ckpt.ones(3, requires_grad=True)
    y = Double.apply(x).sum()
    with profile() as prof:
        y.backward()
    assert "DoubleBackward" in {e.key for e in prof.key_averages()}


def test_ops_reached_through_references_taken_before_the_block_are_recorded():
    exp, table, times_two = ckpt.exp, {"act": ckpt.tanh}, functools.partial(ckpt.mul, 2.0)
    x = ckpt.ones(4, requires_grad=True)
    rule = elementwise.TanhBackward0.vjp               # a rule, called by hand
    with profile(record_shapes=True) as prof:
        y = table["act"](times_two(exp(x)))
        rule(ckpt.ones(4), y)
    events = prof.events()
    assert [(e.name, e.kind, e.depth) for e in events] == [
        ("exp", "cpu_op", 0), ("mul", "cpu_op", 0), ("tanh", "cpu_op", 0),
        ("ones", "cpu_op", 0), ("TanhBackward0", "backward", 0), ("mul", "cpu_op", 1),
        ("sub", "cpu_op", 1), ("mul", "cpu_op", 1)]
    assert events[1].input_shapes == [[], [4]]         # mul(2.0, exp(x)), as called
    assert events[4].input_shapes == [[4], [4]]


def test_an_in_place_method_shows_the_op_it_runs():
    x = ckpt.randn(5)
    with profile() as prof:
        x.relu_()
        x += 1
    events = prof.events()
    assert [(e.name, e.depth) for e in events] == [("relu_", 0), ("relu", 1), ("add_", 0),
                                                    ("add", 1)]
    assert events[1].parent == events[0].id and events[3].parent == events[2].id


def _marker():
    return 1


def test_a_profile_function_set_before_is_chained_and_given_back():
    seen = []

    def python_profiler(frame, event, arg):
        if event == "call":
            seen.append(frame.f_code.co_name)
    sys.setprofile(python_profiler)
    try:
        with profile() as prof:
            ckpt.ones(2).exp()
            _marker()
        assert sys.getprofile() is python_profiler
    finally:
        sys.setprofile(None)
    assert {"_marker", "exp", "ones"} <= set(seen)    # told during the block too
    assert [e.name for e in prof.events()] == ["ones", "exp"]
    c_profiler = cProfile.Profile()
    c_profiler.enable()
    try:
        with profile():
            ckpt.ones(2)
        _marker()                       # seen only if cProfile was switched on again
    finally:
        c_profiler.disable()
    assert "_marker" in {key[2] for key in pstats.Stats(c_profiler).stats}


def test_a_trace_inside_a_profile_both_see_the_ops():
    w = ckpt.randn(3, 3, requires_grad=True)
    with profile() as prof:
        traced = op_trace.trace(lambda: (ckpt.ones(2, 3) @ w).relu_().sum())
    assert [c.name for c in traced.calls] == ["ones", "matmul", "relu", "sum"]
    assert [(e.name, e.depth) for e in prof.events()] == [
        ("ones", 0), ("matmul", 0), ("relu_", 0), ("relu", 1), ("sum", 0)]
    assert sys.getprofile() is None


class Log(op_calls.CallObserver):
    def __init__(self):
        self.seen = []

    def op_entered(self, call):
        self.seen.append(("enter", call.name))

    def op_exited(self, call, result):
        self.seen.append(("exit", call.name, None if result is None else result.shape))


def test_observers_nest_and_each_is_told_of_the_calls_it_saw_begin():
    outer, inner = Log(), Log()
    with op_calls.observing_calls(outer):
        a = ckpt.ones(2)
        with op_calls.observing_calls(inner):
            b = a.exp()
        c = b.neg()
    assert outer.seen == [("enter", "ones"), ("exit", "ones", (2,)), ("enter", "exp"),
                          ("exit", "exp", (2,)), ("enter", "neg"), ("exit", "neg", (2,))]
    assert inner.seen == [("enter", "exp"), ("exit", "exp", (2,))]
    assert sys.getprofile() is None


def test_a_call_that_raises_exits_with_no_result_and_calls_carry_their_arguments():
    log, calls = Log(), []

    class Keep(op_calls.CallObserver):
        def op_entered(self, call):
            calls.append(call)
    with op_calls.observing_calls(log), op_calls.observing_calls(Keep()):
        with pytest.raises(RuntimeError):
            ckpt.ones(2, 3) @ ckpt.ones(2, 3)
        ckpt.sum(ckpt.ones(2, 3), dim=1, keepdim=True)
        ckpt.zeros(2).add_(1.0, alpha=2)
    assert log.seen[4:6] == [("enter", "matmul"), ("exit", "matmul", None)]
    total = next(c for c in calls if c.name == "sum")
    assert total.function is ckpt.sum and total.kind == "op"
    assert total.args[1:] == (1, True)
    add_ = next(c for c in calls if c.name == "add_")
    assert add_.kind == "in_place" and add_.args[1:] == (1.0,) and add_.kwargs == {"alpha": 2}
    with pytest.raises(TypeError, match="subclass ckpt.autograd.op_calls.CallObserver"):
        op_calls.observing_calls(object())


def test_in_place_methods_and_operators_are_recorded_as_their_ops():
    x = ckpt.ones(3)
    with profile() as prof:
        x.add_(1)
        x *= 2
        x.zero_()
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts["add_"] == counts["mul_"] == counts["zero_"] == 1
