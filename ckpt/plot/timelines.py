"""``memory_timeline``: memory over a training step, stacked by category, predicted and
measured — the view PyTorch users know from its memory timeline.

Two sources, drawn the same way (one filled step layer per category, each layer's
``StepPatch`` carries the category as its ``gid``):

- a planner prediction (a ``Plan``, or a ``Simulation`` with its ``chain``): the memory
  while each op runs, split into parameters, input, checkpoints x_i, saved x̄_i,
  gradients δ_i and the op's transient bytes (see docs/planner.md); the layers add up to
  the simulator's ``during`` value of each op;
- a measurement (``ckpt.memory.MemoryReport``): bytes per category of ``ckpt.memory``
  after each event, and tracemalloc's bytes (plus the logical bytes at entry) as a line.

Given both (``memory_timeline(plan, measured=report)``), the measured logical total is
overlaid on the prediction. Its events are placed on the op axis by the report's marks:
when the report has exactly one ``mark`` per plan op, labelled with the op
(``report.mark(str(op))`` after each op, as an executor should), the events up to mark k
are spread over op k's slot; otherwise all events are spread evenly over the plan.
"""
from ..units import format_size
from ._figure import MiB, axes

__all__ = ["memory_timeline", "predicted_layers", "measured_layers", "measured_positions",
           "PREDICTED_CATEGORIES"]

PREDICTED_CATEGORIES = ("parameters", "input", "checkpoints", "saved_for_backward",
                        "gradients", "transient")
_COLORS = {"parameters": "#4c72b0", "input": "#8c8c8c", "checkpoints": "#937860",
           "saved_for_backward": "#c44e52", "gradients": "#dd8452", "transient": "#ccb974",
           "activations": "#55a868", "optimizer_state": "#8172b3", "other": "#937860"}


def _category_of(name):
    if name == "x0":
        return "input", ("x", 0)
    if name.startswith("x̄"):
        return "saved_for_backward", ("xbar", int(name[2:]))
    if name.startswith("δ"):
        return "gradients", ("delta", int(name[1:]))
    return "checkpoints", ("x", int(name[1:]))


def predicted_layers(chain, simulation):
    """``{category: [bytes while op k runs, ...]}`` for the ops of ``simulation`` (a
    ``ckpt.planner.Simulation`` with its timeline) on ``chain``; the categories add up to
    each event's ``during``.

    >>> from ckpt import planner
    >>> c = planner.zoo.uniform(2, nbytes=1024)
    >>> sim = planner.plan(c, "store_all").simulate()
    >>> layers = predicted_layers(c, sim)
    >>> [sum(v[k] for v in layers.values()) for k in range(4)] == [e.during for e in sim.timeline]
    True
    """
    size = {"x": chain.x, "xbar": chain.xbar, "delta": chain.delta}
    # chains that tell the transient of a saving forward apart (ō_f, ``chain.ofs``) use it
    save_transient = getattr(chain, "ofs", chain.of)
    layers = {c: [] for c in PREDICTED_CATEGORIES}
    alive = ("x0",)
    for ev in simulation.timeline:
        got = dict.fromkeys(PREDICTED_CATEGORIES, 0)
        got["parameters"] = chain.param_bytes
        for name in alive:
            cat, (kind, i) = _category_of(name)
            got[cat] += int(size[kind][i])
        kind, i = ev.op.kind, ev.op.stage
        if kind == "forward":
            got["checkpoints"] += int(chain.x[i])
            got["transient"] += int(chain.of[i])
        elif kind == "forward_save":
            got["saved_for_backward"] += int(chain.xbar[i])
            got["transient"] += int(save_transient[i])
        elif kind == "backward":
            got["gradients"] += int(chain.delta[i - 1])
            got["transient"] += int(chain.ob[i])
        for c in PREDICTED_CATEGORIES:
            layers[c].append(got[c])
        alive = ev.alive
    return layers


def measured_layers(report):
    """``{category: [bytes after event k, ...]}`` of a ``ckpt.memory.MemoryReport`` (its
    ``timeline`` events' ``bytes``), categories in the report's order.

    >>> import ckpt
    >>> with ckpt.memory.track(tracemalloc=False) as report:
    ...     y = ckpt.ones(256, requires_grad=True).exp()
    >>> layers = measured_layers(report)
    >>> [sum(v[k] for v in layers.values()) for k in range(3)] == [e.total for e in report.timeline]
    True
    """
    events = report.timeline
    cats = list(events[0].bytes) if events else []
    return {c: [e.bytes[c] for e in events] for c in cats}


