"""The planner's input for networks that are not chains: a DAG of forward ops.

Each ``Node`` is one forward op with its costs and sizes:

=====================  ================================================================
field                  meaning
=====================  ================================================================
``name``               unique name of the op (its output is named the same)
``inputs``             names of the ops whose outputs it reads (none: it reads the
                       graph's input, ``input_bytes``, owned by the caller)
``forward_cost``       cost of the forward op (unit: ``graph.cost_unit``)
``backward_cost``      cost of its backward op
``output_bytes``       bytes of its output (and of that output's gradient)
``saved_bytes``        extra bytes its backward needs beyond its output and inputs
                       (max-pool indices, normalization statistics); 0 for most ops
``backward_reads``     what its backward reads: a subset of ("inputs", "output")
``forward_transient``  bytes alive only while the forward op runs
``backward_transient`` bytes alive only while the backward op runs
=====================  ================================================================

The backward graph is derived (``training()``): the backward of op v runs after the
backwards of every op reading v's output (each hands it one gradient of ``output_bytes``),
reads what ``backward_reads`` names (and v's value whenever ``saved_bytes`` > 0), and
produces the gradients of v's inputs. The result is a ``TrainingGraph``
(``ckpt.planner.graph_training``), the form Checkmate and Moccasin publish their graphs in.

>>> g = Graph([Node("a", [], 1, 2, 8), Node("b", ["a"], 1, 2, 8), Node("c", ["a", "b"], 1, 2, 4)])
>>> len(g), sorted(g.graph.successors("a"))
(3, ['b', 'c'])
>>> Graph.from_json(g.to_json()) == g
True
"""
import json
import math
from dataclasses import dataclass, fields

import networkx as nx
import numpy as np

from .chain import load_json
from .errors import ChainFormatError, GraphError, GraphFormatError
from .units import format_size, parse_size

__all__ = ["Node", "Graph", "READS"]

_FORMAT = "ckpt.graph"
_VERSION = 1
READS = ("inputs", "output")


@dataclass(frozen=True)
class Node:
    """One forward op of a ``Graph`` (see the module doc for the fields).

    >>> Node("relu1", ["conv1"], 1.0, 1.0, 64, backward_reads=["output"]).backward_reads
    ('output',)
    """
    name: str
    inputs: tuple = ()
    forward_cost: float = 0.0
    backward_cost: float = 0.0
    output_bytes: int = 0
    saved_bytes: int = 0
    backward_reads: tuple = READS
    forward_transient: int = 0
    backward_transient: int = 0

    def __post_init__(self):
        for f in ("inputs", "backward_reads"):
            v = getattr(self, f)
            if isinstance(v, (list, tuple)):
                object.__setattr__(self, f, tuple(v))


_BYTES = ("output_bytes", "saved_bytes", "forward_transient", "backward_transient")
_COSTS = ("forward_cost", "backward_cost")


def _check_node(node):
    where = f"node {node.name!r}"
    if not isinstance(node.name, str) or not node.name:
        raise GraphError(f"a node's name must be a non-empty string, got {node.name!r}")
    vals = {"name": node.name}
    for f in _COSTS:
        v = getattr(node, f)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)) or v < 0:
            raise GraphError(f"{where}: {f} must be a finite number >= 0, got {v!r}")
        vals[f] = float(v)
    for f in _BYTES:
        try:
            vals[f] = parse_size(getattr(node, f), what=f"{where}: {f}", whole=True)
        except (TypeError, ValueError) as e:
            raise GraphError(str(e)) from None
    if not isinstance(node.inputs, tuple) or not all(isinstance(i, str) for i in node.inputs):
        raise GraphError(f"{where}: inputs must be a list of node names, got {node.inputs!r}")
    if len(set(node.inputs)) != len(node.inputs):
        raise GraphError(f"{where}: inputs name the same node twice: {list(node.inputs)}")
    reads = node.backward_reads
    if not isinstance(reads, tuple) or not set(reads) <= set(READS):
        raise GraphError(f"{where}: backward_reads must be a subset of {list(READS)}, "
                         f"got {reads!r}")
    vals["inputs"] = node.inputs
    vals["backward_reads"] = tuple(r for r in READS if r in reads)
    return Node(**vals)


