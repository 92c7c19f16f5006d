"""Accounting of live and saved buffers: the buffer ledger and the ``track()`` recorder."""
from .buffers import CATEGORIES, Ledger
from .track import SavedBuffer, track, tracking
