"""ckpt vs torch (CPU, 1 thread) vs hand-written numpy on two autograd workloads.

1. A chain of 300 small elementwise ops on a 16x16 float32 tensor (forward + backward):
   measures per-op overhead (tensor creation, node creation, engine loop).
2. One training step (forward, MSE loss, backward, SGD update) of an MLP, batch 64,
   width 512, depth 8, ReLU, float32: measures how close the engine runs to numpy's BLAS floor.

All three run in one process, interleaved, single-threaded (BLAS pinned to one thread, like
torch.set_num_threads(1)), and the table reports medians and ratios to torch.

    python benchmarks/bench_autograd.py [--calls 200]
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ckpt  # noqa: E402

torch.set_num_threads(1)
CHAIN_LEN = 300
BATCH, WIDTH, DEPTH = 64, 512, 8


# ---- workload 1: elementwise chain ------------------------------------------------------
# The cycle x*c, x+c, tanh, sigmoid applied 300 times in total; ckpt and torch share the code.
def chain(x):
    for i in range(CHAIN_LEN // 4):
        x = x * 1.01
        x = x + 0.1
        x = x.tanh()
        x = x.sigmoid()
    x.sum().backward()


def chain_numpy(x0):
    saved = []
    x = x0
    for i in range(CHAIN_LEN // 4):
        x = x * np.float32(1.01)
        x = x + np.float32(0.1)
        x = np.tanh(x)
        saved.append(x)
        x = 1 / (1 + np.exp(-x))
        saved.append(x)
    g = np.ones_like(x)
    for i in range(CHAIN_LEN // 4 - 1, -1, -1):
        s = saved[2 * i + 1]
        g = g * s * (1 - s)
        t = saved[2 * i]
        g = g * (1 - t * t)
        g = g * np.float32(1.01)
    return g


# ---- workload 2: MLP training step ------------------------------------------------------
def make_weights(rng):
    ws = [rng.standard_normal((WIDTH, WIDTH)).astype(np.float32) * np.float32(1 / np.sqrt(WIDTH))
          for _ in range(DEPTH)]
    bs = [np.zeros(WIDTH, np.float32) for _ in range(DEPTH)]
    x = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    y = rng.standard_normal((BATCH, WIDTH)).astype(np.float32)
    return ws, bs, x, y


def mlp_step(lib, params, x, y, lr=1e-3):
    """One SGD step with ``lib`` = ckpt or torch (the same code for both): the update, then
    every gradient freed, as ``opt.step(); opt.zero_grad()`` does it and as the floor
    ``mlp_step_numpy(fused_update=False)`` keeps its gradients."""
    h = x
    for i in range(DEPTH):
        h = h @ params[2 * i].mT + params[2 * i + 1]
        if i < DEPTH - 1:
            h = h.relu()
    loss = ((h - y) ** 2).mean()
    loss.backward()
    with lib.no_grad():
        for p in params:
            p.data -= lr * p.grad.data
    for p in params:
        p.grad = None


def mlp_step_numpy(ws, bs, x, y, lr=1e-3, fused_update=True):
    """The floor. ``fused_update``: each layer is updated as soon as its gradient exists and
    the gradient is freed at once; otherwise all gradients live until a final update, the
    lifetime ``.grad`` gives them in ckpt and torch."""
    acts = [x]
    h = x
    for i in range(DEPTH):
        h = h @ ws[i].T + bs[i]
        if i < DEPTH - 1:
            h = np.maximum(h, 0)
        acts.append(h)
    g = (2.0 / h.size) * (h - y)
    grads = []
    for i in range(DEPTH - 1, -1, -1):
        if i < DEPTH - 1:
            g = g * (acts[i + 1] > 0)
        gw = g.T @ acts[i]
        gb = g.sum(0)
        g = g @ ws[i]
        if fused_update:
            ws[i] -= lr * gw
            bs[i] -= lr * gb
        else:
            grads.append((i, gw, gb))
    for i, gw, gb in grads:
        ws[i] -= lr * gw
        bs[i] -= lr * gb


def mlp_matmuls(weights, acts, grads):
    """Only the step's matrix products: 8 forward, 8 weight gradients and 7 input gradients
    (the input x needs none). Works for numpy arrays and torch tensors alike; with numpy's BLAS
    this is the least time any numpy-based engine can take for the step."""
    for w, a in zip(weights, acts):
        a @ w.T
    for i, (w, a, g) in enumerate(zip(weights, acts, grads)):
        g.T @ a
        if i:
            g @ w


def chain_contenders():
    """{contender: factory}; a factory sets up its contender's data and returns one call."""
    x16 = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    return {
        "ckpt": lambda: functools.partial(chain, ckpt.tensor(x16, requires_grad=True)),
        "torch": lambda: functools.partial(chain, torch.tensor(x16, requires_grad=True)),
        "numpy": lambda: functools.partial(chain_numpy, x16),
    }


