"""``GraphPlan``: a schedule of a training graph with its replayed peak and compute (and, for
``dag_optimal``, the solver's status, bound and gap); ``plan_graph`` asks a graph strategy
for one under a budget.

>>> from ckpt.planner import graph_zoo
>>> g = graph_zoo.random_layered(nodes=12, seed=3)
>>> p = plan_graph(g, "dag_optimal", budget=0.7, time_limit=30)
>>> p.solver_status, p.peak <= p.budget, p.gap, p.overhead > 0
('optimal', True, 0.0, True)
"""
import json

from .errors import BudgetError, GraphFormatError
from .graph import Graph, read_json
from .graph_simulate import GraphOp, simulate_graph
from .graph_training import TrainingGraph
from .strategies.dag_baselines import dag_recompute_all, dag_store_all
from .strategies.dag_chain import chain_baseline
from .strategies.dag_greedy import dag_greedy
from .strategies.dag_lp_rounding import dag_lp_rounding
from .strategies.dag_optimal import dag_optimal
from .units import format_size, parse_size

__all__ = ["GraphPlan", "plan_graph", "GRAPH_STRATEGIES"]

_FORMAT = "ckpt.graph_plan"


def _store_all(graph, tg, budget):
    return dag_store_all(tg), {}


def _recompute_all(graph, tg, budget):
    return dag_recompute_all(tg), {}


def _over_cut_points(name, graph, tg, budget, chain_strategy, **options):
    if graph is None:
        raise ValueError(f"strategy {name!r} needs the forward Graph (a TrainingGraph read from "
                         "node-link JSON has no forward ops to cut into stages): give a "
                         "ckpt.graph file, or plan it with a dag_* strategy")
    return chain_baseline(graph, budget, tg, chain_strategy, **options), {}


def _chain(graph, tg, budget):
    return _over_cut_points("chain", graph, tg, budget, "optimal")


def _chen_sqrt(graph, tg, budget, segments=None):
    return _over_cut_points("sqrt", graph, tg, budget, "sqrt", segments=segments)


def _chen_greedy(graph, tg, budget, threshold=None):
    return _over_cut_points("greedy", graph, tg, budget, "greedy", threshold=threshold)


def _dag_optimal(graph, tg, budget, time_limit=60.0, mem_limit=4 * 2**30, rel_gap=1e-4,
                 lp_share=0.0, greedy_share=0.15, milp_max_nodes=300, keep_share=0.25,
                 progress=None):
    import time
    t0, base = time.monotonic(), []
    if graph is not None and budget is not None:
        try:
            base.append(chain_baseline(graph, budget, tg))
        except BudgetError:
            pass
    left = max(1.0, time_limit - (time.monotonic() - t0))      # the chain plan's time counts
    return dag_optimal(tg, budget, time_limit=left, mem_limit=mem_limit, rel_gap=rel_gap,
                       baselines=base, lp_share=lp_share, greedy_share=greedy_share,
                       milp_max_nodes=milp_max_nodes, keep_share=keep_share,
                       progress=progress)


def _greedy(graph, tg, budget, time_limit=30.0):
    return dag_greedy(tg, budget, time_limit=time_limit)


def _lp_rounding(graph, tg, budget, time_limit=60.0, mem_limit=4 * 2**30):
    return dag_lp_rounding(tg, budget, time_limit=time_limit, mem_limit=mem_limit)


GRAPH_STRATEGIES = {"store_all": _store_all, "recompute_all": _recompute_all,
                    "chain": _chain, "sqrt": _chen_sqrt, "greedy": _chen_greedy,
                    "dag_optimal": _dag_optimal,
                    "dag_lp_rounding": _lp_rounding, "dag_greedy": _greedy}


