"""Graph sources for ``ckpt plan`` and ``ckpt sweep``: graphs are planned as graphs (the
``dag_*`` strategies, ``ckpt.planner.plan_graph``) instead of chains.

A SOURCE is a graph when it is a JSON file holding a ``ckpt.graph`` (``Graph.to_json``; by
content: ``nodes`` and no chain's ``stages``, ``format`` optional) or a networkx node-link
training graph (Checkmate's or Moccasin's form), a model of the graph zoo
(``ckpt.planner.graph_zoo``: ``unet``, ``densenet``, ``resnet50``, ``random_layered``; with
``--graph`` also ``transformer`` and ``vgg16``, which name chains otherwise), or, with
``--graph``, a runnable built-in model (``ckpt.models``) or a user's ckpt model of any shape
(``FILE.py:FACTORY`` or ``MODULE:FACTORY``, the factory returning ``(model, sample,
loss_fn)``, loaded as ``ckpt profile`` loads chains), recorded op by op with
``ckpt.planner.profile_graph``.

>>> graph_source(_args("unet")).name
'unet4'
>>> graph_source(_args("transformer")) is None       # the chain zoo's, unless --graph
True
"""
import argparse
import os

from .. import models, planner
from ..planner import GRAPH_STRATEGIES, Graph, TrainingGraph, format_size, graph_zoo
from ..planner.errors import BudgetError, GraphError, GraphFormatError
from ..planner.graph import read_json
from ..planner.strategies.dag_optimal import overhead_gap
from ..planner.sweep import Row, Sweep, pareto_front
from . import load
from .inputs import UsageError, budget_count, parse_budget, read_file, split_values
from .output import Progress, printable
from .sources import model_names, run_user_code

__all__ = ["graph_source", "GRAPH_ORDER", "CUT_FORWARD", "graph_strategies", "graph_budgets",
           "plan_graph_cli", "sweep_graph", "graph_summary", "graph_plan_text", "solver_line",
           "show_on"]

GRAPH_ORDER = ("store_all", "sqrt", "greedy", "chain", "dag_greedy", "dag_lp_rounding",
               "dag_optimal", "recompute_all")
CUT_FORWARD = {"sqrt", "greedy", "chain"}      # need the forward Graph: not node-link graphs
GRAPH_ONLY = sorted(set(graph_zoo.NAMES) - set(model_names()))
_BATCHED = {"vgg16", "resnet50", "unet", "densenet", "transformer"}


def _args(source, graph=False, batch=None):
    return argparse.Namespace(source=source, graph=graph, batch=batch, torch=None)


def _graph_reader(data):
    """Which reader parsed JSON ``data`` is for, by its content: ``TrainingGraph`` for
    networkx node-link data, ``Graph`` for a ``ckpt.graph`` (``nodes``, no chain's
    ``stages``; ``format`` may be left out), None for a chain.

    >>> _graph_reader({"nodes": []}).__name__, _graph_reader({"stages": [], "nodes": []})
    ('Graph', None)
    """
    if not isinstance(data, dict):
        return None
    if {"links", "directed", "multigraph"} & set(data):
        return TrainingGraph
    fmt = data.get("format")
    if fmt == "ckpt.graph" or ("nodes" in data and "stages" not in data
                               and fmt not in ("ckpt.chain", "ckpt.plan")):
        return Graph
    return None


def _read_graph_file(path, flagged):
    """The graph a JSON file holds, or None when it holds a chain or, without ``flagged``
    (``--graph``), no JSON at all (the chain reader then says what is wrong with it). A graph
    that breaks its schema is a ``UsageError`` naming the file and the planner's reason."""
    try:
        data = read_json(read_file(path, "a graph JSON file"), "graph")
    except GraphFormatError as e:
        if not flagged:
            return None
        raise UsageError(f"{printable(path)}: {e}") from None
    reader = _graph_reader(data)
    try:
        return None if reader is None else reader.from_dict(data)
    except GraphError as e:
        raise UsageError(f"{printable(path)}: {e}") from None


