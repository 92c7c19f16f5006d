"""Checkmate's MILP (Jain et al., MLSys 2020, section 4.2 and 4.3), written from the paper's
formulation and solved with HiGHS through ``scipy.optimize.milp``, in a child process that is
killed when its wall-clock limit passes (HiGHS's own limit does not hold on large models).

With n training-graph nodes numbered in topological order and stages t = 0..n-1, binary
R[t,i] (stage t computes i), S[t,i] (i resident when stage t starts), FREE[t,i,k] (i is freed
after stage t computes k, for i a dep of k or k itself), and continuous U[t,k] (memory after
stage t computed k, before its frees), M_i the size of i, T_k its transient, B the budget less
the constant bytes:

- minimize Σ_t Σ_i cost_i · R[t,i] (solved as Σ_t Σ_{i<t} cost_i · R[t,i], the
  recomputation alone, so that the solver's relative gap is the gap on the overhead)
- R[t,t] = 1; R[t,i] = 0 for i > t; S[t,i] = 0 for i >= t        (frontier-advancing stages)
- R[t,k] <= R[t,i] + S[t,i] for every edge i -> k               (deps resident)
- S[t+1,i] <= R[t,i] + S[t,i]                                    (keep only what exists)
- U[t,0] = Σ_i M_i S[t,i] + M_0 R[t,0]
- U[t,k] = U[t,k-1] + M_k R[t,k] - Σ_{i ∈ deps(k-1) ∪ {k-1}} M_i FREE[t,i,k-1]
- 0 <= U[t,k] <= B and U[t,k] + T_k R[t,k] <= B
- FREE[t,i,k] = R[t,k] · (1 - S[t+1,i]) · Π_{j ∈ users(i), k < j <= t} (1 - R[t,j]),
  linearized with h = (1 - R[t,k]) + S[t+1,i] + Σ R[t,j] (the "hazards") and κ the number
  of terms of h: FREE + h >= 1 and κ·FREE + h <= κ.

>>> from ckpt.planner.graph import Graph
>>> from ckpt.planner import zoo
>>> tg = Graph.from_chain(zoo.uniform(4, nbytes=10)).training()
>>> r = solve_milp(tg, budget=50, time_limit=30)
>>> r.status, r.objective, len(r.R)
('optimal', 13.0, 8)
"""
import multiprocessing
import os
import time
from typing import NamedTuple

import numpy as np

__all__ = ["MilpResult", "build_milp", "solve_milp", "live_windows", "VARIANTS"]

VARIANTS = ("ckpt", "reference", "presolve_hazard", "bounds_only")


class MilpResult(NamedTuple):
    """The solver's answer: ``status`` ("optimal", "time_limit", "killed", "infeasible",
    "memory", "error"), the MILP ``objective`` and ``bound`` (None when unknown), the stage
    sets ``R`` and ``S`` of the best solution (None without one), ``seconds`` of wall time,
    the model's ``rows``/``columns`` and a ``message``.

    >>> MilpResult("killed", None, None, None, None, 60.0, 0, 0, "").status
    'killed'
    """
    status: str
    objective: float
    bound: float
    R: list
    S: list
    seconds: float
    rows: int
    columns: int
    message: str


class _Model(NamedTuple):
    c: np.ndarray
    integrality: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    A: object
    row_lb: np.ndarray
    row_ub: np.ndarray
    Rcols: dict
    Scols: dict
    cost_unit: float


def live_windows(tg):
    """(last_use, last_descendant): per node, the highest index reading it directly (-1:
    none) and the highest index of its descendants (itself: none).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> live_windows(TrainingGraph(list("xyz"), [1] * 3, [1] * 3, [[], [0], [1]]))
    ([1, 2, -1], [2, 2, 2])
    """
    n = len(tg)
    last_use = [max(u) if u else -1 for u in tg.users]
    last_desc = list(range(n))
    for i in range(n - 1, -1, -1):
        for j in tg.users[i]:
            last_desc[i] = max(last_desc[i], last_desc[j])
    return last_use, last_desc


