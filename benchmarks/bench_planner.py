"""Speed of the planner core: the ``optimal`` dynamic program on heterogeneous chains of
L = 50, 100, 200, 500 stages with 500 memory slots, and ``revolve`` for 10^4 steps.

    python benchmarks/bench_planner.py              # full table (L = 500 takes ~0.5 min)
    python benchmarks/bench_planner.py --quick      # L = 50, 100 only

Each chain is random but seeded: stage output 64 KiB x U{1..100}, saved bytes 1-4x the
output, transients up to 0.8 MiB, forward cost U(1, 10), backward U(1, 20). The budget is
a third of the way from the chain's minimum to store-all's peak, where the program has the
most to decide. Times are wall-clock seconds of the best of ``--repeat`` runs, split into
the min-peak program (``chain.min_budget``, needed to validate any budget), the cost program
(``solve``), the schedule rebuild, and the simulator replay of the plan.
"""
import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from ckpt.planner import Chain, Stage, optimal_advances, revolve, simulate  # noqa: E402
from ckpt.planner.strategies.optimal import rebuild, solve  # noqa: E402
from ckpt.planner.strategies.revolve import revolve_plan_ops  # noqa: E402
from ckpt.planner.strategies.store_all import store_all  # noqa: E402
from ckpt.planner import zoo  # noqa: E402


def hetero_chain(L, seed=1):
    rng = np.random.default_rng(seed)
    stages = []
    for i in range(L):
        x = int(rng.integers(1, 101)) * 2**16
        stages.append(Stage(f"s{i + 1}", float(rng.uniform(1, 10)), float(rng.uniform(1, 20)),
                            x, x * int(rng.integers(1, 5)), int(rng.integers(0, 50)) * 2**14,
                            int(rng.integers(0, 50)) * 2**14))
    return Chain(stages, input_bytes=2**20, name=f"hetero{L}")


def time_optimal(L, slots, repeat):
    best = None
    for _ in range(repeat):
        chain = hetero_chain(L)                      # fresh chain: nothing cached
        t0 = time.perf_counter()
        lo = chain.min_budget
        t1 = time.perf_counter()
        hi = simulate(chain, store_all(chain), timeline=False).peak
        budget = lo + (hi - lo) // 3
        tb = solve(chain, budget, slots)
        t2 = time.perf_counter()
        ops = rebuild(tb)
        t3 = time.perf_counter()
        sim = simulate(chain, ops, timeline=False)
        t4 = time.perf_counter()
        assert sim.peak <= budget
        row = (t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, sim.compute / chain.store_all_compute)
        if best is None or row[0] < best[0]:
            best = row
    return best


def time_revolve(steps, snapshots, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        sched = revolve(steps, snapshots)
        t1 = time.perf_counter()
        ops = revolve_plan_ops(sched)
        t2 = time.perf_counter()
        sim = simulate(zoo.uniform(steps, nbytes=8), ops, timeline=False)
        t3 = time.perf_counter()
        assert sched.advances == optimal_advances(steps, snapshots)
        row = (t1 - t0, t2 - t1, t3 - t2, len(sched), sched.advances, len(ops), sim.peak)
        if best is None or row[0] < best[0]:
            best = row
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--slots", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [50, 100] if args.quick else [50, 100, 200, 500]
    print(f"# python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"\noptimal, {args.slots} slots (seconds; best of {args.repeat}, 1 run for L >= 500)")
    print("| L | total | min-peak program | cost program | rebuild | replay | compute / store-all |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for L in sizes:
        r = time_optimal(L, args.slots, 1 if L >= 500 else args.repeat)
        print(f"| {L} | {r[0]:.2f} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.3f} | {r[4]:.3f} | "
              f"{r[5]:.3f} |", flush=True)
    print("\nrevolve, 10^4 steps (seconds; best of 3)")
    print("| snapshots | actions | advances (= eq. 2) | build | to plan ops | replay |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in (10, 100, 1000):
        r = time_revolve(10_000, c, 3)
        print(f"| {c} | {r[3]} | {r[4]} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
