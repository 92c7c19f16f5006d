"""What autograd tells its observers: four typed events, ``observing()`` and ``recomputing()``.

Memory tracking, ``checkpoint``, the planner's ``profile`` and ``execute`` and the profiler
learn what autograd does through this module alone. An observer is any object with the four
methods of ``Observer`` (subclass it to inherit no-op defaults); inside ``with
observing(observer, ...)`` autograd calls them with one event each:

- ``op_recorded(OpRecorded(output, node, saved, recomputing))``: an op produced the Tensor
  ``output``; ``node`` is its ``grad_fn`` (None when no graph was recorded), ``saved`` what the
  active saved-tensor hooks packed for it (one object per tensor the op saved, in order; empty
  without hooks), ``recomputing`` whether ``recomputing()`` was in effect.
- ``tensor_saved(TensorSaved(value, tensor))``: a ``SavedValue`` (an array kept for backward)
  came into being: an op saved ``tensor`` (with ``observing(..., saved=True)``) or code that
  keeps arrays for backward itself (``checkpoint``) made one (``tensor`` None).
- ``saved_released(SavedReleased(value))``: that ``SavedValue`` was let go: backward used it,
  or the graph that held it was dropped. Told only to observers that were told of its saving
  and still observe.
- ``gradients_produced(GradientsProduced(arrays))`` (with ``gradients=True``): a backward pass
  without ``create_graph`` now holds these new numpy gradient arrays, passed between nodes
  (a rule's results, a sum of two gradients, a cast): they are no Tensors, so no
  ``op_recorded`` sees them.

``saved=True`` makes tensors that ops save go through autograd's own saved-tensor hook pair
(it keeps each array in a ``SavedValue``), in effect like any ``saved_tensors_hooks``: the
innermost pair wins, so inside a ``checkpoint`` or ``save_on_disk`` the ops' saves are theirs
to report. ``recomputing()`` marks forward work that replays a step (checkpoint's
recomputation, the planner's later forwards): once-per-step side effects (BatchNorm's running
statistics) skip themselves, and observers see ``recomputing=True``.

Costs: with no observer, ``record`` reads one flag, as before. Observers are told in the order
they entered; an exception an observer raises propagates to the code that ran the op or the
backward (the op's node is attached first, so the graph stays whole); one raised in
``saved_released``, which can run while Python frees a graph, is reported as unraisable.

>>> import ckpt
>>> from ckpt.autograd import events
>>> class Log(events.Observer):
...     def __init__(self): self.seen = []
...     def op_recorded(self, e): self.seen.append(("op", e.node.name() if e.node else None))
...     def tensor_saved(self, e): self.seen.append(("saved", e.value.data.nbytes))
...     def saved_released(self, e): self.seen.append(("released", e.value.label))
...     def gradients_produced(self, e): self.seen.append(("grads", len(e.arrays)))
>>> x = ckpt.ones(4, requires_grad=True)
>>> log = Log()
>>> with events.observing(log, saved=True, gradients=True):
...     y = x.exp().sum()
...     y.backward()
>>> # gradients: the seed, then what Sum's and Exp's rules return
>>> log.seen   # doctest: +NORMALIZE_WHITESPACE
[('saved', 16), ('op', 'ExpBackward0'), ('op', 'SumBackward0'),
 ('grads', 1), ('grads', 1), ('grads', 1), ('released', 'ExpBackward0')]
"""
from typing import NamedTuple

from . import grad_mode
from .node import Extensions, SavedTensor, saved_tensors_hooks
from .tensor import Tensor

__all__ = ["OpRecorded", "TensorSaved", "SavedReleased", "GradientsProduced", "Observer",
           "observing", "recomputing", "is_recomputing", "SavedValue", "reporting_saves"]

is_recomputing = grad_mode.is_recomputing


class OpRecorded(NamedTuple):
    """An op produced ``output``; ``node`` its grad_fn or None; ``saved`` what hooks packed."""
    output: Tensor
    node: object
    saved: tuple
    recomputing: bool


class TensorSaved(NamedTuple):
    """``value`` (a ``SavedValue``) keeps an array for backward; ``tensor``: what the op saved
    (None when code other than an op made the value)."""
    value: object
    tensor: object


class SavedReleased(NamedTuple):
    """``value`` (a ``SavedValue``) no longer keeps its array for backward."""
    value: object


class GradientsProduced(NamedTuple):
    """A backward pass now holds these numpy gradient arrays between nodes."""
    arrays: list


class Observer:
    """The four methods autograd calls; each does nothing here (override those you need).

    >>> from ckpt.autograd import events
    >>> events.Observer().op_recorded(None) is None
    True
    """

    def op_recorded(self, event):
        pass

    def tensor_saved(self, event):
        pass

    def saved_released(self, event):
        pass

    def gradients_produced(self, event):
        pass


class _Observers:
    """Who observes what, outermost first."""
    saved = []   # observers of saved values


def reporting_saves():
    """True inside an ``observing(..., saved=True)`` block: a ``SavedValue`` made now is
    reported (code that keeps arrays for backward makes one only then).

    >>> import ckpt
    >>> from ckpt.autograd import events
    >>> with events.observing(events.Observer(), saved=True):
    ...     inside = events.reporting_saves()
    >>> inside, events.reporting_saves()
    (True, False)
    """
    return bool(_Observers.saved)


