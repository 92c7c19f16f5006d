"""Graph strategies over the cut points: cut the forward graph at its dominators into a chain
of stages, plan the chain with a chain strategy, and replay the chain plan on the training
graph. With chain ``optimal`` this is the strategy ``chain`` (the baseline ``dag_optimal``
must beat); with chain ``sqrt`` and ``greedy`` it is Chen et al.'s (2016) √n and greedy rules
on a general graph, which the paper applies at the same "candidate stage-splitting points".

Cuts: with a virtual source before the nodes that read the graph input and a virtual sink
after every node without a consumer, the cut nodes are the sink's dominators (every path
from the input to any output passes through them). Only a cut node's output crosses from
one stage to the next, so stage j's forward ops, backward ops and their values map onto a
chain stage: forward cost Σ forward, backward cost Σ backward, ω_x the cut value's size,
ω_x̄ the size of the stage's values a backward reads (and the cut value), transients from
replaying the stage alone. The
chain's δ sizes are its ω_x, which is not what the graph's gradients weigh, so the chain
plan is only a proposal: each is replayed by the graph simulator, and the chain budget is
searched for the cheapest replay within the graph budget.

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> g = Graph.from_chain(zoo.uniform(4, nbytes=10))
>>> [len(s) for s in cut_stages(g)]
[1, 1, 1, 1]
>>> ops = chain_baseline(g, budget=50)
>>> ops[:3]
[compute stage1, compute stage2, free stage1]
"""
import networkx as nx

from ..chain import Chain, Stage
from ..errors import BudgetError
from ..graph_simulate import GraphOp, simulate_graph
from ..graph_training import backward_name
from .dag_stages import eager_frees

__all__ = ["cut_stages", "reduce_to_chain", "chain_ops_on_graph", "chain_baseline"]

_SRC, _SNK = ("<input>",), ("<output>",)


def cut_stages(graph):
    """The stages (lists of node names in ``graph.order``) between consecutive cut nodes;
    each stage but the last ends with its cut node.

    >>> from ckpt.planner.graph import Graph, Node
    >>> g = Graph([Node("a"), Node("b", ["a"]), Node("c", ["a"]), Node("d", ["b", "c"])])
    >>> cut_stages(g)
    [['a'], ['b', 'c', 'd']]
    """
    g = graph.graph
    g.add_edges_from((_SRC, n.name) for n in graph.nodes if not n.inputs)
    g.add_edges_from((v, _SNK) for v in graph.order if g.out_degree(v) == 0)
    idom = nx.immediate_dominators(g, _SRC)
    cuts, v = [], idom[_SNK]
    while v != _SRC:
        cuts.append(v)
        v = idom[v]
    cuts.reverse()
    rank = {c: j for j, c in enumerate(cuts)}
    stage_of = {}
    for v in graph.order:                          # a node joins the stage after the last
        if v in rank:                              # cut that dominates it
            stage_of[v] = rank[v]
            continue
        u, j = idom[v], None
        while u != _SRC and j is None:
            j = rank.get(u)
            u = idom[u]
        stage_of[v] = 0 if j is None else j + 1
    stages = [[] for _ in range(len(cuts) + 1)]
    for v in graph.order:
        stages[stage_of[v]].append(v)
    return [s for s in stages if s]


def _replay(tg, ops):
    """Peak of a partial op list above the memory it starts from (resident deps assumed)."""
    idx = {nm: k for k, nm in enumerate(tg.names)}
    mem = peak = 0
    for op in ops:
        k = idx[op.name]
        if op.kind == "compute":
            peak = max(peak, mem + int(tg.size[k] + tg.transient[k]))
            mem += int(tg.size[k])
        else:
            mem -= int(tg.size[k])
    return peak


