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
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
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
    """One SGD step with ``lib`` = ckpt or torch (the same code for both)."""
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


def run(calls):
    rng = np.random.default_rng(0)
    x16 = rng.standard_normal((16, 16)).astype(np.float32)
    cx = ckpt.tensor(x16, requires_grad=True)
    tx = torch.tensor(x16, requires_grad=True)
    ws, bs, x, y = make_weights(rng)
    cparams = [ckpt.tensor(a, requires_grad=True) for pair in zip(ws, bs) for a in pair]
    tparams = [torch.tensor(a, requires_grad=True) for pair in zip(ws, bs) for a in pair]
    cx_in, cy = ckpt.tensor(x), ckpt.tensor(y)
    tx_in, ty = torch.tensor(x), torch.tensor(y)
    nws, nbs = [w.copy() for w in ws], [b.copy() for b in bs]
    acts = [x] + [np.maximum(rng.standard_normal(x.shape), 0).astype(np.float32)
                  for _ in range(DEPTH - 1)]
    grads = [rng.standard_normal(x.shape).astype(np.float32) for _ in range(DEPTH)]
    t_ws, t_acts, t_grads = ([torch.tensor(a) for a in arrays] for arrays in (ws, acts, grads))

    workloads = {
        "chain300 16x16": {
            "ckpt": lambda: chain(cx),
            "torch": lambda: chain(tx),
            "numpy": lambda: chain_numpy(x16),
        },
        "mlp step 64x512x8": {
            "ckpt": lambda: mlp_step(ckpt, cparams, cx_in, cy),
            "torch": lambda: mlp_step(torch, tparams, tx_in, ty),
            "numpy": lambda: mlp_step_numpy(nws, nbs, x, y),
            "numpy, .grad lifetime": lambda: mlp_step_numpy(nws, nbs, x, y, fused_update=False),
            "numpy, matmuls only": lambda: mlp_matmuls(ws, acts, grads),
            "torch, matmuls only": lambda: mlp_matmuls(t_ws, t_acts, t_grads),
        },
    }
    rows = []
    for name, impls in workloads.items():
        for _ in range(3):  # warm up
            for fn in impls.values():
                fn()
        rows.append((name, interleaved_medians(impls, calls)))
    return rows


def interleaved_medians(impls, calls):
    """Median time of each contender over ``calls`` calls, taken in turns (one call of each,
    the starting contender rotating), so a burst of load from other jobs on this shared
    machine lands on all of them alike rather than on one contender's block of calls."""
    names = list(impls)
    times = {k: [] for k in names}
    for i in range(calls):
        for k in names[i % len(names):] + names[:i % len(names)]:
            fn = impls[k]
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200,
                        help="timed calls of each contender (in turns); the table gives medians")
    parser.add_argument("--freeze-heap", action="store_true",
                        help="gc.freeze() the objects alive before timing (mostly torch's import-time "
                             "objects), so full garbage collections triggered by ckpt's graph objects "
                             "don't traverse the peer's heap")
    args = parser.parse_args()
    if args.freeze_heap:
        gc.collect()
        gc.freeze()
    rows = run(args.calls)
    print(f"# {time.strftime('%Y-%m-%d')} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()} numpy {np.__version__} torch {torch.__version__}"
          f"{', heap frozen' if args.freeze_heap else ''}")
    print("| workload | ckpt (ms) | torch (ms) | numpy (ms) | ckpt / torch | numpy / torch |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, med in rows:
        c, t, n = med["ckpt"] * 1e3, med["torch"] * 1e3, med["numpy"] * 1e3
        print(f"| {name} | {c:.3f} | {t:.3f} | {n:.3f} | {c / t:.2f}x | {n / t:.2f}x |")
    for name, med in rows:
        if "numpy, .grad lifetime" in med:
            n2 = med["numpy, .grad lifetime"] * 1e3
            print(f"\n{name}: numpy floor with all gradients kept until the update (as .grad "
                  f"keeps them): {n2:.3f} ms = {n2 / (med['torch'] * 1e3):.2f}x torch; ckpt is "
                  f"{med['ckpt'] * 1e3 / n2:.2f}x this floor")
            mm, t_mm = med["numpy, matmuls only"] * 1e3, med["torch, matmuls only"] * 1e3
            print(f"{name}: its 23 matrix products alone take {mm:.3f} ms with numpy's BLAS = "
                  f"{mm / (med['torch'] * 1e3):.2f}x torch's whole step (torch's own products: "
                  f"{t_mm:.3f} ms; numpy / torch per product: {mm / t_mm:.2f}x)")


if __name__ == "__main__":
    main()