def mlp_contenders():
    """As ``chain_contenders``, for the MLP step (the same weights for every contender)."""
    rng = np.random.default_rng(1)
    ws, bs, x, y = make_weights(rng)

    def framework_step(lib):
        params = [lib.tensor(a, requires_grad=True) for pair in zip(ws, bs) for a in pair]
        return functools.partial(mlp_step, lib, params, lib.tensor(x), lib.tensor(y))

    def numpy_step(fused_update):
        return functools.partial(mlp_step_numpy, [w.copy() for w in ws], [b.copy() for b in bs],
                                 x, y, fused_update=fused_update)

    def products(to_lib):
        acts = [x] + [np.maximum(rng.standard_normal(x.shape), 0).astype(np.float32)
                      for _ in range(DEPTH - 1)]
        grads = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(DEPTH)]
        return functools.partial(mlp_matmuls, *([to_lib(a) for a in arrays]
                                                for arrays in (ws, acts, grads)))

    return {
        "ckpt": lambda: framework_step(ckpt),
        "torch": lambda: framework_step(torch),
        "numpy": lambda: numpy_step(True),
        "numpy, .grad lifetime": lambda: numpy_step(False),
        "numpy, matmuls only": lambda: products(np.asarray),
        "torch, matmuls only": lambda: products(torch.tensor),
    }


WORKLOADS = {"chain300 16x16": chain_contenders, "mlp step 64x512x8": mlp_contenders}


def run(calls):
    rows = []
    for name, contenders in WORKLOADS.items():
        impls = {k: make() for k, make in contenders().items()}
        for _ in range(3):  # warm up
            for fn in impls.values():
                fn()
        faults = {}
        rows.append((name, interleaved_medians(impls, calls, faults), faults))
    return rows


def interleaved_medians(impls, calls, faults=None):
    """Median time of each contender over ``calls`` calls, taken in turns (one call of each,
    in a shuffled order each round, seeded), so a burst of load from other jobs on this
    shared machine lands on all of them alike rather than on one contender's block of calls,
    and no contender always follows the same one (a call's page faults and cache misses
    depend on the call before it; a rotating order gave each contender one fixed
    predecessor). ``faults``, a dict, receives each contender's mean minor page faults per
    call."""
    names = list(impls)
    times = {k: [] for k in names}
    flts = {k: [] for k in names}
    order = random.Random(0)
    for _ in range(calls):
        round_names = names[:]
        order.shuffle(round_names)
        for k in round_names:
            fn = impls[k]
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
            flts[k].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    if faults is not None:
        faults.update({k: statistics.mean(v) for k, v in flts.items()})
    return {k: statistics.median(v) for k, v in times.items()}


MLP = "mlp step 64x512x8"  # (a key of WORKLOADS)
ALONE = ("ckpt", "torch", "numpy", "numpy, .grad lifetime")
# A process's median step moves by up to +-5% with where its pages landed (the same
# contender, 0 page faults: 11.6-12.8 ms for the floor, 12.0-13.2 for ckpt, ten processes
# each, 2026-12-07), so a median of 3 processes still moved a ratio by several percent.
ALONE_ROUNDS = 7


def time_alone(contender, calls):
    """Worker: time one MLP contender, the only one in this process; median and minor page
    faults per call."""
    fn = mlp_contenders()[contender]()
    for _ in range(3):
        fn()
    times, faults = [], []
    for _ in range(calls):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return statistics.median(times), statistics.median(faults)


