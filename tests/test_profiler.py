"""ckpt.autograd.profiler: op counts, self/total time, bytes allocated and saved, the table,
the Chrome trace; and that it leaves nothing behind (originals restored, also after an
exception; no observer; nothing recorded outside the block)."""
import json

import numpy as np
import pytest

import ckpt
from ckpt import nn
from ckpt.autograd import profiler
from ckpt.autograd.node import Extensions, Node
from ckpt.autograd import ops
from ckpt.autograd.ops import elementwise, linalg
from ckpt.autograd.profiler import profile, record_function
from conftest import Double

F32 = 4


def snapshot():
    """What the profiler patches: op module globals (Tensor's methods call them through
    ``ckpt.autograd.ops``), node vjps; and Tensor's methods stay as they are."""
    nodes = {cls: cls.__dict__.get("vjp") for cls in profiler._node_classes()}
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


def test_originals_restored_also_after_an_exception():
    before = snapshot()
    with profile(profile_memory=True):
        mul, rule = before[1]["mul"], before[4][elementwise.TanhBackward0]
        assert ops.mul is not mul and ops.mul._profiled is mul   # what Tensor.__mul__ calls
        assert elementwise.mul is ops.mul                        # one wrapper per op
        assert elementwise.TanhBackward0.vjp._profiled is rule
        assert Extensions.active
    assert snapshot() == before
    with pytest.raises(ZeroDivisionError):
        with profile(profile_memory=True):
            ckpt.ones(2).exp()
            1 / 0
    assert snapshot() == before
    assert ops.mul is elementwise.mul is before[1]["mul"] and ckpt.exp is elementwise.exp
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
        assert ops.exp is elementwise.exp     # nothing patched (Tensor.exp calls ops.exp)
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
    assert all(isinstance(cls, type) and issubclass(cls, Node)
               for cls in profiler._node_classes())


def test_a_module_imported_inside_the_block_gets_the_originals_back():
    import sys
    import types
    mod = types.ModuleType("ckpt._profiler_test_module")
    sys.modules[mod.__name__] = mod
    try:
        with profile():
            mod.exp = ckpt.exp              # what `from ckpt import exp` binds while active
            assert hasattr(mod.exp, "_profiled")
        assert mod.exp is elementwise.exp and not hasattr(mod.exp, "_profiled")
    finally:
        del sys.modules[mod.__name__]


def test_in_place_methods_and_operators_are_recorded_as_their_ops():
    x = ckpt.ones(3)
    with profile() as prof:
        x.add_(1)
        x *= 2
        x.zero_()
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts["add_"] == counts["mul_"] == counts["zero_"] == 1
