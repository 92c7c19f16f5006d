"""``Chain.min_budget``, the least feasible peak, in O(L^2) time and O(L) memory when two
bounds meet, which they do on most chains.

P(1, L), the least peak of the class (``ckpt.planner.min_peak``, the min-peak program of
docs/planner.md), lies between

- a lower bound, O(L): in every schedule of the class, the forward with saving of stage i
  runs with x_{i-1} (or x̄_{i-1}, which holds it) and x_0 alive, and so does its backward,
  with x̄_i, δ_i and δ_{i-1} besides; the largest of these moments;
- an upper bound, O(L^2): the same min-peak recurrence restricted to two of its choices in
  every segment [s, t], save first, or split at s2 = t (recompute forward up to x_{t-1}, do
  stage t, drop x_{t-1}); a min over fewer schedules of the same class, computed one
  diagonal (segment length) at a time.

Where they meet, that is the least peak. Otherwise the full O(L^3) program decides, for
chains of at most ``EXACT_MAX_STAGES`` stages (about 10 s at 1,000); a longer chain raises
``PlannerError`` with both bounds instead of running for minutes. On the tests' random
chains the bounds met on ~95%, and on every benchmark and zoo chain tried.

>>> from ckpt.planner import zoo
>>> c = zoo.uniform(6, nbytes=10)
>>> peak_bounds(c), c.min_peak.minimum
((50, 50), 50)
"""
import numpy as np

from .errors import PlannerError

__all__ = ["least_peak", "peak_bounds", "EXACT_MAX_STAGES"]

EXACT_MAX_STAGES = 1000


def _lower_bound(chain):
    """params + max over stages i of x_0[i > 1] + x_{i-1} + x̄_i + max(ō_f^i, δ_i +
    δ_{i-1} + o_b^i).

    >>> from ckpt.planner import zoo
    >>> _lower_bound(zoo.uniform(3, nbytes=10))
    50
    """
    L = len(chain)
    i = np.arange(1, L + 1)
    x, d = chain.x.astype(np.int64), chain.delta.astype(np.int64)
    base = x[i - 1] + np.where(i > 1, x[0], 0)
    moment = chain.xbar[i] + np.maximum(chain.ofs[i], d[i] + d[i - 1] + chain.ob[i])
    return int(chain.param_bytes + (base + moment).max())


def _upper_bound(chain):
    """params + x_0 + P'(1, L), P' the min-peak recurrence with only "save first" and
    "split at t" (see the module doc).

    >>> from ckpt.planner import zoo
    >>> _upper_bound(zoo.uniform(3, nbytes=10))
    50
    """
    L = len(chain)
    x, xb, of, ofs, ob = (np.asarray(v, dtype=np.int64) for v in
                          (chain.x, chain.xbar, chain.of, chain.ofs, chain.ob))
    d = np.asarray(chain.delta, dtype=np.int64)
    s = np.arange(1, L + 1)
    leaf = np.maximum(xb[s] + ofs[s], xb[s] + d[s - 1] + ob[s])   # P(s, s), s = 1..L
    P = leaf.copy()                 # P[s-1] = P'(s, s + ell) along one diagonal
    fwd = x[s] + of[s]              # fwd[s-1] = fwd(s, s + ell - 1)
    step = np.zeros(L + 1, dtype=np.int64)
    step[1:] = x[:-1] + x[1:] + of[1:]     # step[j] = x_{j-1} + x_j + o_f^j
    for ell in range(1, L):
        s = np.arange(1, L - ell + 1)
        t = s + ell
        if ell > 1:
            fwd = np.maximum(fwd[:-1], step[t - 1])
        else:
            fwd = fwd[:-1]
        save = np.maximum(np.maximum(xb[s] + ofs[s], xb[s] + P[1:]),
                          xb[s] - d[t] + d[s] + d[s - 1] + ob[s])
        split = np.maximum(np.maximum(fwd, x[t - 1] + leaf[t - 1]), P[:-1] - d[t] + d[t - 1])
        P = np.minimum(save, split)
    return int(chain.param_bytes + x[0] + P[0])


def peak_bounds(chain):
    """(lower, upper) bounds of the least feasible peak, bytes, in O(L^2).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> peak_bounds(Chain([Stage("a", 1, 2, 8, 8)], input_bytes=4))
    (12, 12)
    """
    return _lower_bound(chain), _upper_bound(chain)


def least_peak(chain):
    """The least peak any schedule of the class reaches (bytes): the bounds when they meet,
    else the O(L^3) program for chains of at most ``EXACT_MAX_STAGES`` stages.

    >>> from ckpt.planner import zoo
    >>> least_peak(zoo.uniform(5000, nbytes=10))     # bounds meet: no O(L^3) program
    50
    """
    if "min_peak" in chain._cache:
        return chain.min_peak.minimum
    lo, hi = peak_bounds(chain)
    if lo == hi:
        return hi
    if len(chain) <= EXACT_MAX_STAGES:
        return chain.min_peak.minimum
    raise PlannerError(
        f"the least feasible peak of chain {chain.name!r} ({len(chain)} stages) lies between "
        f"{lo} and {hi} bytes; the exact value needs the O(L^3) min-peak program, run only up "
        f"to {EXACT_MAX_STAGES} stages (~10 s there, hours at this length). A budget of "
        f"{hi} bytes or more is feasible; chain.min_peak runs the program regardless")
