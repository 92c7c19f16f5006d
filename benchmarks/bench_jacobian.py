"""Jacobians by forward vs reverse mode, looped vs vectorized, ckpt beside torch; and the
cost of a Hessian-vector product against one gradient.

Models (one input vector x of size N, output of size M; float32):
  linear  Linear(N -> M):              W x + b
  mlp     3-layer tanh MLP N -> H -> H -> M:  W3 tanh(W2 tanh(W1 x + b1) + b2) + b3  (H = 256)
for (N, M) in {(1024, 16), (16, 1024), (256, 256)}.

Part 1 times ``jacobian(f, x, vectorize=..., strategy=...)`` of ckpt.autograd.functional and
of torch.autograd.functional with the same settings (torch has no looped forward mode).
Reverse mode costs one backward pass per output (M passes looped, one batched pass
vectorized); forward mode one forward pass per input (N passes, or one batched pass).

Part 2 times, for the scalar s(x) = 0.5 * ||f(x)||^2: evaluating s (no graph), one gradient
(forward + backward) and one Hessian-vector product (ckpt: forward over reverse; also
ckpt's vhp, reverse over reverse; torch's hvp uses its double-backward trick), and reports
grad / s and hvp / grad (Griewank: both small constants). Part 2 adds one wide model
(2048 -> 2048 -> 2048 -> 2048) where matrix products, not per-op overhead, set the cost.

Everything runs in one process, single-threaded (BLAS pinned to one thread, as
torch.set_num_threads(1)), in interleaved rounds; a time is the minimum over rounds of the
per-round median.

    python benchmarks/bench_jacobian.py [--rounds 3] [--budget 0.3]
"""
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.autograd.functional as TAF  # noqa: E402

import ckpt  # noqa: E402
from ckpt.autograd import functional as AF  # noqa: E402

torch.set_num_threads(1)
HIDDEN = 256
BIG = 2048  # one extra, wide model for part 2, where matrix products outweigh per-op overhead
SHAPES = [(1024, 16), (16, 1024), (256, 256)]
SETTINGS = [("reverse-mode", False), ("reverse-mode", True), ("forward-mode", False),
            ("forward-mode", True)]


def make_params(rng, sizes):
    """[(W, b), ...] as float32 numpy arrays, scaled like torch's default init."""
    return [(rng.uniform(-1, 1, (m, n)).astype(np.float32) / np.float32(np.sqrt(n)),
             rng.uniform(-1, 1, m).astype(np.float32) / np.float32(np.sqrt(n)))
            for n, m in zip(sizes[:-1], sizes[1:])]


def model(params):
    """The same code for ckpt and torch: ``W @ h + b`` with tanh between layers."""
    def f(x):
        h = x
        for i, (W, b) in enumerate(params):
            h = W @ h + b
            if i < len(params) - 1:
                h = h.tanh()
        return h
    return f


def scalar(f):
    return lambda x: 0.5 * (f(x) ** 2).sum()


