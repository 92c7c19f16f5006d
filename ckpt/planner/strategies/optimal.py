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
  if m >= ⌈fwd(s, s2-1)/u⌉ (see ``ckpt.planner.min_peak.forward_peak_table``)

and C(s, t, m) is the least of these. The answer is C(1, L, slots - a_1).

Vectorization. Segments of one length ℓ are independent, so the program runs ℓ = 0..L-1 and,
for each split offset k, evaluates every segment of length ℓ at once. Columns are j = m + g_t
(m shifted by the segment's own δ_t): then the left term of a split, C(s, s2-1, m + g_t -
g_{s2-1}), is column j of the row of (s, s2-1) in the same coordinates, and the right term,
C(s2, t, m - a_{s2}), is column j of a second copy of the rows of length ℓ - k, stored shifted
by their a_s. Both terms are plain slices (no gather); the forward cost is folded into the
first copy (offset by U_t) and falls out as TL + TR - U_{s-1}. Tables are stored column by
column (one column holds every segment of a length), so a slice is a few long runs of
contiguous segments: on chains of 500 stages a quarter faster than row by row. A column
depends only on columns at or left of it, so the root's column j = slots - a_1 bounds every
table, and nothing right of a row's store-all requirement or left of its first feasible
column (the least-peak program in slots, computed alongside) is evaluated.

Two passes per length. First every choice is evaluated at the grid columns G (every
``_GRID``-th column and the last one), from copies of the tables at G: this gives C exactly
there. As C(s, t, ·) and each choice's value are non-increasing in m, choice k can be the
least anywhere in [G_i, G_{i+1}) only if its value at G_{i+1} is at most C at G_i; the
second pass evaluates each choice only on the blocks where it can, one rectangle of rows x
columns per k. On the benchmark chains this leaves about a quarter of the (segment, split,
column) triples of the full program, plus a sixteenth in the first pass. Time O(L^3 · slots
/ 6) element operations in the worst case, memory 2 x L^2 · slots / 2 float64; the schedule
is rebuilt afterwards by re-evaluating the candidates of the O(L) segments it visits.

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

from ..schedule import Op
from .exhaustive import EXHAUSTIVE_MAX_STAGES, exhaustive

__all__ = ["optimal", "solve"]

_GRID = 16      # columns between two grid columns of the first pass


class _Tables:
    """The filled tables of one run of the program (kept to rebuild the schedule)."""


