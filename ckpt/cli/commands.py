"""The ``ckpt`` subcommands: each ``cmd_NAME(args, out)`` checks its inputs and output paths
first, does the work (a progress line on a terminal's stderr when it is long), writes to
``out`` and returns the exit status.

>>> import argparse, io
>>> out = io.StringIO()
>>> cmd_plan(argparse.Namespace(source="uniform", torch=None, batch=None, budget="6MiB",
...          strategy="optimal", json=False, output=None, explain=False), out)
0
>>> out.getvalue().splitlines()[0]
"plan 'optimal' for chain 'uniform' (8 stages), budget 6.0 MiB"
"""
import inspect
import json
import math
import os
import re
import tempfile

from .. import models, planner
from ..planner import Chain, format_size, zoo
from ..planner.errors import BudgetError, ChainError, InvalidPlanError
from ..planner.strategies.store_all import store_all
from .inputs import (EXIT_INVALID, EXIT_OK, STRATEGY_ORDER, UsageError, budget_count,
                     check_budgets_text, load_ops, parse_budget,
                     parse_strategies, parse_strategy, split_values)
from .output import (FIGURE_EXTS, Progress, check_output_dir, check_output_path, printable,
                     save_figure, write_text)
from .graphs import (CUT_FORWARD, GRAPH_ORDER, graph_budgets, graph_plan_text, graph_source,
                     graph_strategies, graph_summary, plan_graph_cli, show_on, sweep_graph)
from .sources import model_graph, resolve

__all__ = ["cmd_profile", "cmd_plan", "cmd_sweep", "cmd_simulate", "cmd_graph", "cmd_demo",
           "budget_range", "parse_budgets"]


def store_all_peak(chain):
    """The peak of keeping everything.

    >>> store_all_peak(zoo.uniform(4, nbytes="1MiB")) // 2**20
    6
    """
    return planner.simulate(chain, store_all(chain), timeline=False).peak


