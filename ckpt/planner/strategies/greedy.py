"""Strategy ``greedy``: Chen et al.'s (2016) memory-budget algorithm, searching its parameter.

For a threshold b, walk the stages in order accumulating ω_x̄ (``temp``); when ``temp``
exceeds b, the current stage's output becomes a checkpoint and ``temp`` restarts at 0. The
checkpoints cut the chain into segments processed like ``sqrt``'s. Chen et al. grid-search
b; here b runs over every distinct partial sum of ω_x̄ for L <= 64 (each boundary set once)
or over 256 log-spaced values otherwise, and the cheapest plan within the budget wins
(without a budget: the least peak, Chen's memory-optimized setting).

>>> from ckpt.planner import zoo
>>> greedy_bounds(zoo.uniform(6, nbytes=10), threshold=25)
[1, 4]
"""
import numpy as np

from ..schedule import ops_from_tree, segments_tree
from ._search import best_within

__all__ = ["greedy", "greedy_bounds"]


def greedy_bounds(chain, threshold):
    """Segment starts of Chen's greedy pass with threshold ``threshold`` bytes.

    >>> from ckpt.planner import zoo
    >>> greedy_bounds(zoo.uniform(4, nbytes=10), threshold=100)
    [1]
    """
    L = len(chain)
    bounds, temp = [1], 0
    for i in range(1, L + 1):
        temp += int(chain.xbar[i])
        if temp > threshold and i < L:
            bounds.append(i + 1)
            temp = 0
    return bounds


def _thresholds(chain):
    w = chain.xbar[1:].astype(np.int64)
    L = len(w)
    if L <= 64:
        cum = np.concatenate([[0], np.cumsum(w)])
        sums = (cum[None, :] - cum[:, None])[np.triu_indices(L + 1, 1)]
        return np.unique(np.concatenate([sums, sums - 1]))
    lo, hi = max(1, int(w.min())), max(2, int(w.sum()))
    return np.unique(np.geomspace(lo, hi, 256).astype(np.int64))


def greedy(chain, budget=None, threshold=None):
    """The greedy op list; ``threshold`` fixes b instead of searching it.

    >>> from ckpt.planner import zoo
    >>> c = zoo.uniform(8, nbytes=10)
    >>> from ckpt.planner.simulate import simulate
    >>> simulate(c, greedy(c)).peak <= simulate(c, greedy(c, threshold=1000)).peak
    True
    """
    L = len(chain)
    if threshold is not None:
        return ops_from_tree(segments_tree(greedy_bounds(chain, threshold), L))
    seen, cands = set(), []
    for b in _thresholds(chain):
        bounds = tuple(greedy_bounds(chain, int(b)))
        if bounds not in seen:
            seen.add(bounds)
            cands.append(bounds)
    return best_within(chain, (ops_from_tree(segments_tree(b, L)) for b in cands), budget)
