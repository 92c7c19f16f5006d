"""Executed plans against their predictions: for every strategy on a deep MLP with dropout and
on a residual conv net, the simulator's peak, the logical peak ckpt.memory measures while
``ckpt.planner.execute`` runs the plan (gradients in flight counted), and tracemalloc's peak
— absolute and above what the step starts with — beside a plain ``loss.backward()`` step of
the same model.

    python benchmarks/bench_execute.py            # the models of tests/test_planner_execute.py
    python benchmarks/bench_execute.py --large    # 4x the batch

Prints a markdown table per model (bytes in KiB); record it in benchmarks/README.md.
"""
import argparse

import ckpt
from ckpt import nn, planner

KiB = 1024


def models(scale):
    ckpt.manual_seed(1)
    mlp = nn.Sequential(*[nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.2))
                          for _ in range(9)], nn.Linear(256, 10))
    yield "deep MLP 10x256, batch %d, dropout 0.2" % (32 * scale), mlp, \
        ckpt.randn(32 * scale, 256), ckpt.randn(32 * scale, 10)
    c = 16
    res = nn.Sequential(nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(c), nn.ReLU()),
                        *[nn.ResidualBlock(c) for _ in range(4)],
                        nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(c * 16, 10)))
    yield "residual convnet, 4 blocks x 16 ch, 32x32, batch %d" % (8 * scale), res, \
        ckpt.randn(8 * scale, 3, 32, 32), ckpt.randn(8 * scale, 10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", action="store_true", help="4x the batch")
    args = ap.parse_args()
    for title, model, x, target in models(4 if args.large else 1):
        loss_fn = lambda out, t=target: ((out - t) ** 2).mean()  # noqa: E731
        chain = planner.profile(model, x, loss_fn, repeats=3)
        lo, hi = chain.min_budget, planner.plan(chain, "store_all").peak
        plans = [("store_all", None), ("recompute_all", None), ("sqrt", None),
                 ("greedy", None), ("recursive", None), ("revolve", None),
                 ("min_memory", None), ("optimal", lo + (hi - lo) // 5),
                 ("optimal", (lo + hi) // 2)]
        state = ckpt.get_rng_state()
        print(f"\n### {title}\n")
        print("| plan | predicted | measured logical | = | tracemalloc | tm / logical | "
              "above entry: logical | tracemalloc | ratio |")
        print("| --- | ---: | ---: | :-: | ---: | ---: | ---: | ---: | ---: |")
        for name, budget in plans:
            ckpt.set_rng_state(state)
            p = planner.plan(chain, name, budget=budget)
            r = planner.execute(model, p, x, loss_fn, tracemalloc=True)
            for q in model.parameters():
                q.grad = None
            above = r.peak_bytes - r.entry_bytes
            tm = r.report.tracemalloc_peak_bytes
            label = name if budget is None else f"{name} @ {budget / KiB:.0f} KiB"
            print(f"| {label} | {r.predicted_peak / KiB:.1f} | {r.peak_bytes / KiB:.1f} | "
                  f"{'yes' if r.peak_bytes == r.predicted_peak else 'NO'} | "
                  f"{r.tracemalloc_peak_bytes / KiB:.1f} | "
                  f"{r.tracemalloc_peak_bytes / r.peak_bytes:.3f} | {above / KiB:.1f} | "
                  f"{tm / KiB:.1f} | {tm / above:.2f} |")
        ckpt.set_rng_state(state)
        with ckpt.memory.track(model, x, gradients_in_flight=True, tracemalloc=True) as plain:
            loss_fn(model(x)).backward()
        for q in model.parameters():
            q.grad = None
        base = plain.timeline[0].total
        above, tm = plain.peak_bytes - base, plain.tracemalloc_peak_bytes
        print(f"| plain `loss.backward()` (grads appear in backward) | — | "
              f"{plain.peak_bytes / KiB:.1f} | — | {(tm + base) / KiB:.1f} | "
              f"{(tm + base) / plain.peak_bytes:.3f} | {above / KiB:.1f} | {tm / KiB:.1f} | "
              f"{tm / above:.2f} |")


if __name__ == "__main__":
    main()