def budget_range(chain, n):
    """``n`` budgets evenly spaced from the least feasible peak to store-all's peak.

    >>> c = zoo.uniform(4, nbytes="1MiB"); budget_range(c, 2) == [c.min_budget, store_all_peak(c)]
    True
    """
    lo, hi = chain.min_budget, store_all_peak(chain)
    if n == 1 or hi <= lo:
        return [hi]
    return sorted({lo + (hi - lo) * k // (n - 1) for k in range(n)})


def parse_budgets(values, chain):
    """The budgets of ``--budgets``: a count spread over the chain's range, or sizes.

    >>> parse_budgets(["5MiB,8MiB", "5MiB"], zoo.uniform())
    [5242880, 8388608]
    """
    check_budgets_text(values)
    parts = split_values(values) or ["8"]
    n = budget_count(parts)
    if n is not None:
        return budget_range(chain, n)
    return sorted({parse_budget(p, chain, what="--budgets value") for p in parts})


def _precheck_budget(text):
    """A budget's syntax, checked before the chain is made (a negative one waits for the
    chain, whose least feasible peak its message gives)."""
    if text is not None and not str(text).strip().startswith("-"):
        parse_budget(text)


def _pct(x):
    return f"{100 * x:.1f}%"


def _fmt_cost(x, unit):
    return f"{x:.4g} {unit}"


REPORTED_MIN_BUDGET_STAGES = 400     # beyond this, the O(L^3) least peak is only reported
                                     # when something already computed it


def least_peak(chain):
    """``chain.min_budget`` if it is cheap to report (short chain, or already computed),
    else None: ``ckpt plan --strategy store_all`` on 5,000 stages must not wait minutes.

    >>> least_peak(zoo.uniform(4, nbytes=1)) is not None, least_peak(zoo.uniform(1000))
    (True, None)
    """
    if len(chain) <= REPORTED_MIN_BUDGET_STAGES or chain.min_budget_known:
        return chain.min_budget
    return None


def _least_text(chain):
    least = least_peak(chain)
    return format_size(least) if least is not None else \
        f"not computed for {len(chain)} stages (optimal and min_memory compute it)"


def _chain_summary(chain):
    return (f"chain {chain.name!r}: {len(chain)} stages, input "
            f"{format_size(chain.input_bytes)}, params+grads {format_size(chain.param_bytes)}, "
            f"costs in {printable(chain.cost_unit)}; store-all peak "
            f"{format_size(store_all_peak(chain))}, least feasible peak {_least_text(chain)}")


def _chain_record(chain):
    return {"name": chain.name, "stages": len(chain), "cost_unit": chain.cost_unit,
            "input_bytes": chain.input_bytes, "param_bytes": chain.param_bytes,
            "store_all_compute": chain.store_all_compute,
            "store_all_peak_bytes": store_all_peak(chain), "min_budget": least_peak(chain)}


def _status(label):
    """A progress line without a count, for one long step (profiling a model)."""
    return Progress(None, label=label)


def _resolve(args, repeats=3, chain_files=True, label="profiling"):
    spec = getattr(args, "source", None)
    what = args.torch or spec
    with _status(f"{label} {what} ..."):
        return resolve(spec, args.torch, args.batch, repeats=repeats, chain_files=chain_files)


# ---- profile ------------------------------------------------------------------------------
def _first_sentence(fn):
    doc = re.split(r"[:.](?:\s|$)", inspect.getdoc(fn) or "", maxsplit=1)[0]
    return " ".join(doc.replace("``", "").split())


def _list_models(out):
    out.write("runnable models (ckpt.models; profiled by running them: times in s, bytes "
              "measured):\n")
    out.write(f"  {'model':16s} {'stages':>6s}  description\n")
    for name, fn in sorted(models.NAMES.items()):
        model, _ = fn(batch=1)
        out.write(f"  {name:16s} {len(model):6d}  {_first_sentence(fn)}\n")
    out.write("\nzoo chains (ckpt.planner.zoo; real sizes, costs from layer formulas, nothing "
              "run):\n")
    out.write(f"  {'model':16s} {'stages':>6s}  {'store-all peak':>14s}  description\n")
    for name, fn in sorted(zoo.NAMES.items()):
        chain = fn()
        out.write(f"  {name:16s} {len(chain):6d}  {format_size(store_all_peak(chain)):>14s}"
                  f"  {_first_sentence(fn)}\n")
    out.write("\nyour own model: FILE.py:FACTORY or MODULE:FACTORY (a ckpt.nn.Sequential), or "
              "--torch FILE.py:FACTORY (a torch.nn.Module); FACTORY() returns (model, sample, "
              "loss_fn)\n")


def cmd_profile(args, out):
    if args.list:
        if args.batch is not None or args.model is not None or args.output is not None \
                or args.torch is not None:
            raise UsageError("--list takes no MODEL, --torch, --batch or -o")
        _list_models(out)
        return EXIT_OK
    if args.model is None and args.torch is None:
        raise UsageError("give a MODEL to profile (see 'ckpt profile --list'), "
                         "FILE.py:FACTORY, --torch FILE.py:FACTORY, or --list")
    if args.output is not None:
        check_output_path(args.output, "the chain")
    args.source = args.model
    src = _resolve(args, chain_files=False)
    text = src.chain.to_json()
    if args.output is None:
        out.write(text + "\n")
        return EXIT_OK
    write_text(args.output, text)
    out.write(_chain_summary(src.chain) + "\n")
    out.write(f"source: {src.origin}\n")
    out.write(f"wrote {printable(args.output)}\n")
    return EXIT_OK


# ---- plan ---------------------------------------------------------------------------------
def _plan_text(p):
    chain = p.chain
    b = "no budget" if p.budget is None else f"budget {format_size(p.budget)}"
    nrec = p.recomputed
    lines = [f"plan {p.strategy!r} for chain {chain.name!r} ({len(chain)} stages), "
             f"{b}",
             f"  predicted peak   {format_size(p.peak)} ({p.peak} bytes)",
             f"  store-all peak   {format_size(store_all_peak(chain))}; least feasible peak "
             f"{_least_text(chain)}",
             f"  compute          {_fmt_cost(p.compute, printable(chain.cost_unit))} = "
             f"store-all + {_pct(p.overhead)} overhead",
             f"  stages           {len(chain) - nrec} kept, {nrec} recomputed; {len(p.ops)} ops",
             "", p.stage_table()]
    return "\n".join(lines)


def _check_outputs(args):
    if args.output:
        check_output_path(args.output, "the plan")
    if getattr(args, "plot", None):
        check_output_path(args.plot, "plot", FIGURE_EXTS)


def _write_outputs(args, p):
    """The plan JSON (``-o``) and its schedule picture (``--plot``): a chain's stage x time
    diagram or a graph plan's node x stage matrix."""
    if args.output:
        write_text(args.output, p.to_json())
    if getattr(args, "plot", None):
        from ..plot import graph_schedule, schedule
        save_figure(graph_schedule(p) if isinstance(p, planner.GraphPlan) else schedule(p),
                    args.plot)


def _wrote(args, out):
    for path in (args.output, getattr(args, "plot", None)):
        if path:
            out.write(f"wrote {printable(path)}\n")


def cmd_plan(args, out):
    graph = graph_source(args)
    if graph is not None:
        return _plan_graph(args, out, graph)
    strategy = parse_strategy(args.strategy)
    _precheck_budget(args.budget)
    _check_outputs(args)
    chain = _resolve(args).chain
    budget = None if args.budget is None else parse_budget(args.budget, chain)
    p = planner.plan(chain, strategy, budget=budget)
    _write_outputs(args, p)
    if args.json:
        out.write(p.to_json() + "\n")
    else:
        out.write(_plan_text(p) + "\n")
        if args.explain:
            text = p.explain(max_ops=10 ** 9)
            out.write("\n" + "\n".join(printable(line) for line in text.split("\n")) + "\n")
        _wrote(args, out)
    return EXIT_OK


def _plan_graph(args, out, graph):
    name = "dag_optimal" if args.strategy == "optimal" else args.strategy
    strategy = graph_strategies([name], "--strategy")
    if len(strategy) > 1:
        raise UsageError(f"--strategy takes one strategy, got {len(strategy)}")
    budget = None if args.budget is None else parse_budget(args.budget)
    _check_outputs(args)
    with Progress(None, label=f"{strategy[0]}: planning",
                  enabled=None if getattr(args, "progress", True) else False) as bar:
        p = plan_graph_cli(graph, strategy[0], budget, getattr(args, "time_limit", 60.0),
                           show_on(bar, 0, strategy[0]))
    _write_outputs(args, p)
    if args.json:
        out.write(p.to_json() + "\n")
        return EXIT_OK
    out.write(graph_plan_text(graph, p) + "\n")
    if args.explain:
        sim = p.simulate()
        out.write(f"\n  {'#':>5s}  {'op':40s} {'during':>10s} {'after':>10s}\n")
        for k, op in enumerate(p.ops):
            text = printable(str(op))
            text = text if len(text) <= 40 else text[:37] + "..."
            out.write(f"  {k:5d}  {text:40s} {format_size(int(sim.during[k])):>10s} "
                      f"{format_size(int(sim.after[k])):>10s}\n")
    _wrote(args, out)
    return EXIT_OK


# ---- sweep --------------------------------------------------------------------------------
def cmd_sweep(args, out):
    graph = graph_source(args)
    if graph is not None:
        strategies = graph_strategies(args.strategies, default=[
            s for s in GRAPH_ORDER if isinstance(graph, planner.Graph) or s not in CUT_FORWARD])
    else:
        strategies = parse_strategies(args.strategies)
    check_budgets_text(args.budgets)
    if args.plot:
        check_output_path(args.plot, "plot", FIGURE_EXTS)
    if graph is None:
        chain = _resolve(args).chain
        budgets = parse_budgets(args.budgets, chain)
    else:
        budgets = graph_budgets(args.budgets, graph)
    with Progress(len(strategies) * len(budgets),
                  enabled=None if args.progress else False) as progress:
        if graph is None:
            result = planner.sweep(chain, strategies, budgets, progress=progress.update)
        else:
            result = sweep_graph(graph, strategies, budgets,
                                 getattr(args, "time_limit", 60.0), progress)
    if args.json and graph is not None:
        doc = result.to_dict()
        doc["graph"] = {"name": graph.name, "nodes": len(graph),
                        "store_all_compute": graph.store_all_compute,
                        "cost_unit": graph.cost_unit}
        out.write(json.dumps(doc, indent=1) + "\n")
    elif args.json:
        record = {k: v for k, v in _chain_record(chain).items()
                  if k not in ("input_bytes", "param_bytes")}
        out.write(json.dumps(result.to_dict(chain=record), indent=1) + "\n")
    elif args.csv:
        out.write(result.to_csv())
    else:
        summary = _chain_summary(chain) if graph is None else graph_summary(graph)
        out.write(summary + "\n\n" + result.overhead_table() + "\n")
    if args.plot:
        from ..plot import tradeoff
        save_figure(tradeoff(result, chain=chain) if graph is None else
                    tradeoff(result, baseline=graph.store_all_compute), args.plot)
        msg = f"wrote {printable(args.plot)}\n"
        if args.json or args.csv:
            import sys
            sys.stderr.write(msg)
        else:
            out.write(msg)
    return EXIT_OK


# ---- simulate -----------------------------------------------------------------------------
def cmd_simulate(args, out):
    ops, meta = load_ops(args.plan)
    chain = resolve(args.chain).chain
    notes = []
    if meta and isinstance(meta.get("chain"), dict):
        try:
            own = Chain.from_dict(meta["chain"])
        except (ChainError, RecursionError):
            own = None
        if own is not None and own != chain:
            notes.append(f"the plan was made for chain {own.name!r} ({len(own)} "
                         f"stages); replaying it on {chain.name!r} ({len(chain)} "
                         "stages)")
    label = (f"plan {meta.get('strategy', 'custom')!r}" if meta else "plan")
    head = (f"{label} ({len(ops)} ops) on chain {chain.name!r} ({len(chain)} "
            "stages)")
    try:
        sim = planner.simulate(chain, ops)
    except InvalidPlanError as e:
        if args.json:
            out.write(json.dumps({"valid": False, "reason": str(e), "step": e.step,
                                  "notes": notes}) + "\n")
        else:
            out.write("\n".join([head, "valid: no", f"reason: {printable(e)}"] +
                                [f"note: {n}" for n in notes]) + "\n")
        return EXIT_INVALID
    base = chain.store_all_compute
    overhead = sim.compute / base - 1.0 if base else 0.0
    if meta and meta.get("peak_bytes") not in (None, sim.peak):
        notes.append(f"the plan file says peak {printable(meta['peak_bytes'])} bytes; the "
                     f"replay gives {sim.peak}")
    if args.json:
        out.write(json.dumps({"valid": True, "peak_bytes": sim.peak, "compute": sim.compute,
                              "overhead": overhead, "peak_step": sim.peak_step,
                              "ops": len(ops), "cost_unit": chain.cost_unit,
                              "notes": notes}) + "\n")
        return EXIT_OK
    at = ("before the first op" if sim.peak_step < 0
          else f"at step {sim.peak_step} ({ops[sim.peak_step]})")
    lines = [head, "valid: yes", f"peak: {format_size(sim.peak)} ({sim.peak} bytes) {at}",
             f"compute: {_fmt_cost(sim.compute, printable(chain.cost_unit))} (store-all + "
             f"{_pct(overhead)})"]
    out.write("\n".join(lines + [f"note: {n}" for n in notes]) + "\n")
    return EXIT_OK


# ---- graph --------------------------------------------------------------------------------
def cmd_graph(args, out):
    ext = None if args.output is None else os.path.splitext(args.output)[1].lower()
    if args.output is not None:
        if ext not in (".dot", ".gv") + FIGURE_EXTS:
            raise UsageError(f"cannot write a graph to {args.output!r}: use .dot or "
                             ".gv (Graphviz text), or .png, .svg or .pdf (a drawing)")
        check_output_path(args.output, "the graph")
    obj, params = model_graph(args.source, args.batch)
    from ..plot import graphs
    if args.output is None:
        out.write(graphs.to_dot(obj, params) + "\n")
        return EXIT_OK
    if ext in (".dot", ".gv"):
        write_text(args.output, graphs.to_dot(obj, params))
    else:
        save_figure(graphs.graph(obj, params), args.output)
    out.write(f"wrote {printable(args.output)}\n")
    return EXIT_OK


# ---- demo ---------------------------------------------------------------------------------
def _demo_budget(chain):
    """35% of the way from the least feasible peak to store-all's, rounded up to a whole
    MiB (to 1/16 of its power of two below 16 MiB, so small chains keep their range).

    >>> c = zoo.uniform(8, nbytes="1MiB"); _demo_budget(c) // 2**20, c.min_budget // 2**20
    (6, 5)
    >>> _demo_budget(zoo.uniform(8, nbytes="1KiB")) < 16 * 2**10
    True
    """
    lo, hi = chain.min_budget, store_all_peak(chain)
    x = lo + 0.35 * (hi - lo)
    grain = 2 ** 20 if x >= 2 ** 24 else max(1, 2 ** (int(math.log2(max(x, 1))) - 4))
    return int(math.ceil(x / grain)) * grain


def _demo_table(chain, budget, plans, measured, torch):
    head = (f"{'strategy':14s} {'predicted peak':>15s}  {'fits':4s} {'overhead':>9s} "
            f"{'recomputed':>10s}")
    if measured:
        head += f"  {'measured peak':>14s}"
        if torch:
            head += f"  {'allocator peak':>14s}"
    lines = [_chain_summary(chain), f"budget {format_size(budget)}", "", head]
    for name, (p, fits) in plans.items():
        line = (f"{name:14s} {format_size(p.peak):>15s}  {'yes' if fits else 'no':4s} "
                f"{_pct(p.overhead):>9s} {p.recomputed:10d}")
        if measured:
            m = measured.get(name)
            line += f"  {format_size(m.peak_bytes) if m is not None else '-':>14s}"
            if torch:
                a = None if m is None else m.allocator_peak_bytes
                line += f"  {format_size(a) if a is not None else '-':>14s}"
        lines.append(line)
    lines.append(f"\nfits: the strategy's plan is within the budget (a fixed strategy that is "
                 f"not is planned without it); overhead: compute over store-all "
                 f"({printable(chain.cost_unit)})")
    if torch and measured:
        lines.append("measured peak: ckpt.torch's logical count (saved tensors, activations, "
                     "parameters and gradients, each storage once); allocator peak: what "
                     "torch's allocator reported")
    return "\n".join(lines) + "\n"


def _demo_files(chain, budget, plans, measured, outdir, progress, step):
    from ..plot import memory_timeline, schedule, tradeoff
    os.makedirs(outdir, exist_ok=True)
    budgets = sorted(set(budget_range(chain, 8)) | {budget})
    progress.update(step, "sweep for the trade-off plot")
    sweep = planner.sweep(chain, list(STRATEGY_ORDER), budgets)
    figures = [("tradeoff.png", lambda: tradeoff(sweep, chain=chain, budget=budget)),
               ("memory_timeline.png", lambda: memory_timeline(
                   plans["optimal"][0], measured=getattr(measured.get("optimal"), "overlay",
                                                         None)))]
    figures += [(f"schedule_{n}.png", lambda n=n: schedule(plans[n][0]))
                for n in ("optimal", "revolve", "sqrt")]
    written = []
    for k, (name, draw) in enumerate(figures, step + 1):
        progress.update(k, f"drawing {name}")
        written.append(save_figure(draw(), os.path.join(outdir, name)))
    return written


def cmd_demo(args, out):
    _precheck_budget(args.budget)
    if args.output_dir:
        check_output_dir(args.output_dir)
    spec = args.model if args.torch is None or args.model is not None else None
    args.source = "mlp-run" if spec is None and args.torch is None else spec
    src = _resolve(args, repeats=1)
    chain = src.chain
    budget = _demo_budget(chain) if args.budget is None else parse_budget(args.budget, chain)
    if budget < chain.min_budget:
        raise UsageError(f"budget {format_size(budget)} is below the minimum feasible "
                         f"{format_size(chain.min_budget)} for model {src.name!r}")
    total = 2 * len(STRATEGY_ORDER) + 6
    plans, measured = {}, {}
    with Progress(total) as progress:
        for k, name in enumerate(STRATEGY_ORDER):
            progress.update(2 * k, f"planning {name}")
            try:
                plans[name] = (planner.plan(chain, name, budget=budget), True)
            except BudgetError:  # a fixed strategy that does not fit: show what it needs
                plans[name] = (planner.plan(chain, name), False)
            if src.measure is not None:
                progress.update(2 * k + 1, f"running {name}")
                measured[name] = src.measure(plans[name][0])
        outdir = args.output_dir or tempfile.mkdtemp(prefix="ckpt-demo-")
        written = _demo_files(chain, budget, plans, measured, outdir, progress,
                              2 * len(STRATEGY_ORDER))
    torch = args.torch is not None
    if args.json:
        base = chain.store_all_compute
        rows = []
        for name, (p, fits) in plans.items():
            m = measured.get(name)
            row = {"strategy": name, "predicted_peak_bytes": p.peak,
                   "measured_peak_bytes": None if m is None else m.peak_bytes,
                   "fits": fits, "overhead": p.overhead,
                   "compute": p.compute if base else None, "recomputed": p.recomputed}
            if torch:
                row["allocator_peak_bytes"] = None if m is None else m.allocator_peak_bytes
                row["step_seconds"] = None if m is None else m.seconds
            rows.append(row)
        out.write(json.dumps({"format": "ckpt.demo", "version": 1, "source": src.name,
                              "engine": "torch" if torch else "ckpt",
                              "chain": _chain_record(chain), "budget": budget,
                              "measured": bool(measured), "not_measured_because": src.why_not,
                              "strategies": rows, "files": written}, indent=1) + "\n")
        return EXIT_OK
    out.write(_demo_table(chain, budget, plans, measured, torch))
    if not measured:
        out.write(f"measured peak: not shown — {src.why_not}\n")
    out.write("\nwrote:\n" + "".join(f"  {printable(w)}\n" for w in written))
    return EXIT_OK

