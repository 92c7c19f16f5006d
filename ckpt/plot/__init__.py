"""ckpt.plot: figures of the planner and of measured memory (matplotlib).

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no window is
ever opened; ``fig.savefig("x.png")`` renders with Agg, so it works headless) and reads its
inputs without changing them.

=====================  ==============================================================
``tradeoff(sweep)``    peak memory (MiB) vs compute overhead (%) per strategy, the
                       Pareto front and the budget line
``schedule(plan)``     stage x time diagram of forward, recompute and backward ops
``memory_timeline(x)`` memory stacked by category over a plan's ops (predicted) or a
                       ``MemoryReport``'s events (measured), or both overlaid
``graph_schedule(gp)`` node x stage matrix of a ``GraphPlan``: computed first,
                       recomputed and kept cells (Checkmate's R and S)
``graph(x)``           a tensor's autograd graph or a chain, torchviz-style;
                       ``to_dot(x)`` gives the Graphviz DOT text
=====================  ==============================================================

>>> from ckpt import planner, plot
>>> chain = planner.zoo.uniform(6, nbytes="1MiB")
>>> p = planner.plan(chain, "optimal", budget="5MiB")
>>> figs = [plot.schedule(p), plot.memory_timeline(p), plot.graph(chain),
...         plot.tradeoff(planner.sweep(chain, ["sqrt", "optimal"], ["5MiB", "8MiB"]), chain)]
>>> [type(f).__name__ for f in figs]
['Figure', 'Figure', 'Figure', 'Figure']
"""
from .graph_schedules import graph_schedule, graph_schedule_matrix
from .graphs import graph, graph_data, to_dot
from .schedules import schedule, schedule_boxes
from .timelines import measured_layers, measured_positions, memory_timeline, predicted_layers
from .tradeoffs import tradeoff, tradeoff_points

__all__ = ["tradeoff", "tradeoff_points", "schedule", "schedule_boxes", "memory_timeline",
           "predicted_layers", "measured_layers", "measured_positions", "graph", "graph_data",
           "to_dot", "graph_schedule", "graph_schedule_matrix"]
