"""Strategy ``recursive`` (Chen et al. 2016, §4.2's divide and conquer; the log-memory end of
their trade-off): split a segment where its saved bytes reach half, keep the split point,
process the right half, then the left half, each recursively. Depth O(log L), so O(log L)
checkpoints alive and O(L log L) recomputation.

Splits follow memory (Σ ω_x̄) but stay in the middle half of the segment by stage count so
the depth, and with it the O(L log L) bound, holds on any chain. Segments of at most
``leaf`` stages are stored whole; with a budget and no ``leaf``, every leaf size is tried and
the cheapest plan within the budget is kept.

>>> from ckpt.planner import zoo
>>> recursive_tree(zoo.uniform(4), 1, 4)
('split', 1, 3, ('split', 3, 4, ('leaf', 4), ('leaf', 3)), ('split', 1, 2, ('leaf', 2), ('leaf', 1)))
"""
import numpy as np

from ..schedule import ops_from_tree, store_all_tree
from ._search import best_within

__all__ = ["recursive", "recursive_tree"]


def recursive_tree(chain, s, t, leaf=1):
    """Schedule tree of the recursive strategy on [s, t] (recursion depth O(log L)).

    >>> from ckpt.planner import zoo
    >>> recursive_tree(zoo.uniform(4), 1, 4, leaf=2)
    ('split', 1, 3, ('save', 3, ('leaf', 4)), ('save', 1, ('leaf', 2)))
    """
    n = t - s + 1
    if n <= max(1, leaf):
        return store_all_tree(s, t)
    w = chain.xbar[s:t + 1].astype(float) + 1e-9
    cum = np.cumsum(w)
    k = int(np.searchsorted(cum, cum[-1] / 2.0)) + 1      # stages in the left half
    k = min(max(k, max(1, n // 4)), n - max(1, n // 4))
    s2 = s + k
    return ("split", s, s2, recursive_tree(chain, s2, t, leaf), recursive_tree(chain, s, s2 - 1, leaf))


def recursive(chain, budget=None, leaf=None):
    """The recursive op list.

    >>> from ckpt.planner import zoo
    >>> c = zoo.uniform(16)
    >>> sum(op.kind == "forward" for op in recursive(c)) <= 16 * 4
    True
    """
    L = len(chain)
    if leaf is not None or budget is None:
        return ops_from_tree(recursive_tree(chain, 1, L, leaf or 1))
    sizes = sorted({1, L} | {max(1, L >> j) for j in range(L.bit_length())})
    return best_within(chain, (ops_from_tree(recursive_tree(chain, 1, L, z)) for z in sizes),
                       budget)
