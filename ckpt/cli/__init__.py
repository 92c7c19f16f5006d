"""The ``ckpt`` command line (also ``python -m ckpt``): plan what to keep and what to recompute
under a memory budget, from a built-in model or a chain JSON file.

    ckpt demo                                   every strategy on a built-in model, plots
    ckpt profile --list                         the built-in models
    ckpt profile resnet -o chain.json           a model as a chain JSON file
    ckpt plan chain.json --budget 600MiB        the optimal plan as a table (--json: JSON)
    ckpt sweep resnet --budgets 8 --plot t.png  trade-off curves of every strategy
    ckpt simulate chain.json plan.json          replay a plan: validity, peak, compute
    ckpt graph resnet -o graph.dot              the graph as Graphviz DOT (or .png)

Exit status: 0 on success, 2 for a mistake in the command or its inputs (one line on stderr
says what is wrong and what would be right; never a traceback), 1 when ``simulate`` finds
the plan invalid. Sizes are parsed and printed with ``ckpt.planner``'s units ("512MiB",
"2GB", or bytes).

A MODEL is a runnable built-in model (``ckpt.models``: ``mlp-run``, ``resnet-run``,
``transformer-run``), profiled by running it (``ckpt.planner.profile``) and executed by
``ckpt demo`` (``ckpt.planner.execute``), or a chain of the planner zoo at real sizes, whose
costs come from layer formulas.
"""
import argparse
import inspect
import json
import math
import os
import re
import sys
import time

from . import models, planner
from .planner import Chain, Op, format_size, parse_size, zoo
from .planner.chain import load_json
from .planner.errors import BudgetError, ChainError, InvalidPlanError, PlannerError
from .planner.strategies.store_all import store_all
from .planner.sweep import Row, Sweep, pareto_front

__all__ = ["main", "build_parser", "UsageError"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
STRATEGY_ORDER = ("store_all", "sqrt", "greedy", "recursive", "revolve", "optimal",
                  "min_memory", "recompute_all")


class UsageError(Exception):
    """A mistake in the command line or its inputs: printed as one line, exit status 2."""


# ---- the model edge: MODEL -> Chain, Plan -> measurement --------------------------------
def model_names():
    """Names ``MODEL`` may take (``ckpt profile --list``): the runnable ``ckpt.models``
    (profiled by running them) and the planner zoo's chains (from layer formulas).

    >>> model_names()
    ['mlp', 'mlp-run', 'resnet', 'resnet-run', 'transformer', 'transformer-run', 'uniform', 'vgg16']
    """
    return sorted(set(zoo.NAMES) | set(models.NAMES))


def _check_batch(name, batch):
    if batch is not None and batch <= 0:
        raise UsageError(f"--batch must be a positive integer, got {batch}")
    if batch is not None and name in zoo.NAMES and \
            "batch" not in inspect.signature(zoo.NAMES[name]).parameters:
        takes = [n for n in model_names()
                 if n in models.NAMES or "batch" in inspect.signature(zoo.NAMES[n]).parameters]
        raise UsageError(f"model {name!r} has no batch size; --batch applies to "
                         f"{', '.join(takes)}")


def _unknown_model(name):
    return UsageError(f"unknown model {name!r}; built-in models: {', '.join(model_names())}"
                      " (or give a chain JSON file)")


def _profile_model(name, batch=None):
    """The chain of built-in model ``name`` at batch size ``batch`` (None: its default):
    for a runnable model (``ckpt.models``) measured by ``ckpt.planner.profile`` (times in
    seconds, bytes exact); for a zoo model, costs in FLOPs and sizes in bytes from the
    layers' formulas, nothing run.

    >>> _profile_model("mlp", batch=2).input_bytes
    6272
    >>> _profile_model("mlp-run", batch=2).cost_unit
    's'
    """
    if name not in zoo.NAMES and name not in models.NAMES:
        raise _unknown_model(name)
    _check_batch(name, batch)
    if name in models.NAMES:
        return planner.profile(*models.build(name, batch), name=name)
    return zoo.NAMES[name]() if batch is None else zoo.NAMES[name](batch=batch)


def _model_graph(name, batch=None):
    """What ``ckpt graph MODEL`` draws: for a runnable model the graph recorded by one
    forward pass and its loss (``output.sum()``, as the profiler's), with the model's
    parameters named; for a zoo model its chain."""
    if name not in models.NAMES:
        return _profile_model(name, batch), None
    _check_batch(name, batch)
    model, x = models.build(name, batch)
    return model(x).sum(), dict(model.named_parameters())


def _runnable_model(name, batch=None):
    """``(model, input)`` of a built-in ``ckpt.nn`` model that ``ckpt demo`` profiles and
    runs, or None for a model known only as a chain (see ``ckpt.models``).

    >>> model, x = _runnable_model("mlp-run"); len(model), x.shape
    (16, (512, 256))
    """
    if name not in models.NAMES:
        return None
    _check_batch(name, batch)
    return models.build(name, batch)


def _measure(plan, runnable):
    """Run ``plan`` on the runnable model it was made for and measure the step: the
    ``ckpt.planner.execute`` result (``.peak_bytes`` measured by ``ckpt.memory``, ``.report``
    marked once per op, which ``ckpt.plot.memory_timeline`` overlays on the prediction).
    Raises ``NotImplementedError`` for a model known only as a chain: no measured number is
    ever made up."""
    if runnable is None:
        raise NotImplementedError("the model is known only as a chain of formulas; measuring "
                                  f"needs a runnable model ({', '.join(models.NAMES)})")
    model, x = runnable
    return planner.execute(model, plan, x)


# ---- inputs -------------------------------------------------------------------------------
def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path!r} ({what})") from None
    except IsADirectoryError:
        raise UsageError(f"{path!r} is a directory, not a file ({what})") from None
    except OSError as e:
        raise UsageError(f"cannot read {path!r}: {e.strerror}") from None


