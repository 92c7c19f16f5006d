"""Exact planning on graphs: ``dag_optimal`` (ckpt's model of Checkmate's MILP, HiGHS through
scipy) beside Checkmate's model as published (same solver, same run), and the ``chain``
baseline (dominator cuts + chain ``optimal``), on the graph zoo at budgets given as fractions
of store-all's peak.

    python benchmarks/bench_graph.py                     # default rows, 20 s per solve
    python benchmarks/bench_graph.py --time-limit 60     # the issue's setting
    python benchmarks/bench_graph.py --quick             # two small rows: a check it works
    python benchmarks/bench_graph.py --ablation          # the MILP variants alone, side by side

Columns: n = training-graph nodes (forward + backward); the overhead (compute / store-all
compute - 1) of ``chain`` and ``dag_lp_rounding`` ("—"/"none": nothing fits); for Checkmate's
published model (``reference``, the MILP alone) and ``dag_optimal``: the status (opt =
proven within the stopping gap, 1e-4 of the overhead; tl = time limit; none = no schedule in
time; inf = infeasible), the overhead, the overhead gap (objective - bound) / (objective -
store-all), and wall seconds. ``dag_optimal`` spends a quarter of its time on LP rounding,
the rest on ckpt's MILP, and returns the best of those schedules, ``recompute_all``'s and
``chain``'s (``src``).
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

ROWS = [("vgg16", dict(batch=32), (0.9, 0.8, 0.6)),
        ("unet", dict(depth=2, batch=8, image=64, width=16), (0.9, 0.8, 0.7, 0.5)),
        ("transformer", dict(layers=2, d_model=256, heads=4, seq=128, batch=4), (0.9, 0.7, 0.5)),
        ("densenet", dict(blocks=(3, 3), batch=8), (0.9, 0.7)),
        ("random_layered", dict(nodes=60, seed=0), (0.9, 0.8, 0.7)),
        ("random_layered", dict(nodes=100, seed=0), (0.9, 0.8)),
        ("resnet50", dict(batch=32), (0.8,))]
QUICK = [("random_layered", dict(nodes=20, seed=0), (0.8,)),
         ("unet", dict(depth=1, batch=1, image=16, width=4), (0.9,))]

ABLATION = [("vgg16", dict(batch=32), 0.9),
            ("unet", dict(depth=1, batch=1, image=16, width=4), 0.9),
            ("transformer", dict(layers=1, d_model=256, heads=4, seq=128, batch=4), 0.9),
            ("random_layered", dict(nodes=30, seed=0), 0.9),
            ("random_layered", dict(nodes=30, seed=0), 0.8)]

STATUS = {"optimal": "opt", "time_limit": "tl", "killed": "none", "infeasible": "inf",
          "memory": "mem", "error": "err", "store_all": "sa"}


def pct(x):
    return "—" if x is None else f"{100 * x:.3g}%"


def row(name, kw, frac, limit):
    g = graph_zoo.get(name, **kw)
    tg = g.training()
    peak = simulate_graph(tg, dag_store_all(tg)).peak
    budget = int(frac * peak)
    base = tg.store_all_compute
    try:
        ch = plan_graph(g, "chain", budget=budget).overhead
    except BudgetError:
        ch = None
    t0 = time.monotonic()
    ref = solve_milp(tg, budget, time_limit=limit, variant="reference")
    t_ref = time.monotonic() - t0
    ref_over = None if ref.objective is None else ref.objective / base - 1
    ref_gap = (None if ref.objective is None or ref.bound is None
               else overhead_gap(ref.objective, ref.bound, base))
    t0 = time.monotonic()
    try:
        p = plan_graph(g, "dag_optimal", budget=budget, time_limit=limit)
        ours = (STATUS[p.solver_status], pct(p.overhead), pct(p.gap), p.info.get("source"))
    except BudgetError:
        ours = ("none", "—", "—", "—")
    t_ours = time.monotonic() - t0
    try:
        lp = pct(plan_graph(g, "dag_lp_rounding", budget=budget, time_limit=limit).overhead)
    except BudgetError:
        lp = "none"
    return (f"| {g.name} | {len(tg)} | {frac} | {pct(ch)} | {lp} | {STATUS[ref.status]} | "
            f"{pct(ref_over)} | {pct(ref_gap)} | {t_ref:.1f} | {ours[0]} | {ours[1]} | "
            f"{ours[2]} | {ours[3]} | {t_ours:.1f} |")


def ablation(limit):
    """Each MILP variant alone (no baselines): status, overhead, overhead gap, seconds."""
    print("| graph | n | budget | " + " | ".join(VARIANTS) + " |")
    print("|" + " --- |" * (3 + len(VARIANTS)))
    for name, kw, frac in ABLATION:
        g = graph_zoo.get(name, **kw)
        tg = g.training()
        budget = int(frac * simulate_graph(tg, dag_store_all(tg)).peak)
        base = tg.store_all_compute
        cells = []
        for v in VARIANTS:
            r = solve_milp(tg, budget, time_limit=limit, variant=v)
            over = None if r.objective is None else r.objective / base - 1
            gap = (None if r.objective is None or r.bound is None
                   else overhead_gap(r.objective, r.bound, base))
            cells.append(f"{STATUS[r.status]} {pct(over)} gap {pct(gap)} {r.seconds:.1f} s")
        print(f"| {g.name} | {len(tg)} | {frac} | " + " | ".join(cells) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ablation", action="store_true")
    args = ap.parse_args()
    print(f"# bench_graph: {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, time limit {args.time_limit:g} s per solve")
    if args.ablation:
        return ablation(args.time_limit)
    print("| graph | n | budget | chain | lp_rounding | reference status | overhead | gap | s "
          "| dag_optimal status | overhead | gap | src | s |")
    print("|" + " --- |" * 14)
    for name, kw, fracs in (QUICK if args.quick else ROWS):
        for frac in fracs:
            print(row(name, kw, frac, args.time_limit), flush=True)


if __name__ == "__main__":
    main()
