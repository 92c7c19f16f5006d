"""Exact planning on graphs (issue 17): ``dag_optimal`` beside Checkmate's MILP as published
(same solver, HiGHS, same run), and the heuristics ``chain`` (dominator cuts + chain
``optimal``) and ``dag_greedy`` (checkpoint selection), on the graph zoo at budgets given
as fractions of store-all's peak.

    python benchmarks/bench_dag.py                       # the issue's rows, 60 s per solve
    python benchmarks/bench_dag.py --time-limit 20       # shorter solves
    python benchmarks/bench_dag.py --quick               # two small rows: a check it works
    python benchmarks/bench_dag.py --ablation            # the MILP variants alone
    python benchmarks/bench_dag.py --quality             # dag_optimal against the heuristics
                                                         # at 0.9…0.3, and the least peaks
    python benchmarks/bench_dag.py --only unet@0.6 --only n250  # rows whose "graph@budget"
                                                         # contains one of the strings

Columns: n = training-graph nodes (forward + backward); the overhead (compute / store-all
compute - 1) of ``chain``, ``dag_greedy`` and ``dag_lp_rounding`` (Checkmate's LP rounding;
``lp/opt`` = its overhead over ``dag_optimal``'s) ("none": nothing fits); for Checkmate's
published model (``reference``, the MILP alone, no start) and ``dag_optimal``: the status
(opt = proven within the stopping gap ``--rel-gap`` on the overhead, 1% by default as the
issue's goal; tl = time limit; kill = the solver process killed at the limit, keeping what
HiGHS had reported; inf = infeasible; skip = MILP not tried, graph above
``milp_max_nodes``), the overhead, the overhead gap (objective - bound) / (objective -
store-all), and wall seconds (for "opt": the time to the proof). ``dag_optimal`` solves
the keep-set relaxation first (``dag_keep_bound``; ``keep`` = its bound as an overhead),
runs ``dag_greedy`` from its keep set and from every value (15% of the time, 40% above 200
nodes, 90% above 300), stops there when the bound proves the best schedule, else runs the
lazy MILP
(``dag_lazy``: peak rows, then step-by-step memory rows for the stages a replay finds over
budget; ``rounds`` = how many models it solved), warm-started (highspy) from the cheapest
of its, ``chain``'s and ``recompute_all``'s schedules, and returns the best (``src``).
"""
import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ckpt.planner import BudgetError, graph_zoo, plan_graph  # noqa: E402
from ckpt.planner.graph_simulate import simulate_graph  # noqa: E402
from ckpt.planner.strategies.dag_baselines import dag_store_all  # noqa: E402
from ckpt.planner.strategies.dag_milp import VARIANTS, solve_milp  # noqa: E402
from ckpt.planner.strategies.dag_optimal import overhead_gap  # noqa: E402

ROWS = [("random_layered", dict(nodes=100, seed=0), (0.9, 0.8, 0.7)),
        ("random_layered", dict(nodes=250, seed=0), (0.9, 0.8)),
        ("unet", {}, (0.9, 0.8, 0.7, 0.6, 0.5)),
        ("transformer", {}, (0.9, 0.8, 0.7, 0.6, 0.5)),
        ("resnet50", {}, (0.8,)),
        ("random_layered", dict(nodes=500, seed=0), (0.8,)),
        ("random_layered", dict(nodes=1000, seed=0), (0.8,))]
QUALITY = [("unet", {}), ("densenet", {}), ("transformer", {})]
QUALITY_FRACS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
QUICK = [("random_layered", dict(nodes=20, seed=0), (0.8,)),
         ("unet", dict(depth=1, batch=1, image=16, width=4), (0.9,))]

ABLATION = [("vgg16", dict(batch=32), 0.9),
            ("unet", dict(depth=1, batch=1, image=16, width=4), 0.9),
            ("transformer", dict(layers=1, d_model=256, heads=4, seq=128, batch=4), 0.9),
            ("random_layered", dict(nodes=30, seed=0), 0.9),
            ("random_layered", dict(nodes=30, seed=0), 0.8)]

STATUS = {"optimal": "opt", "time_limit": "tl", "killed": "kill", "infeasible": "inf",
          "memory": "mem", "error": "err", "store_all": "sa", "skipped": "skip"}


def pct(x):
    return "—" if x is None else f"{100 * x:.3g}%"


def heuristic(g, name, budget, **options):
    try:
        return plan_graph(g, name, budget=budget, **options).overhead
    except BudgetError:
        return None


