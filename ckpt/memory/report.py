"""``MemoryReport``: what a ``track()`` block measured, for humans (``table``) and tools
(``to_dict``/``to_json``); ``ckpt.plot.memory_timeline(report)`` draws it.

Everything inside is bytes; only ``table()`` prints MiB.
"""
import json
import sys
from array import array
from collections import namedtuple

from .accounting.buffers import CATEGORIES

MiB = 1024 * 1024

Event = namedtuple("Event", "index label kind seconds bytes total traced_bytes")
Event.__doc__ = """One point of the timeline: after the event ``label`` (``kind`` is 'enter', 'op',
'recompute', 'free', 'mark' or 'exit'), ``bytes`` per category and their ``total``, and the
bytes tracemalloc counted above the block's entry (0 when it was off)."""


class _EventLog:
    """The timeline's rows ``(label, kind, seconds, totals, traced)``, stored in flat arrays
    (about 80 bytes a row instead of some 400 as tuples of Python numbers): a long step
    records thousands, and they are part of what tracemalloc sees of it.

    >>> log = _EventLog(2)
    >>> log.append(("op", "op", 0.5, (3, 4), 0)); log.append(("x", "mark", 1.0, (5, 6), 7))
    >>> log[-1], len(log)
    (('x', 'mark', 1.0, (5, 6), 7), 2)
    """

    def __init__(self, width):
        self._width = width
        self._labels, self._kinds = [], []
        self._seconds, self._totals, self._traced = array("d"), array("q"), array("q")

    def __len__(self):
        return len(self._labels)

    def __getitem__(self, i):
        i = range(len(self._labels))[i]
        w = self._width
        return (self._labels[i], self._kinds[i], self._seconds[i],
                tuple(self._totals[i * w:(i + 1) * w]), self._traced[i])

    def __setitem__(self, i, row):
        i = range(len(self._labels))[i]
        w = self._width
        label, kind, seconds, totals, traced = row
        self._labels[i], self._kinds[i] = sys.intern(label), sys.intern(kind)
        self._seconds[i], self._traced[i] = seconds, traced
        self._totals[i * w:(i + 1) * w] = array("q", totals)

    def append(self, row):
        label, kind, seconds, totals, traced = row
        self._labels.append(sys.intern(label))
        self._kinds.append(sys.intern(kind))
        self._seconds.append(seconds)
        self._totals.extend(totals)
        self._traced.append(traced)