class Graph:
    """A DAG of forward ops (``Node``s) with the graph's ``input_bytes`` (read by the nodes
    without inputs, alive throughout) and ``param_bytes`` (parameters and gradients, a
    constant); ``cost_unit`` names the unit of the costs. Nodes may come in any order;
    ``order`` is a topological order (ties broken by the given order).

    >>> g = Graph([Node("b", ["a"], 1, 1, 4), Node("a", [], 1, 1, 4)], input_bytes=2)
    >>> g.order
    ('a', 'b')
    >>> Graph([Node("a", ["b"]), Node("b", ["a"])])
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.GraphError: the graph has a cycle: a -> b -> a
    """

    def __init__(self, nodes, input_bytes=0, param_bytes=0, name="graph", cost_unit="unit"):
        nodes = list(nodes)
        if not nodes:
            raise GraphError("a graph needs at least one node")
        checked = {}
        for n in nodes:
            if not isinstance(n, Node):
                raise GraphError(f"expected a Node, got {type(n).__name__}")
            n = _check_node(n)
            if n.name in checked:
                raise GraphError(f"two nodes are named {n.name!r}; names must be unique")
            checked[n.name] = n
        for n in checked.values():
            for i in n.inputs:
                if i not in checked:
                    raise GraphError(f"node {n.name!r} reads {i!r}, which is not a node of "
                                     "the graph (nodes without inputs read the graph input)")
        try:
            self.input_bytes = parse_size(input_bytes, what="input_bytes", whole=True)
            self.param_bytes = parse_size(param_bytes, what="param_bytes", whole=True)
        except (TypeError, ValueError) as e:
            raise GraphError(str(e)) from None
        g = nx.DiGraph(name=str(name), cost_unit=str(cost_unit))
        for n in checked.values():
            g.add_node(n.name, **{f.name: getattr(n, f.name) for f in fields(Node)})
        for n in checked.values():
            g.add_edges_from((i, n.name) for i in n.inputs)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = [u for u, _ in cycle] + [cycle[0][0]]
            raise GraphError("the graph has a cycle: " + " -> ".join(path))
        rank = {k: r for r, k in enumerate(checked)}
        self.order = tuple(nx.lexicographical_topological_sort(g, key=rank.__getitem__))
        self.nodes = tuple(checked[k] for k in self.order)
        self.name, self.cost_unit = str(name), str(cost_unit)
        self._graph, self._by_name = g, {n.name: n for n in self.nodes}

    # ---- basic protocol -------------------------------------------------------------------
    def __len__(self):
        return len(self.nodes)

    def __getitem__(self, name):
        """The ``Node`` named ``name``.

        >>> Graph([Node("a", [], 1, 2)])["a"].backward_cost
        2.0
        """
        if name not in self._by_name:
            raise KeyError(f"no node named {name!r} in graph {self.name!r}")
        return self._by_name[name]

    def __eq__(self, other):
        return (isinstance(other, Graph) and self.nodes == other.nodes
                and (self.input_bytes, self.param_bytes, self.name, self.cost_unit)
                == (other.input_bytes, other.param_bytes, other.name, other.cost_unit))

    def __hash__(self):
        return hash((self.nodes, self.input_bytes, self.param_bytes, self.name))

    def __repr__(self):
        return (f"Graph({self.name!r}, {len(self)} ops, {self._graph.number_of_edges()} edges, "
                f"input {format_size(self.input_bytes)}, params+grads "
                f"{format_size(self.param_bytes)}, cost unit {self.cost_unit!r})")

    @property
    def graph(self):
        """The forward ops as a networkx ``DiGraph`` (edge u -> v: v reads u's output; node
        attributes = the ``Node`` fields). A copy: changing it changes nothing here.

        >>> Graph([Node("a"), Node("b", ["a"])]).graph.number_of_edges()
        1
        """
        return self._graph.copy()

    @property
    def store_all_compute(self):
        """Compute of one training step without recomputation: Σ forward + Σ backward.

        >>> Graph([Node("a", [], 1, 2), Node("b", ["a"], 3, 4)]).store_all_compute
        10.0
        """
        return float(sum(n.forward_cost + n.backward_cost for n in self.nodes))

    def training(self):
        """The training graph (forward and backward ops) the strategies plan: see
        ``TrainingGraph.from_graph``.

        >>> Graph([Node("a", [], 1, 2, 8), Node("b", ["a"], 1, 2, 8)]).training().names
        ('a', 'b', 'backward(b)', 'backward(a)')
        """
        from .graph_training import TrainingGraph
        return TrainingGraph.from_graph(self)

    @classmethod
    def from_chain(cls, chain):
        """The chain as a path graph: stage i is node ``chain.stages[i-1].name`` reading stage
        i-1; ``saved_bytes`` = ω_x̄ - ω_x; the forward transient is the larger of the chain's
        two (a graph op has one forward). Names are made unique with ``#i`` where needed.

        >>> from ckpt.planner import zoo
        >>> g = Graph.from_chain(zoo.uniform(3, nbytes=10))
        >>> [n.inputs for n in g.nodes], g.input_bytes
        ([(), ('stage1',), ('stage2',)], 10)
        """
        names = [st.name for st in chain.stages]
        if len(set(names)) != len(names):
            names = [f"{n}#{i}" for i, n in enumerate(names, 1)]
        nodes = []
        for i, st in enumerate(chain.stages):
            nodes.append(Node(names[i], (names[i - 1],) if i else (), st.forward_cost,
                              st.backward_cost, st.output_bytes,
                              st.saved_bytes - st.output_bytes, READS,
                              max(st.forward_transient, st.forward_save_transient),
                              st.backward_transient))
        return cls(nodes, input_bytes=chain.input_bytes, param_bytes=chain.param_bytes,
                   name=chain.name, cost_unit=chain.cost_unit)

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self):
        """The graph as plain data in the schema of ``to_json``.

        >>> Graph([Node("a", [], 1, 2, 8)]).to_dict()["nodes"][0]["output_bytes"]
        8
        """
        return {"format": _FORMAT, "version": _VERSION, "name": self.name,
                "cost_unit": self.cost_unit, "input_bytes": self.input_bytes,
                "param_bytes": self.param_bytes,
                "nodes": [{f.name: (list(v) if isinstance(v := getattr(n, f.name), tuple) else v)
                           for f in fields(Node)} for n in self.nodes]}

    def to_json(self, indent=1):
        """JSON text of the graph. Schema (version 1)::

            {"format": "ckpt.graph", "version": 1, "name": str, "cost_unit": str,
             "input_bytes": bytes, "param_bytes": bytes,
             "nodes": [{"name": str, "inputs": [str, ...], "forward_cost": number,
                        "backward_cost": number, "output_bytes": bytes,
                        "saved_bytes": bytes, "backward_reads": ["inputs", "output"],
                        "forward_transient": bytes, "backward_transient": bytes}, ...]}

        ``bytes`` is an integer or a string with a unit ("3MiB"). Only "nodes" and, per node,
        "name" are required; the rest default to 0, [] and ["inputs", "output"].

        >>> '"inputs": []' in Graph([Node("a")]).to_json(indent=None)
        True
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data):
        """A graph from plain data in the schema of ``to_json``; errors name the bad field.

        >>> Graph.from_dict({"nodes": [{"name": "a", "output_bytes": -1}]})
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.GraphError: node 'a': output_bytes must be non-negative, got -1
        >>> Graph.from_dict({"nodes": [{"name": "a", "outputs": 1}]})
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.GraphFormatError: nodes[0] ('a') has unknown field(s) ['outputs']; known: ['backward_cost', 'backward_reads', 'backward_transient', 'forward_cost', 'forward_transient', 'inputs', 'name', 'output_bytes', 'saved_bytes']
        """
        if not isinstance(data, dict):
            raise GraphFormatError(f"a graph must be a JSON object, got {type(data).__name__}")
        if "links" in data:
            raise GraphFormatError("this is a node-link training graph (it has 'links'): use "
                                   "TrainingGraph.from_json; Graph reads ckpt.graph JSON")
        if data.get("format", _FORMAT) != _FORMAT:
            raise GraphFormatError(f"format must be {_FORMAT!r}, got {data.get('format')!r}")
        if data.get("version", _VERSION) != _VERSION:
            raise GraphFormatError(f"unsupported graph version {data.get('version')!r} "
                                   f"(this ckpt reads version {_VERSION})")
        known = {"format", "version", "name", "cost_unit", "input_bytes", "param_bytes", "nodes"}
        extra = sorted(set(data) - known)
        if extra:
            raise GraphFormatError(f"unknown graph field(s) {extra}; known: {sorted(known)}")
        for key in ("name", "cost_unit"):
            if key in data and not isinstance(data[key], str):
                raise GraphFormatError(f"graph field {key!r} must be a string, got "
                                       f"{type(data[key]).__name__} {data[key]!r}")
        if not isinstance(data.get("nodes"), list):
            raise GraphFormatError("'nodes' must be a list of node objects")
        names = {f.name for f in fields(Node)}
        nodes = []
        for i, nd in enumerate(data["nodes"]):
            if not isinstance(nd, dict):
                raise GraphFormatError(f"nodes[{i}] must be an object, got {type(nd).__name__}")
            if not isinstance(nd.get("name"), str):
                raise GraphFormatError(f"nodes[{i}] needs a 'name' string, got "
                                       f"{nd.get('name')!r}")
            unknown = sorted(set(nd) - names)
            if unknown:
                raise GraphFormatError(f"nodes[{i}] ({nd['name']!r}) has unknown field(s) "
                                       f"{unknown}; known: {sorted(names)}")
            for key in ("inputs", "backward_reads"):
                if key in nd and not isinstance(nd[key], list):
                    raise GraphFormatError(f"nodes[{i}] ({nd['name']!r}) field {key!r} must "
                                           f"be a list, got {type(nd[key]).__name__}")
            nodes.append(Node(**nd))
        return cls(nodes, input_bytes=data.get("input_bytes", 0),
                   param_bytes=data.get("param_bytes", 0), name=data.get("name", "graph"),
                   cost_unit=data.get("cost_unit", "unit"))

    @classmethod
    def from_json(cls, text):
        """A graph from JSON text; syntax errors name the line and column.

        >>> Graph.from_json('{"nodes": [}')
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.GraphFormatError: malformed graph JSON at line 1, column 12: Expecting value
        """
        return cls.from_dict(read_json(text, "graph"))


def read_json(text, what):
    """``load_json`` with its errors as ``GraphFormatError``.

    >>> read_json('[1]', 'graph')
    [1]
    """
    try:
        return load_json(text, what)
    except ChainFormatError as e:
        raise GraphFormatError(str(e), line=e.line, column=e.column) from None
