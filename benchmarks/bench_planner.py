"""Speed of the planner core: the ``optimal`` dynamic program on heterogeneous chains of
L = 50, 100, 200, 500 stages with 500 memory slots, and ``revolve`` for 10^4 steps.

    python benchmarks/bench_planner.py              # full table (L = 500 takes ~0.5 min)
    python benchmarks/bench_planner.py --quick      # L = 50, 100 only
    python benchmarks/bench_planner.py --rotor DIR  # also rotor's C program, same process
    python benchmarks/bench_planner.py --previous   # also the program of commit dd5aabf

``--rotor DIR`` names a folder holding a build of rotor's ``dynamic_programs`` C extension
(Beaumont et al. 2019; https://github.com/topal-team/rotor, also copied in topal-team/rockmate
under rotor/algorithms/; not shipped with ckpt). Its
``persistent_compute_table`` is timed in this process on the same chain with every size
rounded up to the same slots, and quoted as a ratio ckpt / rotor. Rotor's call ends by
converting its whole table to Python dicts (tens of GB at L = 500); the build measured in
benchmarks/README.md returned right after the table was filled, so only the program is timed.
The plain-loop column times ``tests/test_planner_scale.py``'s reference of the same
recurrence (Python recursion over the states it needs; L = 50 only, it is the test oracle).

``--previous [COMMIT]`` loads ``solve`` from ``ckpt/planner/strategies/optimal.py`` as it was
at COMMIT (default dd5aabf, the program before the blocked one; read with ``git show``) and
times it alternately with the current one on the same chains, with the same optimum. For
dd5aabf the table also gives the ratio to rotor through the one measured for that program
on a quiet machine (benchmarks/README.md): current / rotor ~ current / previous x previous /
rotor, an indirect estimate.

Each chain is random but seeded: stage output 64 KiB x U{1..100}, saved bytes 1-4x the
output, transients up to 0.8 MiB, forward cost U(1, 10), backward U(1, 20). The budget is
a third of the way from the chain's minimum to store-all's peak, where the program has the
most to decide. Times are wall-clock seconds of the best of ``--repeat`` runs, split into
``chain.min_budget`` (needed to validate any budget), the cost program (``solve``), the
schedule rebuild, and the simulator replay of the plan; the ratio to rotor is also given in
CPU time (this process's), steadier than wall-clock time on a shared machine.
"""
import argparse
import math
import os
import platform
import subprocess
import sys
import time
import types

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


# previous program (dd5aabf) / rotor's C program, measured in one process on a quiet machine
# (benchmarks/README.md, bench_planner.py, 2026-12-05): the range of the runs
PREVIOUS_OVER_ROTOR = {"dd5aabf": {200: (0.83, 0.86), 500: (0.88, 0.91)}}


def previous_program(commit):
    """``solve`` of ``optimal.py`` as it was at ``commit`` (or None), from ``git show``."""
    if not commit:
        return None
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    try:
        source = subprocess.run(
            ["git", "-C", root, "show", f"{commit}:ckpt/planner/strategies/optimal.py"],
            check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"--previous {commit}: cannot read optimal.py at that commit "
                         f"with git ({e}); give a commit of this repository") from None
    # forward_peak_table moved from strategies/min_memory.py to min_peak.py after dd5aabf
    source = source.replace("from .min_memory import forward_peak_table",
                            "from ..min_peak import forward_peak_table")
    module = types.ModuleType(f"ckpt.planner.strategies._optimal_{commit}")
    module.__package__ = "ckpt.planner.strategies"
    exec(compile(source, f"optimal.py@{commit}", "exec"), module.__dict__)
    return module.solve


def timed(fn, *args):
    """(result, wall-clock seconds, CPU seconds of this process) of ``fn(*args)``."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.process_time() - c0


def time_optimal(L, slots, repeat, rotor=None, plain=False, previous=None):
    """Best of ``repeat`` runs of each part; ckpt's program, the previous one and rotor's
    alternate, each timed in wall-clock and CPU seconds (the machine is shared: CPU time is
    steadier)."""
    best = {}

    def keep(name, value):
        best[name] = min(best.get(name, math.inf), value)

    for i in range(repeat):
        chain = hetero_chain(L)                      # fresh chain: nothing cached
        t0 = time.perf_counter()
        lo = chain.min_budget
        keep("min_budget", time.perf_counter() - t0)
        hi = simulate(chain, store_all(chain), timeline=False).peak
        budget = lo + (hi - lo) // 3
        if previous and i % 2:                      # who goes first alternates
            old, wall, cpu = timed(previous, chain, budget, slots)
            keep("previous", wall)
            keep("previous_cpu", cpu)
        tb, wall, cpu = timed(solve, chain, budget, slots)
        t2 = time.perf_counter()
        ops = rebuild(tb)
        t3 = time.perf_counter()
        sim = simulate(chain, ops, timeline=False)
        t4 = time.perf_counter()
        assert sim.peak <= budget
        for name, v in (("program", wall), ("program_cpu", cpu),
                        ("rebuild", t3 - t2), ("replay", t4 - t3)):
            keep(name, v)
        if previous and not i % 2:
            old, wall, cpu = timed(previous, chain, budget, slots)
            keep("previous", wall)
            keep("previous_cpu", cpu)
        if previous:                                  # same optimum (up to rounding)
            assert abs(old.cost - tb.cost) <= 1e-9 * tb.cost, (old.cost, tb.cost)
            del old
        best["compute"] = sim.compute / chain.store_all_compute
        if rotor:
            wall, cpu = time_rotor(rotor, chain, budget, slots)
            keep("rotor", wall)
            keep("rotor_cpu", cpu)
    if plain:
        seconds, cost = time_plain_loop(chain, budget, slots)
        assert abs(cost - tb.cost) <= 1e-9 * tb.cost, (cost, tb.cost)  # same optimum
        best["plain"] = seconds
    return best


def rotor_program(folder):
    """rotor's ``persistent_compute_table`` from a build in ``folder`` (or None)."""
    if not folder:
        return None
    sys.path.insert(0, folder)
    import dynamic_programs
    return dynamic_programs.persistent_compute_table


