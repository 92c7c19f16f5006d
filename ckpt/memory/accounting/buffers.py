"""The buffer ledger: every numpy buffer a tracker knows, counted once, in one category.

A buffer is the root ndarray that owns the memory (a view's ``.base`` chain followed to its
end), so views and saved aliases of one array share one entry. Each entry counts its holders
per category; its bytes sit in the highest-priority category that holds it, or in ``other``
while it is alive with no holder the tracker knows of. A weak reference to the root array
tells the ledger the moment the buffer is freed.

Priority, highest first (a buffer held two ways is counted where it matters most for
training memory): parameters, optimizer state, gradients, saved for backward, activations,
other. A parameter that an op saves for backward stays a parameter (saving it costs nothing
extra); an activation that the graph saved is "saved for backward" until backward releases it.
"""
import weakref

from ...autograd.graph import root_buffer

CATEGORIES = ("parameters", "optimizer_state", "gradients", "saved_for_backward", "activations",
              "other")
PARAMETERS, OPTIMIZER, GRADIENTS, SAVED, ACTIVATIONS, OTHER = range(len(CATEGORIES))


class Buffer:
    """One root numpy buffer: its size, holder counts per category, and current category."""
    __slots__ = ("nbytes", "counts", "category", "ref", "__weakref__")

    def __init__(self, nbytes):
        self.nbytes = nbytes
        self.counts = [0] * OTHER
        self.category = OTHER
        self.ref = None


class Ledger:
    """Bytes per category over the live buffers, with exact running peaks.

    ``peak`` is the highest logical total seen, ``peak_split`` the bytes per category at that
    moment, ``category_peaks`` each category's own highest value. ``on_peak(kind)`` (if set)
    is told when a new peak is reached, so the caller can note the moment. ``window_peak`` is
    the highest total since the last ``reset_window()`` (the peak of one step of a block).

    >>> import numpy as np
    >>> ledger = Ledger()
    >>> a = np.zeros(1000, np.float32)
    >>> buf = ledger.entry(a[10:], SAVED)   # a view: its root array is the buffer
    >>> ledger.entry(a) is buf, buf.nbytes, ledger.totals[SAVED], ledger.total
    (True, 4000, 4000, 4000)
    >>> ledger.unhold(buf, SAVED); ledger.totals[OTHER]
    4000
    >>> del a, buf; ledger.total, ledger.peak
    (0, 4000)
    """

    def __init__(self):
        self.buffers = {}  # id(root array) -> Buffer
        self.totals = [0] * len(CATEGORIES)
        self.total = 0
        self.peak = 0
        self.peak_split = tuple(self.totals)
        self.category_peaks = [0] * len(CATEGORIES)
        self.window_peak = 0
        self.on_peak = None

    def entry(self, array, category=OTHER):
        """The ledger's entry for the buffer behind ``array``, given one more holder in
        ``category`` (none for ``OTHER``); a new buffer enters straight into that category."""
        root = root_buffer(array)
        key = id(root)
        buf = self.buffers.get(key)
        if buf is None:
            buf = Buffer(root.nbytes)
            buf.ref = weakref.ref(root, _Freed(self, key, buf))
            self.buffers[key] = buf
            if category != OTHER:
                buf.counts[category] = 1
                buf.category = category
            self._add(category, buf.nbytes)
        elif category != OTHER:
            self.hold(buf, category)
        return buf

    def hold(self, buf, category):
        """One more holder of ``buf`` in ``category``."""
        buf.counts[category] += 1
        if category < buf.category:
            self._move(buf, category)

    def unhold(self, buf, category):
        """One holder of ``buf`` in ``category`` fewer (a no-op for a freed buffer)."""
        counts = buf.counts
        if counts[category] <= 0:
            return
        counts[category] -= 1
        if counts[category] == 0 and category == buf.category:
            new = OTHER
            for c in range(category + 1, OTHER):
                if counts[c]:
                    new = c
                    break
            self._move(buf, new)

    def reset_window(self):
        """Start a new window: ``window_peak`` restarts from the current total."""
        self.window_peak = self.total

    def close(self):
        """Forget every buffer (their weak references die, so no callback fires later)."""
        for buf in self.buffers.values():
            buf.ref = None
        self.buffers.clear()

    # ---- bookkeeping ----------------------------------------------------------------------
    def _move(self, buf, category):
        if buf.ref is None:  # freed
            buf.category = category
            return
        self.totals[buf.category] -= buf.nbytes
        buf.category = category
        value = self.totals[category] + buf.nbytes
        self.totals[category] = value
        if value > self.category_peaks[category]:
            self.category_peaks[category] = value
            if self.on_peak is not None:
                self.on_peak(category)

    def _add(self, category, nbytes):
        value = self.totals[category] + nbytes
        self.totals[category] = value
        if value > self.category_peaks[category]:
            self.category_peaks[category] = value
            if self.on_peak is not None:
                self.on_peak(category)
        self.total += nbytes
        if self.total > self.window_peak:
            self.window_peak = self.total
        if self.total > self.peak:
            self.peak = self.total
            self.peak_split = tuple(self.totals)
            if self.on_peak is not None:
                self.on_peak(None)

    def _freed(self, key, buf):
        if self.buffers.get(key) is buf:
            del self.buffers[key]
        if buf.ref is None:
            return
        buf.ref = None
        self.totals[buf.category] -= buf.nbytes
        self.total -= buf.nbytes


class _Freed:
    """Weak-reference callback: the buffer ``key`` was freed."""
    __slots__ = ("ledger", "key", "buf")

    def __init__(self, ledger, key, buf):
        self.ledger = weakref.ref(ledger)
        self.key = key
        self.buf = buf

    def __call__(self, _ref):
        ledger = self.ledger()
        if ledger is not None:
            ledger._freed(self.key, self.buf)
