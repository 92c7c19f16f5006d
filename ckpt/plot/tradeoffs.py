"""``tradeoff``: what each strategy pays in compute for the memory it saves.

One point per (strategy, budget) of a planner ``Sweep``: predicted peak memory (MiB, y) against
compute overhead over store-all (%, x). Points of one strategy are joined in order of
increasing peak; the Pareto front (no other point is lower in both) is a dashed black
staircase; the budget is a red horizontal line.
"""
from ..units import format_size
from ._figure import MiB, axes, strategy_style

__all__ = ["tradeoff", "tradeoff_points"]


def _baseline(rows, chain, baseline):
    if baseline is not None:
        return float(baseline)
    if chain is not None:
        return float(chain.store_all_compute)
    feasible = [r.compute for r in rows if r.compute is not None]
    return float(min(feasible)) if feasible else 1.0


def tradeoff_points(sweep_result, chain=None, baseline=None):
    """``{strategy: [(overhead %, peak MiB), ...]}`` as ``tradeoff`` draws them: the feasible
    rows of each strategy, duplicates removed, by increasing peak. The overhead is relative
    to ``baseline`` (compute), else ``chain.store_all_compute``, else the cheapest feasible row
    (which is store-all's compute whenever some budget admits a plan without recomputation).

    >>> from ckpt import planner
    >>> c = planner.zoo.uniform(4, nbytes="1MiB")
    >>> s = planner.sweep(c, ["store_all", "recompute_all"], ["5MiB", "9MiB"])
    >>> tradeoff_points(s, chain=c)
    {'store_all': [(0.0, 6.0)], 'recompute_all': [(50.0, 5.0)]}
    """
    base = _baseline(sweep_result.rows, chain, baseline)
    out = {}
    for r in sweep_result.rows:
        pts = out.setdefault(r.strategy, [])
        if r.peak is None:
            continue
        p = (100.0 * (r.compute / base - 1.0) if base else 0.0, r.peak / MiB)
        if p not in pts:
            pts.append(p)
    return {s: sorted(pts, key=lambda p: (p[1], p[0])) for s, pts in out.items()}


def tradeoff(sweep_result, chain=None, budget=None, baseline=None, ax=None, title=None):
    """Peak memory (MiB) vs compute overhead (%) for each strategy of ``sweep_result`` (a
    ``ckpt.planner.Sweep``), its Pareto front, and the budget line. ``chain`` gives the
    store-all baseline and the minimum feasible peak (a dotted line); ``budget`` (bytes or
    "512MiB"; default: the sweep's budget when it has only one) the red line. Each
    strategy's line carries the strategy name as its ``gid``; the front's gid is
    ``"pareto"``, the budget line's ``"budget"``. Returns the Figure (never shown).

    >>> from ckpt import planner
    >>> c = planner.zoo.uniform(6, nbytes="1MiB")
    >>> s = planner.sweep(c, ["store_all", "sqrt", "optimal"], ["5MiB", "6MiB", "8MiB"])
    >>> fig = tradeoff(s, chain=c, budget="6MiB")
    >>> sorted(l.get_gid() for l in fig.axes[0].get_lines())
    ['budget', 'minimum', 'optimal', 'pareto', 'sqrt', 'store_all']
    """
    from ..units import parse_size
    fig, (ax,) = axes(ax, figsize=(8, 5))
    rows = sweep_result.rows
    points = tradeoff_points(sweep_result, chain, baseline)
    base = _baseline(rows, chain, baseline)
    for i, (name, pts) in enumerate(points.items()):
        color, marker = strategy_style(name, i)
        infeasible = sum(1 for r in rows if r.strategy == name and r.peak is None)
        label = name + (f" ({infeasible} budget{'s' * (infeasible != 1)} infeasible)"
                        if infeasible else "")
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        ax.plot(xs, ys, color=color, marker=marker, markersize=8 if marker != "*" else 12,
                linewidth=1.2, alpha=0.9, label=label, gid=name, zorder=3)
    front = sorted(((100.0 * (r.compute / base - 1.0) if base else 0.0, r.peak / MiB)
                    for r in sweep_result.front), key=lambda p: (p[0], -p[1]))
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="black", linestyle="--",
                drawstyle="steps-post", linewidth=1.0, marker="o", markerfacecolor="none",
                markersize=12, label="Pareto front", gid="pareto", zorder=2)
    if budget is None:
        budgets = sorted({r.budget for r in rows})
        budget = budgets[0] if len(budgets) == 1 else None
    if budget is not None:
        b = parse_size(budget, what="budget")
        ax.axhline(b / MiB, color="#d62728", linestyle="--", linewidth=1.2,
                   label=f"budget {format_size(b)}", gid="budget")
    if chain is not None:
        ax.axhline(chain.min_budget / MiB, color="gray", linestyle=":", linewidth=1.0,
                   label=f"least feasible peak {format_size(chain.min_budget)}", gid="minimum")
    ax.set_xlabel("compute overhead vs store-all (%)")
    ax.set_ylabel("predicted peak memory (MiB)")
    name = f" — chain {chain.name!r} (L={len(chain)})" if chain is not None else ""
    ax.set_title(title or f"memory / compute trade-off{name}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig
