"""``track()``: record, over a block, every buffer held by tensors, by category, op by op.

How each category is learned, without adding work to the autograd hot path when no tracker
is active (all of it through autograd's event protocol, ``ckpt.autograd.events``, observed with
``observing(tracker, saved=True)``):

- activations: every recorded op's output (``op_recorded``), held while that Tensor object is
  alive (a weak reference tells when it dies), plus tensors first seen when an op saves them,
  and tensors passed to ``track``;
- saved for backward: what the graph keeps (``tensor_saved`` until ``saved_released``); hooks
  of ckpt's runtime (``checkpoint``) announce what they keep the same way, as ``SavedValue``;
- parameters: leaves that require grad, found on the graph's edges (``AccumulateGrad``) and
  in modules/optimizers passed to ``track``; their ``.grad`` are the gradients;
- optimizer state: the tensors in ``optimizer.state`` of optimizers passed to ``track`` and
  of the live ``ckpt.optim`` optimizers (``live_optimizers``) that hold a tracked parameter;
- gradients in flight (with ``gradients_in_flight=True``): the numpy arrays a backward pass
  without ``create_graph`` hands from node to node (``gradients_produced``), counted
  as gradients from the moment a VJP returns them until they are freed;
- other: buffers the tracker learned of that are still alive with none of these holders.

Gradients and optimizer state are polled at every event (they change outside recorded ops).
An event is: an op recorded (forward, recomputation, or a backward built with
``create_graph``), a node's saved tensors released in backward, ``report.mark(...)``, and the
block's entry and exit. Each event appends (label, bytes per category, tracemalloc's current
bytes) to the timeline.
"""
import time
import tracemalloc as _tracemalloc
import weakref

from ...autograd.events import Observer, SavedValue, observing
from ...autograd.graph import AccumulateGrad, root_buffer
from ...autograd.tensor import Tensor
from ..foreign import reject_torch
from ..report import MemoryReport
from .buffers import ACTIVATIONS, GRADIENTS, OPTIMIZER, PARAMETERS, SAVED, Ledger

_ACTIVE = []  # trackers in effect, outermost first


def tracking():
    """True inside a ``track()`` block (hooks use it to skip accounting work otherwise).

    >>> import ckpt
    >>> from ckpt.memory.accounting.track import tracking
    >>> with ckpt.memory.track(tracemalloc=False):
    ...     inside = tracking()
    >>> inside, tracking()
    (True, False)
    """
    return bool(_ACTIVE)


SavedBuffer = SavedValue  # memory's name for an array kept for backward (it is autograd's)


