"""The strategies ``plan`` dispatches to: name -> function(chain, budget=None, **options)
returning an op list. Every strategy but ``optimal`` emits a schedule of the persistent class
described in ``ckpt.planner.schedule``; ``optimal`` is the cheapest of that class under the
budget (exactly so with one slot per byte; on chains of at most 6 stages it searches every
op order instead).

>>> sorted(STRATEGIES)
['greedy', 'min_memory', 'optimal', 'recompute_all', 'recursive', 'revolve', 'sqrt', 'store_all']
"""
from .greedy import greedy
from .min_memory import min_memory
from .optimal import optimal
from .recompute_all import recompute_all
from .recursive import recursive
from .revolve import revolve_strategy
from .sqrt import sqrt
from .store_all import store_all

__all__ = ["STRATEGIES"]

STRATEGIES = {
    "store_all": store_all,
    "recompute_all": recompute_all,
    "sqrt": sqrt,
    "greedy": greedy,
    "recursive": recursive,
    "revolve": revolve_strategy,
    "optimal": optimal,
    "min_memory": min_memory,
}
