"""Shared plumbing of the plots: a bare ``Figure`` (no pyplot, so no GUI backend is ever
touched and saving renders with Agg), MiB, and one color per strategy and per op kind."""
MiB = float(2 ** 20)

# one color and marker per planner strategy, stable across plots
STRATEGY_STYLE = {
    "store_all": ("#4c72b0", "s"), "recompute_all": ("#937860", "v"),
    "sqrt": ("#dd8452", "^"), "greedy": ("#8172b3", "D"), "recursive": ("#da8bc3", "P"),
    "revolve": ("#55a868", "o"), "optimal": ("#c44e52", "*"), "min_memory": ("#64b5cd", "X"),
}
_FALLBACK = ["#8c8c8c", "#ccb974", "#1f77b4", "#2ca02c"]


def strategy_style(name, i=0):
    """``(color, marker)`` of a strategy (unknown names cycle through spare colors).

    >>> strategy_style("optimal")
    ('#c44e52', '*')
    """
    return STRATEGY_STYLE.get(name, (_FALLBACK[i % len(_FALLBACK)], "o"))


def axes(ax=None, figsize=(8, 5), rows=1, height_ratios=None, sharex=False):
    """``(figure, [axes...])``: the given ``ax`` (one) or a new constrained-layout Figure.

    >>> fig, (ax,) = axes()
    >>> type(fig).__name__
    'Figure'
    """
    if ax is not None:
        return ax.figure, [ax]
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, layout="constrained")
    if rows == 1:
        return fig, [fig.add_subplot()]
    got = fig.subplots(rows, 1, sharex=sharex,
                       gridspec_kw={"height_ratios": height_ratios} if height_ratios else None)
    return fig, list(got)