class track(Observer):
    """Record the memory held by tensors over a ``with`` block; ``as`` gives the report.

    Pass the model, the optimizer and any tensors whose memory should be attributed from the
    start (``track(model, optimizer, batch)``): a module's parameters are counted as
    parameters and its buffers as other, an optimizer's state as optimizer state. Without
    them, parameters are found as the graph reaches them. The state of every ``ckpt.optim``
    optimizer of a tracked parameter is counted too, passed or not (created before the
    block or inside it); ``report.optimizers`` says how many were, and the table says when
    none was. ``find_optimizers=False`` counts only the optimizers passed (the planner's
    ``profile`` and ``execute`` use it: optimizer state is not part of their cost model).

    The logical count (every tensor buffer once, by category) is the measurement, and it is
    what the planner predicts. ``tracemalloc=True`` (off by default) also measures the block
    with :mod:`tracemalloc` (numpy reports its buffers to it), to see what the logical count
    cannot: temporaries inside an op, Python objects, memory a custom op keeps outside
    tensors. Use it to check that an op or model keeps no such memory, not for timing: it
    makes every Python allocation slower (a step runs 2-8x longer).
    ``gradients_in_flight=True`` also counts, as gradients, the arrays a backward pass holds
    between nodes (otherwise only ``.grad`` is): the planner's ``profile`` and ``execute``
    use it, so their logical peaks include what a backward really holds.

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0)
    >>> net = ckpt.nn.Linear(256, 256)
    >>> x = ckpt.randn(64, 256)
    >>> with ckpt.memory.track(net) as report:
    ...     net(x).relu().sum().backward()
    >>> report.category_peaks["parameters"] == 4 * (256 * 256 + 256)
    True
    >>> report.category_peaks["saved_for_backward"]    # x (for the weight's grad) and relu's output
    131072
    >>> report.tracemalloc_peak_bytes is None         # off unless asked for
    True
    >>> with ckpt.memory.track(net, tracemalloc=True) as traced:
    ...     net(x).relu().sum().backward()
    >>> traced.tracemalloc_peak_bytes >= traced.peak_bytes - traced.entry_bytes
    True
    >>> with ckpt.memory.track(net, x, gradients_in_flight=True) as counted:
    ...     net(x).relu().sum().backward()
    >>> counted.peak_bytes > report.peak_bytes    # relu's and the Linear's gradients, in flight
    True
    """

    def __init__(self, *objects, tracemalloc=False, gradients_in_flight=False,
                 find_optimizers=True):
        reject_torch("ckpt.memory.track", objects,
                     "it counts the buffers of ckpt tensors, modules and optimizers",
                     "ckpt.torch.execute (measured peak of a planned step), or "
                     "torch.cuda.max_memory_allocated / torch.profiler")
        self._objects = objects
        self._find_optimizers = find_optimizers
        self._use_tracemalloc = tracemalloc
        self._in_flight = gradients_in_flight
        self.report = None

    # ---- the block ----------------------------------------------------------------------
    def __enter__(self):
        self.ledger = Ledger()
        self.ledger.on_peak = self._on_peak
        self.report = MemoryReport(self)
        self._tensors = {}      # id(tensor) -> (weakref, Buffer): activation holders
        self._params = {}       # id(leaf) -> [weakref, Buffer of data, Buffer of grad or None]
        self._optimizers = []
        self._optimizer_bufs = {}  # id(root array) -> Buffer held as optimizer state
        self._adopted = None       # (optimizers created, parameters watched) at the last look
        from ...optim import optimizer
        self._optim = optimizer    # where live optimizers are registered
        self._peak_pending = False
        self._category_pending = set()
        self._closed = False
        for obj in self._objects:
            self._register(obj)
        self._started_tracemalloc = False
        if self._use_tracemalloc:
            if not _tracemalloc.is_tracing():
                _tracemalloc.start()
                self._started_tracemalloc = True
            peak_now = _tracemalloc.get_traced_memory()[1]
            for outer in _ACTIVE:  # reset_peak below would lose their peak so far
                outer._tm_peak = max(outer._tm_peak, peak_now)
            _tracemalloc.reset_peak()
            self._tm_base = _tracemalloc.get_traced_memory()[0]
            self._tm_peak = 0
        self._t0 = time.perf_counter()
        _ACTIVE.append(self)
        self._kept = {}   # id(SavedValue) -> its Buffer, until it is released
        self._subscription = observing(self, saved=True, gradients=self._in_flight)
        self._subscription.__enter__()
        self._event("enter", "enter")   # (its look at the leaves finds the .grad they hold)
        self.report._entry_bytes = self.ledger.total
        self.ledger.reset_window()
        return self.report

    def __exit__(self, *exc):
        try:
            self._event("exit", "exit")
        finally:
            self._subscription.__exit__(*exc)
            _ACTIVE.remove(self)
            if self._use_tracemalloc:
                current, peak = _tracemalloc.get_traced_memory()
                self.report._tracemalloc_peak = max(self._tm_peak, peak) - self._tm_base
                for outer in _ACTIVE:
                    outer._tm_peak = max(outer._tm_peak, peak)
                if self._started_tracemalloc:
                    _tracemalloc.stop()
            self.report._seconds = time.perf_counter() - self._t0
            self._close()
        return False

    def _close(self):
        self._closed = True
        self.report._optimizers = len(self._optimizers)
        self.report._freeze(self.ledger)
        self.report._tracker = None
        self.ledger.on_peak = None
        self.ledger.close()
        self._tensors.clear()
        self._params.clear()
        self._optimizers = []
        self._optimizer_bufs.clear()
        self._kept.clear()

    # ---- what the tracker is told -------------------------------------------------------
    def op_recorded(self, event):
        """An op computed ``event.output`` (``event.node`` its grad_fn or None)."""
        self._hold_tensor(event.output)
        node = event.node
        if node is None:
            label = "op (no grad)"
        else:
            label = node.name()
            # a recomputation's detached inputs are no parameters
            for fn, _ in () if event.recomputing else node.next_functions:
                if fn.__class__ is AccumulateGrad:
                    leaf = fn.variable
                    if leaf is not None and id(leaf) not in self._params:
                        self._watch_parameter(leaf)
        if event.recomputing:
            self._event("recompute " + label, "recompute")
        else:
            self._event(label, "op")

    def tensor_saved(self, event):
        """An array is kept for backward (an op saved ``event.tensor``, or checkpoint keeps it)."""
        if event.tensor is not None:
            self._seen(event.tensor)
        self._kept[id(event.value)] = self.ledger.entry(event.value.data, SAVED)

    def saved_released(self, event):
        """An array kept for backward was let go."""
        buf = self._kept.pop(id(event.value), None)
        if buf is None or self._closed:
            return
        self.ledger.unhold(buf, SAVED)
        self._event("free " + (event.value.label or "saved tensor"), "free", coalesce=True)

    def gradients_produced(self, event):
        """The engine holds these gradient arrays (counted until freed)."""
        if not self._closed:
            for a in event.arrays:
                self.ledger.entry(a, GRADIENTS)

    def mark(self, label):
        """Add an event named ``label`` to the timeline (e.g. after ``optimizer.step()``) and
        start a new window for ``report.peak_since_mark``."""
        self._event(str(label), "mark")
        self.ledger.reset_window()

    # ---- holders --------------------------------------------------------------------------
    def _register(self, obj):
        if isinstance(obj, Tensor):
            self._seen(obj)
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                self._register(o)
        elif hasattr(obj, "param_groups") and hasattr(obj, "state"):  # an optimizer
            self._optimizers.append(obj)
            for group in obj.param_groups:
                for p in group["params"]:
                    self._seen(p)
        elif hasattr(obj, "parameters") and hasattr(obj, "buffers"):  # a module
            for p in obj.parameters():
                self._seen(p)
            for b in obj.buffers():
                if b is not None:
                    self.ledger.entry(b.data)  # no holder category: 'other' while alive
        else:
            raise TypeError(f"track() takes modules, optimizers and tensors to attribute memory "
                            f"to, got a {type(obj).__name__}")

    def _seen(self, t):
        if t.requires_grad and t.grad_fn is None:
            if id(t) not in self._params:
                self._watch_parameter(t)
        else:
            self._hold_tensor(t)

    def _hold_tensor(self, t):
        key = id(t)
        if key in self._tensors:
            return
        buf = self.ledger.entry(t.data, ACTIVATIONS)
        self._tensors[key] = (weakref.ref(t, _Dropped(self, key)), buf)

    def _tensor_died(self, key):
        entry = self._tensors.pop(key, None)
        if entry is not None and not self._closed:
            self.ledger.unhold(entry[1], ACTIVATIONS)

    def _watch_parameter(self, leaf):
        key = id(leaf)
        stale = self._tensors.pop(key, None)  # first seen as a plain tensor
        if stale is not None:
            self.ledger.unhold(stale[1], ACTIVATIONS)
        buf = self.ledger.entry(leaf.data, PARAMETERS)
        self._params[key] = [weakref.ref(leaf, _Dropped(self, key, parameter=True)), buf, None]

    def _parameter_died(self, key):
        entry = self._params.pop(key, None)
        if entry is not None and not self._closed:
            self.ledger.unhold(entry[1], PARAMETERS)
            if entry[2] is not None:
                self.ledger.unhold(entry[2], GRADIENTS)

    # ---- events -------------------------------------------------------------------------
    def _adopt_optimizers(self):
        """Track the live optimizers that hold a watched parameter (looked for again only
        when an optimizer was created or a parameter found since the last look)."""
        key = (self._optim.optimizers_created(), len(self._params))
        if key == self._adopted:
            return
        self._adopted = key
        known = {id(o) for o in self._optimizers}
        for opt in self._optim.live_optimizers():
            if id(opt) not in known and any(id(p) in self._params for g in opt.param_groups
                                            for p in g["params"]):
                self._optimizers.append(opt)

    def _poll(self):
        if self._find_optimizers:
            self._adopt_optimizers()
        ledger = self.ledger
        for entry in list(self._params.values()):
            leaf = entry[0]()
            if leaf is None:
                continue
            g = leaf.grad
            old = entry[2]
            if g is None:
                if old is not None:
                    entry[2] = None
                    ledger.unhold(old, GRADIENTS)
                continue
            if old is not None and old.ref is not None and old.ref() is root_buffer(g.data):
                continue
            buf = ledger.entry(g.data, GRADIENTS)
            if buf is not old:
                entry[2] = buf
                if old is not None:
                    ledger.unhold(old, GRADIENTS)
        if self._optimizers:
            now = {}
            for opt in self._optimizers:
                for state in opt.state.values():
                    for value in (state.values() if isinstance(state, dict) else (state,)):
                        if isinstance(value, Tensor):
                            now[id(root_buffer(value.data))] = value.data
            held = self._optimizer_bufs
            for key, data in now.items():
                buf = held.get(key)
                if buf is None or buf.ref is None:  # new (or a freed buffer's id reused)
                    buf = ledger.entry(data, OPTIMIZER)
                now[key] = buf
            for key, buf in held.items():
                if now.get(key) is not buf:
                    ledger.unhold(buf, OPTIMIZER)
            self._optimizer_bufs = now

    def _on_peak(self, category):
        if category is None:
            self._peak_pending = True
        else:
            self._category_pending.add(category)

    def _event(self, label, kind, coalesce=False):
        if self._closed:
            return
        self._poll()
        ledger = self.ledger
        report = self.report
        events = report._events
        traced = 0
        if self._use_tracemalloc:
            traced = _tracemalloc.get_traced_memory()[0] - self._tm_base
        row = (label, kind, time.perf_counter() - self._t0, tuple(ledger.totals), traced)
        if (coalesce and events and events[-1][0] == label and events[-1][1] == kind
                and not self._peak_pending and not self._category_pending):
            events[-1] = row
        else:
            events.append(row)
        index = len(events) - 1
        if self._peak_pending:
            self._peak_pending = False
            report._peak_index = index
        if self._category_pending:
            for c in self._category_pending:
                report._category_peak_index[c] = index
            self._category_pending.clear()


class _Dropped:
    """Weak-reference callback: a tracked tensor (or parameter) was garbage-collected."""
    __slots__ = ("tracker", "key", "parameter")

    def __init__(self, tracker, key, parameter=False):
        self.tracker = weakref.ref(tracker)
        self.key = key
        self.parameter = parameter

    def __call__(self, _ref):
        tracker = self.tracker()
        if tracker is not None:
            if self.parameter:
                tracker._parameter_died(self.key)
            else:
                tracker._tensor_died(self.key)
