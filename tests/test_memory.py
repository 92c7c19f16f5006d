"""ckpt.memory: the tracker's logical accounting (hand counts, views counted once, every
category), the report's outputs, and the memory checkpointing saves on a 32-layer MLP."""
import json
import math
import tracemalloc

import numpy as np
import pytest

import ckpt
from ckpt import nn
from ckpt.autograd.node import Extensions, _HookStack
from ckpt.memory import CATEGORIES, SavedBuffer

F32 = 4  # bytes per float32


def three_layer(seed=0):
    ckpt.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 2))


def test_three_layer_accounting_equals_a_hand_count():
    net = three_layer()
    x = ckpt.randn(4, 8)  # N=4, does not require grad
    with ckpt.memory.track(net, x, tracemalloc=False) as report:
        loss = (net(x) ** 2).mean()
        report.mark("forward")
        graph_saved = ckpt.memory.saved_bytes(loss)
        loss.backward()

    N = 4
    params = F32 * (16 * 8 + 16 + 16 * 16 + 16 + 2 * 16 + 2)  # weights and biases: 1800 bytes
    # What the graph keeps for backward, by hand (float32):
    #   x @ W1.T keeps x (for W1's grad; x needs none, so W1 is not kept)     N*8
    #   relu keeps its output r1 (which r1 @ W2.T keeps too: one buffer)      N*16
    #   tanh keeps its output t2 (kept by t2 @ W3.T as well)                  N*16
    #   (out ** 2) keeps its base, the network's output                       N*2
    # W2 and W3 are kept by their matmuls (r1 and t2 need grads) but are parameters:
    # a buffer is counted once, in its highest category, so they stay parameters.
    saved = F32 * (N * 8 + N * 16 + N * 16 + N * 2)
    assert saved == 672
    peaks = report.category_peaks
    assert peaks["parameters"] == params
    assert peaks["saved_for_backward"] == saved
    assert peaks["gradients"] == params  # every parameter's .grad after backward
    assert peaks["optimizer_state"] == 0
    # activations peak inside the first Linear: x @ W1.T (N*16) and + b1 (N*16) alive at once
    # (x itself is saved by then, so it counts as saved)
    assert peaks["activations"] == F32 * (N * 16 + N * 16)

    forward = next(e for e in report.timeline if e.label == "forward")
    assert forward.bytes["saved_for_backward"] == saved
    assert forward.bytes["activations"] == F32 * 1  # the loss; x is counted as saved
    assert forward.bytes["gradients"] == 0

    # after backward: parameters + their grads + x + the loss, nothing saved
    end = report.timeline[-1]
    assert end.bytes == {"parameters": params, "optimizer_state": 0, "gradients": params,
                         "saved_for_backward": 0, "activations": F32 * (N * 8 + 1), "other": 0}
    assert report.peak_bytes == 2 * params + F32 * (N * 8 + 1) == 3732
    # node-level accounting agrees: it also counts the W2 and W3 the matmuls keep
    assert graph_saved == saved + F32 * (16 * 16 + 2 * 16)


def test_views_and_saved_aliases_are_counted_once():
    x = ckpt.ones(64, 64, requires_grad=True)  # a leaf requiring grad: a parameter
    with ckpt.memory.track(tracemalloc=False) as report:
        y = x.exp()            # saves its output
        v = y.reshape(4096)    # a view of y's buffer
        w = v[:100]            # another view
        z = (w * 2).sum()
    assert report.category_peaks["parameters"] == 64 * 64 * F32
    # y, v and w share one buffer: saved once; the (w * 2) product is its own 400 bytes
    assert report.category_peaks["saved_for_backward"] == 64 * 64 * F32
    assert report.peak_bytes == 2 * 64 * 64 * F32 + 100 * F32 + F32
    del z


