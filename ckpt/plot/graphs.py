"""``graph`` and ``to_dot``: a recorded graph as torchviz's ``make_dot`` draws it.

For an autograd tensor (or a list of them), walking ``grad_fn.next_functions``:

- op nodes (grey): each ``grad_fn`` by its name, with the bytes it saved for backward
  (``Node.saved_bytes()``);
- saved buffers (orange): each distinct numpy buffer some node keeps for backward, with its
  bytes, joined by dashed edges to every node keeping it (views share one buffer);
- leaf tensors requiring grad (blue), in place of their ``AccumulateGrad`` node: shape,
  and name when ``params`` maps names to tensors (``dict(model.named_parameters())``);
- the outputs (green), with their shapes.

For a planner ``Chain`` the same vocabulary: the input x_0 (blue), one op node per stage
with its costs, its saved bytes x̄_i as an orange node, edges labelled with the bytes
of the activation x_{i-1} they carry, and the output x_L (green).

``graph_data`` builds a networkx ``DiGraph`` (node attributes ``kind``, ``label``,
``bytes``); ``to_dot`` prints it as Graphviz DOT text (no Graphviz binary needed); ``graph``
draws it with networkx and matplotlib, inputs at the top.
"""
import networkx as nx

from ..units import format_size, printable
from ._figure import axes

__all__ = ["graph", "to_dot", "graph_data", "STYLE"]

# kind -> (Graphviz fill color, DOT shape, the same color for matplotlib)
STYLE = {"op": ("lightgrey", "box", "#d3d3d3"), "saved": ("orange", "box", "#ffa500"),
         "leaf": ("lightblue", "box", "#add8e6"),
         "output": ("darkolivegreen1", "box", "#caff70"),
         "input": ("lightblue", "box", "#add8e6")}


def _shape(t):
    return str(tuple(t.shape))


def _tensor_graph(roots, params):
    from ..autograd.graph import walk
    from ..autograd.node import AccumulateGrad
    names = {id(t): n for n, t in (params or {}).items()}
    g = nx.DiGraph()
    for k, t in enumerate(roots):
        if t.grad_fn is None and not t.requires_grad:
            raise ValueError("graph: the tensor has no recorded graph (requires_grad=False and "
                             "no grad_fn); build it with grad mode on from a tensor that "
                             "requires grad")
    ids = {}

    def nid(node):
        if node not in ids:
            ids[node] = f"n{len(ids)}"
        return ids[node]

    for node in walk(list(roots)):
        if isinstance(node, AccumulateGrad):
            leaf = node.variable  # drawn as the leaf tensor itself, as torchviz does
            if leaf is None:
                g.add_node(nid(node), kind="op", label="AccumulateGrad", bytes=0,
                           name="AccumulateGrad")
            else:
                head = names.get(id(leaf), "leaf")
                g.add_node(nid(node), kind="leaf", label=f"{head}\n{_shape(leaf)}",
                           bytes=int(leaf.data.nbytes), name=head)
            continue
        saved = node.saved_buffers()
        nbytes = sum(saved.values())
        label = node.name() + (f"\nsaved {format_size(nbytes)}" if nbytes else "")
        g.add_node(nid(node), kind="op", label=label, bytes=int(nbytes), name=node.name())
        for buf, size in saved.items():
            sid = f"b{buf}"
            if sid not in g:
                g.add_node(sid, kind="saved", label=f"saved\n{format_size(size)}",
                           bytes=int(size), name="saved")
            g.add_edge(sid, nid(node), style="dashed", label="")
        for nxt, _ in node.next_functions:
            if nxt is not None:
                g.add_edge(nid(nxt), nid(node), style="solid", label="")
    for k, t in enumerate(roots):
        oid = f"out{k}"
        g.add_node(oid, kind="output", label=f"output\n{_shape(t)}", bytes=int(t.data.nbytes),
                   name="output")
        if t.grad_fn is not None:
            g.add_edge(nid(t.grad_fn), oid, style="solid", label="")
    # renumber buffer ids (memory addresses) to stable names
    return nx.relabel_nodes(g, {n: f"s{k}" for k, n in
                                enumerate(n for n in g if str(n).startswith("b"))})