class SavedValue:
    """An array kept for backward, reported to the observers of saved values: ``tensor_saved``
    when made, ``saved_released`` when dropped. ``label`` names who keeps it (autograd sets it
    to the name of the op that saved it; None until then).

    >>> import numpy as np
    >>> from ckpt.autograd import events
    >>> class Count(events.Observer):
    ...     kept = 0
    ...     def tensor_saved(self, e): self.kept += e.value.data.nbytes
    ...     def saved_released(self, e): self.kept -= e.value.data.nbytes
    >>> count = Count()
    >>> with events.observing(count, saved=True):
    ...     value = events.SavedValue(np.zeros(8), "mine")
    ...     during = count.kept
    ...     del value
    >>> during, count.kept
    (64, 0)
    """
    __slots__ = ("data", "label", "_told")

    def __init__(self, data, label=None, tensor=None):
        self.data = data
        self.label = label
        told = self._told = tuple(_Observers.saved)
        if told:
            event = TensorSaved(self, tensor)
            for observer in told:
                observer.tensor_saved(event)

    def __del__(self):
        # The only way to learn that a graph dropped without backward let a value go.
        told = self._told
        if told:
            event = SavedReleased(self)
            observing_now = _Observers.saved
            for observer in told:
                if any(o is observer for o in observing_now):
                    observer.saved_released(event)


def _pack(t):
    return SavedValue(t.data, tensor=t)


def _unpack(value):
    return Tensor(value.data)


class _Delivery:
    """What ``Extensions`` calls (``on_op``, ``on_grads``), turned into typed events."""
    __slots__ = ("observer",)

    def __init__(self, observer):
        self.observer = observer

    def on_op(self, out, node):
        saved = ()
        if node is not None and node._saved:
            saved = tuple(s.packed for s in node._saved
                          if s.__class__ is SavedTensor and s.unpack_hook is not None)
            for packed in saved:
                if packed.__class__ is SavedValue and packed.label is None:
                    packed.label = node.name()
        self.observer.op_recorded(OpRecorded(out, node, saved, grad_mode._Recompute.active))

    def on_grads(self, arrays):
        self.observer.gradients_produced(GradientsProduced(arrays))


def _remove(items, item):
    for i in range(len(items) - 1, -1, -1):
        if items[i] is item:
            del items[i]
            return


class observing:
    """Tell ``observer`` of every op recorded inside the block (``op_recorded``); with
    ``saved=True`` also of what ops save and backward releases (``tensor_saved``,
    ``saved_released``), with ``gradients=True`` of the gradient arrays backward holds
    (``gradients_produced``). Blocks nest: every observer in effect is told. See the module
    doc for the events.

    >>> import ckpt
    >>> from ckpt.autograd import events
    >>> class Names(events.Observer):
    ...     def __init__(self): self.names = []
    ...     def op_recorded(self, e): self.names.append(e.node.name() if e.node else "no graph")
    >>> outer, inner = Names(), Names()
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> with events.observing(outer):
    ...     a = x * 2
    ...     with events.observing(inner), ckpt.no_grad():
    ...         b = x + 1
    >>> outer.names, inner.names
    (['MulBackward0', 'no graph'], ['no graph'])
    """

    def __init__(self, observer, saved=False, gradients=False):
        missing = [m for m in ("op_recorded", "tensor_saved", "saved_released",
                               "gradients_produced") if not callable(getattr(observer, m, None))]
        if missing:
            raise TypeError(f"observing(observer): the observer ({type(observer).__name__}) has "
                            f"no {', '.join(missing)}; subclass ckpt.autograd.events.Observer")
        self.observer = observer
        self.saved = saved
        self.gradients = gradients
        self._delivery = None
        self._hooks = None

    def __enter__(self):
        if self._delivery is not None:
            raise RuntimeError("this observing() block is already in effect; make a new one")
        delivery = self._delivery = _Delivery(self.observer)
        Extensions.observers.append(delivery)
        if self.gradients:
            Extensions.grad_observers.append(delivery)
        Extensions.refresh()
        if self.saved:
            _Observers.saved.append(self.observer)
            self._hooks = saved_tensors_hooks(_pack, _unpack)
            self._hooks._tracker = True
            self._hooks.__enter__()
        return self.observer

    def __exit__(self, *exc):
        delivery, self._delivery = self._delivery, None
        _remove(Extensions.observers, delivery)
        _remove(Extensions.grad_observers, delivery)
        Extensions.refresh()
        if self._hooks is not None:
            self._hooks.__exit__(*exc)
            self._hooks = None
            _remove(_Observers.saved, self.observer)
        return False


class recomputing:
    """Mark the forward work inside the block as a recomputation (``mode=True``) or as the
    step's own forward (``mode=False``); the previous mode comes back on exit.

    >>> import ckpt
    >>> from ckpt.autograd import events
    >>> with events.recomputing():
    ...     inside = events.is_recomputing()
    ...     with events.recomputing(False):
    ...         nested = events.is_recomputing()
    >>> inside, nested, events.is_recomputing()
    (True, False, False)
    """

    def __init__(self, mode=True):
        if not isinstance(mode, bool):
            raise TypeError(f"recomputing(mode) expects a bool, got {type(mode).__name__}")
        self.mode = mode
        self._previous = []

    def __enter__(self):
        self._previous.append(grad_mode._Recompute.active)
        grad_mode._Recompute.active = self.mode
        return self

    def __exit__(self, *exc):
        grad_mode._Recompute.active = self._previous.pop()
        return False