def row(name, kw, frac, limit, rel_gap, reference=True, ours=True):
    g = graph_zoo.get(name, **kw)
    tg = g.training()
    budget = int(frac * simulate_graph(tg, dag_store_all(tg)).peak)
    base = tg.store_all_compute
    ch = heuristic(g, "chain", budget) if ours else None
    gr = heuristic(g, "dag_greedy", budget, time_limit=limit) if ours else None
    lp = heuristic(g, "dag_lp_rounding", budget, time_limit=limit) if ours else None
    cells = []
    if reference:
        ref = solve_milp(tg, budget, time_limit=limit, rel_gap=rel_gap, variant="reference")
        over = None if ref.objective is None else ref.objective / base - 1
        gap = (None if ref.objective is None or ref.bound is None
               else overhead_gap(ref.objective, ref.bound, base))
        cells += [STATUS[ref.status], pct(over), pct(gap), f"{ref.seconds:.1f}"]
    else:
        cells += ["not run"] + ["—"] * 3
    t0 = time.monotonic()
    try:
        if not ours:
            raise BudgetError("not run")
        p = plan_graph(g, "dag_optimal", budget=budget, time_limit=limit, rel_gap=rel_gap)
        keep = p.info.get("keep_bound")
        cells += [STATUS[p.solver_status], pct(p.overhead),
                  pct(None if keep is None else keep / base - 1), pct(p.gap), p.info["source"],
                  str(len(p.info.get("rounds", [])))]
        ratio = None if lp is None or p.overhead <= 0 else lp / p.overhead
    except BudgetError:
        cells += ["none" if ours else "not run", "—", "—", "—", "—", "—"]
        ratio = None
    cells.append(f"{time.monotonic() - t0:.1f}")
    return (f"| {g.name} | {len(tg)} | {frac} | {pct(ch)} | {pct(gr)} | {pct(lp)} | "
            f"{'—' if ratio is None else f'{ratio:.3g}x'} | " + " | ".join(cells) + " |")


def against_chain(ours, chain):
    """``dag_optimal``'s overhead against ``chain``'s: the difference and the ratio."""
    if chain is None:
        return "chain: none"
    if chain <= 0:
        return "0" if ours == chain else "—"
    return f"{pct(ours - chain)} ({ours / chain:.3g}x)"


def quality_row(g, tg, frac, limit, rel_gap, strategies):
    """One budget of ``--quality``: each heuristic's overhead, then ``dag_optimal``'s status,
    overhead and gap, and its overhead against ``chain``'s."""
    budget = int(frac * simulate_graph(tg, dag_store_all(tg)).peak)
    over = {s: heuristic(g, s, budget, **({"time_limit": limit} if s.startswith("dag_") else {}))
            for s in strategies}
    t0 = time.monotonic()
    try:
        p = plan_graph(g, "dag_optimal", budget=budget, time_limit=limit, rel_gap=rel_gap)
        opt = [STATUS[p.solver_status], pct(p.overhead), pct(p.gap)]
        vs = against_chain(p.overhead, over.get("chain"))
    except BudgetError:
        opt, vs = ["none", "—", "—"], "—"
    return (f"| {g.name} | {frac} | " + " | ".join(pct(over[s]) for s in strategies) + " | "
            + " | ".join(opt) + f" | {vs} | {time.monotonic() - t0:.1f} |")


def least_peaks(g, tg, limit, strategies, tries=7):
    """Per strategy, the least budget (a fraction of store-all's peak) it finds a schedule
    for, by bisection between the keep-set relaxation's floor (no schedule of the stage class
    fits below it) and recompute-all's peak (or store-all's, if nothing fits there); each
    probe of a ``dag_*`` strategy gets ``limit`` seconds, so its figure is what it finds in
    that time. Returns (floor, recompute-all's peak, {strategy: least fraction found, None
    when no probe found one})."""
    from ckpt.planner.strategies.dag_baselines import dag_recompute_all
    from ckpt.planner.strategies.dag_keep_bound import keep_bound
    store = simulate_graph(tg, dag_store_all(tg)).peak
    top = simulate_graph(tg, dag_recompute_all(tg)).peak / store

    def bisect(lo, hi, fits):      # the least fraction found that fits (None: no probe did)
        best = None
        for _ in range(tries):
            mid = (lo + hi) / 2
            if fits(mid):
                best = hi = mid
            else:
                lo = mid
        return lo, best

    floor = bisect(0.0, top, lambda f: keep_bound(tg, int(f * store), time_limit=limit)
                   .status != "infeasible")[0]
    found = {}
    for s in strategies + ["dag_optimal"]:
        opts = {"time_limit": limit} if s.startswith("dag_") else {}

        def fits(f):
            return heuristic(g, s, int(f * store), **opts) is not None
        found[s] = top if fits(top) else None
        found[s] = bisect(floor, found[s] or 1.0, fits)[1] or found[s]
    return floor, top, found


