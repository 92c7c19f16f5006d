"""Chain IR, JSON (round trips and errors with line/column), byte units and the zoo."""
import dataclasses
import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckpt.planner import (Chain, ChainError, ChainFormatError, Plan, format_size,
                          parse_size, plan, zoo)

from test_planner import chains


@settings(max_examples=30)
@given(chains())
def test_chain_json_round_trip(chain):
    text = chain.to_json()
    back = Chain.from_json(text)
    assert back == chain
    assert back.to_json() == text
    assert Chain.from_graph(chain.graph) == chain


@settings(max_examples=15)
@given(chains(max_len=12), st.sampled_from(["store_all", "sqrt", "revolve", "optimal"]))
def test_plan_json_round_trip(chain, strategy):
    p = plan(chain, strategy)
    q = Plan.from_json(p.to_json())
    assert q == p and q.peak == p.peak and q.compute == p.compute


@settings(max_examples=40)
@given(chains(max_len=12), st.lists(st.floats(1e-6, 1e-2), min_size=24, max_size=24))
def test_a_plan_that_recomputes_nothing_costs_exactly_store_all_compute(chain, times):
    """Measured costs are arbitrary floats: at store-all's peak the optimal plan's compute is
    ``store_all_compute`` to the last bit (a 0.0 overhead, not 1e-14), whatever the sums'
    rounding (issue 13's notebook run found it 1 ulp apart)."""
    stages = [dataclasses.replace(s, forward_cost=times[2 * i], backward_cost=times[2 * i + 1])
              for i, s in enumerate(chain.stages)]
    timed = Chain(stages, input_bytes=chain.input_bytes, param_bytes=chain.param_bytes)
    for strategy in ("store_all", "optimal"):
        budget = plan(timed, "store_all").peak
        assert plan(timed, strategy, budget=budget).compute == timed.store_all_compute


def test_graph_is_a_networkx_path():
    c = zoo.mlp(depth=4, width=32, batch=2)
    g = c.graph
    assert isinstance(g, nx.DiGraph) and nx.is_directed_acyclic_graph(g)
    assert list(nx.topological_sort(g)) == list(range(5))
    assert g.nodes[2]["saved_bytes"] == c.stages[1].saved_bytes
    assert g.edges[1, 2]["bytes"] == c.stages[0].output_bytes
    bad = g.copy()
    bad.add_edge(0, 2)
    with pytest.raises(ChainError, match="not a chain"):
        Chain.from_graph(bad)


@pytest.mark.parametrize("text, line, column", [
    ('{"stages": [\n  {"name": "a",, }]}', 2, 16),
    ('{"stages": [\n\n   {"name": "a" "forward_cost": 1}]}', 3, 17),
    ('{"stages": []', 1, 14),
    ('', 1, 1),
])
def test_malformed_json_reports_line_and_column(text, line, column):
    with pytest.raises(ChainFormatError) as e:
        Chain.from_json(text)
    assert (e.value.line, e.value.column) == (line, column)
    assert f"line {line}, column {column}" in str(e.value)


GOOD = {"name": "a", "forward_cost": 1, "backward_cost": 2, "output_bytes": "1KiB",
        "saved_bytes": 2048}


@pytest.mark.parametrize("data, message", [
    ({"stages": [dict(GOOD, saved_bytes=10)]}, "must include the output"),
    ({"stages": [dict(GOOD, forward_cost=-1)]}, "forward_cost must be a finite number >= 0"),
    ({"stages": [dict(GOOD, output_bytes="1 parsec")]}, "unknown unit"),
    ({"stages": [{k: v for k, v in GOOD.items() if k != "saved_bytes"}]}, "lacks ['saved_bytes']"),
    ({"stages": [dict(GOOD, colour="red")]}, "unknown field(s) ['colour']"),
    ({"stages": []}, "at least one stage"),
    ({"stages": "all"}, "'stages' must be a list"),
    ({"stages": [GOOD], "format": "onnx"}, "format must be 'ckpt.chain'"),
    ({"stages": [GOOD], "version": 7}, "unsupported chain version 7"),
    ({"stages": [GOOD], "speed": 1}, "unknown chain field(s) ['speed']"),
    ([1, 2], "must be a JSON object"),
])
def test_schema_errors_name_the_field(data, message):
    with pytest.raises(ChainError) as e:
        Chain.from_json(json.dumps(data))
    assert message in str(e.value)


def test_json_accepts_units_and_defaults():
    c = Chain.from_json(json.dumps({"stages": [GOOD], "input_bytes": "2 kB"}))
    assert c.stages[0].output_bytes == 1024 and c.input_bytes == 2000
    assert c.stages[0].forward_transient == 0 and c.param_bytes == 0


def test_plan_json_errors():
    p = plan(zoo.uniform(3), "sqrt")
    data = json.loads(p.to_json())
    data["ops"][0] = "forward_save 9"
    with pytest.raises(Exception, match="stage 9 is not in 1..3"):
        Plan.from_json(json.dumps(data))
    data = json.loads(p.to_json())
    data["peak_bytes"] += 1
    with pytest.raises(ChainFormatError, match="replaying its ops gives"):
        Plan.from_json(json.dumps(data))
    with pytest.raises(ChainFormatError, match="line 1, column"):
        Plan.from_json("{")


@pytest.mark.parametrize("text, nbytes", [
    ("512MiB", 512 * 2**20), ("2GB", 2 * 10**9), ("2 gb", 2 * 10**9), ("1.5KiB", 1536),
    ("7", 7), (4096, 4096), ("1e3", 1000), ("3G", 3 * 2**30), ("0.5 B", 1),
])
def test_parse_size(text, nbytes):
    assert parse_size(text) == nbytes


