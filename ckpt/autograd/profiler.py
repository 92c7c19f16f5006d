"""Where the time and the memory of a block go, op by op (torch.autograd.profiler's names).

``with profile() as prof:`` records every ckpt op called in the block (``add``, ``matmul``,
``conv2d``, ``add_``, ``randn``, ...) and every backward rule the engine runs (by node name,
``MulBackward0``), with wall time (total, and self = total minus the ops it called), the
input shapes (``record_shapes=True``), and with ``profile_memory=True`` the bytes of new
buffers each op brought into being and the bytes its graph node keeps for backward.

Calls are seen through ``op_calls.observing_calls`` (a ``sys.setprofile`` hook set only
inside the block; no function is replaced), so an op is recorded however it is reached: an
operator, a method, a reference taken before the block, the out-of-place op an in-place
method runs. It costs nothing when off; inside the block every Python call and C call pays
for the hook, and the times include that (benchmarks/README.md, "The profiler's cost").
Memory is observed through autograd's events (``events.observing``: ``op_recorded``), also
only inside the block.

Differences from torch: times are wall-clock microseconds on one thread (there is no
device); ``input_shapes`` has one entry per positional parameter of the op as it received
it (defaults included, ``[]`` for a non-tensor; keyword-only ones left out);
``cpu_memory_usage`` counts the bytes of the *new buffers an op returns or
records* (views and buffers of its inputs are not new; temporaries an op frees before
returning are not seen), each buffer attributed to the innermost op that produced it;
``saved_memory`` is ``Node.saved_bytes()`` of the nodes an op created (a buffer kept by two
nodes counts in both).

>>> import ckpt
>>> from ckpt.autograd import profiler
>>> x = ckpt.ones(256, 256, requires_grad=True)
>>> with profiler.profile(profile_memory=True) as prof:
...     y = (x.tanh() * x).sum()
...     y.backward()
>>> counts = {e.key: e.count for e in prof.key_averages()}
>>> [counts[k] for k in ("tanh", "mul", "sum", "SumBackward0", "MulBackward0", "TanhBackward0")]
[1, 1, 1, 1, 1, 1]
>>> avg = {e.key: e for e in prof.key_averages()}
>>> avg["tanh"].cpu_memory_usage, avg["tanh"].saved_memory   # its output, kept for backward
(262144, 262144)
>>> header = prof.key_averages().table(sort_by="self_cpu_time_total").splitlines()[1]
>>> [h.strip() for h in header.split("  ") if h.strip()][-5:]
['Self CPU Mem', 'CPU Mem', 'Self Saved', 'Saved', '# of Calls']
"""
import contextlib
import json
import os
import time
import weakref

import numpy as np

from ..units import format_size
from .events import Observer, observing
from .node import root_buffer
from .op_calls import CallObserver, observing_calls
from .tensor import Tensor

__all__ = ["profile", "record_function", "FunctionEvent", "FunctionEventAvg", "EventList"]

_ACTIVE = None  # the profile being recorded (one at a time)


# ---- events -------------------------------------------------------------------------------
class FunctionEvent:
    """One call: ``name``, ``kind`` ("cpu_op", "backward" or "user_annotation"), start and
    end (µs since the profile began), ``cpu_time_total`` and ``self_cpu_time_total`` (µs),
    ``input_shapes``, ``cpu_memory_usage`` / ``self_cpu_memory_usage`` (bytes of new
    buffers, with / without the ops it called) and ``saved_memory`` / ``self_saved_memory``
    (bytes kept for backward by the nodes it created), its ``depth`` in the call stack."""
    __slots__ = ("id", "name", "kind", "start_us", "cpu_time_total", "self_cpu_time_total", "depth",
                 "input_shapes", "cpu_memory_usage", "self_cpu_memory_usage", "saved_memory",
                 "self_saved_memory", "parent")
    count = 1

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.get(k))

    @property
    def key(self):
        return self.name

    @property
    def end_us(self):
        return self.start_us + self.cpu_time_total

    @property
    def cpu_time(self):
        return self.cpu_time_total

    def __repr__(self):
        return (f"<FunctionEvent {self.name} ({self.kind}) {self.cpu_time_total:.1f} us, "
                f"self {self.self_cpu_time_total:.1f} us>")