def test_saved_bytes_are_released_during_backward_and_peak_is_at_end_of_forward():
    ckpt.manual_seed(0)
    x = ckpt.randn(256, 256, requires_grad=True)
    with ckpt.memory.track(tracemalloc=False) as report:
        loss = x.tanh().exp().sin().sum()
        loss.backward()
    saved = [e.bytes["saved_for_backward"] for e in report.timeline]
    top = max(saved)
    # tanh's output and exp's output; sin saves its input, which is exp's output: one buffer
    assert top == 2 * 256 * 256 * F32
    first_top = saved.index(top)
    frees = [e for e in report.timeline[first_top:] if e.kind == "free"]
    assert [e.label for e in frees] == ["free SinBackward0", "free ExpBackward0",
                                        "free TanhBackward0"]
    assert saved[-1] == 0
    assert all(a >= b for a, b in zip(saved[first_top:], saved[first_top + 1:]))


def test_optimizer_state_and_gradients_are_attributed():
    ckpt.manual_seed(0)
    net = nn.Linear(32, 32)
    opt = ckpt.optim.Adam(net.parameters(), lr=1e-3)
    x = ckpt.randn(16, 32)
    with ckpt.memory.track(net, opt, tracemalloc=False) as report:
        net(x).sum().backward()
        report.mark("backward")
        opt.step()
        report.mark("step")
        opt.zero_grad()
        report.mark("zero_grad")
    params = F32 * (32 * 32 + 32)
    marks = {e.label: e.bytes for e in report.timeline if e.kind == "mark"}
    assert marks["backward"]["gradients"] == params
    assert marks["backward"]["optimizer_state"] == 0
    # Adam: exp_avg and exp_avg_sq like each parameter, plus a 0-d float32 step count each
    assert marks["step"]["optimizer_state"] == 2 * params + 2 * F32
    assert marks["zero_grad"]["gradients"] == 0
    assert report.category_peaks["optimizer_state"] == 2 * params + 2 * F32


def test_optimizer_state_is_found_without_passing_the_optimizer():
    # issue 12: track(model) reported optimizer state 0 after an Adam step
    ckpt.manual_seed(0)
    net = nn.Linear(32, 32)
    x = ckpt.randn(16, 32)
    params = F32 * (32 * 32 + 32)
    adam = 2 * params + 2 * F32            # exp_avg, exp_avg_sq, a float32 step per parameter
    opt = ckpt.optim.Adam(net.parameters(), lr=1e-3)
    with ckpt.memory.track(net) as report:         # created before the block, not passed
        net(x).sum().backward()
        opt.step()
    assert report.category_peaks["optimizer_state"] == adam and report.optimizers == 1
    assert "not counted" not in report.table()
    with ckpt.memory.track() as found:             # parameters found through the graph
        net(x).sum().backward()
        opt.step()
    assert found.category_peaks["optimizer_state"] == adam
    other = nn.Linear(32, 32)
    with ckpt.memory.track(other) as created_inside:
        opt2 = ckpt.optim.Adam(other.parameters(), lr=1e-3)   # created inside the block
        other(x).sum().backward()
        opt2.step()
    assert created_inside.category_peaks["optimizer_state"] == adam
    assert created_inside.optimizers == 1          # not net's optimizer: no parameter of it
    with ckpt.memory.track(nn.Linear(4, 4)) as none:
        pass
    assert none.optimizers == 0
    assert "optimizer_state" in none.table() and "not counted" in none.table()
    with ckpt.memory.track(net, find_optimizers=False) as told:
        opt.step()
    assert told.category_peaks["optimizer_state"] == 0 and told.optimizers == 0


def test_report_outputs_table_dict_json_plot(tmp_path):
    ckpt.manual_seed(0)
    net = three_layer()
    with ckpt.memory.track(net, tracemalloc=True) as report:
        (net(ckpt.randn(64, 8)) ** 2).mean().backward()
    table = report.table()
    for c in CATEGORIES:
        assert c in table
    assert "MiB" in table and "tracemalloc peak" in table and "logical peak" in table
    d = report.to_dict()
    assert d["unit"] == "bytes" and d["logical_peak_bytes"] == report.peak_bytes
    assert d["tracemalloc_peak_bytes"] == report.tracemalloc_peak_bytes > 0
    assert len(d["timeline"]) == len(report.timeline)
    assert sum(d["peak_breakdown"].values()) == report.peak_bytes
    assert all(set(e["bytes"]) == set(CATEGORIES) for e in d["timeline"])
    path = tmp_path / "report.json"
    assert json.loads(report.to_json(path)) == json.loads(path.read_text()) == json.loads(
        json.dumps(d))
    from ckpt.plot import memory_timeline
    fig = memory_timeline(report)
    assert type(fig).__name__ == "Figure"
    ax = fig.axes[0]
    assert ax.get_ylabel() == "MiB"
    held = [c for c in CATEGORIES if any(e.bytes[c] for e in report.timeline)]
    assert [p.get_gid() for p in ax.patches] == held + ["total"]  # one stacked area each
    top = ax.patches[len(held) - 1]  # the last stacked area's upper edge is the total
    np.testing.assert_allclose(top.get_data().values,
                               [e.total / 2 ** 20 for e in report.timeline])
    fig.savefig(tmp_path / "timeline.png")  # renders headless (Agg)
    assert (tmp_path / "timeline.png").stat().st_size > 0
    assert report.peak_event.index < len(report.timeline)
    with pytest.raises(RuntimeError, match="inside its"):
        report.mark("too late")