def measured_positions(report, ops):
    """x positions (in plan-op units) of the report's events against the op list ``ops``:
    aligned on the marks when there is exactly one per op (labelled ``str(op)``), else
    spread evenly over ``[0, len(ops)]``.

    >>> from types import SimpleNamespace as Ev
    >>> from ckpt.planner import Op
    >>> ops = [Op("forward_save", 1), Op("backward", 1)]
    >>> report = Ev(timeline=[Ev(kind="enter", label="enter"), Ev(kind="op", label="Exp"),
    ...     Ev(kind="mark", label="forward_save 1"), Ev(kind="op", label="Sum"),
    ...     Ev(kind="free", label="free Exp"), Ev(kind="mark", label="backward 1"),
    ...     Ev(kind="exit", label="exit")])
    >>> [e.kind for e in report.timeline]
    ['enter', 'op', 'mark', 'op', 'free', 'mark', 'exit']
    >>> [round(x, 2) for x in measured_positions(report, ops)]
    [0.0, 0.5, 1.0, 1.33, 1.67, 2.0, 2.0]
    """
    events = report.timeline
    n = len(events)
    labels = [str(op) for op in ops]
    marks = [k for k, e in enumerate(events) if e.kind == "mark"]
    if labels and len(marks) == len(labels) and \
            [events[k].label for k in marks] == labels:
        xs = [0.0] * n
        start = 1 if events[0].kind == "enter" else 0  # entry stays at 0
        for j, m in enumerate(marks):
            seg = range(start, m + 1)
            for r, k in enumerate(seg, 1):
                xs[k] = j + r / len(seg)
            start = m + 1
        for k in range(start, n):  # after the last op (exit)
            xs[k] = float(len(labels))
        return xs
    width = max(len(labels), 1)
    return [width * k / max(n - 1, 1) for k in range(n)]


# legend labels where the category's name alone would mislead: a chain's param_bytes are
# the parameters and their gradients together
_LABELS = {"parameters": "params + grads"}


def _stack(ax, layers, edges, categories, alpha=0.85, labels=None):
    lower = [0.0] * (len(edges) - 1)
    for c in categories:
        vals = layers.get(c)
        if vals is None or not any(vals):
            continue
        upper = [lo + v / MiB for lo, v in zip(lower, vals)]
        ax.stairs(upper, edges, baseline=lower, fill=True, color=_COLORS.get(c, "#999999"),
                  alpha=alpha, label=(labels or {}).get(c, c.replace("_", " ")), gid=c)
        lower = upper
    return lower