def solve(chain, budget, slots=500):
    """Run the program for ``budget`` bytes with ``slots`` slots; returns the tables (with
    ``.cost`` = C(1, L, slots - a_1), +inf when no schedule was found).

    >>> from ckpt.planner import zoo
    >>> solve(zoo.uniform(3, nbytes=10), budget=60, slots=60).cost
    9.0
    """
    from ..min_peak import forward_peak_table
    L = len(chain)
    S = int(slots)
    if S < 1:
        raise ValueError(f"slots must be >= 1, got {slots!r}")
    avail = int(budget) - chain.param_bytes
    x, xb, ofs, ob, d, uf, ub = (chain.x, chain.xbar, chain.ofs, chain.ob, chain.delta,
                                 chain.uf, chain.ub)
    tb = _Tables()
    tb.cost = np.inf

    def up(v):                       # bytes taken -> slots, rounded up (exact integers)
        return -((-np.asarray(v, dtype=np.int64) * S) // avail)

    if avail <= 0 or S < up(x[0]):
        return tb
    U = np.concatenate([[0.0], np.cumsum(uf[1:])])
    a = np.zeros(L + 2, dtype=np.int64)
    a[1:L + 1] = up(x[:L])                          # a[s] = ⌈ω_x^{s-1}/u⌉
    eA = np.zeros(L + 2, dtype=np.int64)
    eA[1:L + 1] = up(xb[1:])
    fwdreq = up(forward_peak_table(chain))           # (L+2, L+2)
    g = up(np.append(d, 0))                          # g[i] = ⌈δ_i/u⌉, taken and given back
    J = S + 1 - int(a[1])                            # columns j = m + g_t; root at J - 1
    P = int(min(max(eA.max(), a.max()), J))          # left padding (+inf) for row shifts
    inf = np.inf
    big = np.int64(2 * J + 4 * int(g.max() + a.max() + eA.max()) + 8)
    first = np.full((L + 2, L + 2), big, dtype=np.int64)  # first finite column
    sat = np.zeros((L + 2, L + 2), dtype=np.int64)        # from here on: store-all cost
    TL, TR = [], []                                  # per length: rows s = 1..L-ℓ
    G = np.unique(np.append(np.arange(0, J, _GRID), J - 1))
    base = np.concatenate([[0], np.cumsum(L - np.arange(L))])
    TLc = np.empty((int(base[-1]), len(G)))          # the tables at the grid columns G
    TRc = np.empty((int(base[-1]), len(G)))
    cols = np.arange(J)
    buf = np.empty(L * J)

    def store(ell, s, Cj):                           # Cj[j, r] = C(s, t, j - g_t)
        t = s + ell
        tl = np.empty((P + J, len(s)))
        tl[:P] = inf
        np.add(Cj, U[t][None, :], out=tl[P:])
        tr = tl[P + cols[:, None] - np.minimum(a[s], P)[None, :], np.arange(len(s))[None, :]]
        tr -= U[t][None, :]
        TL.append(tl)
        TR.append(np.concatenate([tl[:P], tr]))
        TLc[base[ell]:base[ell] + len(s)] = tl[P + G].T
        TRc[base[ell]:base[ell] + len(s)] = tr[G].T

    s = np.arange(1, L + 1)
    leaf = up(np.maximum(xb[s] + ofs[s], xb[s] + d[s - 1] + ob[s])) + g[s]
    first[s, s] = sat[s, s] = leaf
    store(0, s, np.where(cols[:, None] >= leaf[None, :], (uf[s] + ub[s])[None, :], inf))
    nG = len(G)

    for ell in range(1, L):
        R = L - ell
        s = np.arange(1, R + 1)
        t = s + ell
        gt = g[t]
        reqA = np.maximum(up(xb[s] + ofs[s]), up(xb[s] + d[s] + d[s - 1] + ob[s]) - gt) + gt
        sat[s, t] = np.maximum(reqA, eA[s] + sat[s + 1, t])
        k = np.arange(1, ell + 1)[None, :]
        Sc, S2, Rr, T = s[:, None], s[:, None] + k, s[:, None] + k - 1, t[:, None]
        fq = fwdreq[Sc, Rr] + gt[:, None]            # split allowed from column fq on
        ch = np.maximum(first[S2, T] + a[S2], first[Sc, Rr])   # both parts finite from ch
        ff = np.maximum(fq, ch)
        first[s, t] = np.minimum(np.maximum(reqA, first[s + 1, t] + eA[s]), ff.min(axis=1))
        c0 = int(min(first[s, t].min(), J))
        c1 = int(min(J, sat[s, t].max() + 1))
        Cj = np.full((J, R), inf)
        if c0 < c1:
            sfconst = (uf[s] + ub[s] + U[s - 1] - U[t])[:, None]
            # every choice at the grid columns
            sh = np.minimum(eA[s], P)
            coarse_sf = TL[ell - 1][P + G[None, :] - sh[:, None], 1 + np.arange(R)[:, None]]
            coarse_sf = coarse_sf + sfconst
            coarse_sf[G[None, :] < reqA[:, None]] = inf
            kr = np.arange(1, ell + 1)[:, None]
            rr0 = np.arange(R)[None, :]
            V = TLc[base[kr - 1] + rr0]
            V += TRc[base[ell - kr] + kr + rr0]
            bite = fq > ch
            rr, kk = np.nonzero(bite)
            if len(rr):
                sub = V[kk, rr]
                sub[G[None, :] < fq[rr, kk][:, None]] = inf
                V[kk, rr] = sub
            bestc = np.minimum(V.min(axis=0), coarse_sf)
            # choice k can win in block [G_i, G_i+1) only if its value at G_i+1 is <= C(G_i)
            # (at an infeasible G_i, any choice finite at G_i+1 may be least)
            nd = V[:, :, 1:] <= np.minimum(bestc, np.finfo(float).max)[None, :, :-1]
            best = TL[ell - 1][P + cols[c0:c1, None] - sh[None, :], 1 + np.arange(R)[None, :]]
            best += sfconst.T
            best[cols[c0:c1, None] < reqA[None, :]] = inf
            rowany = nd.any(axis=2)
            blkany = nd.any(axis=1)
            r0 = rowany.argmax(axis=1)
            r1 = R - rowany[:, ::-1].argmax(axis=1)
            lo = np.maximum(G[blkany.argmax(axis=1)], c0) - c0
            hi = np.minimum(G[nG - 1 - blkany[:, ::-1].argmax(axis=1)], c1) - c0
            bite &= fq - c0 > lo[None, :]            # rows whose fq cuts the rectangle
            bites = bite.any(axis=0)
            for kk in np.flatnonzero(rowany.any(axis=1) & (hi > lo)):
                i0, i1, q0, q1, K = int(r0[kk]), int(r1[kk]), int(lo[kk]), int(hi[kk]), kk + 1
                val = buf[:(i1 - i0) * (q1 - q0)].reshape(q1 - q0, i1 - i0)
                np.add(TL[K - 1][P + c0 + q0:P + c0 + q1, i0:i1],
                       TR[ell - K][P + c0 + q0:P + c0 + q1, i0 + K:i1 + K], out=val)
                cut = np.flatnonzero(bite[i0:i1, kk]) if bites[kk] else ()
                if len(cut):
                    lim = fq[i0 + cut, kk] - c0 - q0
                    val[:, cut] = np.where(np.arange(q1 - q0)[:, None] < lim[None, :], inf,
                                           val[:, cut])
                bv = best[q0:q1, i0:i1]
                np.minimum(bv, val, out=bv)
            inside = (G >= c0) & (G < c1)
            best[G[inside] - c0] = bestc[:, inside].T
            best -= U[s - 1][None, :]
            Cj[c0:c1] = best
            Cj[c1:] = best[-1:]
        store(ell, s, Cj)

    tb.__dict__.update(L=L, S=S, J=J, P=P, a=a, eA=eA, g=g, fwdreq=fwdreq, U=U, TL=TL, TR=TR,
                       up=up, chain=chain)
    tb.cost = float(TL[L - 1][P + J - 1, 0] - U[L])
    return tb


def _candidates(tb, s, t, j):
    """Values of every choice for segment (s, t) at column j = m + g_t, the way ``solve``
    computes them: index 0 = save first, k >= 1 = split at s + k (+inf = not allowed)."""
    P, U, ell, ch = tb.P, tb.U, t - s, tb.chain
    xb, ofs, ob, d = ch.xbar, ch.ofs, ch.ob, ch.delta
    vals = np.full(ell + 1, np.inf)
    gt = int(tb.g[t])
    reqA = max(int(tb.up(xb[s] + ofs[s])), int(tb.up(xb[s] + d[s] + d[s - 1] + ob[s])) - gt)
    if j >= reqA + gt:
        col = P + j - min(int(tb.eA[s]), P)
        vals[0] = tb.TL[ell - 1][col, s] + (ch.uf[s] + ch.ub[s] + U[s - 1] - U[t])
    for k in range(1, ell + 1):
        if j >= tb.fwdreq[s, s + k - 1] + gt:
            vals[k] = tb.TL[k - 1][P + j, s - 1] + tb.TR[ell - k][P + j, s + k - 1]
    return vals - U[s - 1]


def rebuild(tb):
    """The op list of the schedule ``solve`` found (iterative; O(L) segments visited).

    >>> from ckpt.planner import zoo
    >>> rebuild(solve(zoo.uniform(2, nbytes=10), budget=40, slots=40))
    [forward_save 1, forward_save 2, backward 2, backward 1]
    """
    out, stack = [], [("seg", 1, tb.L, tb.J - 1)]
    while stack:
        item = stack.pop()
        if isinstance(item, Op):
            out.append(item)
            continue
        _, s, t, j = item
        if s == t:
            out += [Op("forward_save", s), Op("backward", s)]
            continue
        vals = _candidates(tb, s, t, j)
        k = int(np.argmin(vals))
        if not np.isfinite(vals[k]):
            raise RuntimeError(f"optimal: no finite choice for segment [{s}, {t}] at column "
                               f"{j} (the table and the rebuild disagree)")
        if k == 0:
            out.append(Op("forward_save", s))
            stack.append(Op("backward", s))
            stack.append(("seg", s + 1, t, j - int(tb.eA[s])))
        else:
            s2, r = s + k, s + k - 1
            for i in range(s, s2):
                out.append(Op("forward", i))
                if i > s:
                    out.append(Op("drop", i - 1))
            stack.append(("seg", s, r, j))
            stack.append(Op("drop", r))
            stack.append(("seg", s2, t, j - int(tb.a[s2])))
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