class GraphPlan:
    """A schedule (``ops``, ``GraphOp``s) of ``training`` (a ``TrainingGraph``), replayed on
    construction (an invalid one raises ``InvalidPlanError``): ``peak`` bytes, ``compute``,
    ``overhead`` over store-all, and ``info`` from the strategy (``dag_optimal``:
    ``solver_status``, ``objective``, ``bound``, ``gap``, ...).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> t = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])
    >>> GraphPlan(t, ["compute x", "compute y", "free x", "free y"]).peak
    8
    """

    def __init__(self, training, ops, strategy="custom", budget=None, info=None):
        self.training = training
        self.ops = tuple(GraphOp.parse(o) for o in ops)
        sim = simulate_graph(training, self.ops)
        self.peak, self.compute, self.peak_step = sim.peak, sim.compute, sim.peak_step
        self.strategy = str(strategy)
        self.budget = None if budget is None else parse_size(budget, what="budget")
        self.info = dict(info or {})

    @property
    def overhead(self):
        """compute / store-all compute - 1.

        >>> from ckpt.planner.graph_training import TrainingGraph
        >>> t = TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]])
        >>> GraphPlan(t, ["compute x", "free x", "compute x", "compute y", "free x",
        ...               "free y"]).overhead
        0.5
        """
        base = self.training.store_all_compute
        return self.compute / base - 1.0 if base else 0.0

    solver_status = property(lambda self: self.info.get("solver_status"),
                             doc="The solver's status (``dag_optimal``), else None.")
    bound = property(lambda self: self.info.get("bound"),
                     doc="A lower bound on the compute of every schedule of the class.")
    gap = property(lambda self: self.info.get("gap"),
                   doc="(objective - bound) / (objective - store-all compute).")

    def simulate(self):
        """The full ``GraphSimulation`` of this plan.

        >>> from ckpt.planner.graph_training import TrainingGraph
        >>> t = TrainingGraph(["x"], [1], [4], [[]])
        >>> GraphPlan(t, ["compute x", "free x"]).simulate().during.tolist()
        [4, 4]
        """
        return simulate_graph(self.training, self.ops)

    def __len__(self):
        return len(self.ops)

    def __eq__(self, other):
        return (isinstance(other, GraphPlan) and self.ops == other.ops
                and self.training == other.training and self.strategy == other.strategy
                and self.budget == other.budget)

    def __repr__(self):
        b = "no budget" if self.budget is None else f"budget {format_size(self.budget)}"
        s = f", {self.solver_status}, gap {self.gap:.2%}" if self.solver_status else ""
        return (f"GraphPlan({self.strategy!r}, {b}, {len(self.ops)} ops, peak "
                f"{format_size(self.peak)}, compute {self.compute:.6g} "
                f"{self.training.cost_unit} (+{100 * self.overhead:.1f}%){s})")

    def to_json(self, indent=None):
        """JSON text: strategy, budget, info, ops as ``"kind name"`` strings, the predictions
        and the training graph in node-link form (checked again by ``from_json``).

        >>> from ckpt.planner.graph_training import TrainingGraph
        >>> p = GraphPlan(TrainingGraph(["x"], [1], [4], [[]]), ["compute x", "free x"])
        >>> GraphPlan.from_json(p.to_json()) == p
        True
        """
        return json.dumps({"format": _FORMAT, "version": 1, "strategy": self.strategy,
                           "budget": self.budget, "info": self.info, "peak_bytes": self.peak,
                           "compute": self.compute, "ops": [str(o) for o in self.ops],
                           "training_graph": self.training.to_dict()},
                          indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text):
        """A plan from ``to_json`` text; its ops are replayed and must match the stored
        predictions.

        >>> GraphPlan.from_json('{"format": "ckpt.graph_plan", "ops": []}')
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.GraphFormatError: graph plan JSON lacks 'training_graph'
        """
        data = read_json(text, "graph plan")
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise GraphFormatError(f"a graph plan must be a JSON object with format "
                                   f"{_FORMAT!r}")
        for key in ("ops", "training_graph"):
            if key not in data:
                raise GraphFormatError(f"graph plan JSON lacks {key!r}")
        if not isinstance(data["ops"], list):
            raise GraphFormatError("graph plan 'ops' must be a list of 'kind name' strings")
        p = cls(TrainingGraph.from_dict(data["training_graph"]), data["ops"],
                strategy=data.get("strategy", "custom"), budget=data.get("budget"),
                info=data.get("info"))
        for key, got in (("peak_bytes", p.peak), ("compute", p.compute)):
            if data.get(key) is not None and abs(float(data[key]) - got) > 1e-9 * max(1, got):
                raise GraphFormatError(f"graph plan JSON says {key} = {data[key]}, but "
                                       f"replaying its ops gives {got}")
        return p


def plan_graph(graph, strategy, budget=None, **options):
    """A ``GraphPlan`` for ``graph`` (a ``Graph`` or a ``TrainingGraph``) from ``strategy``
    (a name in ``GRAPH_STRATEGIES``) within ``budget``: bytes, a string like ``"512MiB"``,
    or a float in (0, 1] read as a fraction of store-all's peak. ``options`` go to the
    strategy (``dag_optimal``: ``time_limit`` seconds, ``mem_limit`` bytes, ``rel_gap``,
    ``lp_share``, ``greedy_share``, ``milp_max_nodes``, ``keep_share``, and ``progress``:
    called as ``progress(objective, bound)`` whenever the best schedule within the budget
    gets cheaper or the bound rises, see ``strategies.dag_optimal``; ``dag_lp_rounding``:
    ``time_limit``, ``mem_limit``; ``dag_greedy``: ``time_limit``; ``sqrt``: ``segments``;
    ``greedy``: ``threshold``). ``sqrt`` and ``greedy`` are Chen et al.'s chain rules over
    the graph's cut points (``strategies/dag_chain.py``), not the keep-set heuristic
    ``dag_greedy``.
    A plan whose peak exceeds the budget raises ``BudgetError``.

    >>> from ckpt.planner import graph_zoo
    >>> plan_graph(graph_zoo.vgg16(batch=1, image=32), "recompute_all").overhead > 0
    True
    >>> plan_graph(graph_zoo.vgg16(batch=1, image=32), "store_all", budget="1KiB")
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: strategy 'store_all' peaks at 289.1 MiB on graph 'vgg16', above the budget 1.0 KiB (1024 bytes)
    """
    if isinstance(graph, Graph):
        fwd, tg = graph, graph.training()
    elif isinstance(graph, TrainingGraph):
        fwd, tg = None, graph
    else:
        raise TypeError(f"plan_graph needs a Graph or a TrainingGraph, got "
                        f"{type(graph).__name__}")
    if strategy not in GRAPH_STRATEGIES:
        raise ValueError(f"unknown graph strategy {strategy!r}; choose one of "
                         f"{sorted(GRAPH_STRATEGIES)}")
    if isinstance(budget, float) and 0 < budget <= 1:
        budget = int(budget * simulate_graph(tg, dag_store_all(tg)).peak)
    elif budget is not None:
        budget = parse_size(budget, what="budget")
    try:
        ops, info = GRAPH_STRATEGIES[strategy](fwd, tg, budget, **options)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise TypeError(f"graph strategy {strategy!r} does not take the options "
                            f"{sorted(options)}") from None
        raise
    p = GraphPlan(tg, ops, strategy=strategy, budget=budget, info=info)
    if budget is not None and p.peak > budget:
        raise BudgetError(f"strategy {strategy!r} peaks at {format_size(p.peak)} on graph "
                          f"{tg.name!r}, above the budget {format_size(budget)} ({budget} "
                          "bytes)", budget=budget, minimum=p.peak, strategy=strategy)
    return p
