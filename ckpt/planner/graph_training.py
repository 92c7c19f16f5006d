"""The training graph the graph strategies plan: forward and backward ops as one DAG, each
op producing one value (Checkmate's model, Jain et al. 2020, section 3).

Node k (0-based, numbered in a topological order) has a ``cost``, the ``size`` in bytes of
the value it produces, a ``transient`` (bytes alive only while it runs) and ``deps``: the
nodes whose values it reads, all numbered below k. ``constant_bytes`` (the input, the
parameters and their gradients) are alive throughout. Computing k needs every dep's value
resident and adds ``size[k]``; freeing a value gives its bytes back (``graph_simulate``).

Published graphs (Checkmate's and Moccasin's) are networkx node-link JSON with this model:
nodes with ``cost_cpu`` and ``cost_ram`` (Checkmate) or the attributes a Moccasin graph names
in ``node_duration_tag`` and ``node_output_cost_tag``; ``from_json`` reads both, and
``to_json`` writes Checkmate's form.

>>> from ckpt.planner.graph import Graph, Node
>>> t = Graph([Node("a", [], 1, 2, 8), Node("b", ["a"], 1, 2, 4)], input_bytes=2).training()
>>> t.names, t.size.tolist(), t.deps
(('a', 'b', 'backward(b)', 'backward(a)'), [8, 4, 8, 0], ((), (0,), (0, 1), (0, 2)))
>>> TrainingGraph.from_json(t.to_json()) == t
True
"""
import json
import math

import networkx as nx
import numpy as np

from .errors import GraphError, GraphFormatError
from .graph import read_json
from .units import format_size, parse_size

__all__ = ["TrainingGraph", "backward_name"]


def backward_name(name):
    """The training-graph name of forward op ``name``'s backward.

    >>> backward_name("conv1")
    'backward(conv1)'
    """
    return f"backward({name})"


