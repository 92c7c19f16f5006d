"""``graph_schedule``: what a graph plan does, as a node x stage matrix (Checkmate's R and S
matrices in one picture, Jain et al. 2020, figure 4).

Rows are the training graph's nodes in its topological order (forward ops, then the
backward ops, whose labels are red). A stage starts at a compute op that follows the first
computation of a node and runs up to and including the next first computation, so stage t
computes one node for the first time, after recomputing what it needs; frees after that
belong to stage t. Each cell says what node i does in stage t: computed for the first time
(forward or backward), recomputed, or kept (its value resident when the stage starts and not
computed in it).
"""
from typing import NamedTuple

import numpy as np

from ..planner.graph_plan import GraphPlan
from ..units import format_size, printable
from ._figure import axes

__all__ = ["graph_schedule", "graph_schedule_matrix", "GraphScheduleMatrix", "CELL_STYLE",
           "EMPTY", "KEPT", "FIRST", "BACKWARD", "RECOMPUTED"]

EMPTY, KEPT, FIRST, BACKWARD, RECOMPUTED = range(5)
# cell code -> (color, legend label)
CELL_STYLE = {
    EMPTY: ("#ffffff", "not resident"),
    KEPT: ("#bdbdbd", "kept (resident when the stage starts)"),
    FIRST: ("#3182bd", "forward, computed for the first time"),
    BACKWARD: ("#d62728", "backward, computed for the first time"),
    RECOMPUTED: ("#fd8d3c", "recomputed"),
}
MAX_LABELS = 150  # more nodes than this: no row labels
_LABEL_CHARS = 28


class GraphScheduleMatrix(NamedTuple):
    """What ``graph_schedule_matrix`` returns: ``cells`` (int8, nodes x stages, codes of
    ``CELL_STYLE``), the node ``names``, ``backward`` (bool per node) and ``stage_nodes``:
    the node each stage computes for the first time (-1 for a stage that only recomputes)."""
    cells: np.ndarray
    names: tuple
    backward: np.ndarray
    stage_nodes: tuple


def _check(plan, what):
    if not isinstance(plan, GraphPlan):
        raise TypeError(f"{what} needs a GraphPlan (ckpt.planner.plan_graph), got "
                        f"{type(plan).__name__}; draw a chain Plan with ckpt.plot.schedule")


def graph_schedule_matrix(plan):
    """The cells ``graph_schedule`` draws (see the module doc), read off ``plan.ops``.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> t = TrainingGraph(["x", "y", "dy"], [1, 1, 1], [4, 4, 4], [[], [0], [1]],
    ...                   backward=[False, False, True])
    >>> p = GraphPlan(t, ["compute x", "compute y", "free x", "compute dy", "free y",
    ...                   "free dy"])
    >>> m = graph_schedule_matrix(p)
    >>> m.cells.tolist(), m.stage_nodes
    ([[2, 1, 0], [0, 2, 1], [0, 0, 3]], (0, 1, 2))
    >>> graph_schedule_matrix(GraphPlan(t, ["compute x", "compute y", "free x", "free y",
    ...     "compute x", "compute y", "compute dy", "free x", "free y", "free dy"])).cells.tolist()
    [[2, 1, 4], [0, 2, 4], [0, 0, 3]]
    """
    _check(plan, "graph_schedule_matrix")
    tg = plan.training
    index = {nm: k for k, nm in enumerate(tg.names)}
    columns, stage_nodes = [], []
    resident, seen, closed = set(), set(), True
    for op in plan.ops:
        k = index[op.name]
        if op.kind == "free":
            resident.discard(k)
            continue
        if closed:  # a compute after a first computation starts the next stage
            col = np.full(len(tg), EMPTY, np.int8)
            col[sorted(resident)] = KEPT
            columns.append(col)
            stage_nodes.append(-1)
            closed = False
        if k in seen:
            columns[-1][k] = RECOMPUTED
        else:
            columns[-1][k] = BACKWARD if tg.backward[k] else FIRST
            stage_nodes[-1] = k
            seen.add(k)
            closed = True
        resident.add(k)
    cells = np.stack(columns, axis=1) if columns else np.zeros((len(tg), 0), np.int8)
    return GraphScheduleMatrix(cells, tg.names, tg.backward.copy(), tuple(stage_nodes))


def _label(name):
    text = printable(name)
    return text if len(text) <= _LABEL_CHARS else text[:_LABEL_CHARS - 1] + "…"


def graph_schedule(plan, path=None, ax=None):
    """A node x stage picture of ``plan`` (a ``GraphPlan``): one cell per node and stage
    colored by ``CELL_STYLE`` (an image with gid ``"graph_schedule"`` whose array is
    ``graph_schedule_matrix(plan).cells``), backward rows labeled in red, row labels (names
    escaped and shortened) up to ``MAX_LABELS`` nodes, a legend, and the strategy, budget,
    peak and overhead in the title. Saved to ``path`` when given. Returns the Figure.

    >>> from ckpt.planner import graph_zoo, plan_graph
    >>> p = plan_graph(graph_zoo.random_layered(nodes=12, seed=3), "recompute_all")
    >>> fig = graph_schedule(p)
    >>> im = fig.axes[0].images[0]
    >>> im.get_gid(), im.get_array().shape == (len(p.training), len(p.training))
    ('graph_schedule', True)
    """
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    m = graph_schedule_matrix(plan)
    n, stages = m.cells.shape
    size = min(4.0 + 0.11 * n, 22.0)
    fig, (ax,) = axes(ax, figsize=(size + 3.5, size))
    cmap = ListedColormap([CELL_STYLE[c][0] for c in sorted(CELL_STYLE)])
    norm = BoundaryNorm(np.arange(len(CELL_STYLE) + 1) - 0.5, len(CELL_STYLE))
    ax.imshow(m.cells, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest",
              gid="graph_schedule")
    if n <= MAX_LABELS:
        ax.set_yticks(range(n))
        ax.set_yticklabels([_label(nm) for nm in m.names],
                           fontsize=8 if n <= 30 else 6 if n <= 80 else 4)
        for tick, bwd in zip(ax.get_yticklabels(), m.backward):
            if bwd:
                tick.set_color(CELL_STYLE[BACKWARD][0])
        ax.set_ylabel("node (topological order; backward in red)")
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"node (topological order; {n} nodes, labels hidden)")
    ax.set_xlabel("stage (each computes one node for the first time)")
    nrec = int((m.cells == RECOMPUTED).sum())
    b = "no budget" if plan.budget is None else f"budget {format_size(plan.budget)}"
    ax.set_title(f"{printable(plan.strategy)!r} on {printable(plan.training.name)!r}\n{b}, "
                 f"peak {format_size(plan.peak)}, +{100 * plan.overhead:.1f}% compute; "
                 f"{n} nodes, {stages} stages, {nrec} recomputations", fontsize=9)
    ax.legend(handles=[Patch(facecolor=color, edgecolor="#888888", label=label)
                       for color, label in CELL_STYLE.values()],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if path is not None:
        fig.savefig(path)
    return fig
