"""The graph IR: forward graphs, derived training graphs, JSON (ckpt's and the node-link form
Checkmate and Moccasin publish), errors naming the field, and the graph zoo."""
import json

import networkx as nx
import pytest

from ckpt.planner import Chain, Stage, graph_zoo, zoo
from ckpt.planner.errors import GraphError, GraphFormatError
from ckpt.planner.graph import Graph, Node
from ckpt.planner.graph_training import TrainingGraph

DIAMOND = Graph([Node("a", [], 1, 2, 10), Node("b", ["a"], 3, 4, 20, 5, ["output"]),
                 Node("c", ["a"], 5, 6, 30, 0, ["inputs"]), Node("d", ["b", "c"], 7, 8, 40, 0, [])],
                input_bytes=7, param_bytes=3, name="diamond")


def test_training_graph_of_a_diamond():
    t = DIAMOND.training()
    named = {t.names[k]: sorted(t.names[i] for i in t.deps[k]) for k in range(len(t))}
    # written out by hand from the rules in graph.py's module doc
    assert named == {
        "a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"],
        "backward(d)": ["d"],                            # a loss: starts from its output
        "backward(c)": ["a", "backward(d)"],             # reads its input
        "backward(b)": ["b", "backward(d)"],             # reads its output (and saves 5 B)
        "backward(a)": ["a", "backward(b)", "backward(c)"]}
    size = dict(zip(t.names, t.size.tolist()))
    assert size == {"a": 10, "b": 25, "c": 30, "d": 40, "backward(d)": 50,
                    "backward(c)": 10, "backward(b)": 10, "backward(a)": 0}
    assert t.constant_bytes == 10 and t.store_all_compute == 36.0
    assert list(t.backward) == [False] * 4 + [True] * 4


def test_graph_json_round_trips():
    for g in (DIAMOND, graph_zoo.unet(depth=2, batch=1, image=16, width=4),
              graph_zoo.random_layered(nodes=60, seed=5)):
        text = g.to_json()
        assert Graph.from_json(text) == g and Graph.from_json(text).to_json() == text
        t = g.training()
        assert TrainingGraph.from_json(t.to_json()) == t


def test_graph_is_networkx_and_ordered():
    g = Graph([Node("z", ["y"]), Node("y", ["x"]), Node("x")])
    assert g.order == ("x", "y", "z")
    nxg = g.graph
    assert isinstance(nxg, nx.DiGraph) and set(nxg.edges) == {("x", "y"), ("y", "z")}
    nxg.add_edge("z", "x")                       # a copy: the graph is unchanged
    assert g.graph.number_of_edges() == 2


def test_from_chain_is_a_path_with_the_chains_sizes():
    c = Chain([Stage("a", 1, 2, 8, 12), Stage("a", 3, 4, 16, 16, 5, 6, 2)], input_bytes=4,
              param_bytes=9)
    g = Graph.from_chain(c)
    assert [n.inputs for n in g.nodes] == [(), ("a#1",)]
    t = g.training()
    # forward values are x̄ (what backward needs); backward(i) produces δ_{i-1} (none for 1)
    assert t.size.tolist() == [12, 16, 8, 0]
    assert t.transient.tolist() == [0, 5, 6, 0]
    assert t.constant_bytes == 13


# ---- errors name the field -------------------------------------------------------------

def _doc(**node):
    return json.dumps({"nodes": [dict({"name": "a"}, **node)]})


@pytest.mark.parametrize("text, exc, message", [
    ('{"nodes": [\n {"name": "a",, }]}', GraphFormatError, "line 2, column 15"),
    ('[1]', GraphFormatError, "a graph must be a JSON object, got list"),
    ('{"nodes": 3}', GraphFormatError, "'nodes' must be a list"),
    ('{"nodes": [], "edges": []}', GraphFormatError, "unknown graph field(s) ['edges']"),
    ('{"nodes": [{"forward_cost": 1}]}', GraphFormatError, "nodes[0] needs a 'name' string"),
    (_doc(outputs=1), GraphFormatError, "nodes[0] ('a') has unknown field(s) ['outputs']"),
    (_doc(inputs="b"), GraphFormatError, "field 'inputs' must be a list"),
    (_doc(inputs=["b"]), GraphError, "node 'a' reads 'b', which is not a node"),
    (_doc(output_bytes=-1), GraphError, "node 'a': output_bytes must be non-negative"),
    (_doc(output_bytes="3 parsecs"), GraphError, "unknown unit 'parsecs'"),
    (_doc(forward_cost="fast"), GraphError, "node 'a': forward_cost must be a finite number"),
    (_doc(backward_reads=["weights"]), GraphError, "backward_reads must be a subset of"),
    ('{"nodes": [{"name": "a"}, {"name": "a"}]}', GraphError, "two nodes are named 'a'"),
    ('{"nodes": [{"name": "a", "inputs": ["b"]}, {"name": "b", "inputs": ["a"]}]}',
     GraphError, "the graph has a cycle: a -> b -> a"),
    ('{"format": "ckpt.chain", "nodes": []}', GraphFormatError, "format must be 'ckpt.graph'"),
    ('{"nodes": [], "links": []}', GraphFormatError, "use TrainingGraph.from_json"),
])
def test_bad_graph_json(text, exc, message):
    with pytest.raises(exc) as e:
        Graph.from_json(text)
    assert message in str(e.value)


