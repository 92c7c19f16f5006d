"""Solve a ``dag_milp.MilpModel`` with HiGHS: through ``highspy`` when it is installed (it
takes a starting solution: a known schedule becomes the first incumbent, and the branch and
bound prunes against it from the root on), else through ``scipy.optimize.milp`` (same
solver, no start).

>>> import numpy as np
>>> from scipy.sparse import csr_matrix
>>> from ckpt.planner.strategies.dag_milp import MilpModel
>>> m = MilpModel(np.array([1.0, 1.0]), np.ones(2), np.zeros(2), np.ones(2),
...               csr_matrix([[1.0, 1.0]]), np.array([1.0]), np.array([np.inf]), {}, {}, 1.0)
>>> r = solve_model(m, time_limit=10, rel_gap=0.0)
>>> r.status, r.objective, float(r.x.sum())
('optimal', 1.0, 1.0)
"""
import os
import sys
from typing import NamedTuple

import numpy as np

__all__ = ["ModelSolution", "solve_model", "have_highspy", "quiet_highs"]


class ModelSolution(NamedTuple):
    """``status`` ("optimal", "time_limit", "infeasible", "error"), the ``objective`` and
    the dual ``bound`` (None when unknown), the solution ``x`` (None without one), whether a
    given start was taken (``start_used``) and HiGHS's ``message``.

    >>> ModelSolution("optimal", 1.0, 1.0, None, False, "").status
    'optimal'
    """
    status: str
    objective: float
    bound: float
    x: np.ndarray
    start_used: bool
    message: str


def have_highspy():
    """Whether ``highspy`` can be imported.

    >>> isinstance(have_highspy(), bool)
    True
    """
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    return True


def solve_model(m, time_limit, rel_gap, relax=False, start=None, threads=1, progress=None,
                target=None):
    """Solve ``m`` (its LP relaxation with ``relax``) within ``time_limit`` seconds, stopping
    at relative gap ``rel_gap``; ``start`` maps columns to values of a known solution (the
    integer columns are enough: HiGHS completes the rest), used with highspy only.
    ``threads``: HiGHS's threads (highspy only). ``progress(objective, bound, x)`` is called
    (highspy only) with each better solution (``x``) and, at most every second, with a
    better bound (``x`` None): what is known if the process is killed before the end.
    ``target``: stop (status "target") once a solution costs at most this (highspy only:
    a bound proved elsewhere makes it optimal).

    >>> import numpy as np
    >>> from scipy.sparse import csr_matrix
    >>> from ckpt.planner.strategies.dag_milp import MilpModel
    >>> m = MilpModel(np.array([1.0]), np.ones(1), np.zeros(1), np.ones(1),
    ...               csr_matrix([[1.0]]), np.array([2.0]), np.array([3.0]), {}, {}, 1.0)
    >>> solve_model(m, time_limit=10, rel_gap=0.0).status
    'infeasible'
    """
    if have_highspy():
        return _solve_highspy(m, time_limit, rel_gap, relax, start, threads, progress, target)
    return _solve_scipy(m, time_limit, rel_gap, relax)


def _solve_scipy(m, time_limit, rel_gap, relax):
    from scipy.optimize import Bounds, LinearConstraint, milp
    integrality = np.zeros_like(m.integrality) if relax else m.integrality
    res = milp(m.c, integrality=integrality, bounds=Bounds(m.lb, m.ub),
               constraints=LinearConstraint(m.A, m.row_lb, m.row_ub),
               options={"time_limit": time_limit, "disp": False, "mip_rel_gap": rel_gap})
    status = {0: "optimal", 1: "time_limit", 2: "infeasible"}.get(res.status, "error")
    bound = getattr(res, "mip_dual_bound", None)
    if status == "optimal" and (bound is None or not np.isfinite(bound)):
        bound = res.fun
    if bound is not None and not np.isfinite(bound):
        bound = None
    return ModelSolution(status, None if res.x is None else float(res.fun), bound, res.x,
                         False, str(res.message))


def _report_progress(h, progress):
    """Subscribe ``progress`` to HiGHS's improving-solution and interrupt callbacks."""
    import time
    last = {"bound": -np.inf, "at": 0.0}

    def solution(e):
        progress(float(e.data_out.objective_function_value), float(e.data_out.mip_dual_bound),
                 np.array(e.data_out.mip_solution))

    def bound(e):
        b, now = float(e.data_out.mip_dual_bound), time.monotonic()
        if np.isfinite(b) and b > last["bound"] and now - last["at"] >= 1.0:
            last.update(bound=b, at=now)
            progress(None, b, None)

    h.cbMipImprovingSolution += solution
    h.cbMipInterrupt += bound


def _stop_at(h, target):
    """Interrupt HiGHS once its incumbent costs at most ``target``; returns a list that is
    non-empty once it did."""
    reached = []

    def check(e):
        if e.data_out.mip_primal_bound <= target:
            reached.append(True)
            e.data_in.user_interrupt = True

    h.cbMipInterrupt += check
    return reached


def quiet_highs():
    """A ``highspy.Highs`` with its output off. The first one a process makes writes HiGHS's
    banner to file descriptor 1 before any option can be set (highspy 1.16 takes none at
    construction): here that descriptor points at /dev/null meanwhile, so stdout keeps only
    what the program writes (``ckpt plan --json``).

    >>> quiet_highs().getOptions().output_flag
    False
    """
    import highspy
    if sys.stdout is not None:
        sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:              # no stdout at all: nothing to keep clean
        saved = None
    try:
        if saved is not None:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)
        h = highspy.Highs()
    finally:
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
    h.setOptionValue("output_flag", False)
    return h


def _solve_highspy(m, time_limit, rel_gap, relax, start, threads, progress, target):
    import highspy
    h = quiet_highs()
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("mip_rel_gap", float(rel_gap))
    h.setOptionValue("threads", int(threads))
    A = m.A.tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = A.shape[1], A.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = m.c, m.lb, m.ub
    lp.row_lower_, lp.row_upper_ = m.row_lb, m.row_ub
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_ = A.indptr, A.indices
    lp.a_matrix_.value_ = A.data
    if not relax:
        kinds = (highspy.HighsVarType.kContinuous, highspy.HighsVarType.kInteger)
        lp.integrality_ = [kinds[int(v)] for v in m.integrality]
    h.passModel(lp)
    if progress is not None and not relax:
        _report_progress(h, progress)
    reached = _stop_at(h, target) if target is not None and not relax else []
    used = False
    if start and not relax:
        cols = np.array(sorted(start), dtype=np.int32)
        vals = np.array([float(start[c]) for c in cols])
        used = h.setSolution(len(cols), cols, vals) == highspy.HighsStatus.kOk
    h.run()
    ms = h.getModelStatus()
    M = highspy.HighsModelStatus
    status = {M.kOptimal: "optimal", M.kTimeLimit: "time_limit", M.kInfeasible: "infeasible",
              M.kInterrupt: "target" if reached else "time_limit"}.get(ms, "error")
    info = h.getInfo()
    has_x = info.primal_solution_status == 2      # feasible
    x = np.array(h.getSolution().col_value) if has_x else None
    obj = float(info.objective_function_value) if has_x else None
    bound = obj if relax and status == "optimal" else (
        float(info.mip_dual_bound) if not relax else None)
    if status == "optimal" and bound is None:
        bound = obj
    if bound is not None and not np.isfinite(bound):
        bound = None
    return ModelSolution(status, obj, bound, x, used, h.modelStatusToString(ms))