def _chain_graph(chain):
    g = nx.DiGraph(name=printable(chain.name), title=(
        f"chain {chain.name!r}: {len(chain)} stages, params + grads "
        f"{format_size(chain.param_bytes)}, "
        f"{format_size(int(chain.xbar.sum()))} saved when every stage is stored"))
    g.add_node("x0", kind="input", label=f"x0 (input)\n{format_size(chain.input_bytes)}",
               bytes=int(chain.input_bytes), name="input")
    prev = "x0"
    unit = printable(chain.cost_unit)
    for i, st in enumerate(chain.stages, 1):
        sid = f"stage{i}"
        g.add_node(sid, kind="op",
                   label=(f"{i}: {printable(st.name)}\nfwd {st.forward_cost:.3g} {unit}, "
                          f"bwd {st.backward_cost:.3g} {unit}"),
                   bytes=int(st.saved_bytes), name=printable(st.name))
        g.add_edge(prev, sid, style="solid", label=format_size(chain.x[i - 1]))
        vid = f"saved{i}"
        g.add_node(vid, kind="saved", label=f"x̄{i} saved\n{format_size(st.saved_bytes)}",
                   bytes=int(st.saved_bytes), name=f"x̄{i}")
        g.add_edge(sid, vid, style="dashed", label="")
        prev = sid
    L = len(chain)
    g.add_node(f"x{L}", kind="output", label=f"x{L} (output)\n{format_size(chain.x[L])}",
               bytes=int(chain.x[L]), name="output")
    g.add_edge(prev, f"x{L}", style="solid", label=format_size(chain.x[L]))
    return g


def graph_data(obj, params=None):
    """The graph of ``obj`` (a ``Tensor``, a list of Tensors, or a planner ``Chain``) as a
    networkx ``DiGraph``; every node has ``kind`` (op, saved, leaf, input, output),
    ``label`` (the text drawn) and ``bytes``; edges have ``style`` and ``label``.

    >>> import ckpt
    >>> x = ckpt.ones(4, requires_grad=True)
    >>> g = graph_data((x.exp() * 2).sum())
    >>> sorted(d["name"] for _, d in g.nodes(data=True) if d["kind"] == "op")
    ['ExpBackward0', 'MulBackward0', 'SumBackward0']
    >>> [d["bytes"] for _, d in g.nodes(data=True) if d["kind"] == "saved"]
    [16]
    """
    from ..autograd.tensor import Tensor
    from ..planner.chain import Chain
    if isinstance(obj, Chain):
        return _chain_graph(obj)
    roots = [obj] if isinstance(obj, Tensor) else list(obj) if isinstance(obj, (list, tuple)) \
        else None
    if not roots or not all(isinstance(t, Tensor) for t in roots):
        raise TypeError("graph needs a ckpt Tensor, a list of Tensors or a ckpt.planner.Chain, "
                        f"got {type(obj).__name__}")
    return _tensor_graph(roots, params)