def _looks_like_path(spec):
    return spec.endswith(".json") or os.sep in spec or (os.altsep or os.sep) in spec


def _chain_from_file(path):
    text = _read(path, "expected a chain JSON file, e.g. from 'ckpt profile MODEL -o "
                       "chain.json', or a built-in model: " + ", ".join(model_names()))
    try:
        data = load_json(text, "chain")
        if isinstance(data, dict) and data.get("format") == "ckpt.plan" and "chain" in data:
            data = data["chain"]  # a plan file carries its chain
        return Chain.from_dict(data)
    except ChainError as e:
        raise UsageError(f"{path}: {e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text (UTF-8) file; expected chain JSON") from None


def _load_chain(spec, batch=None):
    """A Chain from a built-in model name or a chain JSON file."""
    if spec in model_names() and not os.path.isfile(spec):
        return _profile_model(spec, batch)
    if os.path.exists(spec) or _looks_like_path(spec):
        if batch is not None:
            raise UsageError("--batch applies to built-in models, not to chain files")
        return _chain_from_file(spec)
    return _profile_model(spec, batch)  # raises: unknown model, with the names


def _parse_budget(text, chain=None, what="budget"):
    hint = f" (this chain needs at least {format_size(chain.min_budget)})" if chain else ""
    if str(text).strip().startswith("-"):
        raise UsageError(f"{what} {text} is negative; give a size like 512MiB{hint}")
    try:
        return parse_size(text, what=what)
    except (TypeError, ValueError) as e:
        raise UsageError(str(e)) from None


def _split(values):
    out = []
    for v in values or ():
        out.extend(p for p in str(v).replace(",", " ").split() if p)
    return out


def _parse_strategies(values):
    names = _split(values) or list(STRATEGY_ORDER)
    for n in names:
        if n not in planner.STRATEGIES:
            raise UsageError(f"unknown strategy {n!r}; choose from "
                             f"{', '.join(STRATEGY_ORDER)}")
    return list(dict.fromkeys(names))


def _store_all_peak(chain):
    return planner.simulate(chain, store_all(chain), timeline=False).peak