def quality(limit, rel_gap, probe_limit, only=()):
    """``--quality``: the issue's quality section, U-Net, DenseNet-like and transformer graphs
    at 0.9…0.3 of store-all's peak, and the least peak each strategy reaches."""
    strategies = ["chain", "sqrt", "greedy", "dag_greedy", "dag_lp_rounding"]
    print("| graph | budget | " + " | ".join(strategies) + " | dag_optimal status | overhead "
          "| gap | against chain | s |")
    print("|" + " --- |" * (len(strategies) + 7))
    peaks = []
    for name, kw in QUALITY:
        g = graph_zoo.get(name, **kw)
        if only and not any(o in g.name for o in only):
            continue
        tg = g.training()
        for frac in QUALITY_FRACS:
            print(quality_row(g, tg, frac, limit, rel_gap, strategies), flush=True)
        peaks.append((g.name, len(tg), *least_peaks(g, tg, probe_limit, strategies)))
    print(f"\nLeast peak each strategy finds, as a fraction of store-all's (bisection, 7 probes "
          f"of {probe_limit:g} s; keep-set floor: no schedule of the stage class fits below it)\n")
    print("| graph | n | keep-set floor | recompute_all | " + " | ".join(strategies)
          + " | dag_optimal |")
    print("|" + " --- |" * (len(strategies) + 5))
    for name, n, floor, top, found in peaks:
        print(f"| {name} | {n} | {floor:.3f} | {top:.3f} | "
              + " | ".join("—" if found[s] is None else f"{found[s]:.3f}"
                           for s in strategies + ["dag_optimal"]) + " |",
              flush=True)


def ablation(limit, rel_gap):
    """Each MILP variant alone (no start): status, overhead, overhead gap, seconds."""
    print("| graph | n | budget | " + " | ".join(VARIANTS) + " |")
    print("|" + " --- |" * (3 + len(VARIANTS)))
    for name, kw, frac in ABLATION:
        g = graph_zoo.get(name, **kw)
        tg = g.training()
        budget = int(frac * simulate_graph(tg, dag_store_all(tg)).peak)
        base = tg.store_all_compute
        cells = []
        for v in VARIANTS:
            r = solve_milp(tg, budget, time_limit=limit, rel_gap=rel_gap, variant=v)
            over = None if r.objective is None else r.objective / base - 1
            gap = (None if r.objective is None or r.bound is None
                   else overhead_gap(r.objective, r.bound, base))
            cells.append(f"{STATUS[r.status]} {pct(over)} gap {pct(gap)} {r.seconds:.1f} s")
        print(f"| {g.name} | {len(tg)} | {frac} | " + " | ".join(cells) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--rel-gap", type=float, default=0.01)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ablation", action="store_true")
    ap.add_argument("--quality", action="store_true",
                    help="dag_optimal against the heuristics at 0.9…0.3, and the least peaks")
    ap.add_argument("--probe-limit", type=float, default=15.0,
                    help="seconds per solve of --quality's least-peak bisection")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip Checkmate's published model (halves the time)")
    ap.add_argument("--reference-only", action="store_true",
                    help="only Checkmate's published model (to run beside --no-reference)")
    ap.add_argument("--only", action="append", default=[],
                    help="run only the rows whose 'graph@budget' contains this (repeatable)")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# bench_dag: {time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, load {load:.1f}, time limit {args.time_limit:g} s per "
          f"solve, stopping gap {args.rel_gap:g}")
    if args.ablation:
        return ablation(args.time_limit, args.rel_gap)
    if args.quality:
        return quality(args.time_limit, args.rel_gap, args.probe_limit, args.only)
    print("| graph | n | budget | chain | dag_greedy | lp_rounding | lp/opt | reference status "
          "| overhead | gap | s | dag_optimal status | overhead | keep | gap | src | rounds | s |")
    print("|" + " --- |" * 18)
    for name, kw, fracs in (QUICK if args.quick else ROWS):
        for frac in fracs:
            label = f"{graph_zoo.get(name, **kw).name}@{frac}"
            if args.only and not any(o in label for o in args.only):
                continue
            print(row(name, kw, frac, args.time_limit, args.rel_gap,
                      reference=not args.no_reference, ours=not args.reference_only),
                  flush=True)


if __name__ == "__main__":
    main()
