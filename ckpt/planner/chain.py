"""The planner's input: a chain of L stages with the cost model of Beaumont et al. (2019).

Stage i (1..L) maps x_{i-1} to x_i. Per stage the chain records (rotor paper notation):

=====================  ==========  =================================================
field                  symbol      meaning
=====================  ==========  =================================================
``forward_cost``       u_f^i       cost of F_i (unit: ``chain.cost_unit``)
``backward_cost``      u_b^i       cost of B_i
``output_bytes``       ω_x^i       bytes of the output x_i (and of its gradient δ_i)
``saved_bytes``        ω_x̄^i       bytes F_i leaves alive when it saves for backward:
                                   its output x_i plus everything it saves, counting
                                   each buffer once, *excluding* its input x_{i-1} and
                                   the parameters (so ω_x̄^i >= ω_x^i)
``forward_transient``  o_f^i       extra bytes alive only while F_i runs without
                                   saving (op ``forward i``)
``backward_transient`` o_b^i       extra bytes alive only while B_i runs
``forward_save_        ō_f^i       extra bytes alive only while F_i runs saving (op
transient``                        ``forward_save i``); defaults to o_f^i
``direct_backward_     ō_b^i       o_b^i as measured when the autograd engine runs
transient``                        B_i (``ckpt.torch`` runs every B_i so): it frees
                                   δ_i once used, so this may be below o_b^i, even
                                   negative (down to -ω_x^{i-1}); planners and the
                                   simulator use it where given (``chain.ob``); None
                                   (the default): o_b^i applies
=====================  ==========  =================================================

The two forward transients differ on real stages: without saving, an intermediate is freed
as soon as the next op has used it; saving keeps some intermediates (they are in ω_x̄^i,
not in the transient), so the peak of ``forward_save i`` above ω_x̄^i is usually smaller
than the peak of ``forward i`` above ω_x^i. A profiled chain measures both.

plus ``input_bytes`` (ω_x^0, the input, owned by the caller and alive throughout) and
``param_bytes`` (a constant: parameters and their gradients). How these combine into memory
is the simulator's job (``ckpt.planner.simulate``; docs/planner.md).

Two optional parts of those constants appear later than the step's start (a profiled torch
model has them; they default to 0): ``input_late_bytes`` of ``input_bytes`` appear with the
first forward of stage 1 (what a model's own code keeps beside the stages until its forward
returns and beyond: masks, position ids), ``param_late_bytes`` of ``param_bytes`` when
backward L finishes (the loss and its seed, a tied weight's gradient waiting for its second
contribution). The simulator counts them from then; the planners count them throughout, so a
plan's predicted peak is never above what its strategy planned for.

A ``Chain`` is immutable; ``chain.graph`` is a networkx ``DiGraph`` 0 -> 1 -> ... -> L whose
node i carries stage i's fields (node 0 carries ``output_bytes`` = ω_x^0), and the numpy views
(``chain.uf``, ``chain.x``, ...) are what strategies read.

>>> c = Chain([Stage("a", 1, 2, 10, 10), Stage("b", 1, 2, 20, 30)], input_bytes=5)
>>> len(c), c.x.tolist(), c.xbar.tolist()
(2, [5, 10, 20], [0, 10, 30])
>>> Chain.from_json(c.to_json()) == c
True
"""
import json
import math
from dataclasses import dataclass, fields

import networkx as nx
import numpy as np

from .errors import ChainError, ChainFormatError
from ..units import format_size, parse_size

__all__ = ["Stage", "Chain"]

_FORMAT = "ckpt.chain"
_VERSION = 1


@dataclass(frozen=True)
class Stage:
    """One stage of a chain: costs in the chain's unit, sizes in bytes (see the module doc).

    ``forward_save_transient`` left at None means "the same as ``forward_transient``" (a
    ``Chain`` fills it in); ``direct_backward_transient`` left at None, that
    ``backward_transient`` is what the stage's backward holds.

    >>> Stage("conv1", forward_cost=2.0, backward_cost=4.0, output_bytes=64, saved_bytes=96)
    Stage(name='conv1', forward_cost=2.0, backward_cost=4.0, output_bytes=64, saved_bytes=96, forward_transient=0, backward_transient=0, forward_save_transient=None, direct_backward_transient=None)
    """
    name: str
    forward_cost: float
    backward_cost: float
    output_bytes: int
    saved_bytes: int
    forward_transient: int = 0
    backward_transient: int = 0
    forward_save_transient: int = None
    direct_backward_transient: int = None