# ---- node-link training graphs (Checkmate's and Moccasin's files) -----------------------

CHECKMATE_STYLE = {  # the layout of Checkmate's published *_train_nx.json files
    "directed": True, "multigraph": False, "graph": {"name": "tiny (MLSys)"},
    "nodes": [{"name": "conv", "backward": False, "cost_cpu": 385, "cost_ram": 3288, "id": 0},
              {"name": "fc", "backward": False, "cost_cpu": 205, "cost_ram": 40, "id": 1},
              {"name": "Loss", "backward": True, "cost_cpu": 11, "cost_ram": 4, "id": 2},
              {"name": "fc_backward", "backward": True, "cost_cpu": 140, "cost_ram": 3288,
               "id": 3},
              {"name": "conv_backward", "backward": True, "cost_cpu": 390, "cost_ram": 0,
               "id": 4}],
    "links": [{"source": 0, "target": 1}, {"source": 0, "target": 3},
              {"source": 1, "target": 2}, {"source": 2, "target": 3},
              {"source": 0, "target": 4}, {"source": 3, "target": 4}]}

MOCCASIN_STYLE = {  # Moccasin's random layered graphs name their attributes in "graph"
    "directed": True, "multigraph": False,
    "graph": {"name": "random_layered_n3", "node_output_cost_tag": "out_cost",
              "node_duration_tag": "duration"},
    "nodes": [{"out_cost": 790, "duration": 0, "name": 0},
              {"out_cost": 4920, "duration": 0, "name": 1},
              {"out_cost": 1950, "duration": 514, "name": 2}],
    "links": [{"source": 0, "target": 2}, {"source": 2, "target": 1}]}


def test_reads_checkmate_node_link():
    t = TrainingGraph.from_json(json.dumps(CHECKMATE_STYLE))
    assert t.names == ("conv", "fc", "Loss", "fc_backward", "conv_backward")
    assert t.size.tolist() == [3288, 40, 4, 3288, 0]
    assert t.deps == ((), (0,), (1,), (0, 2), (0, 3))
    assert list(t.backward) == [False, False, True, True, True]


def test_reads_moccasin_node_link_with_ids_under_another_key():
    data = json.loads(json.dumps(MOCCASIN_STYLE))
    for nd in data["nodes"]:
        nd["id"] = nd["name"]
    t = TrainingGraph.from_dict(data)
    assert t.names == ("0", "2", "1")                  # renumbered in topological order
    assert t.cost.tolist() == [0, 514, 0] and t.size.tolist() == [790, 1950, 4920]


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["nodes"][1].pop("cost_ram"), "nodes[1] (id 1) lacks the memory field 'cost_ram'"),
    (lambda d: d["nodes"][1].update(cost_cpu=-3),
     "nodes[1] (id 1): cost_cpu must be a number >= 0"),
    (lambda d: d["links"].append({"source": 0, "target": 9}), "target 9 is not a node id"),
    (lambda d: d["links"].append({"source": 4, "target": 0}), "has a cycle through ids"),
    (lambda d: d["nodes"][2].update(id=1), "id 1 is used twice"),
    (lambda d: d.pop("links"), "field 'links' must be a list"),
])
def test_bad_node_link(edit, message):
    data = json.loads(json.dumps(CHECKMATE_STYLE))
    edit(data)
    with pytest.raises(GraphFormatError) as e:
        TrainingGraph.from_dict(data)
    assert message in str(e.value)


# ---- zoo -------------------------------------------------------------------------------

def test_zoo_graphs_are_dags_with_published_parameter_counts():
    # parameter counts from the papers / torchvision: VGG16 138.4M, ResNet-50 25.6M
    assert f"{graph_zoo.vgg16().param_bytes / 8 / 1e6:.1f}" == "138.4"
    assert f"{graph_zoo.resnet50().param_bytes / 8 / 1e6:.1f}" == "25.6"
    for name in sorted(graph_zoo.NAMES):
        g = graph_zoo.get(name)
        assert nx.is_directed_acyclic_graph(g.graph)
        t = g.training()
        assert len(t) == 2 * len(g)
    assert sum(n.name.endswith(".add") for n in graph_zoo.resnet50().nodes) == 16


def test_vgg16_sizes_match_the_chain_zoo():
    chain, graph = zoo.vgg16(batch=2), graph_zoo.vgg16(batch=2)
    outs = {s.name: s.output_bytes for s in chain.stages}
    for name, size in outs.items():
        assert graph[name].output_bytes == size
    assert graph.input_bytes == chain.input_bytes


def test_random_layered_is_seeded_and_sized():
    a, b = (graph_zoo.random_layered(nodes=200, width=6, skip=3, seed=s) for s in (1, 1))
    assert a == b and a != graph_zoo.random_layered(nodes=200, width=6, skip=3, seed=2)
    assert len(a.training()) == 200
    layers = nx.dag_longest_path_length(a.graph) + 1
    assert 200 / 2 / (2 * 6 - 1) <= layers <= 100
