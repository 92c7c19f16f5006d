"""``sweep``: every strategy at every budget, and the Pareto front of (peak, compute).

>>> from ckpt.planner import zoo
>>> r = sweep(zoo.uniform(6, nbytes=1024), ["store_all", "sqrt", "optimal"], ["5KiB", "8KiB"])
>>> [(row.strategy, row.budget, row.peak) for row in r.rows][:2]
[('store_all', 5120, None), ('store_all', 8192, 8192)]
>>> all(row.peak is not None for row in r.front)
True
"""
from typing import NamedTuple

from .errors import BudgetError
from .plan import plan
from .units import format_size, parse_size

__all__ = ["sweep", "Row", "Sweep"]


class Row(NamedTuple):
    """One point: ``strategy``, ``budget`` (bytes), predicted ``peak`` (bytes) and ``compute``;
    ``peak`` and ``compute`` are None when the strategy cannot meet the budget.

    >>> Row("sqrt", 1024, None, None).peak is None
    True
    """
    strategy: str
    budget: int
    peak: object
    compute: object


class Sweep(NamedTuple):
    """``rows`` (every strategy x budget) and ``front``: the feasible rows no other row beats
    in both peak and compute, by increasing peak.

    >>> Sweep([Row("a", 1, 5, 2.0)], [Row("a", 1, 5, 2.0)]).front[0].compute
    2.0
    """
    rows: list
    front: list

    def table(self):
        """The rows as a text table.

        >>> from ckpt.planner import zoo
        >>> print(sweep(zoo.uniform(2, nbytes=1024), ["store_all"], [4096]).table())
        strategy       budget       peak         compute
        store_all      4.0 KiB      4.0 KiB      6
        """
        out = [f"{'strategy':14s} {'budget':12s} {'peak':12s} compute"]
        for r in self.rows:
            peak = "-" if r.peak is None else format_size(r.peak)
            comp = "infeasible" if r.compute is None else f"{r.compute:.6g}"
            out.append(f"{r.strategy:14s} {format_size(r.budget):12s} {peak:12s} {comp}")
        return "\n".join(out)


def pareto_front(rows):
    """The rows not dominated in (peak, compute) (both lower is better), sorted by peak;
    among equal points the first is kept.

    >>> pareto_front([Row("a", 1, 10, 5.0), Row("b", 1, 8, 6.0), Row("c", 1, 9, 7.0)])
    [Row(strategy='b', budget=1, peak=8, compute=6.0), Row(strategy='a', budget=1, peak=10, compute=5.0)]
    """
    pts = sorted((r for r in rows if r.peak is not None), key=lambda r: (r.peak, r.compute))
    front, best = [], float("inf")
    for r in pts:
        if r.compute < best:
            front.append(r)
            best = r.compute
    return front


def sweep(chain, strategies, budgets, options=None):
    """Plan every strategy at every budget (bytes or strings); ``options`` maps a strategy
    name to its keyword options. Returns a ``Sweep`` (rows + Pareto front).

    >>> from ckpt.planner import zoo
    >>> s = sweep(zoo.uniform(4, nbytes=1024), ["optimal"], [8192], {"optimal": {"slots": 64}})
    >>> s.front[0].strategy
    'optimal'
    """
    options = options or {}
    rows = []
    for name in strategies:
        for b in budgets:
            b = parse_size(b, what="budget")
            try:
                p = plan(chain, name, budget=b, **options.get(name, {}))
                rows.append(Row(name, b, p.peak, p.compute))
            except BudgetError:
                rows.append(Row(name, b, None, None))
    return Sweep(rows, pareto_front(rows))
