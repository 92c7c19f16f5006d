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
import time
from typing import NamedTuple

import numpy as np

from .killable import run_killable

__all__ = ["MilpResult", "MilpModel", "build_milp", "model_columns", "solve_milp", "compute_of",
           "live_windows", "VARIANTS"]

VARIANTS = ("ckpt", "reference", "presolve_hazard", "bounds_only", "no_free_cut")


class MilpResult(NamedTuple):
    """The solver's answer: ``status`` ("optimal", "time_limit", "killed", "infeasible",
    "memory", "error", "target": stopped at ``solve_milp``'s target, "stopped": by its
    ``stop``), the MILP ``objective`` and ``bound`` (None when unknown), the stage
    sets ``R`` and ``S`` of the best solution (None without one; when "killed" or "stopped",
    the last the solver reported, with its bound), ``seconds`` of wall time,
    the model's ``rows``/``columns``, a ``message`` and whether a given start was taken
    (``start_used``).

    >>> MilpResult("killed", None, None, None, None, 60.0, 0, 0, "", False).status
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
    start_used: bool


class MilpModel(NamedTuple):
    """A model as arrays for ``scipy.optimize.milp``: objective ``c`` (in units of
    ``cost_unit``), ``integrality``, column bounds ``lb``/``ub``, the sparse row matrix ``A``
    with ``row_lb``/``row_ub``, and the columns of R[t,i] and S[t,i] (``Rcols``/``Scols``:
    (t, i) -> column).

    >>> MilpModel(*[None] * 10)._fields[-3:]
    ('Rcols', 'Scols', 'cost_unit')
    """
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


class Rows:
    """Sparse rows collected one at a time: ``add(entries, lo, hi)`` with entries (column,
    value); ``matrix(ncol)`` gives the CSR matrix and the row bounds.

    >>> r = Rows()
    >>> r.add([(0, 1.0), (2, -1.0)], -np.inf, 0.0)
    >>> A, lo, hi = r.matrix(3)
    >>> A.toarray().tolist(), hi.tolist()
    ([[1.0, 0.0, -1.0]], [0.0])
    """

    def __init__(self):
        self.rows, self.cols, self.vals, self.lo, self.hi = [], [], [], [], []

    def add(self, entries, lo, hi):
        r = len(self.lo)
        for col, v in entries:
            self.rows.append(r)
            self.cols.append(col)
            self.vals.append(v)
        self.lo.append(lo)
        self.hi.append(hi)

    def matrix(self, ncol):
        from scipy.sparse import coo_matrix
        A = coo_matrix((self.vals, (self.rows, self.cols)), shape=(len(self.lo), ncol))
        return A.tocsr(), np.array(self.lo, dtype=float), np.array(self.hi, dtype=float)


def stage_rows(tg, Rc, Sc, rows):
    """Add the rows every variant shares: R[t,k] <= R[t,i] + S[t,i] for each dep i of k,
    and S[t+1,i] <= R[t,i] + S[t,i].

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> r = Rows()
    >>> stage_rows(TrainingGraph(list("xy"), [1, 1], [1, 1], [[], [0]]),
    ...            {(0, 0): 0, (1, 0): 1, (1, 1): 2}, {(1, 0): 3}, r)
    >>> r.matrix(4)[0].toarray().tolist()
    [[-1.0, 0.0, 0.0, 1.0], [0.0, -1.0, 1.0, -1.0]]
    """
    for t in range(len(tg)):
        for k in range(t + 1):
            if (t, k) in Rc:
                for i in tg.deps[k]:
                    rows.add([(Rc[(t, k)], 1.0)] + [(d[(t, i)], -1.0) for d in (Rc, Sc)
                                                    if (t, i) in d], -np.inf, 0.0)
        for i in range(t + 1):
            if (t + 1, i) in Sc:
                rows.add([(Sc[(t + 1, i)], 1.0)] + [(d[(t, i)], -1.0) for d in (Rc, Sc)
                                                    if (t, i) in d], -np.inf, 0.0)


def free_once_rows(tg, Rc, Sc, FREE, rows):
    """Add, per stage t and value i, Σ_k FREE[t,i,k] + S[t+1,i] <= R[t,i] + S[t,i]: a value
    is freed at most once, only when it is resident and not kept into the next stage. Every
    integral solution meets it (after the last reader k* of i computed in stage t, FREE <=
    1 - R[t,k*] zeroes the earlier frees); the relaxation without it frees half a value
    twice, or frees half and keeps half of a value that is only half resident.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> r = Rows()
    >>> free_once_rows(TrainingGraph(list("xy"), [1, 1], [1, 1], [[], [0]]),
    ...                {(0, 0): 0, (1, 0): 1, (1, 1): 2}, {(1, 0): 3},
    ...                {(0, 0, 0): 4, (1, 0, 0): 5, (1, 0, 1): 6, (1, 1, 1): 7}, r)
    >>> r.matrix(8)[0].toarray().tolist()[0]
    [-1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    """
    freed = {}
    for (t, i, _), col in FREE.items():
        freed.setdefault((t, i), []).append((col, 1.0))
    for (t, i), entries in sorted(freed.items()):
        e = entries + [(d[(t, i)], -1.0) for d in (Rc, Sc) if (t, i) in d]
        if (t + 1, i) in Sc:
            e.append((Sc[(t + 1, i)], 1.0))
        rows.add(e, -np.inf, 0.0)


def objective(tg, Rc, ncol, cost):
    """(c, unit, lb): the recomputation cost of the R columns in units of the dearest node
    (R[t,t] = 1 is a constant: its cost is left out and its lower bound is 1), so that the
    solver's relative gap is a gap on the overhead; and the column lower bounds.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> c, unit, lb = objective(TrainingGraph(list("xy"), [1, 2], [1, 1], [[], [0]]),
    ...                         {(0, 0): 0, (1, 0): 1, (1, 1): 2}, 4, [1.0, 1.0, 2.0, 0.0])
    >>> c.tolist(), unit, lb.tolist()
    ([0.0, 0.5, 0.0, 0.0], 2.0, [1.0, 0.0, 1.0, 0.0])
    """
    unit = float(max(tg.cost.max(), 1e-300))
    c = np.zeros(ncol)
    c[:len(cost)] = np.array(cost) / unit
    lb = np.zeros(ncol)
    for t in range(len(tg)):
        c[Rc[(t, t)]] = 0.0
        lb[Rc[(t, t)]] = 1.0
    return c, unit, lb


def model_columns(tg, every=False):
    """The R and S columns: (Rcols, Scols, cost), dicts (t, i) -> column and the cost of
    each column (the node's for R, 0 for S), R's columns first. Unless ``every``, columns
    that no optimal schedule needs are left out (exact): R[t,i] and S[t,i] when no descendant
    of i is numbered t or later (nothing from stage t on can read it, even through
    recomputations), and S[t,i] of a value nothing reads.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> Rc, Sc, cost = model_columns(TrainingGraph(list("xy"), [1, 2], [4, 4], [[], [0]]))
    >>> Rc, Sc, cost
    ({(0, 0): 0, (1, 0): 1, (1, 1): 2}, {(1, 0): 3}, [1.0, 1.0, 2.0, 0.0])
    """
    n = len(tg)
    users = tg.users
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
    return Rc, Sc, cost


def peak_rows(tg, Sc, M, T, B, stages, rows):
    """Add, for each stage t of ``stages``, the memory when it computes node t, the peak rule
    of a stage whose steps are not modelled: node t, its transient and its deps (all
    resident) and every value kept into stage t+1 (resident by then), with sizes ``M``,
    transients ``T`` and budget ``B`` in budget units. Every schedule meets it, so a model
    with these rows in place of a stage's running sum is a relaxation: its optimum is a
    lower bound.

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> r = Rows()
    >>> tg = TrainingGraph(list("xyzw"), [1] * 4, [2, 3, 4, 1], [[], [0], [1], [0, 2]])
    >>> peak_rows(tg, {(3, 0): 0, (3, 2): 1}, tg.size / 10, tg.transient, 1.0, [2], r)
    >>> A, lo, hi = r.matrix(2)
    >>> A.toarray().tolist(), hi.round(6).tolist()     # 0.2 S[3,x] <= 1 - 0.4 (z) - 0.3 (y)
    ([[0.2, 0.0]], [0.3])
    """
    for t in stages:
        dep = set(tg.deps[t])
        kept = [(Sc[(t + 1, i)], M[i]) for i in range(t) if i not in dep and (t + 1, i) in Sc]
        rows.add(kept, -np.inf, B - M[t] - T[t] - sum(M[i] for i in dep))


def build_milp(tg, budget, variant="ckpt", stages=None):
    """The model (a ``MilpModel``, memory in units of the budget left over the constant
    bytes) of ``variant``: "ckpt" is Checkmate's running memory sum (see the module doc)
    with the columns of ``model_columns``, FREE continuous with one upper bound per hazard
    (FREE <= R[t,k], FREE <= 1 - S[t+1,i], FREE <= 1 - R[t,j]: a solution may free less than
    it could, which only overstates its memory, and the schedule frees eagerly) and the rows
    of ``free_once_rows``; "reference" is Checkmate's model as published (every variable,
    FREE binary with the κ linearization), for comparison; "presolve_hazard" and
    "bounds_only" take one of ckpt's first two changes each, "no_free_cut" is "ckpt" without
    ``free_once_rows``. Only the ``stages`` given (None: all) get the running sum, the
    others ``peak_rows`` (``dag_lazy``).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> m = build_milp(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=8)
    >>> m.A.shape, sorted(m.Rcols), sorted(m.Scols)
    ((14, 11), [(0, 0), (1, 0), (1, 1)], [(1, 0)])
    >>> build_milp(TrainingGraph(["x"], [1], [1], [[]]), 1, variant="gurobi")
    Traceback (most recent call last):
    ...
    ValueError: variant must be one of ('ckpt', 'reference', 'presolve_hazard', 'bounds_only', 'no_free_cut'), got 'gurobi'
    """
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
    Rc, Sc, cost = model_columns(tg, every)
    ncol = len(cost)
    stepwise = range(n) if stages is None else set(stages)
    K = [[k for k in range(t + 1) if (t, k) in Rc] if t in stepwise else [] for t in range(n)]
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
    rows = Rows()
    stage_rows(tg, Rc, Sc, rows)
    row = rows.add
    inf = np.inf
    for t in range(n):
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
    if variant in ("ckpt", "bounds_only"):
        free_once_rows(tg, Rc, Sc, FREE, rows)
    peak_rows(tg, Sc, M, T, B, [t for t in range(n) if not K[t]], rows)
    A, rlo, rhi = rows.matrix(ncol)
    c, unit, lb = objective(tg, Rc, ncol, cost)
    nR = len(Rc)
    integrality = np.zeros(ncol)
    ustart = nR + len(Sc)
    integrality[:ustart] = 1
    if hazard:
        integrality[ustart + nU:] = 1
    ub = np.ones(ncol)
    ub[ustart:ustart + nU] = max(B, 0.0)
    return MilpModel(c, integrality, lb, ub, A, rlo, rhi, Rc, Sc, unit)


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


def start_columns(model, R, S):
    """Column values of the stage schedule (R, S) for the model's R and S columns (every one
    of them, 0 or 1), as a dict column -> value.

    >>> m = MilpModel(*[None] * 7, {(0, 0): 0, (1, 0): 1, (1, 1): 2}, {(1, 0): 3}, 1.0)
    >>> start_columns(m, [[0], [1]], [set(), {0}])
    {0: 1.0, 1: 0.0, 2: 1.0, 3: 1.0}
    """
    got = {}
    for cols, sets in ((model.Rcols, R), (model.Scols, S)):
        for (t, i), col in cols.items():
            got[col] = 1.0 if i in sets[t] else 0.0
    return dict(sorted(got.items()))


def compute_of(tg, m, v):
    """A model's objective value ``v`` (in ``m.cost_unit``, recomputation only) as a graph
    compute: store-all's added (None for None or a non-finite value).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> tg = TrainingGraph(["x", "y"], [1, 2], [4, 4], [[], [0]])
    >>> compute_of(tg, build_milp(tg, budget=8), 0.5), compute_of(tg, None, float("inf"))
    (4.0, None)
    """
    return None if v is None or not np.isfinite(v) else \
        tg.store_all_compute + max(0.0, float(v)) * m.cost_unit


def _solve_here(send, tg, budget, time_limit, rel_gap, variant, relax, start, stages,
                target):
    """Child process (``killable``): build, solve, send ("progress", objective, bound, R, S)
    as HiGHS improves, then ("done", status, objective, bound, R, S, rows, cols, msg, start
    used)."""
    from .dag_highs import solve_model
    t0 = time.monotonic()
    m = build_milp(tg, budget, variant, stages)

    def progress(obj, bound, x):
        R, S = (None, None) if x is None else _stages(m, x, len(tg))
        send(("progress", compute_of(tg, m, obj), compute_of(tg, m, bound), R, S))

    left = max(1.0, time_limit - (time.monotonic() - t0))
    res = solve_model(m, left, rel_gap, relax=relax, progress=progress,
                      start=None if start is None else start_columns(m, *start),
                      target=None if target is None else
                      (target - tg.store_all_compute) / m.cost_unit)
    R = S = None
    if res.x is not None:
        R, S = _stages(m, res.x, len(tg))
        if relax:      # the LP's S values, for rounding (``dag_lp_rounding``)
            S = [dict() for _ in range(len(tg))]
            for (t, i), col in m.Scols.items():
                S[t][i] = float(res.x[col])
    send(("done", res.status, compute_of(tg, m, res.objective), compute_of(tg, m, res.bound),
          R, S, m.A.shape[0], m.A.shape[1], res.message, res.start_used))


def solve_milp(tg, budget, time_limit=60.0, mem_limit=4 * 2**30, rel_gap=1e-4,
               variant="ckpt", relax=False, start=None, stages=None, target=None,
               on_incumbent=None, stop=None, on_bound=None):
    """Solve the model for ``budget`` bytes within ``time_limit`` seconds of wall time (the
    child process is killed after it, with a grace of 2 s) and ``mem_limit`` bytes of
    address space (None: no limit); HiGHS stops at a relative gap of ``rel_gap`` on the
    recomputation overhead; ``variant`` "reference" solves Checkmate's model as published
    (``build_milp``); ``relax`` solves the LP relaxation instead (``S`` is then, per stage, a
    dict node -> the LP's value); ``start`` = (R, S), a known stage schedule (``dag_stages.
    ops_stages``), is HiGHS's first incumbent where ``highspy`` is installed; ``stages``:
    the stages whose memory is modelled step by step (None: all; the others get
    ``peak_rows`` only, a relaxation); ``target``: stop (status "target") at a solution of
    at most this compute (a bound known from elsewhere proves it); ``on_incumbent(R, S)`` is
    called here with each improving solution as the solver reports it, ``on_bound(bound)``
    with each bound it reports (in the graph's cost unit), and ``stop()``
    between messages (and every 0.5 s): when it says so the solver is stopped (status
    "stopped", its last solution and bound returned). Returns a ``MilpResult`` (objective
    and bound in the graph's cost unit, store-all's compute included).

    >>> from ckpt.planner.graph_training import TrainingGraph
    >>> solve_milp(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=4).status
    'infeasible'
    >>> r = solve_milp(TrainingGraph(["x", "y"], [1, 1], [4, 4], [[], [0]]), budget=8,
    ...                start=([[0], [1]], [set(), {0}]))
    >>> r.status, r.objective
    ('optimal', 2.0)
    """
    import scipy.optimize  # noqa: F401  (imported once here, inherited by the forked child)
    from .dag_highs import have_highspy
    have_highspy()
    last = (None, None, None, None)        # what the solver reported before a stop or kill

    def seen(msg):                         # ("progress", objective, bound, R, S)
        nonlocal last
        if on_bound is not None and msg[2] is not None:
            on_bound(msg[2])
        if msg[3] is not None or last[2] is None:            # a solution, or a bound alone
            last = msg[1:]
            if on_incumbent is not None and msg[3] is not None:
                on_incumbent(msg[3], msg[4])
        else:
            last = (last[0], msg[2], last[2], last[3])
    run = run_killable(_solve_here, (tg, budget, time_limit, rel_gap, variant, relax, start,
                                     stages, target),
                       time_limit, mem_limit, on_message=seen, stop=stop)
    if run.done is None:      # what the solver reported before it was stopped or died
        obj, bound, R, S = last
        return MilpResult(run.how, obj, bound, R, S, run.seconds, 0, 0, run.reason, False)
    status, obj, bound, R, S, nrow, ncol, msg, used = run.done[1:]
    return MilpResult(status, obj, bound, R, S, run.seconds, nrow, ncol, msg, used)
