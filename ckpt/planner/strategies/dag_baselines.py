"""Baseline graph strategies, in stage form (``dag_stages``): ``dag_store_all`` keeps every
value until its last reader; ``dag_recompute_all`` keeps values only for readers of their
own kind (forward values for forward ops, gradients for backward ops) and recomputes the
forward values each backward op reads from the input.

>>> from ckpt.planner import zoo
>>> from ckpt.planner.graph import Graph
>>> from ckpt.planner.graph_simulate import simulate_graph
>>> t = Graph.from_chain(zoo.uniform(4)).training()
>>> [simulate_graph(t, f(t)).compute for f in (dag_store_all, dag_recompute_all)]
[12.0, 22.0]
"""
from .dag_stages import closure, stage_ops

__all__ = ["dag_store_all", "dag_recompute_all", "kept_for"]


def kept_for(tg, same_kind):
    """S[t] for every stage: the values computed before t that a node from t on reads
    (only readers of the value's own kind when ``same_kind``).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(list("xyz"), cost=[1] * 3, size=[1] * 3, deps=[[], [0], [0, 1]])
    >>> kept_for(tg, False)
    [set(), {0}, {0, 1}]
    """
    S = []
    for t in range(len(tg)):
        S.append({i for i in range(t) if any(
            j >= t and (not same_kind or tg.backward[j] == tg.backward[i])
            for j in tg.users[i])})
    return S


def dag_store_all(tg, budget=None):
    """Every node once, each value kept until its last reader ran.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> dag_store_all(TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]]))
    [compute x, compute y, free x, free y]
    """
    return stage_ops(tg, [[t] for t in range(len(tg))], kept_for(tg, False))


def dag_recompute_all(tg, budget=None):
    """Forward values are kept only for forward readers; each backward op recomputes the
    forward values it reads (and what they need) from what is kept.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], cost=[1, 1], size=[1, 1], deps=[[], [0]],
    ...                    backward=[False, True])
    >>> dag_recompute_all(tg)
    [compute x, free x, compute x, compute y, free x, free y]
    """
    S = kept_for(tg, True)
    return stage_ops(tg, [closure(tg, t, S[t]) for t in range(len(tg))], S)