def timed(fn, budget):
    """Median seconds of ``fn`` over as many calls as fit in ``budget`` seconds (3 to 30)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    repeats = int(min(30, max(3, budget / max(first, 1e-9))))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(contenders, rounds, budget):
    results = {k: [] for k in contenders}
    for fn in contenders.values():
        fn()  # warm up
    for _ in range(rounds):
        for k, fn in contenders.items():
            results[k].append(timed(fn, budget))
    return {k: min(v) for k, v in results.items()}


def jacobian_contenders(name, params_np, x_np):
    cf = model([(ckpt.tensor(W), ckpt.tensor(b)) for W, b in params_np])
    tf = model([(torch.tensor(W), torch.tensor(b)) for W, b in params_np])
    cx, tx = ckpt.tensor(x_np), torch.tensor(x_np)
    contenders, expected = {}, None
    for strategy, vectorize in SETTINGS:
        key = ("rev" if strategy == "reverse-mode" else "fwd") + (" vec" if vectorize else " loop")
        contenders[("ckpt", key)] = (lambda s=strategy, v=vectorize:
                                     AF.jacobian(cf, cx, vectorize=v, strategy=s))
        if strategy == "reverse-mode" or vectorize:  # torch: forward mode only vectorized
            contenders[("torch", key)] = (lambda s=strategy, v=vectorize:
                                          TAF.jacobian(tf, tx, vectorize=v, strategy=s))
    expected = TAF.jacobian(tf, tx).numpy()
    for (lib, key), fn in contenders.items():  # every setting computes the same matrix
        J = fn()
        J = J.data if lib == "ckpt" else J.numpy()
        assert np.allclose(J, expected, rtol=1e-4, atol=1e-5), (name, lib, key)
    return contenders


def hvp_contenders(params_np, x_np, v_np):
    cs = scalar(model([(ckpt.tensor(W), ckpt.tensor(b)) for W, b in params_np]))
    ts = scalar(model([(torch.tensor(W), torch.tensor(b)) for W, b in params_np]))
    cx, tx = ckpt.tensor(x_np), torch.tensor(x_np)
    cv, tv = ckpt.tensor(v_np), torch.tensor(v_np)

    def c_eval():
        with ckpt.no_grad():
            return cs(cx)

    def t_eval():
        with torch.no_grad():
            return ts(tx)

    def c_grad():
        x = cx.detach().requires_grad_()
        return ckpt.autograd.grad(cs(x), x)

    def t_grad():
        x = tx.detach().requires_grad_()
        return torch.autograd.grad(ts(x), x)

    hv, thv = AF.hvp(cs, cx, cv)[1].data, TAF.hvp(ts, tx, tv)[1].numpy()
    assert np.allclose(hv, thv, rtol=1e-3, atol=1e-4)
    assert np.allclose(AF.vhp(cs, cx, cv)[1].data, thv, rtol=1e-3, atol=1e-4)
    return {("ckpt", "f"): c_eval, ("ckpt", "grad"): c_grad,
            ("ckpt", "hvp"): lambda: AF.hvp(cs, cx, cv),
            ("ckpt", "vhp"): lambda: AF.vhp(cs, cx, cv),
            ("torch", "f"): t_eval, ("torch", "grad"): t_grad,
            ("torch", "hvp"): lambda: TAF.hvp(ts, tx, tv)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of calls per measurement (3 to 30 calls)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"# {time.strftime('%Y-%m-%d')} {platform.machine()} {os.cpu_count()} cpus, "
          f"python {platform.python_version()} numpy {np.__version__} torch {torch.__version__}")

    cases = []
    for N, M in SHAPES:
        cases.append((f"linear {N}->{M}", make_params(rng, [N, M]), N))
        cases.append((f"mlp {N}->{HIDDEN}->{HIDDEN}->{M}", make_params(rng, [N, HIDDEN, HIDDEN, M]), N))

    print("\n## Jacobian (ms; rev = reverse-mode, fwd = forward-mode, loop / vec = vectorize False / True)\n")
    keys = ["rev loop", "rev vec", "fwd loop", "fwd vec"]
    print("| model | " + " | ".join(f"ckpt {k}" for k in keys) + " | "
          + " | ".join(f"torch {k}" for k in keys if k != "fwd loop")
          + " | ckpt loop/vec rev, fwd | ckpt best mode |")
    print("| --- |" + " ---: |" * (len(keys) * 2 - 1) + " ---: | --- |")
    for name, params, N in cases:
        x = rng.standard_normal(N).astype(np.float32)
        med = interleaved(jacobian_contenders(name, params, x), args.rounds, args.budget)
        c = {k: med[("ckpt", k)] * 1e3 for k in keys}
        tt = {k: med[("torch", k)] * 1e3 for k in keys if ("torch", k) in med}
        best = "reverse" if min(c["rev loop"], c["rev vec"]) < min(c["fwd loop"], c["fwd vec"]) else "forward"
        print(f"| {name} | " + " | ".join(f"{c[k]:.2f}" for k in keys) + " | "
              + " | ".join(f"{tt[k]:.2f}" for k in keys if k in tt)
              + f" | {c['rev loop'] / c['rev vec']:.1f}x, {c['fwd loop'] / c['fwd vec']:.1f}x | {best} |")

    print("\n## Hessian-vector product vs one gradient of s(x) = 0.5 ||f(x)||^2 (ms)\n")
    print("| model | ckpt f | ckpt grad | ckpt hvp | ckpt vhp | ckpt grad/f | ckpt hvp/grad | "
          "ckpt vhp/grad | torch f | torch grad | torch hvp | torch grad/f | torch hvp/grad |")
    print("| --- |" + " ---: |" * 12)
    big = f"mlp {BIG}->{BIG}->{BIG}->{BIG} (extra: FLOP-bound)"
    for name, params, N in cases + [(big, make_params(rng, [BIG] * 4), BIG)]:
        x = rng.standard_normal(N).astype(np.float32)
        v = rng.standard_normal(N).astype(np.float32)
        med = interleaved(hvp_contenders(params, x, v), args.rounds, args.budget)
        c = {k: med[("ckpt", k)] * 1e3 for k in ("f", "grad", "hvp", "vhp")}
        tt = {k: med[("torch", k)] * 1e3 for k in ("f", "grad", "hvp")}
        print(f"| {name} | {c['f']:.3f} | {c['grad']:.3f} | {c['hvp']:.3f} | {c['vhp']:.3f} | "
              f"{c['grad'] / c['f']:.1f} | {c['hvp'] / c['grad']:.1f} | {c['vhp'] / c['grad']:.1f} | "
              f"{tt['f']:.3f} | {tt['grad']:.3f} | {tt['hvp']:.3f} | {tt['grad'] / tt['f']:.1f} | "
              f"{tt['hvp'] / tt['grad']:.1f} |")


if __name__ == "__main__":
    main()
