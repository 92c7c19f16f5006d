"""``Plan``: an explicit op list with its predicted peak and compute; and ``plan(...)``, which
asks a strategy for one under a budget.

>>> from ckpt.planner import zoo
>>> p = plan(zoo.uniform(8, nbytes="1MiB"), "optimal", budget="6MiB")
>>> p.peak <= 6 * 2**20, p.overhead > 0
(True, True)
>>> Plan.from_json(p.to_json()) == p
True
"""
import json
from typing import NamedTuple

from .chain import Chain, load_json
from .errors import BudgetError, ChainFormatError
from .schedule import Op
from .simulate import simulate
from .strategies import STRATEGIES
from .strategies.store_all import store_all
from ..units import format_size, format_size_exact, parse_size, printable

__all__ = ["Plan", "plan", "StageRow"]

_FORMAT = "ckpt.plan"


def _count(n, noun):
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"




class StageRow(NamedTuple):
    """One stage of a plan (``Plan.stages()``): its ``index`` (1-based) and ``name``, how
    many ``forwards`` run it, whether it is ``recomputed`` (more than one forward), whether a
    forward that saves nothing keeps its output as a ``checkpoint``, and the chain's
    ``saved_bytes`` and ``output_bytes`` of it.

    >>> StageRow(1, "fc", 2, True, False, 8, 4).recomputed
    True
    """
    index: int
    name: str
    forwards: int
    recomputed: bool
    checkpoint: bool
    saved_bytes: int
    output_bytes: int


NAME_WIDTH_MAX = 40


def _clipped(text, width):
    """``text`` cut to ``width`` characters, ending in "..." when cut.

    >>> _clipped("transformer.h.0:GPT2Block", 16), _clipped("fc1", 16)
    ('transformer.h...', 'fc1')
    """
    return text if len(text) <= width else text[:width - 3] + "..."