def reduce_to_chain(graph, tg=None):
    """(chain, stages): the chain of ``cut_stages`` (see the module doc).

    >>> from ckpt.planner.graph import Graph, Node
    >>> g = Graph([Node("a", [], 1, 2, 4), Node("b", ["a"], 1, 2, 8, 2)], input_bytes=4)
    >>> c, stages = reduce_to_chain(g)
    >>> c.x.tolist(), c.xbar.tolist()
    ([4, 4, 10], [0, 4, 10])
    """
    tg = graph.training() if tg is None else tg
    idx = {nm: k for k, nm in enumerate(tg.names)}
    stages = cut_stages(graph)
    out = []
    for j, names in enumerate(stages):
        last = j == len(stages) - 1
        fsz = [int(tg.size[idx[v]]) for v in names]
        x = fsz[-1] if not last else sum(fsz[i] for i, v in enumerate(names)
                                         if not tg.users[idx[v]] or
                                         all(tg.backward[u] for u in tg.users[idx[v]]))
        x = min(x, sum(fsz))
        plain = _forward_ops(tg, names, False, idx)
        saving = _forward_ops(tg, names, True, idx)
        back = _backward_ops(tg, names, idx, set())
        xbar = max(x, sum(f for f, v in zip(fsz, names)
                          if v == names[-1] or _saved(tg, v, idx)))
        out.append(Stage(
            "+".join(names) if len(names) <= 3 else f"{names[0]}..{names[-1]}",
            forward_cost=float(sum(graph[v].forward_cost for v in names)),
            backward_cost=float(sum(graph[v].backward_cost for v in names)),
            output_bytes=x, saved_bytes=xbar,
            forward_transient=max(0, _replay(tg, plain) - x),
            forward_save_transient=max(0, _replay(tg, saving) - xbar),
            # the chain counts the gradient a backward creates, δ_{j-1}, as the last cut's size
            backward_transient=max(0, _replay(tg, back) - (out[-1].output_bytes if out else 0))))
    return Chain(out, input_bytes=graph.input_bytes, param_bytes=graph.param_bytes,
                 name=graph.name, cost_unit=graph.cost_unit), stages


def _saved(tg, v, idx):
    """Whether a backward op reads the value of forward op ``v``."""
    return any(tg.backward[u] for u in tg.users[idx[v]])


def _forward_ops(tg, names, saving, idx):
    """Compute a stage's forward ops, freeing each value once the stage's later forward ops
    have read it, unless it is the stage's output or (when ``saving``) a backward reads it."""
    ops, alive, inside = [], [], set(names)
    pending = {v: sum(1 for u in tg.users[idx[v]] if tg.names[u] in inside and
                      not tg.backward[u]) for v in names}
    for v in names:
        ops.append(GraphOp("compute", v))
        alive.append(v)
        for i in tg.deps[idx[v]]:
            u = tg.names[i]
            if u in pending:
                pending[u] -= 1
        for u in list(alive):
            if u != names[-1] and pending[u] == 0 and not (saving and _saved(tg, u, idx)):
                ops.append(GraphOp("free", u))
                alive.remove(u)
    return ops


def _backward_ops(tg, names, idx, done):
    """Backward ops of a stage: its backwards in reverse order, each gradient freed once
    every reader ran (``done`` holds the backward nodes already run, updated)."""
    ops = []
    for v in reversed(names):
        k = idx[backward_name(v)]
        ops.append(GraphOp("compute", tg.names[k]))
        done.add(k)
        for i in (*tg.deps[k], k):
            if tg.backward[i] and all(u in done for u in tg.users[i]):
                ops.append(GraphOp("free", tg.names[i]))
    return ops


