"""The MLP step of bench_autograd.py timed together with the page faults it takes.

glibc gives freed heap memory back to the system and takes page faults (~2.5 us a page here)
when it is touched again; whether a step faults depends on what ran before it. This script
runs ckpt's step, the numpy floor with the lifetime ``.grad`` gives gradients, and torch's
step in turns (30 steps each after 5 warm-up steps, five rounds) and prints each turn's time
with its minor page faults per step, so that steps are compared in the same heap state.

    python benchmarks/bench_mlp_faults.py
"""
import pathlib
import resource
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_autograd  # noqa: E402

CONTENDERS = ("ckpt", "numpy, .grad lifetime", "torch")


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main(rounds=5, steps=30):
    factories = bench_autograd.mlp_contenders()
    calls = {name: factories[name]() for name in CONTENDERS}
    print("| round | contender | ms / step | minor faults / step |\n| --- | --- | ---: | ---: |")
    for round_ in range(rounds):
        for name, call in calls.items():
            for _ in range(5):
                call()
            faults, start = minor_faults(), time.perf_counter()
            for _ in range(steps):
                call()
            ms = (time.perf_counter() - start) / steps * 1e3
            print(f"| {round_} | {name} | {ms:.2f} | {(minor_faults() - faults) / steps:.0f} |")


if __name__ == "__main__":
    main()
