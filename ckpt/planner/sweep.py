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
from ..units import distinct_numbers, distinct_sizes, format_size, parse_size, printable

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
    in both peak and compute, by increasing peak; ``chain``, the chain planned (its
    store-all compute gives each row's overhead), None when not known.

    >>> Sweep([Row("a", 1, 5, 2.0)], [Row("a", 1, 5, 2.0)]).front[0].compute
    2.0
    """
    rows: list
    front: list
    chain: object = None

    def records(self):
        """One plain dict per row: ``strategy``, ``budget``, ``feasible``, ``peak_bytes``,
        ``compute``, ``overhead`` (compute over store-all's, minus 1; None when infeasible or
        the chain is not known) and ``pareto`` (on the front).

        >>> from ckpt.planner import zoo
        >>> sweep(zoo.uniform(2, nbytes=1024), "recompute_all", 4096).records()
        [{'strategy': 'recompute_all', 'budget': 4096, 'feasible': True, 'peak_bytes': 4096, 'compute': 7.0, 'overhead': 0.16666666666666674, 'pareto': True}]
        """
        base = None if self.chain is None else self.chain.store_all_compute
        front = {id(r) for r in self.front}
        recs = []
        for r in self.rows:
            ok = r.peak is not None
            recs.append({"strategy": r.strategy, "budget": r.budget, "feasible": ok,
                         "peak_bytes": r.peak, "compute": r.compute,
                         "overhead": (r.compute / base - 1.0) if ok and base else None,
                         "pareto": id(r) in front})
        return recs

    def to_dict(self, chain=None):
        """Plain data (the ``ckpt sweep --json`` document): format, version, ``chain`` (the
        caller's description of the chain, when given), the strategies and budgets in
        order, and ``records()``.

        >>> from ckpt.planner import zoo
        >>> d = sweep(zoo.uniform(2, nbytes=1024), ["store_all", "sqrt"], [3072, 4096]).to_dict()
        >>> d["strategies"], d["budgets"], len(d["rows"])
        (['store_all', 'sqrt'], [3072, 4096], 4)
        """
        head = {"format": "ckpt.sweep", "version": 1}
        if chain is not None:
            head["chain"] = chain
        return {**head, "strategies": list(dict.fromkeys(r.strategy for r in self.rows)),
                "budgets": list(dict.fromkeys(r.budget for r in self.rows)),
                "rows": self.records()}

    def to_csv(self):
        """The records as CSV text, one line per row after the header (booleans as 0/1,
        missing values empty).

        >>> from ckpt.planner import zoo
        >>> print(sweep(zoo.uniform(2, nbytes=1024), "store_all", [3072, 4096]).to_csv())
        strategy,budget_bytes,feasible,peak_bytes,compute,overhead,pareto
        store_all,3072,0,,,,0
        store_all,4096,1,4096,6.0,0.000000,1
        <BLANKLINE>
        """
        lines = ["strategy,budget_bytes,feasible,peak_bytes,compute,overhead,pareto"]
        for r in self.records():
            cells = [r["strategy"], r["budget"], int(r["feasible"]),
                     "" if r["peak_bytes"] is None else r["peak_bytes"],
                     "" if r["compute"] is None else repr(r["compute"]),
                     "" if r["overhead"] is None else f"{r['overhead']:.6f}", int(r["pareto"])]
            lines.append(",".join(str(c) for c in cells))
        return "\n".join(lines) + "\n"

    def overhead_table(self):
        """The rows as a text table with each plan's overhead over store-all (needs the
        chain) and its Pareto mark, and a line saying what they mean. Budgets, peaks and
        computes get the digits it takes to tell every two of them apart.

        >>> from ckpt.planner import zoo
        >>> print(sweep(zoo.uniform(2, nbytes=1024), "store_all", [3072, 4096]).overhead_table())
        strategy            budget        peak  overhead       compute  pareto
        store_all          3.0 KiB  infeasible         -             -
        store_all          4.0 KiB     4.0 KiB      0.0%             6  *
        <BLANKLINE>
        infeasible: no plan of the strategy fits the budget; *: on the Pareto front (no other plan has both a lower peak and less compute); compute in unit
        """
        if self.chain is None:
            raise ValueError("overhead_table needs the sweep's chain (Sweep.chain is None): "
                             "make the sweep with ckpt.planner.sweep(chain, ...)")
        recs = self.records()
        sizes = sorted({r["budget"] for r in recs} | {r["peak_bytes"] for r in recs
                                                       if r["feasible"]})
        shown = dict(zip(sizes, distinct_sizes(sizes)))
        costs = sorted({r["compute"] for r in recs if r["feasible"]})
        cost_text = dict(zip(costs, distinct_numbers(costs)))
        width = max([11] + [len(s) for s in shown.values()])
        lines = [f"{'strategy':14s} {'budget':>{width}s} {'peak':>{width}s} {'overhead':>9s}  "
                 f"{'compute':>12s}  pareto"]
        for r in recs:
            if r["feasible"]:
                cells = (shown[r["peak_bytes"]], f"{100 * r['overhead']:.1f}%",
                         cost_text[r["compute"]], "*" if r["pareto"] else "")
            else:
                cells = ("infeasible", "-", "-", "")
            lines.append(f"{r['strategy']:14s} {shown[r['budget']]:>{width}s} "
                         f"{cells[0]:>{width}s} {cells[1]:>9s}  {cells[2]:>12s}  "
                         f"{cells[3]}".rstrip())
        lines += ["", "infeasible: no plan of the strategy fits the budget; *: on the Pareto "
                  "front (no other plan has both a lower peak and less compute); compute in "
                  f"{printable(self.chain.cost_unit)}"]
        return "\n".join(lines)

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
        label = size_labels([r.budget for r in self.rows])
        out = [f"{'strategy':14s} {'budget':12s} {'fits':5s} {'peak':12s} compute"]
        for r in self.rows:
            fits = r.peak is not None
            peak = format_size(r.peak) if fits else "-"
            comp = f"{r.compute:.6g}" if fits else "-"
            out.append(f"{r.strategy:14s} {label[r.budget]:12s} {'yes' if fits else 'no':5s} "
                       f"{peak:12s} {comp}")
        return "\n".join(out)


def size_labels(sizes):
    """``{size: label}`` with the fewest decimals (1 to 4) that print distinct sizes apart
    (exact byte counts if even 4 do not).

    >>> size_labels([3 * 2**30, 3 * 2**30 + 2**20])
    {3221225472: '3.000 GiB', 3222274048: '3.001 GiB'}
    >>> size_labels([100, 200])
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


def sweep(chain, strategies, budgets, options=None, progress=None):
    """Plan every strategy at every budget (bytes or strings); ``options`` maps a strategy
    name to its keyword options; ``progress(done, label)``, when given, is called before
    each plan with the number of plans made so far. Returns a ``Sweep`` (rows, Pareto front
    and the chain).

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
            if progress is not None:
                progress(len(rows), f"{name} @ {format_size(b)}")
            try:
                p = plan(chain, name, budget=b, **options.get(name, {}))
                rows.append(Row(name, b, p.peak, p.compute))
            except BudgetError:
                rows.append(Row(name, b, None, None))
    return Sweep(rows, pareto_front(rows), chain)


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