class FunctionEventAvg:
    """Events grouped by ``key`` (the name, plus the input shapes when grouping by them):
    ``count``, summed times (µs) and bytes, and ``cpu_time`` (mean total per call)."""
    __slots__ = ("key", "kind", "count", "cpu_time_total", "self_cpu_time_total",
                 "input_shapes", "cpu_memory_usage", "self_cpu_memory_usage", "saved_memory",
                 "self_saved_memory")

    def __init__(self, key, kind, input_shapes=None):
        self.key, self.kind, self.input_shapes = key, kind, input_shapes
        self.count = 0
        self.cpu_time_total = self.self_cpu_time_total = 0.0
        self.cpu_memory_usage = self.self_cpu_memory_usage = 0
        self.saved_memory = self.self_saved_memory = 0

    def add(self, e):
        self.count += e.count
        self.cpu_time_total += e.cpu_time_total
        self.self_cpu_time_total += e.self_cpu_time_total
        for k in ("cpu_memory_usage", "self_cpu_memory_usage", "saved_memory",
                  "self_saved_memory"):
            setattr(self, k, getattr(self, k) + (getattr(e, k) or 0))
        return self

    @property
    def name(self):
        return self.key

    @property
    def cpu_time(self):
        return self.cpu_time_total / self.count if self.count else 0.0

    def __repr__(self):
        return (f"<FunctionEventAvg {self.key}: {self.count} calls, total "
                f"{self.cpu_time_total:.1f} us, self {self.self_cpu_time_total:.1f} us>")


_SORT_KEYS = ("cpu_time_total", "self_cpu_time_total", "cpu_time", "count",
              "cpu_memory_usage", "self_cpu_memory_usage", "saved_memory", "self_saved_memory")