_LATE_FIELDS = ("input_late_bytes", "param_late_bytes")
_BYTE_FIELDS = ("output_bytes", "saved_bytes", "forward_transient", "backward_transient",
                "forward_save_transient")
_COST_FIELDS = ("forward_cost", "backward_cost")


def _check_stage(i, st):
    where = f"stage {i} ({st.name!r})"
    vals = {}
    for f in _COST_FIELDS:
        v = getattr(st, f)
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ChainError(f"{where}: {f} must be a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise ChainError(f"{where}: {f} must be a finite number >= 0, got {v!r}")
        vals[f] = v
    for f in _BYTE_FIELDS:
        v = getattr(st, f)
        if f == "forward_save_transient" and v is None:
            v = vals["forward_transient"]
        try:
            vals[f] = parse_size(v, what=f"{where}: {f}", whole=True)
        except (TypeError, ValueError) as e:
            raise ChainError(str(e)) from None
    direct = st.direct_backward_transient
    if direct is not None:
        if isinstance(direct, bool) or not isinstance(direct, (int, np.integer)):
            raise ChainError(f"{where}: direct_backward_transient must be a whole number of "
                             f"bytes (it may be negative) or null, got {direct!r}")
        if direct > vals["backward_transient"]:
            raise ChainError(f"{where}: direct_backward_transient ({direct}) is at most "
                             f"backward_transient ({vals['backward_transient']}): an executor "
                             "leaves B_i to the engine only where that holds less")
        direct = int(direct)
    vals["direct_backward_transient"] = direct
    if vals["saved_bytes"] < vals["output_bytes"]:
        raise ChainError(
            f"{where}: saved_bytes (x̄ = {vals['saved_bytes']}) must include the output "
            f"(output_bytes = {vals['output_bytes']}); x̄ counts the output buffer too")
    return Stage(str(st.name), **vals)


def _stage_dict(st):
    data = {f.name: getattr(st, f.name) for f in fields(Stage)}
    if data["direct_backward_transient"] is None:
        del data["direct_backward_transient"]    # the default: chains without it read alike
    return data


class Chain:
    """A chain of stages with per-stage costs and sizes (see the module doc for the model).

    ``stages`` is a list of ``Stage``; ``input_bytes`` and ``param_bytes`` accept bytes or
    strings like ``"3MiB"``; ``cost_unit`` names the unit of the costs ("flop", "s", ...).

    >>> c = Chain([Stage("s1", 1, 2, "1KiB", "2KiB")], input_bytes="1KiB", name="tiny")
    >>> c
    Chain('tiny', L=1, input 1.0 KiB, params+grads 0 B, cost unit 'unit')
    >>> c.graph.nodes[1]["saved_bytes"]
    2048
    """

    def __init__(self, stages, input_bytes=0, param_bytes=0, name="chain", cost_unit="unit",
                 input_late_bytes=0, param_late_bytes=0):
        stages = list(stages)
        if not stages:
            raise ChainError("a chain needs at least one stage")
        checked = []
        for i, st in enumerate(stages, 1):
            if not isinstance(st, Stage):
                raise ChainError(f"stage {i}: expected a Stage, got {type(st).__name__}")
            checked.append(_check_stage(i, st))
        try:
            self.input_bytes = parse_size(input_bytes, what="input_bytes")
            self.param_bytes = parse_size(param_bytes, what="param_bytes")
            self.input_late_bytes = parse_size(input_late_bytes, what="input_late_bytes")
            self.param_late_bytes = parse_size(param_late_bytes, what="param_late_bytes")
        except (TypeError, ValueError) as e:
            raise ChainError(str(e)) from None
        for part, whole in (("input_late_bytes", "input_bytes"),
                            ("param_late_bytes", "param_bytes")):
            if getattr(self, part) > getattr(self, whole):
                raise ChainError(f"{part} ({getattr(self, part)}) is a part of {whole} "
                                 f"({getattr(self, whole)}): it can be at most that")
        self.stages = tuple(checked)
        self.name = str(name)
        self.cost_unit = str(cost_unit)
        L = len(checked)
        # 1-based numpy views; index 0 is the input (x) or unused (0)
        self.uf = np.array([0.0] + [s.forward_cost for s in checked])
        self.ub = np.array([0.0] + [s.backward_cost for s in checked])
        self.x = np.array([self.input_bytes] + [s.output_bytes for s in checked], dtype=np.int64)
        self.xbar = np.array([0] + [s.saved_bytes for s in checked], dtype=np.int64)
        self.of = np.array([0] + [s.forward_transient for s in checked], dtype=np.int64)
        self.ofs = np.array([0] + [s.forward_save_transient for s in checked], dtype=np.int64)
        # o_b^i as the planners and the simulator count it: ō_b^i where the chain measured it
        self.ob = np.array([0] + [s.backward_transient if s.direct_backward_transient is None
                                  else s.direct_backward_transient for s in checked],
                           dtype=np.int64)
        for i in range(1, L + 1):
            least = -int(self.x[i - 1]) if i > 1 else 0     # minus δ_{i-1}, which B_i makes
            if self.ob[i] < least:
                raise ChainError(
                    f"stage {i} ({checked[i - 1].name!r}): direct_backward_transient "
                    f"({self.ob[i]}) is below {least}, minus the gradient B_{i} makes: "
                    "memory while an op runs is at least the memory before it")
        # bytes of the gradient δ_i that lives between B_{i+1} and B_i: none for the input
        # (data gets no gradient) and none for x_L (the loss seed is part of B_L's transient)
        self.delta = self.x.copy()
        self.delta[0] = 0
        self.delta[L] = 0
        for a in (self.uf, self.ub, self.x, self.xbar, self.of, self.ofs, self.ob,
                  self.delta):
            a.setflags(write=False)
        self._cache = {}

    # ---- basic protocol -------------------------------------------------------------------
    def __len__(self):
        return len(self.stages)

    def __eq__(self, other):
        return (isinstance(other, Chain) and self.stages == other.stages
                and self.input_bytes == other.input_bytes
                and self.param_bytes == other.param_bytes and self.name == other.name
                and self.cost_unit == other.cost_unit
                and self.late_bytes == other.late_bytes)

    def __hash__(self):
        return hash((self.stages, self.input_bytes, self.param_bytes, self.name,
                     self.late_bytes))

    @property
    def late_bytes(self):
        """The parts of the constants that appear late: a dict with ``input_late_bytes``
        and ``param_late_bytes`` (see the module doc), for ``Chain(..., **late_bytes)``.

        >>> Chain([Stage("a", 1, 2, 8, 8)], param_bytes=16, param_late_bytes=8).late_bytes
        {'input_late_bytes': 0, 'param_late_bytes': 8}
        """
        return {"input_late_bytes": self.input_late_bytes,
                "param_late_bytes": self.param_late_bytes}

    def __repr__(self):
        return (f"Chain({self.name!r}, L={len(self)}, input {format_size(self.input_bytes)}, "
                f"params+grads {format_size(self.param_bytes)}, cost unit {self.cost_unit!r})")

    @property
    def graph(self):
        """The chain as a networkx ``DiGraph`` 0 -> 1 -> ... -> L (node attributes = fields).

        >>> Chain([Stage("a", 1, 1, 4, 4), Stage("b", 1, 1, 4, 4)]).graph.number_of_edges()
        2
        """
        if "graph" not in self._cache:
            g = nx.DiGraph(name=self.name, cost_unit=self.cost_unit,
                           param_bytes=self.param_bytes, **self.late_bytes)
            g.add_node(0, name="input", output_bytes=self.input_bytes)
            for i, st in enumerate(self.stages, 1):
                g.add_node(i, **{f.name: getattr(st, f.name) for f in fields(Stage)})
                g.add_edge(i - 1, i, bytes=int(self.x[i - 1]))
            self._cache["graph"] = g
        return self._cache["graph"]

    @classmethod
    def from_graph(cls, graph):
        """A chain from a networkx path graph 0 -> 1 -> ... -> L laid out like ``chain.graph``.

        >>> c = Chain([Stage("a", 1, 2, 8, 8)], input_bytes=4)
        >>> Chain.from_graph(c.graph) == c
        True
        """
        order = list(nx.topological_sort(graph))
        if order != list(range(len(order))) or any(
                set(graph.successors(i)) != {i + 1} for i in order[:-1]):
            raise ChainError("the graph is not a chain 0 -> 1 -> ... -> L; reduce it to a "
                             "chain of stages first")
        stages = [Stage(**{f.name: graph.nodes[i][f.name] for f in fields(Stage)
                          if f.name in graph.nodes[i]})
                  for i in order[1:]]
        return cls(stages, input_bytes=graph.nodes[0].get("output_bytes", 0),
                   param_bytes=graph.graph.get("param_bytes", 0),
                   name=graph.graph.get("name", "chain"),
                   cost_unit=graph.graph.get("cost_unit", "unit"),
                   **{k: graph.graph.get(k, 0) for k in _LATE_FIELDS})

    # ---- derived numbers ------------------------------------------------------------------
    @property
    def store_all_compute(self):
        """Compute of one training step that stores everything: Σ u_f + Σ u_b.

        >>> Chain([Stage("a", 1, 2, 8, 8), Stage("b", 3, 4, 8, 8)]).store_all_compute
        10.0
        """
        total = 0.0
        for cost in [*self.uf.tolist(), *self.ub.tolist()[::-1]]:
            total += cost   # in a store-all step's order, one by one as the simulator adds
        return total       # them: a plan recomputing nothing has exactly this compute

    @property
    def min_budget(self):
        """The smallest peak (bytes) any schedule of the planner's class reaches on this chain.

        Exact (no discretization): ``ckpt.planner.min_budget.least_peak``, O(L^2) where two
        bounds meet, else the min-peak program of ``ckpt.planner.min_peak`` (O(L^3), up to
        1,000 stages). Budgets below it raise ``BudgetError`` in ``plan``.

        >>> Chain([Stage("a", 1, 2, 8, 8)], input_bytes=4).min_budget
        12
        """
        if "min_budget" not in self._cache:
            from .min_budget import least_peak
            self._cache["min_budget"] = least_peak(self)
        return self._cache["min_budget"]

    @property
    def min_budget_known(self):
        """Whether ``min_budget`` is already computed: a caller that only reports it can
        leave it out for long chains.

        >>> c = Chain([Stage("a", 1, 2, 8, 8)]); c.min_budget_known
        False
        >>> _ = c.min_budget; c.min_budget_known
        True
        """
        return "min_budget" in self._cache or "min_peak" in self._cache

    @property
    def min_peak(self):
        """The tables of the min-peak program (``ckpt.planner.min_peak.MinPeak``), cached.

        >>> int(Chain([Stage("a", 1, 2, 8, 8)], input_bytes=4).min_peak.peak[1, 1])
        8
        """
        if "min_peak" not in self._cache:
            from .min_peak import min_peak_table
            self._cache["min_peak"] = min_peak_table(self)
        return self._cache["min_peak"]

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self):
        """The chain as plain data in the documented JSON schema (see ``to_json``).

        >>> Chain([Stage("a", 1, 2, 8, 8)]).to_dict()["stages"][0]["saved_bytes"]
        8
        """
        late = {k: v for k, v in self.late_bytes.items() if v}
        return {"format": _FORMAT, "version": _VERSION, "name": self.name,
                "cost_unit": self.cost_unit, "input_bytes": self.input_bytes,
                "param_bytes": self.param_bytes, **late,
                "stages": [_stage_dict(st) for st in self.stages]}

    def to_json(self, indent=1):
        """JSON text of the chain. Schema (version 1)::

            {"format": "ckpt.chain", "version": 1, "name": str, "cost_unit": str,
             "input_bytes": bytes, "param_bytes": bytes,
             "stages": [{"name": str, "forward_cost": number, "backward_cost": number,
                         "output_bytes": bytes, "saved_bytes": bytes,
                         "forward_transient": bytes, "backward_transient": bytes,
                         "forward_save_transient": bytes}, ...]}

        ``bytes`` is an integer or a string with a unit ("3MiB"); the transients default to
        0 (``forward_save_transient`` to ``forward_transient``); "format", "version",
        "name", "cost_unit" and "param_bytes" are optional, and so are "input_late_bytes"
        and "param_late_bytes" (bytes, 0 when absent; see the module doc).

        >>> '"saved_bytes": 8' in Chain([Stage("a", 1, 2, 8, 8)]).to_json()
        True
        """
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data):
        """A chain from plain data in the schema of ``to_json``; errors name the bad field.

        >>> Chain.from_dict({"stages": [{"name": "a", "forward_cost": 1, "backward_cost": 1,
        ...                              "output_bytes": 8, "saved_bytes": 4}]})
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.ChainError: stage 1 ('a'): saved_bytes (x̄ = 4) must include the output (output_bytes = 8); x̄ counts the output buffer too
        """
        if not isinstance(data, dict):
            raise ChainFormatError(f"a chain must be a JSON object, got {type(data).__name__}")
        for key in ("name", "cost_unit"):
            if key in data and not isinstance(data[key], str):
                raise ChainFormatError(f"chain field {key!r} must be a string, got "
                                       f"{type(data[key]).__name__} {data[key]!r}")
        for key in ("input_bytes", "param_bytes", *_LATE_FIELDS):
            if key in data:
                try:
                    parse_size(data[key], what=f"chain field {key!r}", whole=True)
                except (TypeError, ValueError) as e:
                    raise ChainFormatError(str(e)) from None
        if data.get("format", _FORMAT) != _FORMAT:
            raise ChainFormatError(f"format must be {_FORMAT!r}, got {data.get('format')!r}")
        if data.get("version", _VERSION) != _VERSION:
            raise ChainFormatError(f"unsupported chain version {data.get('version')!r} "
                                   f"(this ckpt reads version {_VERSION})")
        known = {"format", "version", "name", "cost_unit", "input_bytes", "param_bytes",
                 "stages", *_LATE_FIELDS}
        extra = sorted(set(data) - known)
        if extra:
            raise ChainFormatError(f"unknown chain field(s) {extra}; known: {sorted(known)}")
        if "stages" not in data or not isinstance(data["stages"], list):
            raise ChainFormatError("'stages' must be a list of stage objects")
        names = {f.name for f in fields(Stage)}
        required = {"name", "forward_cost", "backward_cost", "output_bytes", "saved_bytes"}
        stages = []
        for i, st in enumerate(data["stages"], 1):
            if not isinstance(st, dict):
                raise ChainFormatError(f"stages[{i - 1}] must be an object, got "
                                       f"{type(st).__name__}")
            missing = sorted(required - set(st))
            if missing:
                raise ChainFormatError(f"stages[{i - 1}] lacks {missing}")
            unknown = sorted(set(st) - names)
            if unknown:
                raise ChainFormatError(f"stages[{i - 1}] has unknown field(s) {unknown}; "
                                       f"known: {sorted(names)}")
            if not isinstance(st["name"], str):
                raise ChainFormatError(f"stages[{i - 1}] field 'name' must be a string, got "
                                       f"{type(st['name']).__name__} {st['name']!r}")
            stages.append(Stage(**st))
        return cls(stages, input_bytes=data.get("input_bytes", 0),
                   param_bytes=data.get("param_bytes", 0), name=data.get("name", "chain"),
                   cost_unit=data.get("cost_unit", "unit"),
                   **{k: data.get(k, 0) for k in _LATE_FIELDS})

    @classmethod
    def from_json(cls, text):
        """A chain from JSON text (or a path-like opened by the caller: pass its text).

        Syntax errors raise ``ChainFormatError`` with the line and column:

        >>> Chain.from_json('{"stages": [\\n  {"name": "a",, }]}')
        Traceback (most recent call last):
        ...
        ckpt.planner.errors.ChainFormatError: malformed chain JSON at line 2, column 16: Expecting property name enclosed in double quotes
        """
        return cls.from_dict(load_json(text, "chain"))