def test_tracker_leaves_no_hooks_or_observers_behind_even_on_error():
    before_obs, before_hooks = list(Extensions.observers), list(_HookStack.pairs)
    was_tracing = tracemalloc.is_tracing()
    with pytest.raises(ZeroDivisionError):
        with ckpt.memory.track(tracemalloc=True):
            ckpt.ones(3, requires_grad=True).exp()
            1 / 0
    assert Extensions.observers == before_obs and _HookStack.pairs == before_hooks
    assert Extensions.active == bool(Extensions.observers or Extensions.forward_ad)
    assert tracemalloc.is_tracing() == was_tracing


def test_gradients_held_at_entry_count_in_entry_bytes_and_a_second_backward_adds_in_place():
    """``.grad`` from an earlier step is memory held at entry; the second backward adds into
    its buffer (tracked or not, as torch), and the logical peak stays hand-counted."""
    ckpt.manual_seed(0)
    net = nn.Linear(256, 256)
    x = ckpt.randn(64, 256)
    net(x).relu().sum().backward()
    params = F32 * (256 * 256 + 256)
    buffers = [p.grad.data_ptr() for p in net.parameters()]
    with ckpt.memory.track(net, tracemalloc=True) as report:
        net(x).relu().sum().backward()
    assert [p.grad.data_ptr() for p in net.parameters()] == buffers
    assert report.entry_bytes == 2 * params  # the parameters and their gradients
    # above the entry: x (saved for the weight's gradient), relu's output and the Linear's
    # output (as activation and as the sum's input), no second gradient buffer
    assert report.peak_bytes - report.entry_bytes == 3 * 64 * 256 * F32
    assert report.tracemalloc_peak_bytes >= 2 * 64 * 256 * F32  # the outputs, at least


def test_tracemalloc_is_off_unless_asked_for():
    # the logical ledger is the measurement; tracemalloc slows a step 2-8x (issue 12)
    assert not tracemalloc.is_tracing()
    x = ckpt.ones(256, requires_grad=True)
    with ckpt.memory.track() as report:
        inside = tracemalloc.is_tracing()
        x.exp().sum().backward()
    assert not inside and report.tracemalloc_peak_bytes is None
    assert all(e.traced_bytes == 0 for e in report.timeline)
    assert "(off)" in report.table()
    with ckpt.memory.track(tracemalloc=True) as traced:
        inside = tracemalloc.is_tracing()
        x.exp().sum().backward()
    assert inside and traced.tracemalloc_peak_bytes >= 1024
    assert not tracemalloc.is_tracing()


def test_nested_trackers_both_count_and_keep_their_tracemalloc_peak():
    x = ckpt.ones(128, 128, requires_grad=True)
    with ckpt.memory.track(tracemalloc=True) as outer:
        big = x.exp()  # 64 KiB, saved (its output)
        with ckpt.memory.track(tracemalloc=True) as inner:
            small = x[:8].sin()  # saves its input: a view of x (a parameter) -> nothing new
        del big
    assert inner.category_peaks["saved_for_backward"] == 0
    assert outer.category_peaks["saved_for_backward"] == 128 * 128 * F32
    assert outer.tracemalloc_peak_bytes >= 128 * 128 * F32
    del small


