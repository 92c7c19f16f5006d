"""The smallest peak any schedule of the class reaches: an exact min-max dynamic program.

With the memory of a segment [s, t] counted above what is alive when it starts (x_{s-1},
δ_t and everything outside), P(s, t) is the least peak of extra bytes over schedule trees
(``ckpt.planner.schedule``); with d_i = ω_δ^i:

- P(s, s) = max(ω_x̄^s + ō_f^s, ω_x̄^s + d_{s-1} + o_b^s)
- save first: max(ω_x̄^s + ō_f^s, ω_x̄^s + P(s+1, t), ω_x̄^s - d_t + d_s + d_{s-1} + o_b^s)
- split at s2: max(fwd(s, s2-1), ω_x^{s2-1} + P(s2, t), P(s, s2-1) - d_t + d_{s2-1}),
  fwd(s, r) = max_{s<=j<=r} (ω_x^{j-1}[j>s] + ω_x^j + o_f^j)

The chain's minimum budget is param_bytes + ω_x^0 + P(1, L). Ties between equal peaks go to
the cheaper candidate. O(L^3) time (vectorized over all segments of one length and all split
points), O(L^2) memory, integers throughout (exact).

>>> from ckpt.planner import zoo
>>> c = zoo.uniform(4, nbytes=10)
>>> t = min_peak_table(c); t.minimum, c.min_budget
(50, 50)
"""
from typing import NamedTuple

import numpy as np

__all__ = ["min_peak_table", "forward_peak_table", "MinPeak"]


class MinPeak(NamedTuple):
    """Tables of the min-peak program: ``peak[s, t]`` (bytes), ``cost[s, t]`` of the chosen
    schedule, ``choice[s, t]`` (0 = save first, k >= 1 = split at s + k), and ``minimum`` =
    the chain's minimum feasible budget.

    >>> from ckpt.planner import zoo
    >>> zoo.uniform(2, nbytes=10).min_peak.minimum
    40
    """
    peak: np.ndarray
    cost: np.ndarray
    choice: np.ndarray
    minimum: int


def forward_peak_table(chain):
    """fwd[s, r] = peak extra bytes of ``forward s .. r`` keeping x_{s-1} (each intermediate
    dropped after the next forward); an (L+2, L+2) int64 array.

    >>> from ckpt.planner import zoo
    >>> int(forward_peak_table(zoo.uniform(3, nbytes=10))[1, 3])
    20
    """
    L = len(chain)
    x, of = chain.x, chain.of
    fwd = np.zeros((L + 2, L + 2), dtype=np.int64)
    step = np.zeros(L + 1, dtype=np.int64)          # step[j] = x_{j-1} + x_j + o_f^j
    step[1:] = x[:-1] + x[1:] + of[1:]
    for s in range(1, L + 1):
        first = x[s] + of[s]
        fwd[s, s] = first
        if s < L:
            fwd[s, s + 1:L + 1] = np.maximum(first, np.maximum.accumulate(step[s + 1:]))
    return fwd


def min_peak_table(chain):
    """Run the min-peak program on ``chain`` and return its tables (``MinPeak``).

    >>> from ckpt.planner import zoo
    >>> int(min_peak_table(zoo.uniform(3, nbytes=10)).peak[1, 3])
    40
    """
    L = len(chain)
    x, xb, ofs, ob, d = chain.x, chain.xbar, chain.ofs, chain.ob, chain.delta
    U = np.concatenate([[0.0], np.cumsum(chain.uf[1:])])     # U[i] = Σ_{j<=i} u_f^j
    fwd = forward_peak_table(chain)
    big = np.iinfo(np.int64).max // 4
    P = np.full((L + 2, L + 2), big, dtype=np.int64)
    cost = np.full((L + 2, L + 2), np.inf)
    choice = np.zeros((L + 2, L + 2), dtype=np.int64)
    s = np.arange(1, L + 1)
    P[s, s] = np.maximum(xb[s] + ofs[s], xb[s] + d[s - 1] + ob[s])
    cost[s, s] = chain.uf[s] + chain.ub[s]
    for ell in range(1, L):
        s = np.arange(1, L - ell + 1)
        t = s + ell
        # save first
        pa = np.maximum(np.maximum(xb[s] + ofs[s], xb[s] + P[s + 1, t]),
                        xb[s] - d[t] + d[s] + d[s - 1] + ob[s])
        ca = chain.uf[s] + chain.ub[s] + cost[s + 1, t]
        # split at s + k
        S2 = s[:, None] + np.arange(1, ell + 1)[None, :]
        R = S2 - 1
        T = t[:, None]
        pb = np.maximum(np.maximum(fwd[s[:, None], R], x[R] + P[S2, T]),
                        P[s[:, None], R] - d[T] + d[R])
        cb = (U[R] - U[s[:, None] - 1]) + cost[S2, T] + cost[s[:, None], R]
        allp = np.concatenate([pa[:, None], pb], axis=1)
        allc = np.concatenate([ca[:, None], cb], axis=1)
        best = allp.min(axis=1)
        pick = np.where(allp == best[:, None], allc, np.inf).argmin(axis=1)
        P[s, t] = best
        cost[s, t] = allc[np.arange(len(s)), pick]
        choice[s, t] = pick
    minimum = int(chain.param_bytes + x[0] + P[1, L])
    return MinPeak(P, cost, choice, minimum)