def time_rotor(fn, chain, budget, slots):
    """Wall-clock and CPU seconds of rotor's program on ``chain`` with every size rounded up
    to ``slots``."""
    S, avail, L = int(slots), int(budget) - chain.param_bytes, len(chain)

    def up(v):
        return [int(-((-int(b) * S) // avail)) for b in v]

    class RotorChain:               # rotor's field names (sic)
        fweigth = [float(v) for v in chain.uf[1:]] + [0.0]
        bweigth = [float(v) for v in chain.ub[1:]] + [0.0, 0.0]
        cweigth = up(chain.x[:L + 1]) + [0]
        cbweigth = [0] + up(chain.xbar[1:]) + [0]
        fwd_tmp = up(chain.ofs[1:]) + [0]
        bwd_tmp = up(chain.ob[1:]) + [0, 0]
        length = L

    t0, c0 = time.perf_counter(), time.process_time()
    fn(RotorChain, S)
    return time.perf_counter() - t0, time.process_time() - c0


def time_plain_loop(chain, budget, slots):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from test_planner_scale import reference_cost
    t0 = time.perf_counter()
    cost = reference_cost(chain, budget, slots)
    return time.perf_counter() - t0, cost


def print_previous(rows, commit):
    """The current program against the one of ``commit``, same process, same chains."""
    known = PREVIOUS_OVER_ROTOR.get(commit, {})
    print(f"\ncost program vs the program of {commit} (seconds, best of the runs above)")
    print("| L | previous | current | current / previous | same, CPU time "
          "| ≈ current / rotor (indirect) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for L, r in rows:
        wall, cpu = r["program"] / r["previous"], r["program_cpu"] / r["previous_cpu"]
        est = (f"{cpu * known[L][0]:.2f}–{cpu * known[L][1]:.2f}x" if L in known else "—")
        print(f"| {L} | {r['previous']:.2f} | {r['program']:.2f} | {wall:.2f}x | {cpu:.2f}x "
              f"| {est} |", flush=True)


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
    ap.add_argument("--rotor", metavar="DIR", help="folder with rotor's dynamic_programs build")
    ap.add_argument("--previous", metavar="COMMIT", nargs="?", const="dd5aabf",
                    help="also time optimal.py's program as it was at COMMIT (default dd5aabf)")
    args = ap.parse_args()
    rotor = rotor_program(args.rotor)
    previous = previous_program(args.previous)
    sizes = [50, 100] if args.quick else [50, 100, 200, 500]
    print(f"# python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"\noptimal, {args.slots} slots (seconds; best of {args.repeat}, 1 run for L >= 500)")
    print(f"# {time.strftime('%Y-%m-%d')}; rotor: {'timed' if rotor else 'not given (--rotor)'}")
    print("| L | min_budget | cost program | rebuild | replay | compute / store-all "
          "| rotor's C program | cost program / rotor | same, CPU time | plain loop "
          "| cost program / plain loop |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for L in sizes:
        r = time_optimal(L, args.slots, 1 if L >= 500 else args.repeat, rotor, plain=L <= 50,
                         previous=previous)
        rows.append((L, r))
        rot, rcpu, loop = (r.get(k, math.nan) for k in ("rotor", "rotor_cpu", "plain"))
        cells = [f"{r['min_budget']:.3f}", f"{r['program']:.2f}", f"{r['rebuild']:.3f}",
                 f"{r['replay']:.3f}", f"{r['compute']:.3f}", f"{rot:.2f}",
                 f"{r['program'] / rot:.2f}x", f"{r['program_cpu'] / rcpu:.2f}x", f"{loop:.2f}",
                 f"{r['program'] / loop:.4f}x"]
        print(f"| {L} | " + " | ".join("—" if "nan" in c else c for c in cells) + " |",
              flush=True)
    if previous:
        print_previous(rows, args.previous)
    print("\nrevolve, 10^4 steps (seconds; best of 3)")
    print("| snapshots | actions | advances (= eq. 2) | build | to plan ops | replay |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in (10, 100, 1000):
        r = time_revolve(10_000, c, 3)
        print(f"| {c} | {r[3]} | {r[4]} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
