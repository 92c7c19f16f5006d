"""Strategy ``optimal``: the dynamic program of Beaumont, Eyraud-Dubois, Herrmann, Joly and
Shilova (2019), "Optimal checkpointing for heterogeneous chains: how to train deep neural
networks with limited memory" (rotor), written from the paper's description.

C(s, t, m) is the least compute that backpropagates the segment [s, t] when x_{s-1} and δ_t
are alive (counted outside m) and m slots of memory are free above them. Memory is cut into
``slots`` slots of u = (budget - param_bytes) / slots bytes. Each buffer that outlives an op
(x_i, x̄_i, δ_i) is rounded up to whole slots once: taking it costs ⌈size/u⌉ slots and
freeing it gives the same ⌈size/u⌉ back, so m never drifts from what is alive; what one op
adds on top (its new buffers and transient) is rounded up as one sum. The program is thus
never worse than rounding every size up once (rotor's discretization), and any schedule it
accepts fits the budget exactly (the simulator checks it again). With d_i = ω_δ^i,
g_i = ⌈d_i/u⌉, a_s = ⌈ω_x^{s-1}/u⌉, U the prefix sums of u_f, o_f^s / ō_f^s the transients
of F_s without / with saving:

- C(s, s, m) = u_f^s + u_b^s  if m >= ⌈max(ω_x̄^s + ō_f^s, ω_x̄^s + d_{s-1} + o_b^s)/u⌉
- save first (F_s saving x̄_s, the rest, then B_s):
  u_f^s + u_b^s + C(s+1, t, m - ⌈ω_x̄^s/u⌉)
  if m >= ⌈(ω_x̄^s + ō_f^s)/u⌉ and m >= ⌈(ω_x̄^s + d_s + d_{s-1} + o_b^s)/u⌉ - g_t
  (B_s runs after δ_t was freed)
- split at s2 (forward s..s2-1 keeping x_{s2-1}, then [s2, t], then [s, s2-1]):
  U_{s2-1} - U_{s-1} + C(s2, t, m - a_{s2}) + C(s, s2-1, m + g_t - g_{s2-1})
  if m >= ⌈fwd(s, s2-1)/u⌉ (see ``min_memory.forward_peak_table``)

and C(s, t, m) is the least of these. The answer is C(1, L, slots - a_1).

Vectorization. All segments of one length ℓ are independent, so the program runs ℓ = 0..L-1
and, for each split offset k, evaluates every segment of length ℓ and every m at once. Each
row is stored shifted by its own a_s and offset by U_{s-1}:
E_{s,t}[j] = C(s, t, j - a_s) + U_{s-1}. Then the first term of a split is a plain slice of
E (no gather), the second is one row-shifted copy through a sliding-window view (contiguous
rows, no per-element indexing), and the forward cost falls out as
E_{s2,t}[m] + E_{s,s2-1}[...] - 2 U_{s-1}. Rows are padded left with +inf and right with
their last value so every shift is a window. Time O(L^3 · slots / 6) element operations,
memory O(L^2 · slots / 2) floats; the schedule is rebuilt afterwards by re-evaluating the
candidates of the O(L) segments it visits.

Before the program: a budget >= store-all's peak returns store-all (cheapest possible), and
one below ``chain.min_budget`` raises. Chains of at most ``EXHAUSTIVE_MAX_STAGES`` stages
skip the program: ``exhaustive`` searches every op order, which on a few small
heterogeneous chains finds a cheaper schedule outside the class. Rounding can make the
program miss a schedule that fits exactly (near ``chain.min_budget``), or pick a dearer one:
the plans of ``sqrt``, ``recursive``, ``min_memory`` and the fixed strategies compete with
its answer, and when it finds nothing every other strategy's does (``min_memory``'s always
fits). ``greedy`` and ``revolve``, which search, are left out of the first case for time;
with the default 500 slots they beat ``optimal`` on a few random chains in a thousand, by a
few percent, and not with exact slots. The program's own result is exact (equal to an
exhaustive search over the class) when every size is a multiple of the slot size u.

>>> from ckpt.planner import zoo
>>> ops = optimal(zoo.uniform(4, nbytes=10), budget=50, slots=50)
>>> ops[:3]
[forward 1, forward 2, drop 1]
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ..schedule import Op
from .exhaustive import EXHAUSTIVE_MAX_STAGES, exhaustive

__all__ = ["optimal", "solve"]


class _Tables:
    """The filled tables of one run of the program (kept to rebuild the schedule)."""


def _windows(tab, w):
    """Read-only view V[r, j] = tab[r, j : j + w] (rows of width w starting anywhere)."""
    n, W = tab.shape
    return as_strided(tab, shape=(n, W - w + 1, w), strides=(tab.strides[0], tab.strides[1],
                                                              tab.strides[1]), writeable=False)


def solve(chain, budget, slots=500):
    """Run the program for ``budget`` bytes with ``slots`` slots; returns the tables (with
    ``.cost`` = C(1, L, slots - a_1), +inf when no schedule was found).

    >>> from ckpt.planner import zoo
    >>> solve(zoo.uniform(3, nbytes=10), budget=60, slots=60).cost
    9.0
    """
    from .min_memory import forward_peak_table
    L = len(chain)
    S = int(slots)
    if S < 1:
        raise ValueError(f"slots must be >= 1, got {slots!r}")
    avail = int(budget) - chain.param_bytes
    x, xb, ofs, ob, d = chain.x, chain.xbar, chain.ofs, chain.ob, chain.delta
    tb = _Tables()
    tb.cost = np.inf
    if avail <= 0:
        return tb

    def up(v):                       # bytes taken -> slots, rounded up (exact integers)
        return -((-np.asarray(v, dtype=np.int64) * S) // avail)

    U = np.concatenate([[0.0], np.cumsum(chain.uf[1:])])
    a = np.zeros(L + 2, dtype=np.int64)
    a[1:L + 1] = up(x[:L])                          # a[s] = ⌈ω_x^{s-1}/u⌉
    eA = np.zeros(L + 2, dtype=np.int64)
    eA[1:L + 1] = up(xb[1:])
    fwdreq = up(forward_peak_table(chain))           # (L+2, L+2)
    g = up(np.append(d, 0))                          # g[i] = ⌈δ_i/u⌉, taken and given back
    ddown = g[:, None] - g[None, :]                  # ddown[t, r] = g_t - g_r
    # lower bound on the first feasible m of each segment, from the exact min-peak program:
    # a schedule accepted at m peaks at most u·m + (u·g_t - δ_t) above the segment's start
    lo = np.minimum(up(np.minimum(chain.min_peak.peak, np.iinfo(np.int64).max // (4 * S))
                       + np.append(d, 0)[None, :]) - g[None, :], S + 1)

    # padding so that every row shift is a window of width S+1
    offs = [ddown.min() + a[1:L + 1].min(), ddown.max() + a[1:L + 1].max()]
    if L > 1:
        offA = a[2:L + 1] - eA[1:L]
        offs += [offA.min(), offA.max()]
    PL = int(min(max(0, -min(offs)), S + 1))
    PR = int(min(max(0, max(offs)), S + 1))
    W = PL + S + 1 + PR
    A = int(min(a[1:L + 1].max(), S + 1))
    inf = np.inf
    pen = np.concatenate([np.full(S + 1, inf), np.zeros(S + 1)])
    penwin = sliding_window_view(pen, S + 1)         # penwin[S+1-r][m] = inf iff m < r

    def penalty(req, c0=0, c1=S + 1):
        return penwin[S + 1 - np.clip(req, 0, S + 1)][:, c0:c1]

    # one table for all segments: row base[ℓ] + s - 1 holds E_{s,s+ℓ} (see the module doc)
    base = np.concatenate([[0], np.cumsum(L - np.arange(L))])
    TAB = np.full((int(base[-1]), W), inf)
    mmin = np.full((L + 2, L + 2), S + 1, dtype=np.int64)   # first m with C(s, t, m) finite
    reqSA = np.zeros((L + 2, L + 2), dtype=np.int64)        # from here on C = store-all cost

    def store(ell, C):
        R = C.shape[0]
        s = np.arange(1, R + 1)
        X = np.full((R, A + S + 1), inf)
        X[:, A:] = C + U[s - 1][:, None]
        rows = slice(int(base[ell]), int(base[ell]) + R)
        TAB[rows, PL:PL + S + 1] = _windows(X, S + 1)[np.arange(R), A - np.minimum(a[s], A)]
        if PR:
            TAB[rows, PL + S + 1:] = TAB[rows, PL + S:PL + S + 1]
        fin = np.isfinite(C)
        mmin[s, s + ell] = np.where(fin.any(axis=1), fin.argmax(axis=1), S + 1)

    # ℓ = 0: leaves
    s = np.arange(1, L + 1)
    leafreq = up(np.maximum(xb[s] + ofs[s], xb[s] + d[s - 1] + ob[s]))
    reqSA[s, s] = leafreq
    store(0, (chain.uf[s] + chain.ub[s])[:, None] + penalty(leafreq))

    for ell in range(1, L):
        R = L - ell
        s = np.arange(1, R + 1)
        t = s + ell
        rows = np.arange(R)
        reqA = np.maximum(up(xb[s] + ofs[s]), up(xb[s] + d[s] + d[s - 1] + ob[s]) - g[t])
        reqSA[s, t] = np.maximum(reqA, eA[s] + reqSA[s + 1, t])
        # columns worth computing: below c0 every row is +inf, from c1 on every row is its
        # store-all cost (the value at c1 - 1)
        c0 = int(lo[s, t].min())
        c1 = int(min(S + 1, reqSA[s, t].max() + 1))
        C = np.full((R, S + 1), inf)
        if c0 < c1:
            w = c1 - c0
            V = _windows(TAB, w)
            # save first: rows s+1 of the previous diagonal
            startA = PL + c0 + np.clip(a[s + 1] - eA[s], -PL, PR)
            Cw = V[base[ell - 1] + s, startA]
            Cw += (chain.uf[s] + chain.ub[s] - U[s])[:, None]
            Cw += penalty(reqA, c0, c1)
            # split at s + k
            k = np.arange(1, ell + 1)[None, :]
            S2, Rr, T = s[:, None] + k, s[:, None] + k - 1, t[:, None]
            ff = np.maximum(mmin[S2, T] + a[S2], mmin[s[:, None], Rr] - ddown[T, Rr])
            need = fwdreq[s[:, None], Rr] > ff
            anyneed = need.any(axis=0)
            start2 = np.ascontiguousarray(
                (PL + c0 + np.clip(ddown[T, Rr] + a[s][:, None], -PL, PR)).T)
            best = None
            for kk in range(1, ell + 1):
                val = V[base[kk - 1] + rows, start2[kk - 1]]
                r1 = int(base[ell - kk]) + kk
                val += TAB[r1:r1 + R, PL + c0:PL + c1]
                if anyneed[kk - 1]:
                    nr = np.flatnonzero(need[:, kk - 1])
                    val[nr] += penalty(fwdreq[s[nr], s[nr] + kk - 1], c0, c1)
                if best is None:
                    best = val
                else:
                    np.minimum(best, val, out=best)
            best -= 2.0 * U[s - 1][:, None]
            np.minimum(Cw, best, out=Cw)
            C[:, c0:c1] = Cw
            if c1 <= S:
                C[:, c1:] = Cw[:, -1:]
        store(ell, C)

    tb.__dict__.update(L=L, S=S, avail=avail, a=a, eA=eA, g=g, fwdreq=fwdreq, ddown=ddown, PL=PL,
                       PR=PR, U=U, TAB=TAB, base=base, up=up, chain=chain)
    tb.cost = float(TAB[base[L - 1], PL + S] - U[0])
    return tb


def _candidates(tb, s, t, m):
    """Values of every choice for segment (s, t) at m, the way ``solve`` computes them:
    index 0 = save first, k >= 1 = split at s + k (+inf = not allowed)."""
    PL, PR, a, TAB, base, U = tb.PL, tb.PR, tb.a, tb.TAB, tb.base, tb.U
    ell = t - s
    xb, ofs, ob, d = tb.chain.xbar, tb.chain.ofs, tb.chain.ob, tb.chain.delta
    vals = np.full(ell + 1, np.inf)
    reqA = max(int(tb.up(xb[s] + ofs[s])), int(tb.up(xb[s] + d[s] + d[s - 1] + ob[s]) - tb.g[t]))
    if m >= reqA:
        col = PL + m + int(np.clip(a[s + 1] - tb.eA[s], -PL, PR))
        vals[0] = TAB[base[ell - 1] + s, col] + (tb.chain.uf[s] + tb.chain.ub[s] - U[s])
    for k in range(1, ell + 1):
        r = s + k - 1
        if m < tb.fwdreq[s, r]:
            continue
        col = PL + m + int(np.clip(tb.ddown[t, r] + a[s], -PL, PR))
        v = TAB[base[k - 1] + s - 1, col] + TAB[base[ell - k] + s + k - 1, PL + m]
        vals[k] = v - 2.0 * U[s - 1]
    return vals


def rebuild(tb):
    """The op list of the schedule ``solve`` found (iterative; O(L) segments visited).

    >>> from ckpt.planner import zoo
    >>> rebuild(solve(zoo.uniform(2, nbytes=10), budget=40, slots=40))
    [forward_save 1, forward_save 2, backward 2, backward 1]
    """
    S, a = tb.S, tb.a
    out, stack = [], [("seg", 1, tb.L, S - int(a[1]))]
    while stack:
        item = stack.pop()
        if isinstance(item, Op):
            out.append(item)
            continue
        _, s, t, m = item
        if s == t:
            out += [Op("forward_save", s), Op("backward", s)]
            continue
        vals = _candidates(tb, s, t, m)
        k = int(np.argmin(vals))
        if not np.isfinite(vals[k]):
            raise RuntimeError(f"optimal: no finite choice for segment [{s}, {t}] at m={m} "
                               "(the table and the rebuild disagree)")
        if k == 0:
            out.append(Op("forward_save", s))
            stack.append(Op("backward", s))
            stack.append(("seg", s + 1, t, min(m - int(tb.eA[s]), S - int(a[s + 1]))))
        else:
            s2, r = s + k, s + k - 1
            for j in range(s, s2):
                out.append(Op("forward", j))
                if j > s:
                    out.append(Op("drop", j - 1))
            stack.append(("seg", s, r, min(m + int(tb.ddown[t, r]), S - int(a[s]))))
            stack.append(Op("drop", r))
            stack.append(("seg", s2, t, m - int(a[s2])))
    return out


def optimal(chain, budget=None, slots=500, exhaustive_max=EXHAUSTIVE_MAX_STAGES):
    """Strategy ``optimal`` (see the module doc): the cheapest schedule within ``budget``.

    Without a budget, or with one that store-all fits, the answer is store-all. A chain of
    at most ``exhaustive_max`` stages is searched over every op order (``exhaustive``: the
    exact optimum, which can leave the persistent class); a longer one gets the dynamic
    program's schedule, or another strategy's when slot rounding made the program miss a
    cheaper one that fits (see the module doc).

    >>> from ckpt.planner.chain import Chain, Stage
    >>> c = Chain([Stage(str(i), 1, 2, 10, 30) for i in range(8)], input_bytes=10)
    >>> ops = optimal(c, budget=120, slots=110)      # store-all would need 260 bytes
    >>> ops[:6]
    [forward 1, forward 2, drop 1, forward 3, forward 4, drop 3]
    """
    from ..simulate import simulate
    from . import STRATEGIES
    from ._search import best_within

    ops = STRATEGIES["store_all"](chain)
    if budget is None or simulate(chain, ops).peak <= budget:
        return ops
    if len(chain) <= exhaustive_max:
        ops = exhaustive(chain, budget)
        if ops is not None:
            return ops
    tb = solve(chain, budget, slots)
    if np.isfinite(tb.cost):  # against rounding: the strategies whose plan needs no search
        candidates = [rebuild(tb)] + [STRATEGIES[name](chain, budget) for name in _NO_SEARCH]
    else:                     # nothing found: every other strategy's plan competes
        candidates = [fn(chain, budget) for name, fn in STRATEGIES.items() if name != "optimal"]
    return best_within(chain, candidates, budget)


# strategies whose plan costs a few simulations (greedy and revolve search theirs: ~1 s
# together at L = 200, as long as the program itself)
_NO_SEARCH = ("store_all", "recompute_all", "sqrt", "recursive", "min_memory")
