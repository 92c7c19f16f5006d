"""Replay a schedule on a training graph: validate it and account for every byte.

A graph schedule is a list of two ops, each naming a node of the ``TrainingGraph``:

=================  ======================================================================
``compute name``   run the node: every dep's value must be resident and its own must not
                   be; while it runs memory is (resident) + size + transient, after it
                   (resident) + size
``free name``      drop the node's resident value (memory falls by its size)
=================  ======================================================================

Memory starts at ``constant_bytes`` (input, parameters, gradients). A schedule is valid when
every op obeys the rules above, every node is computed at least once, and nothing is resident
at the end. The first violation raises ``InvalidPlanError`` with the step and the reason. The
replay knows nothing of how the schedule was made: it is the check on every strategy.

>>> from ckpt.planner.graph import Graph, Node
>>> t = Graph([Node("a", [], 1, 2, 8), Node("b", ["a"], 1, 2, 4)], input_bytes=2).training()
>>> ops = ["compute a", "compute b", "compute backward(b)", "free b",
...        "compute backward(a)", "free a", "free backward(b)", "free backward(a)"]
>>> r = simulate_graph(t, ops)
>>> r.peak, r.compute, r.during.tolist()
(22, 6.0, [10, 14, 22, 22, 18, 18, 10, 2])
"""
from typing import NamedTuple

import numpy as np

from .errors import InvalidPlanError

__all__ = ["GraphOp", "GraphSimulation", "simulate_graph", "GRAPH_OP_KINDS"]

GRAPH_OP_KINDS = ("compute", "free")


class GraphOp(NamedTuple):
    """One op of a graph schedule: ``kind`` in ``GRAPH_OP_KINDS`` and a node ``name``.

    >>> GraphOp.parse("compute backward(conv 1)")
    compute backward(conv 1)
    """
    kind: str
    name: str

    def __repr__(self):
        return f"{self.kind} {self.name}"

    __str__ = __repr__

    @classmethod
    def parse(cls, text):
        """The op written as ``"<kind> <node name>"`` (its ``str``).

        >>> GraphOp.parse("free a")
        free a
        >>> GraphOp.parse("drop a")
        Traceback (most recent call last):
        ...
        ValueError: cannot read graph op 'drop a': expected '<kind> <node name>' with kind in ('compute', 'free')
        """
        if isinstance(text, GraphOp):
            return text
        if isinstance(text, (tuple, list)) and len(text) == 2:
            kind, name = text
        else:
            kind, _, name = str(text).partition(" ")
        if kind not in GRAPH_OP_KINDS or not name:
            raise ValueError(f"cannot read graph op {text!r}: expected '<kind> <node name>' "
                             f"with kind in {GRAPH_OP_KINDS}")
        return cls(kind, str(name))


class GraphSimulation(NamedTuple):
    """What ``simulate_graph`` returns: ``peak`` bytes, total ``compute``, memory ``during``
    and ``after`` each op (int64 arrays, constant bytes included), ``peak_step`` (-1: the
    start) and ``runs`` (how many times each node was computed).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> t = TrainingGraph(["x"], cost=[2], size=[4], deps=[[]])
    >>> simulate_graph(t, ["compute x", "free x"]).runs.tolist()
    [1]
    """
    peak: int
    compute: float
    during: np.ndarray
    after: np.ndarray
    peak_step: int
    runs: np.ndarray


def simulate_graph(tg, ops):
    """Validate ``ops`` (``GraphOp``s or ``"kind name"`` strings) on the training graph
    ``tg`` and predict its memory and compute (see the module doc).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> t = TrainingGraph(["x", "y"], cost=[1, 1], size=[4, 4], deps=[[], [0]])
    >>> simulate_graph(t, ["compute y"])
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.InvalidPlanError: step 0 (compute y): y reads x, which is not resident (compute it first)
    """
    index = {nm: k for k, nm in enumerate(tg.names)}
    n = len(tg)
    resident = np.zeros(n, bool)
    freed_at = np.full(n, -1)
    runs = np.zeros(n, np.int64)
    size, cost, trans = tg.size, tg.cost, tg.transient
    mem = tg.constant_bytes
    peak, peak_step, compute = mem, -1, 0.0
    during = np.empty(len(ops), np.int64)
    after = np.empty(len(ops), np.int64)
    for step, raw in enumerate(ops):
        try:
            op = GraphOp.parse(raw)
        except ValueError as e:
            raise InvalidPlanError(step, raw, str(e)) from None

        def fail(reason):
            raise InvalidPlanError(step, op, reason)

        k = index.get(op.name)
        if k is None:
            fail(f"{op.name!r} is not a node of the training graph {tg.name!r}")
        if op.kind == "compute":
            if resident[k]:
                fail(f"{op.name} is already resident; free it before computing it again")
            for i in tg.deps[k]:
                if not resident[i]:
                    why = (f"freed at step {freed_at[i]}" if freed_at[i] >= 0
                           else "compute it first")
                    fail(f"{op.name} reads {tg.names[i]}, which is not resident ({why})")
            during[step] = mem + size[k] + trans[k]
            mem += int(size[k])
            resident[k] = True
            runs[k] += 1
            compute += float(cost[k])
        else:
            if not resident[k]:
                fail(f"{op.name} is not resident" + (f" (freed at step {freed_at[k]})"
                                                      if freed_at[k] >= 0 else ""))
            during[step] = mem
            mem -= int(size[k])
            resident[k] = False
            freed_at[k] = step
        after[step] = mem
        if during[step] > peak:
            peak, peak_step = int(during[step]), step
    end = len(ops)
    never = np.flatnonzero(runs == 0)
    if never.size:
        raise InvalidPlanError(end, None, f"{tg.names[never[0]]} was never computed"
                               + (f" (nor {never.size - 1} other nodes)" if never.size > 1
                                  else ""))
    left = np.flatnonzero(resident)
    if left.size:
        raise InvalidPlanError(end, None, "still resident at the end: "
                               + ", ".join(tg.names[i] for i in left[:8])
                               + (" ..." if left.size > 8 else "") + " (free every value)")
    return GraphSimulation(int(peak), float(compute), during, after, int(peak_step), runs)