def test_saved_buffer_protocol_counts_what_a_hook_keeps():
    with ckpt.memory.track(tracemalloc=False) as report:
        kept = SavedBuffer(np.zeros(1000, np.float32), "mine")
        view = SavedBuffer(kept.data[10:], "mine")  # same buffer: once
        report.mark("held")
        del kept, view
    held = next(e for e in report.timeline if e.label == "held")
    assert held.bytes["saved_for_backward"] == 4000
    assert report.timeline[-1].bytes["saved_for_backward"] == 0


def test_track_rejects_what_it_cannot_attribute():
    with pytest.raises(TypeError, match="modules, optimizers and tensors"):
        with ckpt.memory.track("model"):
            pass


# ---- what checkpointing saves, measured --------------------------------------------------

N, W, DEPTH = 1024, 64, 32


def mlp32(dropout=0.1):
    """32 Linear layers, ReLU (and dropout) between them: activations dominate (N >> W)."""
    ckpt.manual_seed(0)
    layers = []
    for i in range(DEPTH):
        layers.append(nn.Linear(W, W))
        if i < DEPTH - 1:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def measure(net, segments):
    ckpt.manual_seed(1)
    x = ckpt.randn(N, W)
    with ckpt.memory.track(net, tracemalloc=True) as report:
        out = net(x) if segments is None else ckpt.checkpoint_sequential(net, segments, x, use_reentrant=False)
        (out ** 2).mean().backward()
    return report


def test_mlp32_checkpoint_sequential_sqrt_segments_cuts_saved_peak_to_a_third():
    segments = round(math.sqrt(DEPTH))  # 6
    store_all = measure(mlp32(), None)
    ckpt_run = measure(mlp32(), segments)
    saved_all = store_all.category_peaks["saved_for_backward"]
    saved_ckpt = ckpt_run.category_peaks["saved_for_backward"]
    # store-all keeps per hidden layer relu's output (4 B/elt), the dropout mask (1 B/elt) and
    # the dropout output (4 B/elt), plus x and the output: 31 * 9 / 4 + 2 buffers of N x W
    assert saved_all == N * W * (31 * 9 + 2 * 4)
    assert saved_ckpt <= saved_all / 3, (saved_ckpt, saved_all)
    # the measured peak falls with it
    assert ckpt_run.tracemalloc_peak_bytes <= 0.5 * store_all.tracemalloc_peak_bytes
    assert ckpt_run.peak_bytes <= 0.5 * store_all.peak_bytes
    # and recomputed buffers were released one by one in backward, not all at the end
    frees = [e for e in ckpt_run.timeline if e.kind == "free" and "recomputed" in e.label]
    assert len(frees) > 5 * DEPTH // segments


def test_relu_mlp32_saved_peak_is_the_2_sqrt_n_count():
    """With one saved activation per layer (Linear + ReLU, no dropout), store-all keeps 33
    buffers of N x W (x, 31 relu outputs, the output the loss squares). checkpoint_sequential
    with 6 balanced segments of the 63 modules (11, 11, 11, 10, 10, 10) keeps at the end of
    the forward the inputs of the 5 checkpointed segments plus what the last, stored segment
    saves (its input and 4 relu outputs, plus the output): 5 + 6 = 11 buffers, exactly a
    third: balanced sqrt(n) segments cost about 2 / sqrt(n) of store-all."""
    store_all = measure(mlp32(dropout=0), None).category_peaks["saved_for_backward"]
    ckpt_peak = measure(mlp32(dropout=0), 6).category_peaks["saved_for_backward"]
    assert store_all == 33 * N * W * F32
    assert ckpt_peak == 11 * N * W * F32


def test_recomputation_does_not_turn_checkpoint_inputs_into_parameters():
    ckpt.manual_seed(0)
    net = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.ReLU()) for _ in range(4)])
    x = ckpt.randn(256, 32)
    params = sum(p.nbytes for p in net.parameters())
    with ckpt.memory.track(net, tracemalloc=False) as report:
        ckpt.checkpoint_sequential(net, 2, x, use_reentrant=False).sum().backward()
    assert report.category_peaks["parameters"] == params
    assert any(e.kind == "recompute" for e in report.timeline)
