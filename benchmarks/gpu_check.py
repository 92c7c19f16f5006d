"""ckpt.torch on a CUDA GPU: profile and plan the GPT-like model and HuggingFace GPT-2 (small
config), run every strategy with ``ckpt.torch.execute`` and print the predicted peak beside
the measured logical peak, the allocator's peak (``torch.cuda.max_memory_allocated`` over the
step, plus the bytes held before it) and the step time. One command, a few minutes:

    python benchmarks/gpu_check.py                 # on a machine with CUDA
    python benchmarks/gpu_check.py --device cpu --quick   # the same code path checked on CPU

Without CUDA (and no ``--device``) it prints one line saying so and exits 0.

The plain step (torch storing everything) is measured first, the same way, as the reference.
Strategies that need a budget (``optimal``) get the midpoint of the chain's ``min_budget`` and
its store-all peak. ``step ms`` is ``execute``'s one measured step (under the ledger, so a
little slower than training) and, beside it, the median of 3 steps of the ``PlannedModule``
without the ledger.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

MiB = 1024 * 1024

SIZES = {
    "gpt": dict(batch=16, seq=256, vocab=1024, width=256, heads=8, layers=8),
    "gpt2": dict(batch=8, seq=256, layers=8, width=256, heads=8, vocab=1024),
}
QUICK = {
    "gpt": dict(batch=2, seq=32, vocab=64, width=32, heads=4, layers=4),
    "gpt2": dict(batch=2, seq=32, layers=4, width=64, heads=4, vocab=256),
}
STRATEGIES = ["store_all", "recompute_all", "sqrt", "greedy", "recursive", "revolve",
              "optimal", "min_memory"]


def _sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_step(fn, x, loss_fn, device, steps=3):
    times = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        loss_fn(fn(x)).backward()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _plain(model, x, loss_fn, device):
    """Peak of one plain step: the ledger's and the allocator's (CUDA), like execute's."""
    import torch
    import ckpt.torch
    from ckpt.torch.ledger import storage_bytes
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
    entry = [*model.parameters(), *[p.grad for p in model.parameters()], *model.buffers(), x]
    ledger = ckpt.torch.Ledger()
    ledger.register(*entry)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    with ledger, ledger.hooks():
        loss_fn(model(x)).backward()
    alloc = (torch.cuda.max_memory_allocated(device) - base + storage_bytes(entry)
             if device.type == "cuda" else float("nan"))
    return ledger.peak, alloc


def check(kind, sizes, device, out):
    import torch
    import ckpt.torch
    from ckpt import planner
    from ckpt.torch import examples
    model, x, loss_fn = getattr(examples, kind)(**sizes)
    model.to(device).train()
    x = x.to(device)
    t = time.perf_counter()
    chain = ckpt.torch.profile(model, x, loss_fn, repeats=3)
    prof_s = time.perf_counter() - t
    hi = planner.plan(chain, "store_all").peak
    mid = (chain.min_budget + hi) // 2
    out(f"\n### {kind} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}): "
        f"{sizes}\nchain of {len(chain)} stages profiled in {prof_s:.1f} s; min_budget "
        f"{chain.min_budget / MiB:.1f} MiB, store-all {hi / MiB:.1f} MiB; optimal's budget "
        f"{mid / MiB:.1f} MiB\n\n")
    out("| strategy | predicted MiB | measured MiB | allocator MiB | allocator / predicted "
        "| execute ms | step ms (median of 3) | predicted compute / store-all |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    ledger_peak, alloc = _plain(model, x, loss_fn, device)
    secs = _median_step(model, x, loss_fn, device)
    out(f"| plain torch | | {ledger_peak / MiB:.2f} | {alloc / MiB:.2f} | | | "
        f"{secs * 1e3:.1f} | |\n")
    ok = True
    for strategy in STRATEGIES:
        try:
            plan = planner.plan(chain, strategy, budget=mid if strategy == "optimal" else None)
            r = ckpt.torch.execute(model, plan, x, loss_fn)
            secs = _median_step(ckpt.torch.PlannedModule(model, plan), x, loss_fn, device)
        except Exception as e:  # report and go on with the next strategy
            ok = False
            out(f"| {strategy} | failed: {type(e).__name__}: {str(e).splitlines()[0][:200]} "
                "| | | | | | |\n")
            continue
        out(f"| {strategy} | {r.predicted_peak_bytes / MiB:.2f} | "
            f"{r.measured_peak_bytes / MiB:.2f} | {r.allocator_peak_bytes / MiB:.2f} | "
            f"{r.allocator_peak_bytes / r.predicted_peak_bytes:.2f} | "
            f"{r.step_seconds * 1e3:.1f} | {secs * 1e3:.1f} | "
            f"{plan.compute / plan.store_all_compute:.2f} |\n")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="cuda (default when available) or cpu, to check the "
                        "script itself")
    parser.add_argument("--quick", action="store_true", help="small models")
    parser.add_argument("--models", default="gpt,gpt2")
    args = parser.parse_args(argv)
    import torch
    if args.device is None:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device here (torch "
                  f"{torch.__version__}); nothing to check, exiting")
            return 0
        args.device = "cuda"
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    def out(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    out(f"# gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    start, ok = time.perf_counter(), True
    for kind in args.models.split(","):
        ok &= check(kind, (QUICK if args.quick else SIZES)[kind], device, out)
    out(f"\n({time.perf_counter() - start:.0f} s)\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
