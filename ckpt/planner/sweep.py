"""``sweep``: every strategy at every budget, and the Pareto front of (peak, compute).

>>> from ckpt.planner import zoo
>>> r = sweep(zoo.uniform(6, nbytes=1024), ["store_all", "sqrt", "optimal"], ["5KiB", "8KiB"])
>>> [(row.strategy, row.budget, row.peak) for row in r.rows][:2]
[('store_all', 5120, None), ('store_all', 8192, 8192)]
>>> all(row.peak is not None for row in r.front)
True
"""
import numbers
from typing import NamedTuple

from .errors import BudgetError
from .plan import plan
from .strategies import STRATEGIES
from ..units import format_size, parse_size

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

        A strategy that cannot meet a budget reads "no" under "fits", with no peak or
        compute. Budgets that would print alike get more digits (or bytes).

        >>> from ckpt.planner import zoo
        >>> print(sweep(zoo.uniform(2, nbytes=1024), "store_all", [3072, 4096]).table())
        strategy       budget       fits  peak         compute
        store_all      3.0 KiB      no    -            -
        store_all      4.0 KiB      yes   4.0 KiB      6
        >>> print(sweep(zoo.uniform(2, nbytes=1024), "store_all", [4096, 4100]).table())
        strategy       budget       fits  peak         compute
        store_all      4.000 KiB    yes   4.0 KiB      6
        store_all      4.004 KiB    yes   4.0 KiB      6
        """
        label = distinct_sizes([r.budget for r in self.rows])
        out = [f"{'strategy':14s} {'budget':12s} {'fits':5s} {'peak':12s} compute"]
        for r in self.rows:
            fits = r.peak is not None
            peak = format_size(r.peak) if fits else "-"
            comp = f"{r.compute:.6g}" if fits else "-"
            out.append(f"{r.strategy:14s} {label[r.budget]:12s} {'yes' if fits else 'no':5s} "
                       f"{peak:12s} {comp}")
        return "\n".join(out)


def distinct_sizes(sizes):
    """``{size: label}`` with the fewest decimals (1 to 4) that print distinct sizes apart
    (exact byte counts if even 4 do not).

    >>> distinct_sizes([3 * 2**30, 3 * 2**30 + 2**20])
    {3221225472: '3.000 GiB', 3222274048: '3.001 GiB'}
    >>> distinct_sizes([100, 200])
    {100: '100 B', 200: '200 B'}
    """
    sizes = sorted(set(sizes))
    for digits in range(1, 5):
        labels = {n: format_size(n, digits) for n in sizes}
        if len(set(labels.values())) == len(sizes):
            return labels
    return {n: f"{n} B" for n in sizes}


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

    A single strategy name or a single budget stands for a list of one:

    >>> [r.strategy for r in sweep(zoo.uniform(4, nbytes=1024), "optimal", "8KiB").rows]
    ['optimal']
    """
    strategies = _one_or_many(strategies, "strategies", str)
    budgets = _one_or_many(budgets, "budgets", (str, numbers.Real))
    unknown = [name for name in strategies if name not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strateg{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(map(repr, unknown))}; choose from {sorted(STRATEGIES)}")
    budgets = [parse_size(b, what="budget") for b in budgets]
    options = options or {}
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise TypeError("options must map a strategy name to a dict of its options, like "
                        "{'optimal': {'slots': 1000}}")
    rows = []
    for name in strategies:
        for b in budgets:
            try:
                p = plan(chain, name, budget=b, **options.get(name, {}))
                rows.append(Row(name, b, p.peak, p.compute))
            except BudgetError:
                rows.append(Row(name, b, None, None))
    return Sweep(rows, pareto_front(rows))


def _one_or_many(values, what, single):
    """A list from a list (or other iterable) of values or a single value."""
    if isinstance(values, single) and not isinstance(values, bool):
        return [values]
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{what} must be a list (or one value), got a "
                        f"{type(values).__name__}") from None
    if not values:
        raise ValueError(f"{what} is empty: give at least one")
    return values
