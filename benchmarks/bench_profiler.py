"""What ckpt.autograd.profiler costs: the 300-op chain of bench_autograd.py (forward and
backward) with no profile, inside ``profile()`` and inside ``profile(record_shapes=True,
profile_memory=True)``; with ``--old REV`` also inside the same two profiles of the
profiler at git revision REV (the one that replaced the op functions by timing wrappers
while it recorded), loaded beside today's. One process, the contenders interleaved, medians.

    python benchmarks/bench_profiler.py [--calls 200] [--old b803d9e]
"""
import argparse
import contextlib
import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_autograd import chain, interleaved_medians  # noqa: E402

import ckpt  # noqa: E402
from ckpt.autograd import profiler  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent


def profiler_at(revision):
    """The module ckpt/autograd/profiler.py as it was at ``revision``, loaded as a sibling of
    today's (``ckpt.autograd.profiler_<revision>``), so its relative imports resolve."""
    source = subprocess.run(["git", "show", f"{revision}:ckpt/autograd/profiler.py"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    name = f"ckpt.autograd.profiler_{revision}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "ckpt.autograd"
    sys.modules[name] = module
    exec(compile(source, f"<profiler.py at {revision}>", "exec"), module.__dict__)
    return module


def contenders(old):
    x = ckpt.tensor(np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32),
                    requires_grad=True)
    profilers = {"": profiler} | ({f" (at {old})": profiler_at(old)} if old else {})
    found = {"no profile": contextlib.nullcontext}
    for label, module in profilers.items():
        found[f"profile(){label}"] = module.profile
        found[f"profile(shapes, memory){label}"] = lambda m=module: m.profile(
            record_shapes=True, profile_memory=True)

    def run_in(block):
        def call():
            with block():
                chain(x)
        return call
    return {name: run_in(block) for name, block in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--old", help="a git revision whose profiler to compare with")
    args = parser.parse_args()
    impls = contenders(args.old)
    for _ in range(3):
        for fn in impls.values():
            fn()
    medians = interleaved_medians(impls, args.calls)
    base = medians["no profile"]
    print(f"300-op chain, forward + backward; {args.calls} calls each, interleaved; "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, seconds in medians.items():
        print(f"{name:38s} {seconds * 1e3:8.3f} ms  {seconds / base:6.2f}x")


if __name__ == "__main__":
    main()
