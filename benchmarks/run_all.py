"""Run every benchmark in this folder, one after the other, each in its own process, and print
its tables (also written to a log file when ``--log`` is given). The tables are what
``benchmarks/README.md`` records, with the date and the machine.

    python benchmarks/run_all.py                      # everything, default sizes (~10 min)
    python benchmarks/run_all.py --quick              # smaller runs, to check they work
    python benchmarks/run_all.py --only autograd,planner --log results.txt

Exit status: 0 when every benchmark finished, 1 when one failed (the others still run).
"""
import argparse
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (script, arguments of a quick run); the default run passes no arguments
BENCHMARKS = {
    "autograd": ("bench_autograd.py", ["--calls", "20"]),
    "jacobian": ("bench_jacobian.py", ["--rounds", "1"]),
    "checkpoint": ("bench_checkpoint.py", ["--depth", "16", "--batch", "512", "--rounds", "1",
                                           "--repeats", "1"]),
    "planner": ("bench_planner.py", ["--quick", "--repeat", "1"]),
    "dag": ("bench_dag.py", ["--quick", "--time-limit", "10"]),
    "execute": ("bench_execute.py", []),
}


def _torch_benchmarks():
    """ckpt.torch's benchmarks, when torch is installed; gpu_check only where CUDA is."""
    try:
        import torch
    except ImportError:
        return {}
    found = {"torch": ("bench_torch.py", ["--quick"])}
    if torch.cuda.is_available():
        found["gpu"] = ("gpu_check.py", ["--quick"])
    return found


BENCHMARKS.update(_torch_benchmarks())


def _machine():
    cpus = os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {cpus} CPUs, Python {platform.python_version()}, {platform.system()}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--log", help="also write everything printed to this file")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    log = open(args.log, "w") if args.log else None

    def emit(text):
        sys.stdout.write(text)
        sys.stdout.flush()
        if log:
            log.write(text)

    emit(f"# ckpt benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {_machine()}\n")
    failed = []
    for name in names:
        script, quick_args = BENCHMARKS[name]
        cmd = [sys.executable, os.path.join(HERE, script)] + (quick_args if args.quick else [])
        emit(f"\n## {name}: {' '.join([os.path.join('benchmarks', script)] + cmd[2:])}\n\n")
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        emit(proc.stdout)
        emit(f"\n({name}: {time.perf_counter() - start:.0f} s, exit status {proc.returncode})\n")
        if proc.returncode:
            failed.append(name)
    if failed:
        emit(f"\nfailed: {', '.join(failed)}\n")
    if log:
        log.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