def _fmt_time(us):
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class EventList(list):
    """A list of ``FunctionEvent`` or ``FunctionEventAvg`` with ``table`` (and, for raw
    events, ``key_averages`` and ``export_chrome_trace``)."""

    def __init__(self, items=(), profile_memory=False, record_shapes=False):
        super().__init__(items)
        self._memory = profile_memory
        self._shapes = record_shapes

    def key_averages(self, group_by_input_shape=False):
        """Events grouped by name (and input shapes), in order of first appearance."""
        groups = {}
        for e in self:
            shapes = str(e.input_shapes) if group_by_input_shape else None
            k = (e.key, shapes)
            if k not in groups:
                groups[k] = FunctionEventAvg(e.key, e.kind,
                                             e.input_shapes if group_by_input_shape else None)
            groups[k].add(e)
        return EventList(groups.values(), self._memory, group_by_input_shape)

    def total_average(self):
        """One ``FunctionEventAvg`` summing every event (key "Total")."""
        total = FunctionEventAvg("Total", "total")
        for e in self:
            total.add(e)
        return total

    def table(self, sort_by=None, row_limit=100, max_name_column_width=40, header=None):
        """A text table, one row per entry, sorted by ``sort_by`` (descending; one of
        ``cpu_time_total``, ``self_cpu_time_total``, ``cpu_time``, ``count``,
        ``cpu_memory_usage``, ``self_cpu_memory_usage``, ``saved_memory``,
        ``self_saved_memory``; None keeps the order), at most ``row_limit`` rows (-1: all).
        Memory columns appear when the profile recorded memory, input shapes when it
        recorded them and the rows are grouped by them."""
        rows = list(self)
        if sort_by is not None:
            if sort_by not in _SORT_KEYS:
                raise ValueError(f"sort_by={sort_by!r} is not a column; use one of "
                                 f"{', '.join(_SORT_KEYS)}")
            rows.sort(key=lambda e: getattr(e, sort_by) or 0, reverse=True)
        if row_limit is not None and row_limit >= 0:
            rows = rows[:row_limit]
        self_total = sum(e.self_cpu_time_total for e in self) or 1.0
        name_w = min(max([len(e.key) for e in rows] + [4]), max_name_column_width)
        cols = [("Self CPU %", lambda e: f"{100 * e.self_cpu_time_total / self_total:.2f}%"),
                ("Self CPU", lambda e: _fmt_time(e.self_cpu_time_total)),
                ("CPU total %", lambda e: f"{100 * e.cpu_time_total / self_total:.2f}%"),
                ("CPU total", lambda e: _fmt_time(e.cpu_time_total)),
                ("CPU time avg", lambda e: _fmt_time(e.cpu_time_total / max(e.count, 1)))]
        if self._memory:
            cols += [("Self CPU Mem", lambda e: format_size(e.self_cpu_memory_usage or 0, 2)),
                     ("CPU Mem", lambda e: format_size(e.cpu_memory_usage or 0, 2)),
                     ("Self Saved", lambda e: format_size(e.self_saved_memory or 0, 2)),
                     ("Saved", lambda e: format_size(e.saved_memory or 0, 2))]
        cols.append(("# of Calls", lambda e: str(e.count)))
        shapes = self._shapes and any(getattr(e, "input_shapes", None) is not None for e in rows)
        if shapes:
            cols.append(("Input Shapes", lambda e: str(e.input_shapes)))
        widths = [max(12, len(h)) for h, _ in cols]
        if shapes:
            widths[-1] = max([len(str(e.input_shapes)) for e in rows] + [12])
        sep = "-" * name_w + "  " + "  ".join("-" * w for w in widths)

        def line(name, cells):
            return (f"{name[:name_w]:>{name_w}}  "
                    + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
        out = [sep, line("Name", [h for h, _ in cols]), sep]
        if header:
            out.insert(0, header)
        for e in rows:
            out.append(line(e.key, [f(e) for _, f in cols]))
        out.append(sep)
        out.append(f"Self CPU time total: {_fmt_time(sum(e.self_cpu_time_total for e in self))}")
        return "\n".join(out)

    def export_chrome_trace(self, path):
        """Write the events as Chrome trace JSON (``chrome://tracing``, Perfetto, Speedscope):
        complete events (``"ph": "X"``), microseconds, nested by time on one thread."""
        pid = os.getpid()
        events = []
        for e in self:
            if not isinstance(e, FunctionEvent):
                raise TypeError("export_chrome_trace needs the raw events (prof.events()), "
                                "not key averages")
            args = {"Self CPU (us)": e.self_cpu_time_total, "Depth": e.depth}
            if e.input_shapes is not None:
                args["Input Dims"] = e.input_shapes
            if self._memory:
                args.update({"Self CPU Mem (bytes)": e.self_cpu_memory_usage,
                             "CPU Mem (bytes)": e.cpu_memory_usage,
                             "Saved (bytes)": e.saved_memory})
            events.append({"name": e.name, "cat": e.kind, "ph": "X", "ts": e.start_us,
                           "dur": e.cpu_time_total, "pid": pid, "tid": 0, "args": args})
        trace = {"traceEvents": events, "displayTimeUnit": "ms",
                 "otherData": {"profiler": "ckpt.autograd.profiler"}}
        with open(os.fspath(path), "w") as f:
            json.dump(trace, f)
        return path


# ---- recording ----------------------------------------------------------------------------
class _Frame:
    __slots__ = ("call", "name", "kind", "t0", "dur", "depth", "child_ns", "self_alloc",
                 "child_alloc", "self_saved", "child_saved", "recorded", "inputs", "seen",
                 "shapes", "id", "parent")


def _arrays(obj, depth=0):
    """The numpy arrays in an op's argument or result (Tensors, arrays, one level of lists)."""
    if obj.__class__ is Tensor:
        yield obj.data
    elif isinstance(obj, np.ndarray):
        yield obj
    elif depth == 0 and isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _arrays(x, 1)


def _shape_of(a):
    if a.__class__ is Tensor or isinstance(a, np.ndarray):
        return list(a.shape)
    if isinstance(a, (list, tuple)) and a and all(
            x.__class__ is Tensor or isinstance(x, np.ndarray) for x in a):
        return [list(x.shape) for x in a]
    return []


class profile(Observer, CallObserver):
    """Context manager recording ops and backward rules (see the module doc).

    ``enabled=False`` makes it a no-op; ``record_shapes`` keeps each call's input shapes;
    ``profile_memory`` counts new and saved bytes. After the block: ``events()``,
    ``key_averages(group_by_input_shape=False)``, ``table(...)`` and
    ``export_chrome_trace(path)``. Profiles cannot be nested.

    >>> import ckpt
    >>> with profile(record_shapes=True) as prof:
    ...     z = ckpt.ones(2, 3) @ ckpt.ones(3, 4)
    >>> [(e.name, e.input_shapes) for e in prof.events()]
    [('ones', [[], []]), ('ones', [[], []]), ('matmul', [[2, 3], [3, 4]])]
    """

    def __init__(self, enabled=True, record_shapes=False, profile_memory=False):
        self.enabled = enabled
        self.record_shapes = record_shapes
        self.profile_memory = profile_memory
        self._events = []
        self._stack = []
        self._watching = None
        self._t_start = None
        self._done = False

    # -- context ------------------------------------------------------------------------
    def __enter__(self):
        global _ACTIVE
        if not self.enabled:
            return self
        if _ACTIVE is not None:
            raise RuntimeError("a ckpt profiler is already recording; profiles cannot be "
                               "nested (leave the outer `with profile()` block first)")
        with contextlib.ExitStack() as watching:
            watching.enter_context(observing_calls(self))
            if self.profile_memory:
                watching.enter_context(observing(self))
            self._watching = watching.pop_all()
        self._t_start = time.perf_counter_ns()
        _ACTIVE = self
        return self

    def __exit__(self, *exc):
        global _ACTIVE
        if not self.enabled:
            self._done = True
            return False
        if _ACTIVE is self:
            _ACTIVE = None
        while self._stack:  # frames of record_function blocks left open
            self._pop(self._stack[-1], None)
        self._watching.close()
        self._done = True
        return False

    # -- the stack ------------------------------------------------------------------------
    def _push(self, name, kind, args, call=None):
        f = _Frame()
        f.call, f.name, f.kind = call, name, kind
        f.child_ns = f.self_alloc = f.child_alloc = f.self_saved = f.child_saved = 0
        f.shapes = [_shape_of(a) for a in args] if self.record_shapes else None
        if self.profile_memory:
            f.inputs = {id(root_buffer(a)) for x in args for a in _arrays(x)}
            f.seen, f.recorded = {}, []
        f.id = len(self._events) + len(self._stack)
        f.parent = self._stack[-1].id if self._stack else None
        self._stack.append(f)
        f.t0 = time.perf_counter_ns()
        return f

    def _pop(self, f, result, t1=None):
        t1 = t1 or time.perf_counter_ns()
        stack = self._stack
        while stack and stack[-1] is not f:  # an inner frame was left open: close it first
            self._pop(stack[-1], None)
        if stack:
            stack.pop()
        if self.profile_memory:
            for event in f.recorded:
                self._attribute(f, event.output.data)
                f.self_saved += event.node.saved_bytes() if event.node is not None else 0
            for a in _arrays(result):
                self._attribute(f, a)
        f.dur, f.depth = t1 - f.t0, len(stack)
        if stack:
            parent = stack[-1]
            parent.child_ns += f.dur
            parent.child_alloc += f.self_alloc + f.child_alloc
            parent.child_saved += f.self_saved + f.child_saved
            if self.profile_memory:
                parent.seen.update(f.seen)
        self._events.append(f)   # made a FunctionEvent when read: recording stays short

    def _event(self, f):
        mem = self.profile_memory
        alloc, saved = f.self_alloc + f.child_alloc, f.self_saved + f.child_saved
        return FunctionEvent(
            id=f.id, name=f.name, kind=f.kind, start_us=(f.t0 - self._t_start) / 1e3,
            cpu_time_total=f.dur / 1e3, self_cpu_time_total=(f.dur - f.child_ns) / 1e3,
            depth=f.depth, input_shapes=f.shapes, cpu_memory_usage=alloc if mem else None,
            self_cpu_memory_usage=f.self_alloc if mem else None,
            saved_memory=saved if mem else None, self_saved_memory=f.self_saved if mem else None,
            parent=f.parent)

    def _attribute(self, f, array):
        root = root_buffer(array)
        key = id(root)
        if key in f.inputs:
            return
        ref = f.seen.get(key)
        if ref is not None and ref() is root:
            return
        try:
            f.seen[key] = weakref.ref(root)
        except TypeError:
            return
        f.self_alloc += root.nbytes

    # -- the op calls -----------------------------------------------------------------------
    def op_entered(self, call):
        self._push(call.name, "backward" if call.kind == "backward" else "cpu_op", call.args,
                   call)

    def op_exited(self, call, result):
        t1 = time.perf_counter_ns()
        for f in reversed(self._stack):
            if f.call is call:
                self._pop(f, result, t1)
                return

    # -- the event observer (profile_memory only) ------------------------------------------
    def op_recorded(self, event):
        out, node = event.output, event.node
        if not self._stack:  # recorded outside any wrapped op: an instant event of its own
            f = self._push(node.name() if node is not None else "record", "cpu_op", ())
            f.self_saved = node.saved_bytes() if node is not None else 0
            self._pop(f, out)
            return
        self._stack[-1].recorded.append(event)   # counted when the op ends: not traced then

    # -- results --------------------------------------------------------------------------
    def _check_done(self):
        if not self._done:
            raise RuntimeError("the profile is still recording; read it after its `with` block")

    def events(self):
        """Every call, by start time (a caller before the calls it makes)."""
        self._check_done()
        return EventList(sorted(map(self._event, self._events),
                                key=lambda e: (e.start_us, e.depth)),
                         self.profile_memory, self.record_shapes)

    def key_averages(self, group_by_input_shape=False):
        """Calls grouped by name (and input shapes): an ``EventList`` of
        ``FunctionEventAvg``."""
        return self.events().key_averages(group_by_input_shape)

    def table(self, sort_by=None, row_limit=100, **kwargs):
        """``key_averages().table(...)``."""
        return self.key_averages().table(sort_by=sort_by, row_limit=row_limit, **kwargs)

    def total_average(self):
        return self.events().total_average()

    def export_chrome_trace(self, path):
        """Write Chrome trace JSON of every call to ``path`` (see ``EventList``)."""
        return self.events().export_chrome_trace(path)

    def __repr__(self):
        state = "recording" if _ACTIVE is self else f"{len(self._events)} events"
        return f"<ckpt.autograd.profiler.profile: {state}>"


class record_function:
    """Label a block as one event (``kind="user_annotation"``) inside a profile; ops in it
    become its children. Does nothing when no profile is recording.

    >>> import ckpt
    >>> with profile() as prof:
    ...     with record_function("step"):
    ...         y = ckpt.ones(3).exp()
    >>> [(e.name, e.depth) for e in prof.events()]
    [('step', 0), ('ones', 1), ('exp', 1)]
    """

    def __init__(self, name):
        self.name = str(name)
        self._frame = None

    def __enter__(self):
        prof = _ACTIVE
        if prof is not None:
            self._prof = prof
            self._frame = prof._push(self.name, "user_annotation", ())
        return self

    def __exit__(self, *exc):
        if self._frame is not None and self._prof is _ACTIVE:
            self._prof._pop(self._frame, None)
        self._frame = None
        return False