def chain_ops_on_graph(tg, stages, chain_ops):
    """Replay chain ops (``ckpt.planner.Op``) on the training graph: ``forward j`` computes
    stage j keeping only its cut value, ``forward_save j`` keeps all its values, ``backward
    j`` runs its backwards then frees its values, ``drop j`` frees the cut value; then every
    free moves up to right after the value's last read (``eager_frees``).

    >>> from ckpt.planner import zoo, plan
    >>> from ckpt.planner.graph import Graph
    >>> c = zoo.uniform(2, nbytes=1)
    >>> chain_ops_on_graph(Graph.from_chain(c).training(), [["stage1"], ["stage2"]],
    ...                    plan(c, "store_all").ops)[-3:]
    [free backward(stage2), free backward(stage1), free stage1]
    """
    idx = {nm: k for k, nm in enumerate(tg.names)}
    ops, done = [], set()
    for op in chain_ops:
        names = stages[op.stage - 1]
        if op.kind in ("forward", "forward_save"):
            ops += _forward_ops(tg, names, op.kind == "forward_save", idx)
        elif op.kind == "backward":
            ops += _backward_ops(tg, names, idx, done)
            ops += [GraphOp("free", v) for v in reversed(names)
                    if v == names[-1] or _saved(tg, v, idx)]
        else:
            ops.append(GraphOp("free", names[-1]))
    return eager_frees(tg, ops)


def chain_baseline(graph, budget=None, tg=None, strategy="optimal", tries=14, **options):
    """The cheapest replay within ``budget`` of a plan of the cut-point chain by the chain
    strategy ``strategy`` (a name in ``ckpt.planner.strategies.STRATEGIES``, given
    ``options``; see the module doc). The chain budget is bisected between the chain's least
    peak and store-all's for the largest whose replay fits (``tries`` chain plans at most; a
    plan already replayed is not replayed again, so a strategy that ignores its budget, like
    ``sqrt``, costs one replay). Raises ``BudgetError`` naming the graph strategy when not
    even the least-peak chain budget's plan fits.

    >>> from ckpt.planner import zoo
    >>> from ckpt.planner.graph import Graph
    >>> g = Graph.from_chain(zoo.uniform(3))
    >>> len(chain_baseline(g, budget=None)), len(chain_baseline(g, strategy="sqrt"))
    (12, 16)
    >>> chain_baseline(g, budget=1, strategy="sqrt")
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: strategy 'sqrt': no chain 'sqrt' plan of the cut stages replays within 1 bytes on graph 'uniform'; the least it reaches is 5242880 bytes (or plan it with dag_optimal, which is not bound to the cut points)
    """
    from ..simulate import simulate
    from . import STRATEGIES
    from .store_all import store_all
    chain_strategy = STRATEGIES[strategy]
    tg = graph.training() if tg is None else tg
    chain, stages = reduce_to_chain(graph, tg)
    if budget is None:
        return chain_ops_on_graph(tg, stages, chain_strategy(chain, **options))
    replays, best = {}, None

    def fits(chain_budget):
        nonlocal best
        chain_ops = tuple(chain_strategy(chain, budget=chain_budget, **options))
        if chain_ops not in replays:
            ops = chain_ops_on_graph(tg, stages, chain_ops)
            replays[chain_ops] = (simulate_graph(tg, ops), ops)
        sim, ops = replays[chain_ops]
        if sim.peak <= budget and (best is None or sim.compute < best[0]):
            best = (sim.compute, ops)
        return sim.peak <= budget

    lo, hi = chain.min_budget, simulate(chain, store_all(chain), timeline=False).peak
    if not fits(hi):
        if not fits(lo):
            name = "chain" if strategy == "optimal" else strategy
            least = min(sim.peak for sim, _ in replays.values())
            raise BudgetError(f"strategy {name!r}: no chain {strategy!r} plan of the cut stages "
                              f"replays within {budget} bytes on graph {graph.name!r}; the "
                              f"least it reaches is {least} bytes (or plan it with "
                              f"dag_optimal, which is not bound to the cut points)",
                              budget=budget, strategy=name, minimum=least)
        for _ in range(tries - 2):              # invariant: lo fits, hi does not
            if hi - lo <= max(1, hi // 1000):
                break
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return best[1]