class Plan:
    """A schedule for one training step of ``chain``: ``ops`` (a tuple of ``Op``), the
    ``strategy`` and ``budget`` (bytes or None) it was made for, and the simulator's
    predictions: ``peak`` (bytes), ``compute`` (chain cost unit), ``overhead`` (compute over
    store-all's, minus 1). Constructing a Plan replays the ops, so an invalid list raises
    ``InvalidPlanError`` here.

    >>> from ckpt.planner import zoo
    >>> p = Plan(zoo.uniform(2), ["forward_save 1", "forward_save 2", "backward 2", "backward 1"])
    >>> p.ops[0], p.overhead
    (forward_save 1, 0.0)
    """

    def __init__(self, chain, ops, strategy="custom", budget=None, options=None):
        self.chain = chain
        ops = [op if isinstance(op, Op) else (Op(*op) if isinstance(op, (tuple, list))
                                              else Op.parse(op)) for op in ops]
        sim = simulate(chain, ops, timeline=False)
        self.ops = tuple(ops)
        self.strategy = str(strategy)
        self.budget = None if budget is None else parse_size(budget, what="budget")
        self.options = dict(options or {})
        self.peak, self.compute, self.peak_step = sim.peak, sim.compute, sim.peak_step

    @property
    def store_all_compute(self):
        """Compute of store-all on the same chain (Σ u_f + Σ u_b).

        >>> from ckpt.planner import zoo
        >>> plan(zoo.uniform(4), "sqrt").store_all_compute
        12.0
        """
        return self.chain.store_all_compute

    @property
    def overhead(self):
        """Extra compute relative to store-all: compute / store-all compute - 1.

        >>> from ckpt.planner import zoo
        >>> round(plan(zoo.uniform(4), "recompute_all").overhead, 3)
        0.5
        """
        base = self.store_all_compute
        return self.compute / base - 1.0 if base else 0.0

    def simulate(self):
        """The full ``Simulation`` (with the per-op timeline) of this plan.

        >>> from ckpt.planner import zoo
        >>> len(plan(zoo.uniform(3), "store_all").simulate().timeline)
        6
        """
        return simulate(self.chain, self.ops)

    def __len__(self):
        return len(self.ops)

    def __iter__(self):
        return iter(self.ops)

    def __eq__(self, other):
        return (isinstance(other, Plan) and self.ops == other.ops and self.chain == other.chain
                and self.strategy == other.strategy and self.budget == other.budget)

    def __repr__(self):
        b = "no budget" if self.budget is None else f"budget {format_size(self.budget)}"
        return (f"Plan({self.strategy!r}, {b}, {len(self.ops)} ops, peak "
                f"{format_size(self.peak)}, compute {self.compute:.6g} {self.chain.cost_unit}"
                f" (+{100 * self.overhead:.1f}%))")

    def stages(self):
        """One ``StageRow`` per stage of the chain: how the plan runs it.

        >>> from ckpt.planner import zoo
        >>> [(r.forwards, r.recomputed) for r in plan(zoo.uniform(3), "recompute_all").stages()]
        [(3, True), (2, True), (1, False)]
        """
        runs, checkpoint = {}, set()
        for op in self.ops:
            if op.kind in ("forward", "forward_save"):
                runs[op.stage] = runs.get(op.stage, 0) + 1
            if op.kind == "forward":
                checkpoint.add(op.stage)
        return [StageRow(i, st.name, runs.get(i, 0), runs.get(i, 0) > 1, i in checkpoint,
                         st.saved_bytes, st.output_bytes)
                for i, st in enumerate(self.chain.stages, 1)]

    @property
    def recomputed(self):
        """The number of stages the plan runs forward more than once.

        >>> from ckpt.planner import zoo
        >>> plan(zoo.uniform(4), "store_all").recomputed, plan(zoo.uniform(4), "recompute_all").recomputed
        (0, 3)
        """
        return sum(r.recomputed for r in self.stages())

    def stage_table(self):
        """The stages as a text table (``stages()``), names made printable and clipped to
        40 characters, with a line saying what the columns mean.

        >>> from ckpt.planner import zoo
        >>> print(plan(zoo.uniform(2, nbytes=1024), "recompute_all").stage_table())
            #  stage            forwards  status      checkpoint       saved      output
            1  stage1                  2  recomputed  yes            1.0 KiB     1.0 KiB
            2  stage2                  1  kept                       1.0 KiB     1.0 KiB
        <BLANKLINE>
          forwards: times the stage runs forward (more than once = recomputed); checkpoint: its output is kept as a checkpoint by a forward that saves nothing
        """
        rows = self.stages()
        w = min(NAME_WIDTH_MAX, max([16] + [len(printable(r.name)) for r in rows]))
        lines = [f"  {'#':>3s}  {'stage':{w}s} {'forwards':>8s}  {'status':10s}  "
                 f"{'checkpoint':10s}  {'saved':>10s}  {'output':>10s}"]
        for r in rows:
            status = "recomputed" if r.recomputed else "kept"
            lines.append(f"  {r.index:3d}  {_clipped(printable(r.name), w):{w}s} "
                         f"{r.forwards:8d}  {status:10s}  {'yes' if r.checkpoint else '':10s}"
                         f"  {format_size(r.saved_bytes):>10s}  "
                         f"{format_size(r.output_bytes):>10s}")
        lines.append("")
        lines.append("  forwards: times the stage runs forward (more than once = recomputed); "
                     "checkpoint: its output is kept as a checkpoint by a forward that saves "
                     "nothing")
        return "\n".join(lines)

    def explain(self, max_ops=80):
        """A readable account: the numbers, then each op with memory during and after it
        (the peak marked). Long plans show their first and last ``max_ops // 2`` ops.

        >>> from ckpt.planner import zoo
        >>> print(plan(zoo.uniform(2, nbytes=1024), "store_all").explain())  # doctest: +NORMALIZE_WHITESPACE
        plan 'store_all' for chain 'uniform' (L=2): 4 ops, no budget
          predicted peak 4.0 KiB (4096 bytes); store-all peaks at 4.0 KiB
          predicted compute 6 unit = store-all + 0.0% (0 stages recomputed, 0 forwards redone)
          step op                during     after      alive after
             0 forward_save 1    2.0 KiB    2.0 KiB    x0 x̄1
             1 forward_save 2    3.0 KiB    3.0 KiB    x0 x̄1 x̄2
             2 backward 2        4.0 KiB    3.0 KiB    x0 x̄1 δ1   <- peak
             3 backward 1        3.0 KiB    1.0 KiB    x0
        """
        sim = self.simulate()
        L = len(self.chain)
        sa = simulate(self.chain, store_all(self.chain), timeline=False).peak
        nfwd = sum(op.kind in ("forward", "forward_save") for op in self.ops)
        b = ("no budget" if self.budget is None
             else f"budget {format_size_exact(self.budget)}")
        lines = [f"plan {self.strategy!r} for chain {self.chain.name!r} (L={L}): "
                 f"{len(self.ops)} ops, {b}",
                 f"  predicted peak {format_size_exact(self.peak)}; store-all peaks at "
                 f"{format_size(sa)}",
                 f"  predicted compute {self.compute:.6g} {self.chain.cost_unit} = store-all "
                 f"+ {100 * self.overhead:.1f}% ({_count(self.recomputed, 'stage')} recomputed, "
                 f"{_count(nfwd - L, 'forward')} redone)",
                 "  step op                during     after      alive after"]
        events = sim.timeline
        if len(events) > max_ops:
            half = max_ops // 2
            shown = events[:half] + [None] + events[-half:]
        else:
            shown = events
        for ev in shown:
            if ev is None:
                lines.append("   ...")
                continue
            mark = "   <- peak" if ev.step == sim.peak_step else ""
            lines.append(f"  {ev.step:4d} {str(ev.op):17s} {format_size(ev.during):10s} "
                         f"{format_size(ev.after):10s} {' '.join(ev.alive)}{mark}")
        return "\n".join(lines)

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self):
        """Plain data: format, strategy, budget, options, ops as ``"kind stage"`` strings,
        the predictions, and the chain (so the plan can be checked on its own).

        >>> from ckpt.planner import zoo
        >>> plan(zoo.uniform(1), "store_all").to_dict()["ops"]
        ['forward_save 1', 'backward 1']
        """
        return {"format": _FORMAT, "version": 1, "strategy": self.strategy,
                "budget": self.budget, "options": self.options,
                "peak_bytes": self.peak, "compute": self.compute,
                "ops": [str(op) for op in self.ops], "chain": self.chain.to_dict()}

    def to_json(self, indent=1):
        """JSON text of ``to_dict()``.

        >>> from ckpt.planner import zoo
        >>> '"forward_save 1"' in plan(zoo.uniform(1), "store_all").to_json()
        True
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_json(cls, text):
        """A plan from ``to_json`` text; the ops are replayed (invalid ones raise) and the
        stored predictions must match the replay.

        >>> Plan.from_json('{"format": "ckpt.plan", "ops": []')
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.ChainFormatError: malformed plan JSON at line 1, column 34: Expecting ',' delimiter
        """
        data = load_json(text, "plan")
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ChainFormatError(f"a plan must be a JSON object with format {_FORMAT!r}")
        for key in ("ops", "chain"):
            if key not in data:
                raise ChainFormatError(f"plan JSON lacks {key!r}")
        if not isinstance(data["ops"], list):
            raise ChainFormatError("plan 'ops' must be a list of 'kind stage' strings")
        try:
            ops = [Op.parse(o) for o in data["ops"]]
        except ValueError as e:
            raise ChainFormatError(f"plan 'ops': {e}") from None
        p = cls(Chain.from_dict(data["chain"]), ops, strategy=data.get("strategy", "custom"),
                budget=data.get("budget"), options=data.get("options"))
        for key, got in (("peak_bytes", p.peak), ("compute", p.compute)):
            if key in data and data[key] is not None and abs(float(data[key]) - got) > \
                    1e-9 * max(1.0, abs(got)):
                raise ChainFormatError(f"plan JSON says {key} = {data[key]}, but replaying "
                                       f"its ops gives {got}")
        return p


# The options each strategy takes, checked before the strategy runs: option -> (kind, least,
# most, why). ``most`` "L" is the chain's length, None no limit; kind "bytes" takes sizes.
STRATEGY_OPTIONS = {
    "store_all": {}, "recompute_all": {}, "min_memory": {},
    "optimal": {
        "slots": ("int", 1, 100_000, "the program's time grows as L^3 * slots and its "
                  "memory as L^2 * slots (8 bytes a cell: 100000 slots on 100 stages are 4 GB); "
                  "the default 500 is within a slot of exact for most budgets"),
        "exhaustive_max": ("int", 0, 8, "chains of at most this many stages are searched over "
                           "every op order, up to 4^L * (L + 1) states: 590 thousand at L = 8, "
                           "11.5 million at L = 10")},
    "revolve": {"snapshots": ("int", 1, "L", "one slot holds the input; more slots than "
                              "stages keep nothing more")},
    "sqrt": {"segments": ("int", 1, "L", "every segment holds at least one stage")},
    "recursive": {"leaf": ("int", 1, "L", "a leaf is a run of stages stored whole")},
    "greedy": {"threshold": ("bytes", 0, None, "a checkpoint is taken when the saved bytes "
                             "since the last one exceed it")},
}


def check_options(chain, strategy, options):
    """``options`` for ``strategy`` checked against ``STRATEGY_OPTIONS`` (names, types and
    ranges; sizes parsed to bytes), before anything is planned.

    >>> from ckpt.planner import zoo
    >>> check_options(zoo.uniform(4), "greedy", {"threshold": "1KiB"})
    {'threshold': 1024}
    >>> check_options(zoo.uniform(4), "sqrt", {"segments": 0})
    Traceback (most recent call last):
    ...
    ValueError: strategy 'sqrt': segments must be an integer from 1 to 4 (the chain's length), got 0: every segment holds at least one stage
    """
    table = STRATEGY_OPTIONS.get(strategy, {})
    checked = {}
    for name, value in options.items():
        if name not in table:
            takes = f"takes the options {sorted(table)}" if table else "takes no options"
            raise TypeError(f"strategy {strategy!r} {takes}, got {name!r}")
        kind, least, most, why = table[name]
        if value is None:           # the strategy's default
            continue
        if most == "L":
            most, span = len(chain), f"from {least} to {len(chain)} (the chain's length)"
        else:
            span = f">= {least}" if most is None else f"from {least} to {most}"
        where = f"strategy {strategy!r}: {name}"
        if kind == "bytes":
            try:
                checked[name] = parse_size(value, what=where)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{e}: {why}") from None
            continue
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise TypeError(f"{where} must be an integer {span}, got {value!r}")
        value = int(value)
        if value < least or (most is not None and value > most):
            raise ValueError(f"{where} must be an integer {span}, got {value}: {why}")
        checked[name] = value
    return checked


def plan(chain, strategy, budget=None, **options):
    """A ``Plan`` for ``chain`` from ``strategy`` (a name in ``ckpt.planner.STRATEGIES``)
    within ``budget`` (bytes or a string like ``"512MiB"``; None = unconstrained).

    For ``optimal`` and ``min_memory``, a budget below ``chain.min_budget`` raises
    ``BudgetError`` stating the minimum. The other strategies never wait for that O(L^3)
    program: their plan is made and replayed, and ``BudgetError`` is raised only when its
    peak (stated in the message) exceeds the budget.
    ``options`` go to the strategy (``slots`` for optimal, ``snapshots`` for revolve,
    ``segments`` for sqrt, ``threshold`` for greedy, ``leaf`` for recursive); they are checked
    first against ``STRATEGY_OPTIONS`` (``check_options``): an unknown name raises
    ``TypeError``, a value out of its range ``ValueError`` with the reason. A ``Graph`` or
    ``TrainingGraph`` goes to ``ckpt.planner.graph_plan.plan_graph`` (graph strategies).

    >>> from ckpt.planner import zoo
    >>> c = zoo.uniform(4, nbytes="1MiB")
    >>> plan(c, "optimal", budget="2MiB")
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.BudgetError: budget 2.0 MiB (2097152 bytes) is below the minimum feasible 5.0 MiB (5242880 bytes) for this chain ('uniform')
    """
    if not isinstance(chain, Chain):
        from .graph import Graph
        from .graph_training import TrainingGraph
        if isinstance(chain, (Graph, TrainingGraph)):
            from .graph_plan import plan_graph
            return plan_graph(chain, strategy, budget, **options)
        raise TypeError(f"plan needs a Chain, a Graph or a TrainingGraph, got "
                        f"{type(chain).__name__}")
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a name (one of {sorted(STRATEGIES)}), got a "
                        f"{type(strategy).__name__}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    options = check_options(chain, strategy, options)
    if budget is not None:
        budget = parse_size(budget, what="budget")
        if strategy in _SEARCH_FROM_THE_MINIMUM:      # the others never wait for min_budget
            minimum = chain.min_budget
            if budget < minimum:
                raise BudgetError(f"budget {format_size_exact(budget)} is below the minimum feasible "
                                  f"{format_size_exact(minimum)} for this chain ({chain.name!r})",
                                  budget=budget, minimum=minimum)
    ops = STRATEGIES[strategy](chain, budget=budget, **options)
    p = Plan(chain, ops, strategy=strategy, budget=budget, options=options)
    if budget is not None and p.peak > budget:
        raise BudgetError(f"strategy {strategy!r} needs {format_size_exact(p.peak)} on this chain "
                          f"({chain.name!r}), above the budget {format_size_exact(budget)}; "
                          f"{_least_peak_hint(chain)}", budget=budget, minimum=p.peak,
                          strategy=strategy)
    return p


# strategies that need the least feasible peak before they start (chain.min_budget)
_SEARCH_FROM_THE_MINIMUM = ("optimal", "min_memory")


def _least_peak_hint(chain):
    """Where a fixed strategy's plan does not fit: the least feasible peak when it is known
    or cheap (the min-peak program is O(L^3)), else which strategy finds it."""
    if chain.min_budget_known or len(chain) <= 300:
        return f"'optimal' fits any budget >= {format_size_exact(chain.min_budget)}"
    return ("'optimal' fits any budget down to the chain's least feasible peak "
            "(chain.min_budget, or the 'min_memory' plan's peak)")
