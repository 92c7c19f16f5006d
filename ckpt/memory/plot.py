"""Plot a ``MemoryReport``: bytes per category stacked over the timeline, in MiB.

Draws on a bare ``matplotlib.figure.Figure`` (no pyplot, no GUI backend: it works headless
and renders with Agg when saved) and returns it.
"""
from .accounting.buffers import CATEGORIES
from .report import MiB

COLORS = {"parameters": "#4c72b0", "optimizer_state": "#8172b3", "gradients": "#dd8452",
          "saved_for_backward": "#c44e52", "activations": "#55a868", "other": "#937860"}


def plot_report(report, ax=None, title=None):
    """Stacked area of each category (MiB) per event, tracemalloc's current bytes (plus the
    logical bytes at entry, so both start level) as a black line, the logical peak marked.
    Draws into ``ax`` if given, else a new figure; returns the figure.

    >>> import ckpt
    >>> with ckpt.memory.track() as report:
    ...     ckpt.ones(1000, requires_grad=True).exp().sum().backward()
    >>> fig = report.plot()
    >>> type(fig).__name__, fig.axes[0].get_ylabel()
    ('Figure', 'MiB')
    """
    if ax is None:
        from matplotlib.figure import Figure
        fig = Figure(figsize=(9, 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    events = report.timeline
    x = [e.index for e in events]
    series = [[e.bytes[c] / MiB for e in events] for c in CATEGORIES]
    ax.stackplot(x, *series, labels=[c.replace("_", " ") for c in CATEGORIES],
                 colors=[COLORS[c] for c in CATEGORIES], step="post", alpha=0.85)
    if report.tracemalloc_peak_bytes is not None:
        ax.step(x, [(report.entry_bytes + e.traced_bytes) / MiB for e in events], where="post",
                color="black", linewidth=1.0, label="tracemalloc (+ entry)")
    peak = report.peak_event
    if peak is not None:
        ax.axvline(peak.index, color="black", linestyle="--", linewidth=0.8)
        right = bool(x) and peak.index > 0.6 * x[-1]  # keep the label inside the axes
        ax.annotate(f"logical peak {report.peak_bytes / MiB:.2f} MiB\n{peak.label}",
                    xy=(peak.index, report.peak_bytes / MiB), xytext=(-4 if right else 4, -4),
                    textcoords="offset points", va="top", ha="right" if right else "left",
                    fontsize=8, bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8})
    ax.set_xlabel("event (op, release, mark)")
    ax.set_ylabel("MiB")
    ax.set_xlim(x[0] if x else 0, x[-1] if x else 1)
    ax.set_title(title or "memory held by category")
    ax.legend(loc="upper left", fontsize=8)
    return fig
