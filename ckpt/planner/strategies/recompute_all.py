"""Strategy ``recompute_all``: keep only the input; before each backward B_i recompute
x_{i-1} from x_0 without saving (Σ_i (i-1) extra forwards: O(L^2) compute).

This is the least memory among schedules that keep nothing but the input. On heterogeneous
chains a schedule that also keeps a checkpoint can peak lower (δ_i is alive during the
recomputations); ``min_memory`` finds the true minimum.

>>> from ckpt.planner import zoo
>>> recompute_all(zoo.uniform(3))
[forward 1, forward 2, drop 1, forward_save 3, backward 3, drop 2, forward 1, forward_save 2, backward 2, drop 1, forward_save 1, backward 1]
"""
from ..schedule import ops_from_tree

__all__ = ["recompute_all"]


def recompute_all(chain, budget=None):
    """The recompute-all op list.

    >>> from ckpt.planner import zoo
    >>> sum(op.kind == "forward" for op in recompute_all(zoo.uniform(5)))
    10
    """
    tree = ("leaf", 1)
    for t in range(2, len(chain) + 1):
        tree = ("split", 1, t, ("leaf", t), tree)
    return ops_from_tree(tree)