@pytest.mark.parametrize("bad, err", [("-1MiB", ValueError), ("MiB", ValueError),
                                      ("5 furlongs", ValueError), (None, TypeError),
                                      (True, TypeError), (-3, ValueError)])
def test_parse_size_errors(bad, err):
    with pytest.raises(err):
        parse_size(bad)


def test_format_size():
    assert format_size(10 * 2**20) == "10.0 MiB" and format_size(12.5 * 2**20) == "12.5 MiB"
    assert format_size(999) == "999 B" and format_size(2**30) == "1.0 GiB"


def test_budget_strings_reach_the_planner():
    c = zoo.uniform(6, nbytes="1MiB")
    assert plan(c, "optimal", budget="6MiB").budget == 6 * 2**20


def test_zoo_sizes_follow_the_layer_shapes():
    v = zoo.vgg16(batch=32)
    assert len(v) == 21 and v.input_bytes == 32 * 3 * 224 * 224 * 4
    assert v.stages[0].output_bytes == 32 * 64 * 224 * 224 * 4
    assert v.stages[0].forward_cost == 2.0 * 32 * 224 * 224 * 3 * 64 * 9 + 32 * 64 * 224 * 224
    assert round(v.param_bytes / 8 / 1e6, 1) == 138.4          # 138.4M float32 params, x2
    pool = v.stages[2]
    assert pool.name == "pool1" and pool.saved_bytes == 3 * pool.output_bytes
    m = zoo.mlp(depth=3, width=16, batch=2, in_features=8, out_features=4)
    assert [s.forward_cost for s in m.stages] == [2 * 2 * 8 * 16 + 2 * 2 * 16,
                                                  2 * 2 * 16 * 16 + 2 * 2 * 16,
                                                  2 * 2 * 16 * 4 + 2 * 4]
    t = zoo.transformer(layers=2, d_model=8, heads=2, seq=4, batch=1)
    a, p = 4 * 8 * 4, 2 * 4 * 4 * 4
    assert t.stages[0].saved_bytes == 16 * a + p
    r = zoo.resnet()
    assert len(r) == 16 and r.stages[3].name == "block2.1"
    assert r.stages[3].output_bytes == 32 * 128 * 28 * 28 * 4
    with pytest.raises(ValueError, match="unknown zoo chain"):
        zoo.get("alexnet")


def test_late_bytes_round_trip_and_are_checked():
    stages = list(zoo.uniform(3).stages)
    c = Chain(stages, input_bytes=100, param_bytes=1000, input_late_bytes=40,
              param_late_bytes="512B")
    assert c.late_bytes == {"input_late_bytes": 40, "param_late_bytes": 512}
    back = Chain.from_json(c.to_json())
    assert back == c and back.late_bytes == c.late_bytes
    assert Chain.from_graph(c.graph) == c
    assert c != Chain(stages, input_bytes=100, param_bytes=1000)
    # absent from JSON when zero (older readers keep working on chains without them)
    assert "late" not in Chain(stages, input_bytes=100).to_json()
    with pytest.raises(ChainError, match=r"param_late_bytes \(2000\) is a part of "
                                         r"param_bytes \(1000\)"):
        Chain(stages, param_bytes=1000, param_late_bytes=2000)
    data = c.to_dict()
    data["input_late_bytes"] = 1.5
    with pytest.raises(ChainFormatError, match="input_late_bytes"):
        Chain.from_dict(data)


def test_plans_on_a_chain_with_late_bytes_stay_within_their_budget():
    base = zoo.uniform(12, nbytes="1MiB")
    c = Chain(base.stages, input_bytes=base.input_bytes + 2**20, param_bytes=8 * 2**20,
              input_late_bytes=2**20, param_late_bytes=4 * 2**20)
    budget = (c.min_budget + plan(c, "store_all").peak) // 2
    assert plan(c, "optimal", budget=budget).peak <= budget
    # the planners count the late bytes throughout: a replay is never above that count
    flat = Chain(base.stages, input_bytes=c.input_bytes, param_bytes=c.param_bytes)
    for strategy in ("optimal", "min_memory", "revolve", "sqrt"):
        p = plan(c, strategy, budget=budget if strategy == "optimal" else None)
        assert p.peak <= Plan(flat, p.ops).peak
    assert plan(c, "min_memory").peak <= c.min_budget


def test_direct_backward_transient_round_trips_and_is_checked():
    from ckpt.planner import Stage
    a = Stage("a", 1, 2, 10, 10, backward_transient=8, direct_backward_transient=-4)
    c = Chain([Stage("s", 1, 2, 10, 10), a], input_bytes=4)
    assert Chain.from_json(c.to_json()) == c and c.ob.tolist() == [0, 0, -4]
    # absent when not measured: the stage's backward is never left to the engine
    assert "direct" not in Chain([Stage("s", 1, 2, 10, 10)]).to_json()
    with pytest.raises(ChainError, match=r"direct_backward_transient \(9\) is at most "
                                         r"backward_transient \(8\)"):
        Chain([Stage("s", 1, 2, 10, 10, backward_transient=8, direct_backward_transient=9)])
    with pytest.raises(ChainError, match=r"stage 2 \('a'\): direct_backward_transient "
                                         r"\(-11\) is below -10"):
        Chain([Stage("s", 1, 2, 10, 10), Stage("a", 1, 2, 10, 10,
                                                direct_backward_transient=-11)])
    with pytest.raises(ChainError, match="whole number of bytes"):
        Chain([Stage("s", 1, 2, 10, 10, direct_backward_transient=True)])
