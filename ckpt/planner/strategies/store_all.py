"""Strategy ``store_all``: save everything in one forward pass, then backward. No
recomputation; the most memory.

>>> from ckpt.planner import zoo
>>> store_all(zoo.uniform(2))
[forward_save 1, forward_save 2, backward 2, backward 1]
"""
from ..schedule import ops_from_tree, store_all_tree

__all__ = ["store_all"]


def store_all(chain, budget=None):
    """The store-all op list (``budget`` is only checked by ``plan``).

    >>> from ckpt.planner import zoo
    >>> len(store_all(zoo.uniform(5)))
    10
    """
    return ops_from_tree(store_all_tree(1, len(chain)))