def _budget_range(chain, n):
    """``n`` budgets evenly spaced from the least feasible peak to store-all's peak."""
    lo, hi = chain.min_budget, _store_all_peak(chain)
    if n == 1 or hi <= lo:
        return [hi]
    return sorted({lo + (hi - lo) * k // (n - 1) for k in range(n)})


def _parse_budgets(values, chain):
    parts = _split(values) or ["8"]
    if len(parts) == 1 and parts[0].isdigit():
        n = int(parts[0])
        if not 1 <= n <= 1000:
            raise UsageError(f"--budgets {n}: give a count from 1 to 1000, or sizes like "
                             "512MiB,1GiB")
        return _budget_range(chain, n)
    return sorted({_parse_budget(p, chain, what="--budgets value") for p in parts})


def _load_ops(path):
    """The op list of a plan JSON file (``ckpt plan --json`` output, or a bare list of
    ``"kind stage"`` strings) and the plan's own data (or None)."""
    text = _read(path, "expected a plan JSON file, e.g. from 'ckpt plan ... -o plan.json'")
    try:
        data = load_json(text, "plan")
    except ChainError as e:
        raise UsageError(f"{path}: {e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text (UTF-8) file; expected plan JSON") from None
    meta = None
    if isinstance(data, dict):
        if data.get("format", "ckpt.plan") != "ckpt.plan":
            raise UsageError(f"{path}: format is {data.get('format')!r}, expected 'ckpt.plan' "
                             "(the second argument is the plan; the first is the chain)")
        if "ops" not in data:
            raise UsageError(f"{path}: plan JSON lacks 'ops' (a list of 'kind stage' strings)")
        meta, data = data, data["ops"]
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a plan object or a list of ops like "
                         "'forward_save 1'")
    ops = []
    for k, o in enumerate(data):
        try:
            ops.append(Op.parse(o))
        except ValueError as e:
            raise UsageError(f"{path}: ops[{k}]: {e}") from None
    return ops, meta


# ---- outputs ------------------------------------------------------------------------------
def _write(path, text):
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None


def _save_figure(fig, path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".svg", ".pdf"):
        raise UsageError(f"cannot draw to {path!r}: use a .png, .svg or .pdf file name")
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise UsageError(f"cannot write {path!r}: {e.strerror}") from None
    return path


def _pct(x):
    return f"{100 * x:.1f}%"


def _fmt_cost(x, unit):
    return f"{x:.4g} {unit}"


class _Progress:
    """A one-line progress bar on a terminal's stderr: drawn only when the stream is a
    terminal and the work has taken longer than ``delay`` seconds; erased when done.

    >>> import io
    >>> out = io.StringIO()
    >>> p = _Progress(4, stream=out, enabled=True, delay=0)
    >>> p.update(2, "sqrt"); p.close()
    >>> "2/4" in out.getvalue()
    True
    >>> _Progress(4, stream=io.StringIO()).enabled   # not a terminal: off
    False
    """

    def __init__(self, total, stream=None, enabled=None, delay=0.5, width=28):
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled, self.total, self.delay, self.width = enabled, max(total, 1), delay, width
        self.start = time.monotonic()
        self.last = -1.0
        self.shown = 0

    def update(self, done, label=""):
        now = time.monotonic()
        if not self.enabled or now - self.start < self.delay:
            return
        if done < self.total and now - self.last < 0.05:  # redraw at most 20 times a second
            return
        self.last = now
        fill = int(self.width * done / self.total)
        line = f"\r[{'#' * fill}{'.' * (self.width - fill)}] {done}/{self.total} {label}"
        self.stream.write(line.ljust(self.shown))
        self.stream.flush()
        self.shown = len(line)

    def close(self):
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.stream.flush()


# ---- commands -----------------------------------------------------------------------------
def _chain_summary(chain):
    return (f"chain {chain.name!r}: {len(chain)} stages, input {format_size(chain.input_bytes)}, "
            f"params+grads {format_size(chain.param_bytes)}, costs in {chain.cost_unit}; "
            f"store-all peak {format_size(_store_all_peak(chain))}, least feasible peak "
            f"{format_size(chain.min_budget)}")


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
        out.write(f"  {name:16s} {len(chain):6d}  {format_size(_store_all_peak(chain)):>14s}"
                  f"  {_first_sentence(fn)}\n")


def cmd_profile(args, out):
    if args.list:
        if args.batch is not None or args.model is not None or args.output is not None:
            raise UsageError("--list takes no MODEL, --batch or -o")
        _list_models(out)
        return EXIT_OK
    if args.model is None:
        raise UsageError("give a MODEL to profile (see 'ckpt profile --list'), or --list")
    if args.model not in model_names() and (os.path.exists(args.model)
                                            or _looks_like_path(args.model)):
        raise UsageError(f"{args.model!r} is a file; profile takes a built-in model name: "
                         f"{', '.join(model_names())}")
    chain = _profile_model(args.model, args.batch)
    if args.output is None:
        out.write(chain.to_json() + "\n")
        return EXIT_OK
    _write(args.output, chain.to_json())
    out.write(_chain_summary(chain) + "\n")
    if args.model in models.NAMES:
        out.write("source: measured by running the model (ckpt.planner.profile: median of 3 "
                  "timed runs, bytes through the saved-tensor hooks)\n")
    else:
        out.write("source: built-in model formulas (planner zoo), not a measurement\n")
    out.write(f"wrote {args.output}\n")
    return EXIT_OK


def _stage_table(p):
    runs, checkpoint = {}, set()
    for op in p.ops:
        if op.kind in ("forward", "forward_save"):
            runs[op.stage] = runs.get(op.stage, 0) + 1
        if op.kind == "forward":
            checkpoint.add(op.stage)
    rows = []
    for i, st in enumerate(p.chain.stages, 1):
        rows.append((i, st.name, runs.get(i, 0), "recomputed" if runs.get(i, 0) > 1 else "kept",
                     "yes" if i in checkpoint else "", st.saved_bytes, st.output_bytes))
    return rows


def _plan_text(p):
    chain = p.chain
    rows = _stage_table(p)
    nrec = sum(1 for r in rows if r[3] == "recomputed")
    b = "no budget" if p.budget is None else f"budget {format_size(p.budget)}"
    lines = [f"plan {p.strategy!r} for chain {chain.name!r} ({len(chain)} stages), {b}",
             f"  predicted peak   {format_size(p.peak)} ({p.peak} bytes)",
             f"  store-all peak   {format_size(_store_all_peak(chain))}; least feasible peak "
             f"{format_size(chain.min_budget)}",
             f"  compute          {_fmt_cost(p.compute, chain.cost_unit)} = store-all + "
             f"{_pct(p.overhead)} overhead",
             f"  stages           {len(rows) - nrec} kept, {nrec} recomputed; {len(p.ops)} ops",
             "",
             f"  {'#':>3s}  {'stage':16s} {'forwards':>8s}  {'status':10s}  {'checkpoint':10s}"
             f"  {'saved':>10s}  {'output':>10s}"]
    for i, name, n, status, ck, saved, outb in rows:
        lines.append(f"  {i:3d}  {name[:16]:16s} {n:8d}  {status:10s}  {ck:10s}  "
                     f"{format_size(saved):>10s}  {format_size(outb):>10s}")
    lines.append("")
    lines.append("  forwards: times the stage runs forward (more than once = recomputed); "
                 "checkpoint: its output is kept as a checkpoint by a forward that saves nothing")
    return "\n".join(lines)


def cmd_plan(args, out):
    chain = _load_chain(args.source, args.batch)
    strategy = _parse_strategies([args.strategy])[0]
    budget = None if args.budget is None else _parse_budget(args.budget, chain)
    p = planner.plan(chain, strategy, budget=budget)
    if args.output:
        _write(args.output, p.to_json())
    if args.json:
        out.write(p.to_json() + "\n")
    else:
        out.write(_plan_text(p) + "\n")
        if args.explain:
            out.write("\n" + p.explain(max_ops=10 ** 9) + "\n")
        if args.output:
            out.write(f"wrote {args.output}\n")
    return EXIT_OK


def _run_sweep(chain, strategies, budgets, progress=None):
    rows = []
    total = len(strategies) * len(budgets)
    for name in strategies:
        for b in budgets:
            if progress is not None:
                progress.update(len(rows), f"{name} @ {format_size(b)}")
            try:
                p = planner.plan(chain, name, budget=b)
                rows.append(Row(name, b, p.peak, p.compute))
            except BudgetError:
                rows.append(Row(name, b, None, None))
    if progress is not None:
        progress.update(total)
        progress.close()
    return Sweep(rows, pareto_front(rows))


def _sweep_records(chain, result):
    base = chain.store_all_compute
    front = {id(r) for r in result.front}
    recs = []
    for r in result.rows:
        ok = r.peak is not None
        recs.append({"strategy": r.strategy, "budget": r.budget, "feasible": ok,
                     "peak_bytes": r.peak, "compute": r.compute,
                     "overhead": (r.compute / base - 1.0) if ok and base else None,
                     "pareto": id(r) in front})
    return recs


def cmd_sweep(args, out):
    chain = _load_chain(args.source, args.batch)
    strategies = _parse_strategies(args.strategies)
    budgets = _parse_budgets(args.budgets, chain)
    progress = _Progress(len(strategies) * len(budgets), enabled=None if args.progress else False)
    result = _run_sweep(chain, strategies, budgets, progress)
    recs = _sweep_records(chain, result)
    if args.json:
        out.write(json.dumps({
            "format": "ckpt.sweep", "version": 1,
            "chain": {"name": chain.name, "stages": len(chain), "cost_unit": chain.cost_unit,
                      "store_all_compute": chain.store_all_compute,
                      "store_all_peak_bytes": _store_all_peak(chain),
                      "min_budget": chain.min_budget},
            "strategies": strategies, "budgets": budgets, "rows": recs}, indent=1) + "\n")
    elif args.csv:
        out.write("strategy,budget_bytes,feasible,peak_bytes,compute,overhead,pareto\n")
        for r in recs:
            cells = [r["strategy"], r["budget"], int(r["feasible"]),
                     "" if r["peak_bytes"] is None else r["peak_bytes"],
                     "" if r["compute"] is None else repr(r["compute"]),
                     "" if r["overhead"] is None else f"{r['overhead']:.6f}", int(r["pareto"])]
            out.write(",".join(str(c) for c in cells) + "\n")
    else:
        out.write(_chain_summary(chain) + "\n\n")
        out.write(f"{'strategy':14s} {'budget':>11s} {'peak':>11s} {'overhead':>9s}  "
                  f"{'compute':>12s}  pareto\n")
        for r in recs:
            if r["feasible"]:
                cells = (format_size(r["peak_bytes"]), _pct(r["overhead"]),
                         f"{r['compute']:.4g}", "*" if r["pareto"] else "")
            else:
                cells = ("-", "-", "infeasible", "")
            out.write(f"{r['strategy']:14s} {format_size(r['budget']):>11s} {cells[0]:>11s} "
                      f"{cells[1]:>9s}  {cells[2]:>12s}  {cells[3]}\n".rstrip() + "\n")
        out.write("\n*: on the Pareto front (no other plan has both a lower peak and less "
                  f"compute); compute in {chain.cost_unit}\n")
    if args.plot:
        from .plot import tradeoff
        _save_figure(tradeoff(result, chain=chain), args.plot)
        (sys.stderr if (args.json or args.csv) else out).write(f"wrote {args.plot}\n")
    return EXIT_OK


def cmd_simulate(args, out):
    chain = _load_chain(args.chain)
    ops, meta = _load_ops(args.plan)
    notes = []
    if meta and isinstance(meta.get("chain"), dict):
        try:
            own = Chain.from_dict(meta["chain"])
        except ChainError:
            own = None
        if own is not None and own != chain:
            notes.append(f"the plan was made for chain {own.name!r} ({len(own)} stages); "
                         f"replaying it on {chain.name!r} ({len(chain)} stages)")
    label = f"plan {meta.get('strategy', 'custom')!r}" if meta else "plan"
    head = f"{label} ({len(ops)} ops) on chain {chain.name!r} ({len(chain)} stages)"
    try:
        sim = planner.simulate(chain, ops)
    except InvalidPlanError as e:
        if args.json:
            out.write(json.dumps({"valid": False, "reason": str(e), "step": e.step,
                                  "notes": notes}) + "\n")
        else:
            out.write("\n".join([head, "valid: no", f"reason: {e}"] +
                                [f"note: {n}" for n in notes]) + "\n")
        return EXIT_INVALID
    base = chain.store_all_compute
    overhead = sim.compute / base - 1.0 if base else 0.0
    if meta and meta.get("peak_bytes") not in (None, sim.peak):
        notes.append(f"the plan file says peak {meta['peak_bytes']} bytes; the replay gives "
                     f"{sim.peak}")
    if args.json:
        out.write(json.dumps({"valid": True, "peak_bytes": sim.peak, "compute": sim.compute,
                              "overhead": overhead, "peak_step": sim.peak_step,
                              "ops": len(ops), "cost_unit": chain.cost_unit,
                              "notes": notes}) + "\n")
        return EXIT_OK
    at = ("before the first op" if sim.peak_step < 0
          else f"at step {sim.peak_step} ({ops[sim.peak_step]})")
    lines = [head, "valid: yes", f"peak: {format_size(sim.peak)} ({sim.peak} bytes) {at}",
             f"compute: {_fmt_cost(sim.compute, chain.cost_unit)} (store-all + "
             f"{_pct(overhead)})"]
    out.write("\n".join(lines + [f"note: {n}" for n in notes]) + "\n")
    return EXIT_OK


def cmd_graph(args, out):
    if args.source in model_names() and not os.path.isfile(args.source):
        obj, params = _model_graph(args.source, args.batch)
    else:
        obj, params = _load_chain(args.source, args.batch), None
    from .plot import graphs
    if args.output is None:
        out.write(graphs.to_dot(obj, params) + "\n")
        return EXIT_OK
    ext = os.path.splitext(args.output)[1].lower()
    if ext in (".dot", ".gv"):
        _write(args.output, graphs.to_dot(obj, params))
    elif ext in (".png", ".svg", ".pdf"):
        _save_figure(graphs.graph(obj, params), args.output)
    else:
        raise UsageError(f"cannot write a graph to {args.output!r}: use .dot or .gv (Graphviz "
                         "text), or .png, .svg or .pdf (a drawing)")
    out.write(f"wrote {args.output}\n")
    return EXIT_OK


def _demo_budget(chain):
    lo, hi = chain.min_budget, _store_all_peak(chain)
    return int(math.ceil((lo + 0.35 * (hi - lo)) / 2 ** 20)) * 2 ** 20


def cmd_demo(args, out):
    import tempfile
    runnable = _runnable_model(args.model, args.batch)
    if runnable is not None:
        chain = planner.profile(*runnable, repeats=1, name=args.model)
    else:
        chain = _profile_model(args.model, args.batch)
    budget = (_demo_budget(chain) if args.budget is None
              else _parse_budget(args.budget, chain))
    if budget < chain.min_budget:
        raise UsageError(f"budget {format_size(budget)} is below the minimum feasible "
                         f"{format_size(chain.min_budget)} for model {args.model!r}")
    outdir = args.output_dir or tempfile.mkdtemp(prefix="ckpt-demo-")
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {outdir!r}: {e.strerror}") from None
    out.write(_chain_summary(chain) + "\n")
    out.write(f"budget {format_size(budget)}\n\n")
    plans, reports, missing = {}, {}, None
    for name in STRATEGY_ORDER:
        try:
            plans[name] = (planner.plan(chain, name, budget=budget), True)
        except BudgetError:  # a fixed strategy that does not fit: show what it would need
            plans[name] = (planner.plan(chain, name), False)
        try:
            reports[name] = _measure(plans[name][0], runnable)
        except NotImplementedError as e:
            missing = str(e)
    head = (f"{'strategy':14s} {'predicted peak':>15s}  {'fits':4s} {'overhead':>9s} "
            f"{'recomputed':>10s}")
    if reports:
        head += f"  {'measured peak':>14s}"
    out.write(head + "\n")
    for name, (p, fits) in plans.items():
        nrec = sum(1 for r in _stage_table(p) if r[3] == "recomputed")
        line = (f"{name:14s} {format_size(p.peak):>15s}  {'yes' if fits else 'no':4s} "
                f"{_pct(p.overhead):>9s} {nrec:10d}")
        if reports:
            r = reports.get(name)
            line += f"  {format_size(r.peak_bytes) if r is not None else '-':>14s}"
        out.write(line + "\n")
    out.write(f"\nfits: the strategy's plan is within the budget (a fixed strategy that is not "
              f"is planned without it); overhead: compute over store-all ({chain.cost_unit})\n")
    if missing:
        out.write(f"measured peak: not shown — {missing}\n")
    from .plot import memory_timeline, schedule, tradeoff
    written = []
    budgets = sorted(set(_budget_range(chain, 8)) | {budget})
    sweep = _run_sweep(chain, list(STRATEGY_ORDER), budgets)
    written.append(_save_figure(tradeoff(sweep, chain=chain, budget=budget),
                                os.path.join(outdir, "tradeoff.png")))
    best = plans["optimal"][0]
    written.append(_save_figure(memory_timeline(best, measured=reports.get("optimal")),
                                os.path.join(outdir, "memory_timeline.png")))
    for name in ("optimal", "revolve", "sqrt"):
        written.append(_save_figure(schedule(plans[name][0]),
                                    os.path.join(outdir, f"schedule_{name}.png")))
    out.write("\nwrote:\n" + "".join(f"  {w}\n" for w in written))
    return EXIT_OK


# ---- the parser ---------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) that point to the subcommand's --help."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


_EXAMPLES = {
    "profile": """examples:
  ckpt profile --list                       the built-in models
  ckpt profile resnet-run -o chain.json     run a residual conv net: measured chain as JSON
  ckpt profile resnet -o resnet.json        a real-size chain from layer formulas
  ckpt profile transformer --batch 4        print the chain JSON at batch size 4

MODEL-run models are ckpt.nn networks, profiled by running them (times in seconds, bytes
measured); the others are the planner zoo's formula chains (FLOPs, bytes), nothing run""",
    "plan": """examples:
  ckpt plan resnet --budget 600MiB                   optimal plan as a table
  ckpt plan chain.json --budget 2GB --strategy revolve
  ckpt plan resnet --budget 600MiB --json -o plan.json
  ckpt plan mlp --budget 60MiB --explain             plus op-by-op memory

budgets: bytes or a size with a unit (512MiB, 2GiB, 1.5GB); below the least feasible peak
the error says what the minimum is""",
    "sweep": """examples:
  ckpt sweep resnet                                  8 budgets, every strategy
  ckpt sweep resnet --budgets 16 --plot tradeoff.png
  ckpt sweep chain.json --strategies optimal,revolve,sqrt --budgets 500MiB,700MiB
  ckpt sweep transformer --csv > sweep.csv

--budgets N (a bare integer) spreads N budgets from the least feasible peak to store-all's
peak; otherwise give sizes (comma or space separated)""",
    "simulate": """examples:
  ckpt simulate chain.json plan.json
  ckpt simulate resnet plan.json --json

exit status: 0 when the plan is valid, 1 when it is not (the reason is printed), 2 for
unreadable input""",
    "graph": """examples:
  ckpt graph resnet-run --batch 2 -o g.dot the recorded autograd graph of one forward pass
  ckpt graph resnet                        a chain's stages as Graphviz DOT on stdout
  ckpt graph chain.json -o graph.dot       (render with: dot -Tpng graph.dot -o graph.png)
  ckpt graph mlp-run -o graph.png          drawn with networkx + matplotlib""",
    "demo": """examples:
  ckpt demo                                a runnable MLP: predicted vs measured, files in a temp dir
  ckpt demo --model resnet-run             a residual conv net, also run and measured
  ckpt demo --model resnet                 the real-size ResNet-like chain (planned only)
  ckpt demo --model transformer --budget 2GiB -o demo/""",
}


def build_parser():
    """The ``ckpt`` argument parser (subcommands: demo, profile, plan, sweep, simulate,
    graph).

    >>> build_parser().parse_args(["plan", "mlp", "--budget", "60MiB"]).strategy
    'optimal'
    """
    from . import __version__
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="ckpt", formatter_class=fmt,
                     description="Plan activation checkpointing under a memory budget: which "
                                 "activations to keep, which to recompute.",
                     epilog="run 'ckpt COMMAND --help' for a command's options and examples")
    parser.add_argument("--version", action="version", version=f"ckpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    model_list = ", ".join(model_names())

    def add(name, help_text, func):
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=fmt,
                           epilog=_EXAMPLES[name])
        p.set_defaults(func=func)
        return p

    p = add("demo", "every strategy on a built-in model at a budget: table and plots", cmd_demo)
    p.add_argument("--model", default="mlp-run",
                   help=f"built-in model: {', '.join(models.NAMES)} (profiled, planned and run: "
                        f"predicted vs measured) or one of {', '.join(sorted(zoo.NAMES))} "
                        f"(planned only); default mlp-run")
    p.add_argument("--budget", help="memory budget (default: 35%% of the way from the least "
                                    "feasible peak to store-all's)")
    p.add_argument("--batch", type=int, help="batch size of the model")
    p.add_argument("-o", "--output-dir", help="where to write the PNGs (default: a new "
                                              "temporary directory)")

    p = add("profile", "a built-in model as a chain JSON", cmd_profile)
    p.add_argument("model", nargs="?", metavar="MODEL", help=f"one of {model_list}")
    p.add_argument("--list", action="store_true", help="list the built-in models")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("-o", "--output", metavar="CHAIN.json", help="write the chain here "
                   "(default: print it)")

    src = f"a chain JSON file or a built-in model ({model_list})"
    p = add("plan", "the plan of a strategy under a budget", cmd_plan)
    p.add_argument("source", metavar="CHAIN.json|MODEL", help=src)
    p.add_argument("--budget", "-b", help="memory budget, e.g. 512MiB (default: none)")
    p.add_argument("--strategy", "-s", default="optimal",
                   help=f"one of {', '.join(STRATEGY_ORDER)} (default optimal)")
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("-o", "--output", metavar="PLAN.json", help="also write the plan JSON here")
    p.add_argument("--explain", action="store_true", help="also print every op with the "
                                                          "memory during and after it")

    p = add("sweep", "trade-off curves: every strategy at several budgets", cmd_sweep)
    p.add_argument("source", metavar="CHAIN.json|MODEL", help=src)
    p.add_argument("--strategies", nargs="+", metavar="NAME",
                   help="strategies (comma or space separated; default: all)")
    p.add_argument("--budgets", nargs="+", metavar="N|SIZE",
                   help="a count (default 8) or a list of sizes")
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("--plot", metavar="OUT.png", help="draw the trade-off plot here")
    fmt_group = p.add_mutually_exclusive_group()
    fmt_group.add_argument("--json", action="store_true", help="print the rows as JSON")
    fmt_group.add_argument("--csv", action="store_true", help="print the rows as CSV")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (it is shown only on a terminal anyway)")

    p = add("simulate", "replay a plan on a chain: validity, peak, compute", cmd_simulate)
    p.add_argument("chain", metavar="CHAIN.json", help=src)
    p.add_argument("plan", metavar="PLAN.json", help="a plan JSON file (ckpt plan -o)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = add("graph", "the graph of a model or chain (Graphviz DOT or a drawing)", cmd_graph)
    p.add_argument("source", metavar="MODEL|CHAIN.json", help=src)
    p.add_argument("--batch", type=int, help="batch size of a built-in model")
    p.add_argument("-o", "--output", metavar="OUT", help=".dot/.gv for DOT text, "
                   ".png/.svg/.pdf for a drawing (default: DOT on stdout)")
    return parser


_VALUE_OPTIONS = ("--budget", "-b", "--budgets")


def _join_negative_values(argv):
    """``--budget -5MiB`` would read as an unknown option; pass it as ``--budget=-5MiB`` so
    the budget check can say what is wrong with it."""
    out, k = [], 0
    while k < len(argv):
        tok = argv[k]
        nxt = argv[k + 1] if k + 1 < len(argv) else None
        if tok in _VALUE_OPTIONS and nxt and nxt.startswith("-") and nxt[1:2].isdigit():
            out.append(f"{tok}={nxt}")
            k += 2
            continue
        out.append(tok)
        k += 1
    return out


def main(argv=None):
    """Run the ``ckpt`` command line; returns the exit status.

    >>> main(["plan", "uniform", "--budget", "1KiB"])
    2
    """
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    prog, args = "ckpt", None
    if argv and argv[0] in _EXAMPLES:
        prog = f"ckpt {argv[0]}"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("choose a command: demo, profile, plan, sweep, simulate, graph "
                             "(see 'ckpt --help')")
        prog = f"ckpt {args.command}"
        return args.func(args, sys.stdout)
    except (UsageError, PlannerError) as e:
        msg = " ".join(str(e).split("\n")).replace("(see 'ckpt --help')",
                                                    f"(see '{prog} --help')")
        sys.stderr.write(f"{prog}: error: {msg}\n")
        return EXIT_USAGE
    except MemoryError as e:  # e.g. a runnable model at a huge --batch
        batch = getattr(args, "batch", None)
        hint = f" at --batch {batch}" if batch is not None else ""
        detail = f" ({' '.join(str(e).split())})" if str(e) else ""
        sys.stderr.write(f"{prog}: error: not enough memory to build or run the model{hint}"
                         f"{detail}; try a smaller --batch\n")
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `ckpt profile resnet | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