def graph_source(args):
    """The ``Graph`` (or ``TrainingGraph``) a command's SOURCE names, or None when it names
    a chain (see the module doc). A bad graph file is a ``UsageError`` with the planner's
    reason (the field, the node).

    >>> graph_source(_args("vgg16", graph=True, batch=2)).name
    'vgg16'
    """
    spec = getattr(args, "source", None)
    flagged = getattr(args, "graph", False)
    if spec is None or getattr(args, "torch", None) is not None:
        if flagged:
            raise UsageError("--graph applies to a built-in model, a graph zoo model, a graph "
                             "file or a ckpt model's FILE.py:FACTORY, not to --torch")
        return None
    if os.path.isfile(spec) and spec.endswith(".json"):
        g = _read_graph_file(spec, flagged)
        if g is None and flagged:
            raise UsageError(f"{printable(spec)} holds no graph (a ckpt.graph or node-link "
                             "JSON); without --graph it is read as a chain")
        if g is not None and args.batch is not None:
            raise UsageError("--batch applies to built-in models, not to graph files")
        return g
    if spec in graph_zoo.NAMES and (flagged or spec in GRAPH_ONLY):
        if args.batch is not None and spec not in _BATCHED:
            raise UsageError(f"graph model {spec!r} has no batch size")
        if args.batch is not None and args.batch <= 0:
            raise UsageError(f"--batch must be a positive integer, got {args.batch}")
        kwargs = {} if args.batch is None else {"batch": args.batch}
        return graph_zoo.get(spec, **kwargs)
    if flagged and spec in models.NAMES:
        model, x = models.build(spec, args.batch)
        return planner.profile_graph(model, x, repeats=1, name=spec)
    if flagged and load.is_spec(spec):
        return _factory_graph(spec, args.batch)
    if flagged and spec.endswith(".py"):
        raise UsageError(f"{printable(spec)!r}: name the factory too, as {printable(spec)}:"
                         f"FACTORY (a function returning {load.RETURNS})")
    if flagged:
        raise UsageError(f"--graph takes a graph zoo model ({', '.join(sorted(graph_zoo.NAMES))}),"
                         f" a runnable model ({', '.join(models.NAMES)}), FILE.py:FACTORY or a "
                         f"graph JSON file; got {printable(spec)!r}")
    return None


def _factory_graph(spec, batch):
    """The ``Graph`` of the ckpt model a factory returns, recorded with ``profile_graph``."""
    if batch is not None:
        raise UsageError("--batch applies to built-in models; a factory builds its own sample")
    user = load.load_ckpt_model(spec, graph=True)
    return run_user_code(spec, "profiling", planner.profile_graph, user.model, user.sample,
                         loss_fn=user.loss_fn, repeats=1, name=user.name)


def graph_strategies(values, option="--strategies", default=GRAPH_ORDER):
    """Graph strategy names from an option's values (None: ``default``).

    >>> graph_strategies(["dag_optimal,store_all"])
    ['dag_optimal', 'store_all']
    >>> graph_strategies(["revolve"])
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: 'revolve' is a chain strategy; a graph takes store_all, sqrt, greedy, chain, dag_greedy, dag_lp_rounding, dag_optimal, recompute_all
    """
    if values is None:
        return list(default)
    names = split_values(values)
    choose = ", ".join(GRAPH_ORDER)
    if not names:
        raise UsageError(f"{option} {' '.join(values)!r} names no strategy; choose from {choose}")
    for n in names:
        if n not in GRAPH_STRATEGIES:
            kind = "a chain strategy" if n in planner.STRATEGIES else "no graph strategy"
            raise UsageError(f"{n!r} is {kind}; a graph takes {choose}")
    return list(dict.fromkeys(names))


def _peak(graph, strategy):
    return planner.plan_graph(graph, strategy).peak


