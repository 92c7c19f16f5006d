"""Strategy ``min_memory``: the schedule tree of least peak, read from the tables of the
min-peak program (``ckpt.planner.min_peak``, cached as ``Chain.min_peak``).
"""
from ..schedule import ops_from_tree

__all__ = ["min_memory"]


def min_memory_tree(chain, table=None):
    """The schedule tree reaching ``chain.min_budget`` (built without recursion).

    >>> from ckpt.planner import zoo
    >>> from ckpt.planner.chain import Chain, Stage
    >>> c = Chain([Stage(str(i), 1, 1, 10, 40) for i in range(3)], input_bytes=10)
    >>> min_memory_tree(c)
    ('split', 1, 2, ('split', 2, 3, ('leaf', 3), ('leaf', 2)), ('leaf', 1))
    """
    table = table or chain.min_peak
    L = len(chain)
    # post-order over segments so children exist before parents
    order, stack = [], [(1, L)]
    while stack:
        s, t = stack.pop()
        order.append((s, t))
        if s == t:
            continue
        k = int(table.choice[s, t])
        if k == 0:
            stack.append((s + 1, t))
        else:
            stack.extend([(s + k, t), (s, s + k - 1)])
    built = {}
    for s, t in reversed(order):
        if s == t:
            built[s, t] = ("leaf", s)
            continue
        k = int(table.choice[s, t])
        built[s, t] = (("save", s, built.pop((s + 1, t))) if k == 0 else
                       ("split", s, s + k, built.pop((s + k, t)), built.pop((s, s + k - 1))))
    return built[1, L]


def min_memory(chain, budget=None):
    """Strategy ``min_memory``: the schedule with the least peak (ties: least compute).

    >>> from ckpt.planner import zoo
    >>> min_memory(zoo.uniform(2, nbytes=10))   # splitting would peak as high: store all
    [forward_save 1, forward_save 2, backward 2, backward 1]
    """
    return ops_from_tree(min_memory_tree(chain))