def build_milp(tg, budget, variant="ckpt"):
    """The model as arrays for ``scipy.optimize.milp`` (see the module doc), memory in units
    of the budget left over the constant bytes. Variables that no optimal schedule needs are
    left out (ckpt's presolve, exact): R[t,i] and S[t,i] when no descendant of i is numbered
    t or later (nothing from stage t on can read it, even through recomputations), and U and
    FREE where R[t,k] is left out. FREE is continuous with one upper bound per hazard
    (FREE <= R[t,k], FREE <= 1 - S[t+1,i], FREE <= 1 - R[t,j]): a solution may free less
    than it could, which only overstates its memory, and the schedule frees eagerly.
    ``variant`` "reference" builds Checkmate's model as published instead (every variable,
    FREE binary with the κ linearization), for comparison; "presolve_hazard" and
    "bounds_only" take one of ckpt's two changes each.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> m = build_milp(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=8)
    >>> m.A.shape, sorted(m.Rcols), sorted(m.Scols)
    ((11, 11), [(0, 0), (1, 0), (1, 1)], [(1, 0)])
    """
    from scipy.sparse import coo_matrix
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    every = variant in ("reference", "bounds_only")        # no presolve
    hazard = variant in ("reference", "presolve_hazard")   # binary FREE, κ linearization
    n = len(tg)
    scale = float(max(1, budget - tg.constant_bytes))   # memory in budget units: B = 1
    B = (budget - tg.constant_bytes) / scale
    M = tg.size / scale
    T = tg.transient / scale
    deps, users = tg.deps, tg.users
    last_use, last_desc = live_windows(tg)
    Rc, Sc, cost = {}, {}, []
    for t in range(n):
        for i in range(t + 1):
            if i == t or last_desc[i] >= t or every:
                Rc[(t, i)] = len(cost)
                cost.append(float(tg.cost[i]))
    nR = len(cost)
    for t in range(1, n):
        for i in range(t):
            if (users[i] and last_desc[i] >= t) or every:  # read later, maybe by a recompute
                Sc[(t, i)] = len(cost)
                cost.append(0.0)
    ncol = len(cost)
    K = [[k for k in range(t + 1) if (t, k) in Rc] for t in range(n)]
    U, FREE = {}, {}
    for t in range(n):
        for k in K[t]:
            U[(t, k)] = ncol
            ncol += 1
    nU = len(U)
    for t in range(n):
        for k in K[t]:
            for i in (*deps[k], k):
                FREE[(t, i, k)] = ncol
                ncol += 1
    rows, cols, vals, rlo, rhi = [], [], [], [], []

    def row(entries, lo, hi):
        r = len(rlo)
        for col, v in entries:
            rows.append(r)
            cols.append(col)
            vals.append(v)
        rlo.append(lo)
        rhi.append(hi)

    inf = np.inf
    for t in range(n):
        for k in K[t]:
            for i in deps[k]:
                row([(Rc[(t, k)], 1.0)] + [(d[(t, i)], -1.0) for d in (Rc, Sc) if (t, i) in d],
                    -inf, 0.0)
        if t + 1 < n:
            for i in range(t + 1):
                if (t + 1, i) in Sc:
                    row([(Sc[(t + 1, i)], 1.0)] + [(d[(t, i)], -1.0) for d in (Rc, Sc)
                                                   if (t, i) in d], -inf, 0.0)
        prev = None
        for k in K[t]:
            e = [(U[(t, k)], 1.0), (Rc[(t, k)], -M[k])]
            if prev is None:
                e += [(Sc[(t, i)], -M[i]) for i in range(t) if (t, i) in Sc]
            else:
                e += [(U[(t, prev)], -1.0)]
                e += [(FREE[(t, i, prev)], M[i]) for i in (*deps[prev], prev)]
            row(e, 0.0, 0.0)
            prev = k
            if T[k] > 0:
                row([(U[(t, k)], 1.0), (Rc[(t, k)], float(T[k]))], -inf, B)
            for i in (*deps[k], k):
                f = FREE[(t, i, k)]
                later = [(Rc[(t, j)], 1.0) for j in users[i] if k < j <= t and (t, j) in Rc]
                if hazard:        # h = (1 - R[t,k]) + S[t+1,i] + Σ R[t,j]: FREE = [h == 0]
                    h = [(Rc[(t, k)], -1.0)] + later
                    if (t + 1, i) in Sc:
                        h.append((Sc[(t + 1, i)], 1.0))
                    kappa = float(len(h))
                    row([(f, 1.0)] + h, 0.0, inf)               # FREE + h >= 1
                    row([(f, kappa)] + h, -inf, kappa - 1.0)    # κ FREE + h <= κ
                    continue
                row([(f, 1.0), (Rc[(t, k)], -1.0)], -inf, 0.0)          # FREE <= R[t,k]
                if (t + 1, i) in Sc:
                    row([(f, 1.0), (Sc[(t + 1, i)], 1.0)], -inf, 1.0)   # FREE <= 1 - S[t+1,i]
                for col, _ in later:
                    row([(f, 1.0), (col, 1.0)], -inf, 1.0)              # FREE <= 1 - R[t,j]
    A = coo_matrix((vals, (rows, cols)), shape=(len(rlo), ncol)).tocsr()
    # objective: the recomputation only (R[t,t] = 1 is a constant), in units of the dearest
    # node, so that HiGHS's relative gap is a gap on the overhead
    unit = float(max(tg.cost.max(), 1e-300))
    c = np.zeros(ncol)
    c[:nR] = np.array(cost[:nR]) / unit
    for t in range(n):
        c[Rc[(t, t)]] = 0.0
    integrality = np.zeros(ncol)
    ustart = nR + len(Sc)
    integrality[:ustart] = 1
    if hazard:
        integrality[ustart + nU:] = 1
    lb = np.zeros(ncol)
    ub = np.ones(ncol)
    ub[ustart:ustart + nU] = max(B, 0.0)
    for t in range(n):
        lb[Rc[(t, t)]] = 1.0
    return _Model(c, integrality, lb, ub, A, np.array(rlo), np.array(rhi), Rc, Sc, unit)


