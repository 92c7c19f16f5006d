"""Strategy ``sqrt`` (Chen, Xu, Zhang and Guestrin 2016, "Training deep nets with sublinear
memory cost"): cut the chain into about √L segments, keep only the segment boundaries during
the first forward pass, and recompute each segment (saving) just before its backward.

On heterogeneous chains the boundaries are balanced by memory: walking the stages, a segment
closes once it holds its share (bytes still to place / segments still to fill) of Σ ω_x̄,
so every segment saves about the same number of bytes.
Compute: one extra forward of every segment but the last; memory ~ Σ boundaries + the
largest segment.

>>> from ckpt.planner import zoo
>>> sqrt_bounds(zoo.uniform(9))
[1, 4, 7]
"""
import math

import numpy as np

from ..schedule import ops_from_tree, segments_tree

__all__ = ["sqrt", "sqrt_bounds"]


def sqrt_bounds(chain, segments=None):
    """Start stages of the ≈√L memory-balanced segments (``segments`` overrides K).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> c = Chain([Stage(str(i), 1, 1, 1, b) for i, b in enumerate([8, 1, 1, 1, 1, 1, 1, 1, 1])])
    >>> sqrt_bounds(c)          # stage 1 alone holds 8 of 16 bytes
    [1, 2, 6]
    """
    L = len(chain)
    K = max(1, min(L, int(round(math.sqrt(L))) if segments is None else int(segments)))
    w = chain.xbar[1:].astype(float)
    if w.sum() <= 0:
        w = np.ones(L)
    bounds, left, rest, acc = [1], K, float(w.sum()), 0.0
    for i in range(1, L + 1):
        wi = float(w[i - 1])
        # start a new segment at i once this one holds its share of what remains
        if acc > 0 and left > 1 and acc + wi / 2 > rest / left:
            bounds.append(i)
            rest -= acc
            left -= 1
            acc = 0.0
        acc += wi
    return bounds


def sqrt(chain, budget=None, segments=None):
    """The √L-segments op list.

    >>> from ckpt.planner import zoo
    >>> sum(op.kind == "forward" for op in sqrt(zoo.uniform(9)))
    6
    """
    return ops_from_tree(segments_tree(sqrt_bounds(chain, segments), len(chain)))