def run_alone(calls, rounds=ALONE_ROUNDS):
    """The MLP step with each contender alone in a fresh process, as a user runs one
    framework: the heap then holds one contender's allocations, not a mix of all of them.
    Processes of the contenders alternate over ``rounds``; each contender's time is the median
    of its rounds' medians, given with the list of them."""
    results = {k: [] for k in ALONE}
    for _ in range(rounds):
        for contender in ALONE:
            out = subprocess.run([sys.executable, __file__, "--alone-worker", contender,
                                  "--calls", str(calls)], capture_output=True, text=True, check=True)
            results[contender].append(json.loads(out.stdout))
    return {k: (statistics.median(t for t, _ in v), statistics.median(f for _, f in v),
                [t for t, _ in v]) for k, v in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200,
                        help="timed calls of each contender (in turns); the table gives medians")
    parser.add_argument("--freeze-heap", action="store_true",
                        help="gc.freeze() the objects alive before timing (mostly torch's import-time "
                             "objects), so full garbage collections triggered by ckpt's graph objects "
                             "don't traverse the peer's heap")
    parser.add_argument("--alone", action="store_true",
                        help="also time the MLP step with each contender alone in its own process "
                             "(--alone-rounds processes each), with minor page faults per step")
    parser.add_argument("--alone-rounds", type=int, default=ALONE_ROUNDS,
                        help=f"processes per contender with --alone (default {ALONE_ROUNDS})")
    parser.add_argument("--alone-worker", choices=ALONE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone_rounds < 1:
        parser.error(f"--alone-rounds must be at least 1, got {args.alone_rounds}")
    if args.alone_worker:
        print(json.dumps(time_alone(args.alone_worker, args.calls)))
        return
    if args.freeze_heap:
        gc.collect()
        gc.freeze()
    rows = run(args.calls)
    print(f"# {time.strftime('%Y-%m-%d')} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()} numpy {np.__version__} torch {torch.__version__}"
          f"{', heap frozen' if args.freeze_heap else ''}")
    print("| workload | ckpt (ms) | torch (ms) | numpy (ms) | ckpt / torch | numpy / torch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, med, _ in rows:
        c, t, n = med["ckpt"] * 1e3, med["torch"] * 1e3, med["numpy"] * 1e3
        print(f"| {name} | {c:.3f} | {t:.3f} | {n:.3f} | {c / t:.2f}x | {n / t:.2f}x |")
    for name, med, faults in rows:
        if "numpy, .grad lifetime" in med:
            n2 = med["numpy, .grad lifetime"] * 1e3
            print(f"\n{name}: numpy floor with all gradients kept until the update (as .grad "
                  f"keeps them): {n2:.3f} ms = {n2 / (med['torch'] * 1e3):.2f}x torch; ckpt is "
                  f"{med['ckpt'] * 1e3 / n2:.2f}x this floor")
            mm, t_mm = med["numpy, matmuls only"] * 1e3, med["torch, matmuls only"] * 1e3
            print(f"{name}: its 23 matrix products alone take {mm:.3f} ms with numpy's BLAS = "
                  f"{mm / (med['torch'] * 1e3):.2f}x torch's whole step (torch's own products: "
                  f"{t_mm:.3f} ms; numpy / torch per product: {mm / t_mm:.2f}x)")
            print(f"{name}: minor page faults per step, mean (fresh pages from the system, "
                  "~1.5 us each; they follow the heap's history in this shared process): "
                  + ", ".join(f"{k} {v:.0f}" for k, v in faults.items()))
    if args.alone:
        alone = run_alone(args.calls, args.alone_rounds)
        t_alone = alone["torch"][0]
        print(f"\n{MLP}, each contender alone in its own process "
              f"(median of {args.alone_rounds} processes):")
        print("| contender | ms | / torch | page faults per step | each process (ms) |")
        print("| --- | ---: | ---: | ---: | --- |")
        for k, (t, faults, each) in alone.items():
            print(f"| {k} | {t * 1e3:.3f} | {t / t_alone:.2f}x | {faults:.0f} | "
                  + " ".join(f"{e * 1e3:.2f}" for e in each) + " |")
        floor = alone["numpy, .grad lifetime"][0]
        print(f"{MLP}, alone: ckpt is {alone['ckpt'][0] / floor:.2f}x the .grad floor "
              f"({alone['ckpt'][0] * 1e3:.3f} / {floor * 1e3:.3f} ms)")


if __name__ == "__main__":
    main()