_SHAPES = {"chain": "; a chain is an object holding a list of flat stage objects",
           "plan": "; a plan is an object holding its chain and a list of op strings"}


def load_json(text, what):
    """Parse JSON text (str or UTF-8 bytes, a leading byte-order mark allowed), turning
    syntax errors into ``ChainFormatError`` with line/column, and nesting too deep for
    Python's parser into ``ChainFormatError`` too.

    >>> load_json('\ufeff[1, 2]', 'x')
    [1, 2]
    >>> load_json('[' * 100000, 'chain')
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.ChainFormatError: chain JSON nests too deeply (arrays or objects inside each other beyond what the parser allows); a chain is an object holding a list of flat stage objects
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ChainFormatError(f"{what} JSON is not UTF-8 text (byte {e.start}: "
                                   f"{e.reason})") from None
    if not isinstance(text, str):
        raise TypeError(f"{what} JSON must be text (str or bytes), got {type(text).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ChainFormatError(f"malformed {what} JSON at line {e.lineno}, column {e.colno}: "
                               f"{e.msg}", line=e.lineno, column=e.colno) from None
    except RecursionError:
        raise ChainFormatError(f"{what} JSON nests too deeply (arrays or objects inside each "
                               f"other beyond what the parser allows){_SHAPES.get(what, '')}"
                               ) from None
