"""Pick the best of several candidate op lists by replaying each in the simulator.

>>> from ckpt.planner import zoo
>>> from ckpt.planner.strategies.store_all import store_all
>>> from ckpt.planner.strategies.recompute_all import recompute_all
>>> c = zoo.uniform(4, nbytes=10)
>>> best_within(c, [store_all(c), recompute_all(c)], budget=None) == recompute_all(c)
True
"""
from ..simulate import simulate

__all__ = ["best_within"]


def best_within(chain, candidates, budget):
    """The cheapest candidate whose peak fits ``budget``; without a budget, or when none fits,
    the one with the least peak (ties: cheapest), so that ``plan`` can report the strategy's
    own minimum.

    >>> from ckpt.planner import zoo
    >>> from ckpt.planner.strategies.store_all import store_all
    >>> c = zoo.uniform(2, nbytes=10)
    >>> best_within(c, [store_all(c)], budget=1) == store_all(c)
    True
    """
    fits, lowest = None, None
    for ops in candidates:
        r = simulate(chain, ops, timeline=False)
        key = (r.peak, r.compute)
        if lowest is None or key < lowest[0]:
            lowest = (key, ops)
        if budget is not None and r.peak <= budget:
            k2 = (r.compute, r.peak)
            if fits is None or k2 < fits[0]:
                fits = (k2, ops)
    return (fits or lowest)[1]