class TrainingGraph:
    """Forward and backward ops in one DAG (see the module doc). ``deps[k]`` lists node
    indices below k (kept sorted); ``backward`` marks backward ops (informative: the rules
    are the same for both).

    >>> t = TrainingGraph(["x", "y"], cost=[1, 2], size=[4, 4], deps=[[], [0]])
    >>> t.users, t.store_all_compute
    (((1,), ()), 3.0)
    >>> TrainingGraph(["x", "y"], cost=[1, 2], size=[4, 4], deps=[[1], []])
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.GraphError: node 0 ('x') reads node 1 ('y'), which is not before it: deps must point to earlier nodes (number the nodes in a topological order)
    """

    def __init__(self, names, cost, size, deps, backward=None, transient=None,
                 constant_bytes=0, name="training graph", cost_unit="unit"):
        self.names = tuple(str(n) for n in names)
        n = len(self.names)
        if n == 0:
            raise GraphError("a training graph needs at least one node")
        if len(set(self.names)) != n:
            dup = sorted({x for x in self.names if self.names.count(x) > 1})
            raise GraphError(f"node names must be unique; repeated: {dup[:5]}")
        self.cost = self._numbers(cost, "cost", float)
        self.size = self._numbers(size, "size", int)
        self.transient = self._numbers(np.zeros(n) if transient is None else transient,
                                       "transient", int)
        self.backward = np.zeros(n, bool) if backward is None else np.array(backward, bool)
        if len(deps) != n or self.backward.shape != (n,):
            raise GraphError(f"deps and backward need one entry per node ({n})")
        checked = []
        for k, d in enumerate(deps):
            d = tuple(int(i) for i in d)
            for i in d:
                if not 0 <= i < k:
                    other = f" ({self.names[i]!r})" if 0 <= i < n else ""
                    raise GraphError(f"node {k} ({self.names[k]!r}) reads node {i}{other}, "
                                     "which is not before it: deps must point to earlier "
                                     "nodes (number the nodes in a topological order)")
            if len(set(d)) != len(d):
                raise GraphError(f"node {k} ({self.names[k]!r}) lists a dep twice: {list(d)}")
            checked.append(tuple(sorted(d)))
        self.deps = tuple(checked)
        users = [[] for _ in range(n)]
        for k, d in enumerate(self.deps):
            for i in d:
                users[i].append(k)
        self.users = tuple(tuple(u) for u in users)
        try:
            self.constant_bytes = parse_size(constant_bytes, what="constant_bytes", whole=True)
        except (TypeError, ValueError) as e:
            raise GraphError(str(e)) from None
        self.name, self.cost_unit = str(name), str(cost_unit)
        for a in (self.cost, self.size, self.transient, self.backward):
            a.setflags(write=False)

    def _numbers(self, values, what, kind):
        arr = np.asarray(values, dtype=float)
        if arr.shape != (len(self.names),):
            raise GraphError(f"{what} needs one number per node ({len(self.names)}), got "
                             f"shape {arr.shape}")
        bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
        if kind is int:
            bad = np.union1d(bad, np.flatnonzero(np.isfinite(arr) & (arr != np.round(arr))))
        if bad.size:
            k = int(bad[0])
            whole = "a whole number of bytes " if kind is int else "a finite number "
            raise GraphError(f"node {k} ({self.names[k]!r}): {what} must be {whole}>= 0, got "
                             f"{values[k]!r}")
        return arr.astype(np.int64) if kind is int else arr

    def __len__(self):
        return len(self.names)

    def __eq__(self, other):
        return (isinstance(other, TrainingGraph) and self.names == other.names
                and self.deps == other.deps and np.array_equal(self.cost, other.cost)
                and np.array_equal(self.size, other.size)
                and np.array_equal(self.transient, other.transient)
                and np.array_equal(self.backward, other.backward)
                and (self.constant_bytes, self.name, self.cost_unit)
                == (other.constant_bytes, other.name, other.cost_unit))

    def __repr__(self):
        return (f"TrainingGraph({self.name!r}, {len(self)} nodes "
                f"({int(self.backward.sum())} backward), {sum(map(len, self.deps))} edges, "
                f"constant {format_size(self.constant_bytes)}, cost unit {self.cost_unit!r})")

    @property
    def store_all_compute(self):
        """Compute with every node run once: Σ cost.

        >>> TrainingGraph(["x"], cost=[2.5], size=[1], deps=[[]]).store_all_compute
        2.5
        """
        return float(self.cost.sum())

    def index(self, name):
        """The index of the node named ``name``.

        >>> TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]]).index("y")
        1
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no node named {name!r} in training graph {self.name!r}") from None

    @property
    def graph(self):
        """The training graph as a networkx ``DiGraph`` (nodes = indices, attributes name,
        cost, size, transient, backward).

        >>> TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]]).graph.edges
        OutEdgeView([(0, 1)])
        """
        g = nx.DiGraph(name=self.name, cost_unit=self.cost_unit,
                       constant_bytes=self.constant_bytes)
        for k, nm in enumerate(self.names):
            g.add_node(k, name=nm, cost=float(self.cost[k]), size=int(self.size[k]),
                       transient=int(self.transient[k]), backward=bool(self.backward[k]))
        g.add_edges_from((i, k) for k, d in enumerate(self.deps) for i in d)
        return g

    # ---- from a forward graph -------------------------------------------------------------
    @classmethod
    def from_graph(cls, graph):
        """The training graph of a forward ``Graph``: its ops in ``graph.order``, then their
        backwards in reverse. backward(v) costs ``backward_cost``, produces the gradients of
        v's inputs (Σ of their ``output_bytes``; nothing for the graph input), and reads the
        backwards of v's consumers, v's inputs when ``backward_reads`` has "inputs", and v's
        value when it has "output", v saves extra bytes, or v has no consumer (its output is
        a loss: the backward starts from it). A forward op's value is its
        output plus ``saved_bytes`` (the value the backward reads).

        >>> from ckpt.planner.graph import Graph, Node
        >>> t = TrainingGraph.from_graph(Graph([Node("a", [], 1, 2, 8, 4)], input_bytes=3))
        >>> t.size.tolist(), t.constant_bytes
        ([12, 0], 3)
        """
        order = graph.order
        idx = {nm: k for k, nm in enumerate(order)}
        n = len(order)
        bidx = {nm: 2 * n - 1 - k for k, nm in enumerate(order)}
        names = list(order) + [backward_name(nm) for nm in reversed(order)]
        taken = set(order)
        clash = [b for b in names[n:] if b in taken]
        if clash:
            raise GraphError(f"node {clash[0]!r} clashes with the name of a backward op; "
                             "rename it")
        g = graph._graph
        cost, size, trans, deps = [], [], [], []
        for nm in order:
            nd = graph[nm]
            cost.append(nd.forward_cost)
            size.append(nd.output_bytes + nd.saved_bytes)
            trans.append(nd.forward_transient)
            deps.append([idx[i] for i in nd.inputs])
        for nm in reversed(order):
            nd = graph[nm]
            cost.append(nd.backward_cost)
            size.append(sum(graph[i].output_bytes for i in nd.inputs))
            trans.append(nd.backward_transient)
            d = [bidx[w] for w in sorted(g.successors(nm), key=idx.__getitem__)]
            if "inputs" in nd.backward_reads:
                d += [idx[i] for i in nd.inputs]
            if "output" in nd.backward_reads or nd.saved_bytes > 0 or not g.out_degree(nm):
                d.append(idx[nm])
            deps.append(d)
        return cls(names, cost, size, deps, backward=[False] * n + [True] * n,
                   transient=trans, constant_bytes=graph.input_bytes + graph.param_bytes,
                   name=graph.name, cost_unit=graph.cost_unit)

    # ---- node-link JSON -------------------------------------------------------------------
    def to_dict(self):
        """networkx node-link data in Checkmate's attribute names (``cost_cpu``,
        ``cost_ram``, ``backward``), plus ``transient`` and the graph's ``constant_bytes``.

        >>> TrainingGraph(["x"], cost=[1], size=[4], deps=[[]]).to_dict()["nodes"]
        [{'id': 0, 'name': 'x', 'backward': False, 'cost_cpu': 1.0, 'cost_ram': 4, 'transient': 0}]
        """
        return {"directed": True, "multigraph": False,
                "graph": {"name": self.name, "cost_unit": self.cost_unit,
                          "constant_bytes": self.constant_bytes},
                "nodes": [{"id": k, "name": nm, "backward": bool(self.backward[k]),
                           "cost_cpu": float(self.cost[k]), "cost_ram": int(self.size[k]),
                           "transient": int(self.transient[k])}
                          for k, nm in enumerate(self.names)],
                "links": [{"source": i, "target": k}
                          for k, d in enumerate(self.deps) for i in d]}

    def to_json(self, indent=None):
        """JSON text of ``to_dict()``.

        >>> '"cost_ram": 4' in TrainingGraph(["x"], cost=[1], size=[4], deps=[[]]).to_json()
        True
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data):
        """A training graph from node-link data (see the module doc). Nodes are renumbered
        in a topological order (ties: the file's order); a node's ``name`` defaults to its id.

        >>> TrainingGraph.from_dict({"nodes": [{"id": 0, "cost_cpu": 1}], "links": []})
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.GraphFormatError: nodes[0] (id 0) lacks the memory field 'cost_ram' (bytes of the value the node produces)
        """
        if not isinstance(data, dict):
            raise GraphFormatError(f"a node-link graph must be a JSON object, got "
                                   f"{type(data).__name__}")
        for key in ("nodes", "links"):
            if not isinstance(data.get(key), list):
                hint = (" (a ckpt.graph of forward ops: use Graph.from_json)"
                        if data.get("format") == "ckpt.graph" else "")
                raise GraphFormatError(f"node-link graph field {key!r} must be a list{hint}")
        if data.get("directed") is False:
            raise GraphFormatError("node-link graph says 'directed': false; a training graph "
                                   "is directed")
        meta = data.get("graph", {})
        if not isinstance(meta, dict):
            raise GraphFormatError("node-link field 'graph' must be an object")
        nodes = data["nodes"]
        first = next((nd for nd in nodes if isinstance(nd, dict)), {})
        mem = meta.get("node_output_cost_tag", "cost_ram" if "cost_ram" in first else
                       "out_cost" if "out_cost" in first else "cost_ram")
        cpu = meta.get("node_duration_tag", "cost_cpu" if "cost_cpu" in first else
                       "duration" if "duration" in first else "cost_cpu")
        g = nx.DiGraph()
        rank = {}
        for k, nd in enumerate(nodes):
            if not isinstance(nd, dict) or "id" not in nd:
                raise GraphFormatError(f"nodes[{k}] must be an object with an 'id'")
            where = f"nodes[{k}] (id {nd['id']!r})"
            vals = {}
            for field, what, why in ((mem, "memory", "bytes of the value the node produces"),
                                     (cpu, "cost", "compute of the node")):
                if field not in nd:
                    raise GraphFormatError(f"{where} lacks the {what} field {field!r} ({why})")
                v = nd[field]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                        not math.isfinite(v) or v < 0:
                    raise GraphFormatError(f"{where}: {field} must be a number >= 0, got {v!r}")
                vals[what] = v
            if isinstance(vals["memory"], float) and not vals["memory"].is_integer():
                raise GraphFormatError(f"{where}: {mem} must be a whole number of bytes, got "
                                       f"{vals['memory']!r}")
            t = nd.get("transient", 0)
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise GraphFormatError(f"{where}: transient must be a whole number of bytes "
                                       f">= 0, got {t!r}")
            key = json.dumps(nd["id"])
            if key in rank:
                raise GraphFormatError(f"{where}: id {nd['id']!r} is used twice")
            rank[key] = k
            g.add_node(key, name=str(nd.get("name", nd["id"])), cost=float(vals["cost"]),
                       size=int(vals["memory"]), transient=t,
                       backward=bool(nd.get("backward", False)))
        for j, ln in enumerate(data["links"]):
            if not isinstance(ln, dict) or "source" not in ln or "target" not in ln:
                raise GraphFormatError(f"links[{j}] must be an object with 'source' and "
                                       "'target'")
            s, t = json.dumps(ln["source"]), json.dumps(ln["target"])
            for end, key in (("source", s), ("target", t)):
                if key not in rank:
                    raise GraphFormatError(f"links[{j}]: {end} {ln[end]!r} is not a node id")
            g.add_edge(s, t)
        try:
            order = list(nx.lexicographical_topological_sort(g, key=rank.__getitem__))
        except nx.NetworkXUnfeasible:
            cyc = [json.loads(u) for u, _ in nx.find_cycle(g)]
            raise GraphFormatError(f"the node-link graph has a cycle through ids {cyc}; a "
                                   "training graph is acyclic") from None
        pos = {key: k for k, key in enumerate(order)}
        at = [g.nodes[key] for key in order]
        deps = [sorted(pos[u] for u in g.predecessors(key)) for key in order]
        try:
            const = parse_size(meta.get("constant_bytes", 0), what="graph.constant_bytes",
                               whole=True)
        except (TypeError, ValueError) as e:
            raise GraphFormatError(str(e)) from None
        return cls([a["name"] for a in at], [a["cost"] for a in at], [a["size"] for a in at],
                   deps, backward=[a["backward"] for a in at],
                   transient=[a["transient"] for a in at], constant_bytes=const,
                   name=str(meta.get("name", "training graph")),
                   cost_unit=str(meta.get("cost_unit", "unit")))

    @classmethod
    def from_json(cls, text):
        """A training graph from node-link JSON text (Checkmate's or Moccasin's files).

        >>> TrainingGraph.from_json('{"nodes": [{"id": 0, "out_cost": 8, "duration": 2}], '
        ...                         '"links": []}').size.tolist()
        [8]
        """
        return cls.from_dict(read_json(text, "training graph"))