def _q(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(obj, params=None, name=None):
    """Graphviz DOT text of ``graph_data(obj)`` (torchviz's colors; render it with
    ``dot -Tpng``, or paste it into any Graphviz viewer).

    >>> from ckpt import planner
    >>> print(to_dot(planner.zoo.uniform(1, nbytes=8)))  # doctest: +NORMALIZE_WHITESPACE
    digraph "uniform" {
      graph [rankdir=TB, ranksep=0.2];
      node [style=filled, fontname=monospace, fontsize=10, height=0.2];
      "x0" [label="x0 (input)\\n8 B", fillcolor=lightblue, shape=box];
      "stage1" [label="1: stage1\\nfwd 1 unit, bwd 2 unit", fillcolor=lightgrey, shape=box];
      "saved1" [label="x̄1 saved\\n8 B", fillcolor=orange, shape=box];
      "x1" [label="x1 (output)\\n8 B", fillcolor=darkolivegreen1, shape=box];
      "x0" -> "stage1" [label="8 B"];
      "stage1" -> "saved1" [style=dashed];
      "stage1" -> "x1" [label="8 B"];
    }
    """
    g = obj if isinstance(obj, nx.DiGraph) else graph_data(obj, params)
    title = name or g.graph.get("name") or "ckpt"
    lines = [f"digraph {_q(title)} {{", "  graph [rankdir=TB, ranksep=0.2];",
             "  node [style=filled, fontname=monospace, fontsize=10, height=0.2];"]
    for n, d in g.nodes(data=True):
        fill, shape, _ = STYLE[d["kind"]]
        lines.append(f"  {_q(n)} [label={_q(d['label'])}, fillcolor={fill}, shape={shape}];")
    for a, b, d in g.edges(data=True):
        attrs = []
        if d.get("label"):
            attrs.append(f"label={_q(d['label'])}")
        if d.get("style", "solid") != "solid":
            attrs.append(f"style={d['style']}")
        lines.append(f"  {_q(a)} -> {_q(b)}" + (f" [{', '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines)


def _layout(g):
    """Positions: rows by longest path over solid edges (sources pulled down to just above
    their first consumer, saved buffers in the row of the op keeping them), then within
    each row nodes ordered by the mean position of their neighbours (a few sweeps), which
    keeps edges short and mostly uncrossed."""
    solid = nx.DiGraph()
    solid.add_nodes_from(g)
    solid.add_edges_from((a, b) for a, b, d in g.edges(data=True) if d.get("style") == "solid")
    row = {}
    for n in nx.topological_sort(solid):
        preds = list(solid.predecessors(n))
        row[n] = 1 + max(row[p] for p in preds) if preds else 0
    for n in solid:
        succs = list(solid.successors(n))
        if not list(solid.predecessors(n)) and succs:
            row[n] = min(row[m] for m in succs) - 1
    for n, d in g.nodes(data=True):
        if d["kind"] == "saved":
            near = [m for m in list(g.successors(n)) + list(g.predecessors(n))
                    if g.nodes[m]["kind"] != "saved"]
            if near:
                row[n] = min(row[m] for m in near)
    top = min(row.values()) if row else 0
    rows = {}
    for n in g:
        rows.setdefault(row[n] - top, []).append(n)
    x = {}
    for r in sorted(rows):
        for k, n in enumerate(rows[r]):
            x[n] = k - (len(rows[r]) - 1) / 2.0
    for _ in range(4):
        for r in sorted(rows):
            def key(n):
                near = list(g.predecessors(n)) or list(g.successors(n))
                return sum(x[m] for m in near) / len(near) if near else x[n]
            rows[r].sort(key=lambda n: (key(n), g.nodes[n]["kind"] == "saved"))
            for k, n in enumerate(rows[r]):
                x[n] = k - (len(rows[r]) - 1) / 2.0
    return {n: (x[n], -float(row[n] - top)) for n in g}, rows


def graph(obj, params=None, ax=None, title=None):
    """Draw ``graph_data(obj)`` with networkx + matplotlib: rows from inputs (top) to outputs
    (bottom), boxes colored as in ``STYLE``, saved buffers joined by dashed edges. Returns
    the Figure (never shown); the drawn labels are the nodes' ``label`` attributes.

    >>> import ckpt
    >>> x = ckpt.ones(4, requires_grad=True)
    >>> fig = graph((x.exp() * 2).sum())
    >>> sorted(t.get_text() for t in fig.axes[0].texts)[:3]
    ['ExpBackward0\\nsaved 16 B', 'MulBackward0', 'SumBackward0']
    """
    g = obj if isinstance(obj, nx.DiGraph) else graph_data(obj, params)
    pos, rows = _layout(g)
    depth = max(rows) + 1 if rows else 1
    width = max(len(v) for v in rows.values()) if rows else 1
    fig, (ax,) = axes(ax, figsize=(min(3 + 2.2 * width, 24), min(1.5 + 0.8 * depth, 40)))
    solid = [(a, b) for a, b, d in g.edges(data=True) if d.get("style") == "solid"]
    dashed = [(a, b) for a, b, d in g.edges(data=True) if d.get("style") != "solid"]
    nx.draw_networkx_edges(g, pos, edgelist=solid, ax=ax, arrows=True, arrowsize=10,
                           node_size=1800, edge_color="#444444")
    nx.draw_networkx_edges(g, pos, edgelist=dashed, ax=ax, arrows=False, style="dashed",
                           edge_color="#e08000", node_size=1800)
    edge_labels = {(a, b): d["label"] for a, b, d in g.edges(data=True) if d.get("label")}
    if edge_labels:
        nx.draw_networkx_edge_labels(g, pos, edge_labels=edge_labels, ax=ax, font_size=7,
                                     rotate=False)
    for kind, (_, _, fill) in STYLE.items():
        nodes = [n for n, d in g.nodes(data=True) if d["kind"] == kind]
        if nodes:
            nx.draw_networkx_labels(g, pos, labels={n: g.nodes[n]["label"] for n in nodes},
                                    ax=ax, font_size=7, font_family="monospace",
                                    bbox={"boxstyle": "round,pad=0.3", "fc": fill,
                                          "ec": "#555555", "lw": 0.5})
    xs = [p[0] for p in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-(depth - 1) - 0.6, 0.6)
    ax.set_axis_off()
    total = sum(d["bytes"] for _, d in g.nodes(data=True) if d["kind"] == "saved")
    ax.set_title(title or g.graph.get("title") or
                 f"recorded graph: {format_size(total)} saved for backward", fontsize=10)
    return fig