def memory_timeline(data, measured=None, chain=None, ax=None, title=None):
    """Memory over a step, stacked by category. ``data`` is a ``ckpt.planner.Plan``, a
    ``ckpt.planner.Simulation`` (pass ``chain=`` to split it by category; without a chain
    only its total is drawn) or a ``ckpt.memory.MemoryReport``; ``measured`` (a
    ``MemoryReport``, an execution result holding one as ``.report``, or a
    ``ckpt.torch.execute`` result, measured per op) is overlaid on a
    prediction as its logical total (gid ``"measured"``), and, when it has one value per
    op in ``.op_peaks``, as the measured peak of each op (gid ``"measured_op_peaks"``, to
    compare op by op with the predicted ``during``). The predicted total is a line with
    gid ``"predicted"``. Returns the Figure.

    >>> from ckpt import planner
    >>> p = planner.plan(planner.zoo.uniform(4, nbytes="1MiB"), "optimal", budget="6MiB")
    >>> fig = memory_timeline(p)
    >>> [pt.get_gid() for pt in fig.axes[0].patches]   # empty categories are left out
    ['input', 'saved_for_backward', 'gradients', 'predicted']
    """
    from ..planner.plan import Plan
    from ..planner.simulate import Simulation
    fig, (ax,) = axes(ax, figsize=(9, 4.5))
    if isinstance(data, Plan):
        chain = data.chain
        ops, budget, what = data.ops, data.budget, f"plan {data.strategy!r}"
        data = data.simulate()
    elif isinstance(data, Simulation):
        ops = [ev.op for ev in data.timeline]
        budget, what = None, "simulation"
    elif hasattr(data, "timeline") and hasattr(data, "peak_bytes"):
        if measured is not None:
            raise TypeError("memory_timeline(report, measured=...): the first argument must "
                            "be the prediction (a Plan or a Simulation) when measured is given")
        return _report_timeline(fig, ax, data, title)
    else:
        raise TypeError("memory_timeline needs a ckpt.planner.Plan, a ckpt.planner.Simulation "
                        f"or a ckpt.memory.MemoryReport, got {type(data).__name__}")
    if not data.timeline:
        raise ValueError("the simulation has no timeline; run simulate(..., timeline=True)")
    n = len(data.timeline)
    edges = list(range(n + 1))
    total = [ev.during / MiB for ev in data.timeline]
    if chain is not None:
        _stack(ax, predicted_layers(chain, data), edges, PREDICTED_CATEGORIES, labels=_LABELS)
    ax.stairs(total, edges, color="black", linewidth=1.2, label="predicted total",
              gid="predicted", baseline=None)
    if measured is not None:
        op_peaks = getattr(measured, "op_peaks", None)
        report = getattr(measured, "report", measured)   # an execution result, or a report
        if hasattr(report, "peak_bytes"):
            xs = measured_positions(report, ops)
            ax.step(xs, [e.total / MiB for e in report.timeline], where="post",
                    color="#2ca02c", linewidth=1.5,
                    label=f"measured (peak {format_size(report.peak_bytes)})", gid="measured")
        elif op_peaks is not None and len(op_peaks) == n:   # ckpt.torch's execution: per op
            ax.stairs([b / MiB for b in measured.op_after], edges, color="#2ca02c",
                      linewidth=1.5, baseline=None, gid="measured",
                      label=f"measured after each op (peak "
                            f"{format_size(measured.measured_peak_bytes)})")
        else:
            raise TypeError("measured must be a MemoryReport or an execution result (with "
                            f"a .report or per-op .op_peaks), got {type(measured).__name__}")
        if op_peaks is not None and len(op_peaks) == n:
            ax.stairs([b / MiB for b in op_peaks], edges, color="#2ca02c", linestyle="--",
                      linewidth=1.2, baseline=None, label="measured peak of each op",
                      gid="measured_op_peaks")
    if budget is not None:
        ax.axhline(budget / MiB, color="#d62728", linestyle="--", linewidth=1.0,
                   label=f"budget {format_size(budget)}", gid="budget")
    # the peak is named in the legend, not in text on the plot (text there sat on the budget
    # line or ran out of the axes)
    ax.plot([max(data.peak_step, 0) + 0.5], [data.peak / MiB], linestyle="none", marker="v",
            color="black", markersize=6, label=f"predicted peak {format_size(data.peak)} "
            f"(op {max(data.peak_step, 0)})", gid="predicted_peak")
    ax.set_xlim(0, n)
    ax.set_ylim(0, max(total + [budget / MiB if budget else 0]) * 1.12)
    ax.set_xlabel("plan op")
    ax.set_ylabel("MiB")
    name = f" on {chain.name!r}" if chain is not None else ""
    ax.set_title(title or f"memory while each op runs: {what}{name}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _short(label, most=28):
    """An event label cut to ``most`` characters for a legend.

    >>> _short("recompute AddBackward0"), _short("x" * 40)
    ('recompute AddBackward0', 'xxxxxxxxxxxxxxxxxxxxxxxxxx..')
    """
    return label if len(label) <= most else label[:most - 2] + ".."


def _report_timeline(fig, ax, report, title):
    events = report.timeline
    n = len(events)
    edges = list(range(n + 1))
    layers = measured_layers(report)
    _stack(ax, layers, edges, list(layers))
    ax.stairs([e.total / MiB for e in events], edges, color="black", linewidth=1.0,
              baseline=None, label="logical total", gid="total")
    if report.tracemalloc_peak_bytes is not None:
        ax.step(list(range(n)), [(report.entry_bytes + e.traced_bytes) / MiB for e in events],
                where="post", color="#2ca02c", linewidth=1.0, label="tracemalloc (+ entry)",
                gid="tracemalloc")
    peak = report.peak_event
    if peak is not None:       # named in the legend: text on the plot was covered or clipped
        ax.axvline(peak.index + 0.5, color="black", linestyle=":", linewidth=0.8, gid="peak",
                   label=f"peak {format_size(report.peak_bytes)}\n(event {peak.index}: "
                   f"{_short(peak.label)})")
    ax.set_xlim(0, max(n, 1))
    ax.set_ylim(0, max([e.total for e in events] + [1]) / MiB * 1.08)
    ax.set_xlabel("event (op, release, mark)")
    ax.set_ylabel("MiB")
    ax.set_title(title or "measured memory by category")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
