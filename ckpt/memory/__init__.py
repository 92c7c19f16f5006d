"""ckpt.memory: what training holds in memory, by whom and when.

``track()`` records, over a block, every numpy buffer held by tensors (each buffer once) in
the categories ``CATEGORIES``, op by op (with ``tracemalloc=True`` also beside
tracemalloc's measurement); the ``MemoryReport`` it yields prints (``table``), serializes (``to_dict``/``to_json``) and plots.
``saved_bytes`` (from ``ckpt.autograd.graph``) says what a recorded graph keeps for backward.

>>> import ckpt
>>> x, w = ckpt.randn(128, 128), ckpt.randn(128, 128, requires_grad=True)
>>> with ckpt.memory.track() as report:
...     loss = (x @ w).tanh().sum()          # keeps x (for w's grad) and tanh's output
...     held = ckpt.memory.saved_bytes(loss)
...     loss.backward()
>>> held, report.category_peaks["saved_for_backward"]
(131072, 131072)
"""
from ..autograd.graph import saved_bytes
from .accounting import CATEGORIES, SavedBuffer, track, tracking
from .report import Event, MemoryReport

__all__ = ["CATEGORIES", "Event", "MemoryReport", "SavedBuffer", "saved_bytes", "track",
           "tracking"]