def _stages(model, x, n):
    """R and S (lists of sets) from a solution vector."""
    R = [[] for _ in range(n)]
    S = [set() for _ in range(n)]
    for (t, i), col in model.Rcols.items():
        if x[col] > 0.5:
            R[t].append(i)
    for (t, i), col in model.Scols.items():
        if x[col] > 0.5:
            S[t].add(i)
    return [sorted(r) for r in R], S


def _solve_here(tg, budget, time_limit, conn, mem_limit, rel_gap, variant, relax):
    """Child process: build, solve, send (status, objective, bound, R, S, rows, cols, msg)."""
    try:
        if mem_limit:
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
        from scipy.optimize import LinearConstraint, milp
        from scipy.optimize import Bounds
        t0 = time.monotonic()
        m = build_milp(tg, budget, variant)
        left = max(1.0, time_limit - (time.monotonic() - t0))
        integrality = np.zeros_like(m.integrality) if relax else m.integrality
        res = milp(m.c, integrality=integrality, bounds=Bounds(m.lb, m.ub),
                   constraints=LinearConstraint(m.A, m.row_lb, m.row_ub),
                   options={"time_limit": left, "disp": False, "mip_rel_gap": rel_gap})
        status = {0: "optimal", 1: "time_limit", 2: "infeasible"}.get(res.status, "error")
        R = S = None
        if res.x is not None:
            R, S = _stages(m, res.x, len(tg))
            if relax:      # the LP's S values, for rounding (``dag_lp_rounding``)
                S = [dict() for _ in range(len(tg))]
                for (t, i), col in m.Scols.items():
                    S[t][i] = float(res.x[col])
        bound = getattr(res, "mip_dual_bound", None)
        if status == "optimal" and (bound is None or not np.isfinite(bound)):
            bound = res.fun

        def total(v):          # back to the cost unit, store-all's compute added
            return None if v is None or not np.isfinite(v) else \
                tg.store_all_compute + max(0.0, float(v)) * m.cost_unit
        conn.send((status, total(res.fun) if res.x is not None else None, total(bound),
                   R, S, m.A.shape[0], m.A.shape[1], str(res.message)))
    except MemoryError:
        conn.send(("memory", None, None, None, None, 0, 0, "out of memory"))
    except Exception as e:     # reported to the parent, which falls back to the baselines
        conn.send(("error", None, None, None, None, 0, 0, f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def solve_milp(tg, budget, time_limit=60.0, mem_limit=4 * 2**30, rel_gap=1e-4,
               variant="ckpt", relax=False):
    """Solve the model for ``budget`` bytes within ``time_limit`` seconds of wall time (the
    child process is killed after it, with a grace of 2 s) and ``mem_limit`` bytes of
    address space (None: no limit); HiGHS stops at a relative gap of ``rel_gap`` on the
    recomputation overhead; ``variant`` "reference" solves Checkmate's model as published
    (``build_milp``); ``relax`` solves the LP relaxation instead (``S`` is then, per stage, a
    dict node -> the LP's value). Returns a ``MilpResult`` (objective and bound in the graph's
    cost unit, store-all's compute included).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> solve_milp(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=4).status
    'infeasible'
    """
    import scipy.optimize  # noqa: F401  (imported once here, inherited by the forked child)
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.monotonic()
    proc = ctx.Process(target=_solve_here, daemon=True,
                       args=(tg, budget, time_limit, send, mem_limit, rel_gap, variant, relax))
    proc.start()
    send.close()
    got = None
    if recv.poll(time_limit + 2.0):
        try:
            got = recv.recv()
        except EOFError:
            got = None
    seconds = time.monotonic() - t0
    if proc.is_alive():
        proc.kill()
    proc.join()
    recv.close()
    if got is None:
        why = ("killed at the wall-clock limit" if seconds >= time_limit
               else f"the solver process died (exit code {proc.exitcode})")
        return MilpResult("killed" if seconds >= time_limit else "error", None, None, None,
                          None, seconds, 0, 0, why)
    status, obj, bound, R, S, nrow, ncol, msg = got
    return MilpResult(status, obj, bound, R, S, seconds, nrow, ncol, msg)