class MemoryReport:
    """The result of ``with ckpt.memory.track() as report:`` (filled in while the block runs).

    ``peak_bytes`` is the logical peak (every tracked buffer counted once) and
    ``peak_event`` the event it happened at; ``peak_breakdown`` splits it by category;
    ``category_peaks`` holds each category's own highest value; ``tracemalloc_peak_bytes``
    is the peak tracemalloc measured over the block, above what was traced at entry (compare
    it with ``peak_bytes - entry_bytes``); ``timeline`` lists every event.

    >>> import ckpt
    >>> x = ckpt.ones(1024, requires_grad=True)
    >>> with ckpt.memory.track(tracemalloc=False) as report:
    ...     y = (x.exp() * 2).sum()     # the peak: x, exp's output (saved), the product
    ...     report.mark("forward done")
    ...     y.backward()
    >>> report.peak_event.label, report.peak_breakdown["saved_for_backward"], report.peak_bytes
    ('SumBackward0', 4096, 12292)
    >>> [e.label for e in report.timeline][:4]
    ['enter', 'ExpBackward0', 'MulBackward0', 'SumBackward0']
    """

    def __init__(self, tracker=None):
        self._tracker = tracker
        self._events = _EventLog(len(CATEGORIES))  # (label, kind, seconds, totals, traced)
        self._peak_index = None
        self._category_peak_index = {}
        self._entry_bytes = 0
        self._tracemalloc_peak = None
        self._seconds = 0.0
        self._frozen = None
        self._optimizers = None

    def _freeze(self, ledger):
        self._frozen = (ledger.peak, ledger.peak_split, tuple(ledger.category_peaks))

    def _ledger_values(self):
        if self._frozen is not None:
            return self._frozen
        ledger = self._tracker.ledger
        return ledger.peak, ledger.peak_split, tuple(ledger.category_peaks)

    # ---- numbers ----------------------------------------------------------------------
    @property
    def peak_bytes(self):
        """The logical peak: the most bytes the tracked buffers held at once."""
        return self._ledger_values()[0]

    @property
    def peak_breakdown(self):
        """``{category: bytes}`` at the moment of the logical peak."""
        return dict(zip(CATEGORIES, self._ledger_values()[1]))

    @property
    def peak_event(self):
        """The ``Event`` at which the logical peak happened (None before any event)."""
        if self._peak_index is None:
            return None
        return self._event(self._peak_index)

    @property
    def category_peaks(self):
        """``{category: bytes}``: each category's own peak over the block."""
        return dict(zip(CATEGORIES, self._ledger_values()[2]))

    @property
    def category_peak_events(self):
        """``{category: Event}``: when each category peaked (categories that never held bytes
        are left out)."""
        return {CATEGORIES[c]: self._event(i) for c, i in sorted(self._category_peak_index.items())}

    @property
    def entry_bytes(self):
        """Logical bytes already held at entry (what was passed to ``track``, with the
        ``.grad`` its parameters and the state its optimizers hold)."""
        return self._entry_bytes

    @property
    def tracemalloc_peak_bytes(self):
        """Peak bytes traced by tracemalloc over the block, above the entry (None if off)."""
        return self._tracemalloc_peak

    @property
    def optimizers(self):
        """How many optimizers' state the block counted (passed to ``track`` or found as the
        optimizers of tracked parameters); None while the block runs.

        >>> import ckpt
        >>> net = ckpt.nn.Linear(4, 4)
        >>> opt = ckpt.optim.Adam(net.parameters())
        >>> with ckpt.memory.track(net) as report:
        ...     net(ckpt.ones(1, 4)).sum().backward()
        ...     opt.step()
        >>> report.optimizers, report.category_peaks["optimizer_state"] > 0
        (1, True)
        """
        return self._optimizers

    @property
    def seconds(self):
        """Duration of the block (so far, while it runs)."""
        return self._seconds

    @property
    def timeline(self):
        """Every event, in order, as ``Event`` tuples."""
        return [self._event(i) for i in range(len(self._events))]

    def _event(self, i):
        label, kind, seconds, totals, traced = self._events[i]
        return Event(i, label, kind, seconds, dict(zip(CATEGORIES, totals)), sum(totals), traced)

    @property
    def current_bytes(self):
        """The logical total now (inside the block; after it, the total at its exit).

        >>> import ckpt
        >>> with ckpt.memory.track(tracemalloc=False) as report:
        ...     a = ckpt.ones(256, requires_grad=True).exp()
        ...     held = report.current_bytes
        ...     del a
        ...     report.current_bytes, held
        (0, 1024)
        """
        if self._tracker is None:
            return sum(self._events[-1][3]) if self._events else 0
        return self._tracker.ledger.total

    @property
    def peak_since_mark(self):
        """The logical peak since the last ``mark()`` (or the block's entry): the most bytes
        the tracked buffers held at once in that window, the current moment included. Read
        it just before ``mark(op)`` to get the peak of each step (op) of a block exactly.

        >>> import ckpt
        >>> x = ckpt.ones(256, requires_grad=True)
        >>> with ckpt.memory.track(x, tracemalloc=False) as report:
        ...     y = x.exp() * 2            # x, exp's output (saved) and y: 3 KiB
        ...     del y                      # frees y and, with its graph, exp's output
        ...     report.mark("step 1")
        ...     z = x * 3                  # x and z: 2 KiB
        ...     report.peak_since_mark
        2048
        >>> report.peak_bytes
        3072
        """
        if self._tracker is None:
            raise RuntimeError("report.peak_since_mark works only inside its "
                               "`with ckpt.memory.track()` block; this block has ended")
        return self._tracker.ledger.window_peak

    def mark(self, label):
        """Add an event named ``label`` to the timeline (inside the block only); it also
        starts a new window for ``peak_since_mark``.

        >>> import ckpt
        >>> with ckpt.memory.track(tracemalloc=False) as report:
        ...     report.mark("here")
        >>> [e.label for e in report.timeline]
        ['enter', 'here', 'exit']
        """
        if self._tracker is None:
            raise RuntimeError("report.mark() works only inside its `with ckpt.memory.track()` "
                               "block; this block has ended")
        self._tracker.mark(label)

    # ---- output -----------------------------------------------------------------------
    def to_dict(self):
        """The report as plain data (bytes, seconds, labels), ready for ``json.dumps``.

        >>> import ckpt
        >>> with ckpt.memory.track(tracemalloc=False) as report:
        ...     y = ckpt.ones(8, requires_grad=True).exp()
        >>> d = report.to_dict()
        >>> d["unit"], d["logical_peak_bytes"], d["timeline"][1]["label"]
        ('bytes', 64, 'ExpBackward0')
        """
        peak = self.peak_event
        return {
            "unit": "bytes",
            "categories": list(CATEGORIES),
            "logical_peak_bytes": self.peak_bytes,
            "logical_peak_event": None if peak is None else {"index": peak.index, "label": peak.label},
            "peak_breakdown": self.peak_breakdown,
            "category_peaks": self.category_peaks,
            "category_peak_events": {c: e.index for c, e in self.category_peak_events.items()},
            "entry_bytes": self.entry_bytes,
            "tracemalloc_peak_bytes": self.tracemalloc_peak_bytes,
            "seconds": self.seconds,
            "timeline": [{"index": e.index, "label": e.label, "kind": e.kind,
                          "seconds": e.seconds, "bytes": e.bytes, "total": e.total,
                          "traced_bytes": e.traced_bytes} for e in self.timeline],
        }

    def to_json(self, path=None, indent=None):
        """``to_dict()`` as a JSON string; also written to ``path`` if given.

        >>> import ckpt, json
        >>> with ckpt.memory.track(tracemalloc=False) as report:
        ...     pass
        >>> json.loads(report.to_json())["logical_peak_bytes"]
        0
        """
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            with open(path, "w") as f:
                f.write(text)
        return text

    def table(self):
        """A human-readable summary in MiB: per-category peaks, the split at the logical peak,
        and the tracemalloc peak beside the logical one.

        >>> import ckpt
        >>> with ckpt.memory.track(tracemalloc=False) as report:
        ...     y = ckpt.ones(1024, requires_grad=True).exp()
        >>> print(report.table().splitlines()[0])
        ckpt.memory: 3 events in ... s
        """
        split = self.peak_breakdown
        peaks = self.category_peaks
        peak = self.peak_event
        lines = [f"ckpt.memory: {len(self._events)} events in {self.seconds:.3g} s",
                 f"{'category':<22}{'own peak MiB':>14}{'at logical peak MiB':>22}"]
        for c in CATEGORIES:
            note = ("  (no optimizer of the tracked parameters: not counted)"
                    if c == "optimizer_state" and self._optimizers == 0 else "")
            lines.append(f"{c:<22}{peaks[c] / MiB:>14.3f}{split[c] / MiB:>22.3f}{note}")
        where = "" if peak is None else f"  (event {peak.index}: {peak.label})"
        lines.append(f"{'logical peak':<22}{self.peak_bytes / MiB:>14.3f}{where}")
        lines.append(f"{'  above entry':<22}{(self.peak_bytes - self.entry_bytes) / MiB:>14.3f}")
        if self.tracemalloc_peak_bytes is None:
            lines.append(f"{'tracemalloc peak':<22}{'(off)':>14}")
        else:
            lines.append(f"{'tracemalloc peak':<22}{self.tracemalloc_peak_bytes / MiB:>14.3f}"
                         "  (above entry)")
        return "\n".join(lines)

    def __repr__(self):
        return (f"<MemoryReport: logical peak {self.peak_bytes} bytes, "
                f"tracemalloc peak {self.tracemalloc_peak_bytes} bytes, {len(self._events)} events>")