def graph_budgets(values, graph):
    """``--budgets`` for a graph: a count spread from recompute-all's peak to store-all's,
    or sizes.

    >>> g = graph_zoo.random_layered(nodes=10, seed=1)
    >>> b = graph_budgets(["2"], g); b == [_peak(g, "recompute_all"), _peak(g, "store_all")]
    True
    """
    parts = split_values(values) if values else ["8"]
    n = budget_count(parts)
    if n is None:
        return sorted({parse_budget(p, what="--budgets value") for p in parts})
    lo, hi = _peak(graph, "recompute_all"), _peak(graph, "store_all")
    if n == 1 or hi <= lo:
        return [hi]
    return sorted({lo + (hi - lo) * k // (n - 1) for k in range(n)})


def solver_line(store_all, objective, bound):
    """How far a ``dag_optimal`` solve has come, as a terminal shows it while it runs: the
    best schedule's overhead over store-all's compute, the bound's, and the gap between.

    >>> solver_line(100.0, 126.79, 124.9)
    'best +26.79% overhead, bound +24.90%, gap 7.1%'
    >>> solver_line(100.0, None, 103.0), solver_line(0.0, 0.0, 0.0)
    ('no schedule yet, bound +3.00%', 'best +0.00% overhead, bound +0.00%, gap 0.0%')
    """
    def over(compute):
        return 100 * (compute / store_all - 1) if store_all else 0.0
    rise = f"bound +{over(bound):.2f}%"
    if objective is None:
        return f"no schedule yet, {rise}"
    return (f"best +{over(objective):.2f}% overhead, {rise}, gap "
            f"{100 * overhead_gap(objective, bound, store_all):.1f}%")


def show_on(bar, done, label):
    """A ``show(text)`` for ``plan_graph_cli`` that puts ``label: text`` on ``bar`` (a
    ``Progress`` with ``done`` steps finished), or None when the bar is off (not a terminal).

    >>> import io
    >>> show_on(Progress(None, stream=io.StringIO()), 0, "dag_optimal") is None
    True
    """
    if bar is None or not bar.enabled:
        return None
    return lambda text: bar.update(done, f"{label}: {text}")


def _options(graph, strategy, time_limit, show):
    options = {"time_limit": time_limit} if strategy.startswith("dag_") else {}
    if show is not None and strategy == "dag_optimal":
        base = graph.store_all_compute
        options["progress"] = lambda objective, bound: show(solver_line(base, objective, bound))
    return options


def plan_graph_cli(graph, strategy, budget, time_limit, show=None):
    """``plan_graph`` with the CLI's errors: a strategy that cannot plan this graph is a
    ``UsageError``. ``show(text)``, if given, hears how far a ``dag_optimal`` solve has come
    (``solver_line``) each time its best schedule or its bound improves.

    >>> plan_graph_cli(graph_zoo.random_layered(nodes=8), "store_all", None, 5).strategy
    'store_all'
    """
    try:
        return planner.plan_graph(graph, strategy, budget=budget,
                                  **_options(graph, strategy, time_limit, show))
    except (ValueError, GraphError) as e:
        if isinstance(e, BudgetError):
            raise
        raise UsageError(" ".join(str(e).split())) from None


def sweep_graph(graph, strategies, budgets, time_limit, progress=None):
    """Every strategy at every budget (None peak: no plan fits) as a ``Sweep``; ``progress``
    (a ``Progress``) shows which, and how far its solve has come.

    >>> s = sweep_graph(graph_zoo.random_layered(nodes=8), ["store_all"], [10 ** 12], 5)
    >>> [r.strategy for r in s.front]
    ['store_all']
    """
    rows = []
    for name in strategies:
        for b in budgets:
            label = f"{name} @ {format_size(b)}"
            if progress is not None:
                progress.update(len(rows), label)
            try:
                p = plan_graph_cli(graph, name, b, time_limit,
                                   show_on(progress, len(rows), label))
                rows.append(Row(name, b, p.peak, p.compute))
            except BudgetError:
                rows.append(Row(name, b, None, None))
    return Sweep(rows, pareto_front(rows), graph)


def graph_summary(graph):
    """One line about the graph (as ``_chain_summary`` for chains).

    >>> graph_summary(graph_zoo.random_layered(nodes=8)).split(":")[0]
    "graph 'random_layered_n8_w4_s2_seed0'"
    """
    tg = graph.training() if isinstance(graph, Graph) else graph
    ops = f"{len(graph)} ops, " if isinstance(graph, Graph) else ""
    return (f"graph {printable(tg.name)!r}: {ops}{len(tg)} training nodes, constant "
            f"{format_size(tg.constant_bytes)}, costs in {printable(tg.cost_unit)}; store-all "
            f"peak {format_size(_peak(tg, 'store_all'))}, recompute-all peak "
            f"{format_size(_peak(tg, 'recompute_all'))}")


def graph_plan_text(graph, p):
    """The plan as ``ckpt plan`` prints it for a graph.

    >>> g = graph_zoo.random_layered(nodes=8)
    >>> graph_plan_text(g, planner.plan_graph(g, "recompute_all")).splitlines()[0]
    "graph plan 'recompute_all' for graph 'random_layered_n8_w4_s2_seed0', no budget"
    """
    tg = p.training
    runs = p.simulate().runs
    again = [tg.names[k] for k in range(len(tg)) if runs[k] > 1]
    b = "no budget" if p.budget is None else f"budget {format_size(p.budget)}"
    lines = [f"graph plan {p.strategy!r} for graph {printable(tg.name)!r}, {b}",
             "  " + graph_summary(graph),
             f"  predicted peak   {format_size(p.peak)} ({p.peak} bytes)",
             f"  compute          {p.compute:.4g} {printable(tg.cost_unit)} = store-all + "
             f"{100 * p.overhead:.1f}% overhead",
             f"  ops              {len(p.ops)}; {len(again)} of {len(tg)} nodes computed more "
             "than once"]
    if p.solver_status:
        lines.append(f"  solver           {p.solver_status}, bound {p.bound:.4g}, gap on the "
                     f"overhead {100 * p.gap:.2f}%")
    if again:
        shown = ", ".join(printable(n) for n in again[:12])
        lines.append(f"  recomputed       {shown}{' ...' if len(again) > 12 else ''}")
    return "\n".join(lines)
