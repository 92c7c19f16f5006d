"""``schedule``: what a plan does, as a stage x time diagram (the revolve / rotor picture).

Every compute op is a box at (time, stage): a first forward that keeps only its output
(a checkpoint), a first forward that saves for backward, a recomputation (any forward of
a stage that already ran), and a backward. Thin lines show how long each checkpoint x_i
and each saved x̄_i stays alive; under it, the predicted memory while each op runs.
"""
from ..units import format_size, printable
from ._figure import MiB, axes

__all__ = ["schedule", "schedule_boxes", "OP_STYLE"]

# category -> (color, legend label)
OP_STYLE = {
    "forward": ("#9ecae1", "forward, output kept as checkpoint"),
    "forward_save": ("#3182bd", "forward, saving for backward"),
    "recompute": ("#fd8d3c", "recomputation (forward again)"),
    "backward": ("#d62728", "backward"),
}


def schedule_boxes(plan, time="ops"):
    """The boxes ``schedule`` draws: ``(category, stage, start, width)`` per compute op, and
    the lifetimes ``(kind, stage, start, end)`` of checkpoints (``"x"``) and saved values
    (``"xbar"``). ``time="ops"`` gives every compute op one unit (drops take none);
    ``time="compute"`` makes widths the ops' costs in the chain's unit.

    >>> from ckpt import planner
    >>> p = planner.plan(planner.zoo.uniform(2), "recompute_all")
    >>> [str(op) for op in p.ops]
    ['forward 1', 'forward_save 2', 'backward 2', 'drop 1', 'forward_save 1', 'backward 1']
    >>> boxes, lives = schedule_boxes(p)
    >>> for b in boxes: print(b)
    ('forward', 1, 0.0, 1.0)
    ('forward_save', 2, 1.0, 1.0)
    ('backward', 2, 2.0, 1.0)
    ('recompute', 1, 3.0, 1.0)
    ('backward', 1, 4.0, 1.0)
    >>> lives
    [('xbar', 2, 1.0, 3.0), ('x', 1, 0.0, 3.0), ('xbar', 1, 3.0, 5.0)]
    """
    if time not in ("ops", "compute"):
        raise ValueError(f"time must be 'ops' or 'compute', got {time!r}")
    chain = plan.chain
    ran, boxes, lives, born = set(), [], [], {}
    t = 0.0
    for op in plan.ops:
        kind, i = op.kind, op.stage
        if kind == "drop":
            lives.append(("x", i, born.pop(("x", i)), t))
            continue
        cost = chain.uf[i] if kind in ("forward", "forward_save") else chain.ub[i]
        width = 1.0 if time == "ops" else float(cost)
        if kind == "backward":
            category = "backward"
        elif i in ran:
            category = "recompute"
        else:
            category = kind
        if kind != "backward":
            ran.add(i)
            born[("x" if kind == "forward" else "xbar", i)] = t
        boxes.append((category, i, t, width))
        t += width
        if kind == "backward":
            lives.append(("xbar", i, born.pop(("xbar", i)), t))
    return boxes, lives


def schedule(plan, time="ops", memory=True, ax=None, title=None):
    """A stage x time diagram of ``plan`` (a ``ckpt.planner.Plan``): one box per compute op
    colored by ``OP_STYLE`` (each box a Rectangle whose ``gid`` is its category),
    checkpoint and saved-value lifetimes as thin lines, and (``memory=True``, only when
    ``ax`` is not given) the predicted memory while each op runs beneath (a step patch with
    gid ``"memory"``), with the budget. Returns the Figure.

    >>> from ckpt import planner
    >>> p = planner.plan(planner.zoo.uniform(6), "revolve", snapshots=2)
    >>> fig = schedule(p)
    >>> len(fig.axes), fig.axes[0].get_ylabel()
    (2, 'stage')
    """
    chain = plan.chain
    L = len(chain)
    boxes, lives = schedule_boxes(plan, time)
    show_memory = memory and ax is None
    height = min(2.5 + 0.25 * L, 9.0)
    fig, axs = axes(ax, figsize=(10, height + (2.2 if show_memory else 0)),
                    rows=2 if show_memory else 1,
                    height_ratios=[height, 2.2] if show_memory else None, sharex=True)
    ax = axs[0]
    for category, (color, label) in OP_STYLE.items():
        sel = [b for b in boxes if b[0] == category]
        if not sel:
            continue
        ax.bar([b[2] for b in sel], 0.8, width=[b[3] for b in sel],
               bottom=[b[1] - 0.4 for b in sel], align="edge", color=color,
               edgecolor="white", linewidth=0.3 if len(boxes) < 400 else 0, label=label,
               gid=category)
    for kind, color, label, dy in (("x", "#555555", "checkpoint x_i alive", 0.45),
                                   ("xbar", "#3182bd", "saved x̄_i alive", -0.45)):
        sel = [lv for lv in lives if lv[0] == kind]
        if sel:
            ax.hlines([lv[1] + dy for lv in sel], [lv[2] for lv in sel], [lv[3] for lv in sel],
                      color=color, linewidth=1.0, label=label, gid=f"alive_{kind}")
    ax.set_ylabel("stage")
    ax.set_ylim(0.4, L + 0.6)
    if L <= 40:
        ax.set_yticks(range(1, L + 1))
        ax.set_yticklabels([f"{i} {printable(s.name)}" for i, s in enumerate(chain.stages, 1)],
                           fontsize=7 if L > 20 else 8)
    nrec = sum(1 for b in boxes if b[0] == "recompute")
    b = "" if plan.budget is None else f", budget {format_size(plan.budget)}"
    ax.set_title(title or (f"{plan.strategy!r} on {chain.name!r}: {len(plan.ops)} ops, "
                           f"{nrec} recomputations, peak {format_size(plan.peak)}{b}, "
                           f"+{100 * plan.overhead:.1f}% compute"), fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    xlabel = ("op (compute ops in order)" if time == "ops"
              else f"compute ({printable(chain.cost_unit)})")
    if show_memory:
        mem = axs[1]
        sim = plan.simulate()
        during = [ev.during / MiB for ev in sim.timeline if ev.op.kind != "drop"]
        edges = [0.0] + [b[2] + b[3] for b in boxes]
        mem.stairs(during, edges, color="#444444", fill=True, alpha=0.35,
                   label="memory while the op runs", gid="memory")
        if plan.budget is not None:
            mem.axhline(plan.budget / MiB, color="#d62728", linestyle="--", linewidth=1.0,
                        label=f"budget {format_size(plan.budget)}", gid="budget")
        top = max(during + [plan.budget / MiB if plan.budget is not None else 0.0])
        mem.set_ylim(0, 1.12 * top if top else 1)
        mem.set_ylabel("MiB")
        mem.set_xlabel(xlabel)
        mem.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        ax.set_xlabel(xlabel)
    ax.set_xlim(0, boxes[-1][2] + boxes[-1][3] if boxes else 1)
    return fig
