"""ckpt.checkpoint / ckpt.checkpoint_sequential: exact gradients (bit for bit), forward-call
counts, every way of running backward through a checkpoint, and CheckpointError."""
import numpy as np
import pytest
import torch
import torch.utils.checkpoint

import ckpt
from ckpt import nn
from ckpt.autograd.node import Extensions, _HookStack

# use_reentrant is left out as a shorthand here; test_checkpoint_like_torch.py checks the
# warning torch and ckpt give for that
pytestmark = pytest.mark.filterwarnings("ignore:ckpt.checkpoint.*use_reentrant:UserWarning")


# ---- models -----------------------------------------------------------------------------

def mlp_with_dropout(seed=0):
    ckpt.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.3),
                         nn.Linear(32, 32), nn.Tanh(), nn.Dropout(0.2),
                         nn.Linear(32, 32), nn.GELU(), nn.Dropout(0.1),
                         nn.Linear(32, 3))


def conv_net_with_batchnorm(seed=0):
    ckpt.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 3 * 3, 5))


def training_step(build, make_input, run, steps=2):
    """``steps`` SGD steps with ``run(net, x)`` as the forward; returns every parameter's
    last gradient, the final parameters and buffers, and a draw from the RNG afterwards."""
    net = build()
    opt = ckpt.optim.SGD(net.parameters(), lr=0.05)
    ckpt.manual_seed(1234)
    for _ in range(steps):
        x = make_input()
        opt.zero_grad()
        loss = (run(net, x) ** 2).mean()
        loss.backward()
        grads = [p.grad.data.copy() for p in net.parameters()]
        opt.step()
    state = {k: v.data.copy() for k, v in net.state_dict().items()}
    return grads, state, ckpt.rand(4).data.copy()


def assert_bit_identical(a, b):
    grads_a, state_a, rng_a = a
    grads_b, state_b, rng_b = b
    assert len(grads_a) == len(grads_b)
    for i, (ga, gb) in enumerate(zip(grads_a, grads_b)):
        assert np.array_equal(ga, gb), f"gradient {i} differs"
    assert state_a.keys() == state_b.keys()
    for k in state_a:  # parameters after the steps, BatchNorm running stats and counts
        assert np.array_equal(state_a[k], state_b[k]), f"{k} differs"
    assert np.array_equal(rng_a, rng_b), "the RNG stream after the step differs"


def mlp_input():
    return ckpt.randn(8, 12)


def conv_input():
    return ckpt.randn(4, 3, 6, 6)


CASES = {"mlp_dropout": (mlp_with_dropout, mlp_input),
         "convnet_batchnorm": (conv_net_with_batchnorm, conv_input)}


# ---- bit-identical gradients ---------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
def test_checkpoint_whole_model_and_per_block_is_bit_identical(case):
    build, make_input = CASES[case]
    reference = training_step(build, make_input, lambda net, x: net(x))
    whole = training_step(build, make_input, lambda net, x: ckpt.checkpoint(net, x))
    assert_bit_identical(reference, whole)

    def per_module(net, x):
        for m in net:
            x = ckpt.checkpoint(m, x)
        return x
    assert_bit_identical(reference, training_step(build, make_input, per_module))


@pytest.mark.parametrize("case", CASES)
def test_checkpoint_sequential_every_segment_count_is_bit_identical(case):
    build, make_input = CASES[case]
    reference = training_step(build, make_input, lambda net, x: net(x))
    n = len(build())
    for segments in range(1, n + 1):
        result = training_step(build, make_input,
                               lambda net, x: ckpt.checkpoint_sequential(net, segments, x))
        assert_bit_identical(reference, result)


def test_batchnorm_running_stats_are_updated_once_per_step():
    net = conv_net_with_batchnorm()
    x = conv_input()
    ckpt.checkpoint(net, x).sum().backward()
    bn = net[1]
    assert int(bn.num_batches_tracked) == 1  # not 2: recomputation does not count a batch
    fresh = conv_net_with_batchnorm()
    fresh(x)
    assert np.array_equal(bn.running_mean.data, fresh[1].running_mean.data)
    assert np.array_equal(bn.running_var.data, fresh[1].running_var.data)


def test_the_recompute_switch_is_on_only_during_recomputation():
    seen = []

    def f(t):
        seen.append(ckpt.autograd.grad_mode.is_recomputing())
        return t.exp().sum()
    ckpt.checkpoint(f, ckpt.ones(2, requires_grad=True)).backward()
    assert seen == [False, True]
    assert not ckpt.autograd.grad_mode.is_recomputing()


def test_dropout_needs_preserve_rng_state():
    """Without replaying the RNG, recomputation draws new dropout masks: gradients differ
    (this is what makes the bit-identical tests above able to fail)."""
    build, make_input = CASES["mlp_dropout"]
    reference = training_step(build, make_input, lambda net, x: net(x), steps=1)
    unreplayed = training_step(build, make_input,
                               lambda net, x: ckpt.checkpoint(net, x, preserve_rng_state=False),
                               steps=1)
    assert not all(np.array_equal(a, b) for a, b in zip(reference[0], unreplayed[0]))


# ---- forward-call counts -------------------------------------------------------------------

class Counted(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x).tanh()


def test_forward_counts_10_modules_in_2_segments():
    ckpt.manual_seed(0)
    net = nn.Sequential(*[Counted() for _ in range(10)])
    out = ckpt.checkpoint_sequential(net, 2, ckpt.randn(3, 4))
    out.sum().backward()
    # Segments are modules 0-4 and 5-9. The first is checkpointed: its modules run in the
    # forward and once more when backward reaches them (recomputation) -> 2 each. The last
    # segment is not checkpointed (recomputing it would happen right away, as backward starts
    # there; torch does the same): its modules run once, in the forward -> 1 each.
    assert [m.calls for m in net] == [2, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    assert all(m.linear.weight.grad is not None for m in net)


def test_segments_are_balanced_9_modules_in_5_segments():
    assert ckpt.runtime.segment_sizes(9, 5) == [2, 2, 2, 2, 1]  # torch: 1, 1, 1, 1, 5
    ckpt.manual_seed(0)
    net = nn.Sequential(*[Counted() for _ in range(9)])
    ckpt.checkpoint_sequential(net, 5, ckpt.randn(3, 4)).sum().backward()
    # four checkpointed segments of 2 modules (run twice), a last segment of 1 (run once)
    assert [m.calls for m in net] == [2] * 8 + [1]


def test_single_checkpoint_runs_the_function_twice_like_torch():
    calls = {"ckpt": 0, "torch": 0}

    def f_ckpt(x):
        calls["ckpt"] += 1
        return (x.sin() * x).sum()

    def f_torch(x):
        calls["torch"] += 1
        return (x.sin() * x).sum()
    x = ckpt.randn(5, requires_grad=True)
    xt = torch.tensor(x.data, requires_grad=True)
    ckpt.checkpoint(f_ckpt, x).backward()
    torch.utils.checkpoint.checkpoint(f_torch, xt, use_reentrant=False).backward()
    assert calls == {"ckpt": 2, "torch": 2}
    np.testing.assert_allclose(x.grad.data, xt.grad.numpy(), rtol=1e-6)


def test_segment_count_is_validated():
    net = nn.Sequential(nn.Tanh(), nn.Tanh())
    x = ckpt.ones(2)
    for bad in (0, 3):
        with pytest.raises(ValueError, match="between 1 and the number of functions"):
            ckpt.checkpoint_sequential(net, bad, x)
    with pytest.raises(TypeError, match="segments must be an int"):
        ckpt.checkpoint_sequential(net, 1.5, x)
    with pytest.raises(TypeError, match="expected a callable"):
        ckpt.checkpoint_sequential([nn.Tanh(), 3], 1, x)


# ---- every way of running backward ---------------------------------------------------------

def f_cubic(x, w):
    return ((x * w).tanh() ** 3 * x).sum(-1)


def test_double_backward_through_checkpoint():
    ckpt.manual_seed(0)
    x = ckpt.randn(3, 4, requires_grad=True)
    w = ckpt.randn(4, requires_grad=True)
    results = []
    for wrap in (lambda *a: f_cubic(*a), lambda *a: ckpt.checkpoint(f_cubic, *a)):
        y = wrap(x, w).sum()
        gx, gw = ckpt.autograd.grad(y, (x, w), create_graph=True)
        ggx, ggw = ckpt.autograd.grad((gx ** 2).sum() + gw.sum(), (x, w))
        results.append([t.data for t in (gx, gw, ggx, ggw)])
    for a, b in zip(*results):
        assert np.array_equal(a, b)
    # and against torch
    xt = torch.tensor(x.data, requires_grad=True)
    wt = torch.tensor(w.data, requires_grad=True)
    yt = torch.utils.checkpoint.checkpoint(f_cubic, xt, wt, use_reentrant=False).sum()
    gxt, gwt = torch.autograd.grad(yt, (xt, wt), create_graph=True)
    ggxt, ggwt = torch.autograd.grad((gxt ** 2).sum() + gwt.sum(), (xt, wt))
    for a, b in zip(results[1], (gxt, gwt, ggxt, ggwt)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_autograd_grad_and_backward_with_inputs():
    ckpt.manual_seed(0)
    x = ckpt.randn(3, 4, requires_grad=True)
    w = ckpt.randn(4, requires_grad=True)
    (ref_w,) = ckpt.autograd.grad(f_cubic(x, w).sum(), w)
    (got_w,) = ckpt.autograd.grad(ckpt.checkpoint(f_cubic, x, w).sum(), inputs=[w])
    assert np.array_equal(ref_w.data, got_w.data)
    ckpt.checkpoint(f_cubic, x, w).sum().backward(inputs=[w])
    assert np.array_equal(w.grad.data, ref_w.data)
    assert x.grad is None  # not in inputs=


def test_retain_graph_backward_twice_recomputes_each_time():
    ckpt.manual_seed(0)
    x = ckpt.randn(3, 4, requires_grad=True)
    w = ckpt.randn(4, requires_grad=True)
    calls = []

    def f(x, w):
        calls.append(1)
        return f_cubic(x, w)
    y = ckpt.checkpoint(f, x, w).sum()
    y.backward(retain_graph=True)
    first = x.grad.data.copy()
    y.backward()
    assert np.array_equal(x.grad.data, 2 * first)
    assert len(calls) == 3  # forward, then one recomputation per backward


def test_kwargs_and_non_tensor_inputs_and_outputs():
    ckpt.manual_seed(0)
    x = ckpt.randn(4, requires_grad=True)

    def f(t, label, power=2, *, scale=1.0, shift=None):
        return {"value": (t ** power * scale + shift).sum(), "label": label.upper(), "n": power}
    shift = ckpt.randn(4, requires_grad=True)
    out = ckpt.checkpoint(f, x, "abc", 3, scale=0.5, shift=shift)
    assert out["label"] == "ABC" and out["n"] == 3
    out["value"].backward()
    np.testing.assert_allclose(x.grad.data, 1.5 * x.data ** 2, rtol=1e-6)
    np.testing.assert_array_equal(shift.grad.data, np.ones(4, np.float32))


def test_parameters_get_gradients_when_no_input_requires_grad():
    net = mlp_with_dropout()
    x = ckpt.randn(8, 12)  # requires_grad=False, as a data batch
    assert not x.requires_grad
    reference = training_step(mlp_with_dropout, mlp_input, lambda n, x: n(x), steps=1)
    result = training_step(mlp_with_dropout, mlp_input, lambda n, x: ckpt.checkpoint(n, x), steps=1)
    assert all(g is not None for g in result[0])
    assert_bit_identical(reference, result)
    y = ckpt.checkpoint(net, x)
    assert y.requires_grad  # through the parameters


def test_nested_checkpoints():
    ckpt.manual_seed(0)
    x = ckpt.randn(5, 6, requires_grad=True)
    w = ckpt.randn(6, requires_grad=True)
    calls = {"inner": 0, "outer": 0}

    def inner(t):
        calls["inner"] += 1
        return (t * w).tanh() * t

    def outer(t):
        calls["outer"] += 1
        return ckpt.checkpoint(inner, t.sin()).exp() * t

    ref = (inner(x.sin()).exp() * x).sum()
    ref_grads = ckpt.autograd.grad(ref, (x, w))
    calls.update(inner=0, outer=0)
    got = ckpt.checkpoint(outer, x).sum()
    got_grads = ckpt.autograd.grad(got, (x, w))
    for a, b in zip(ref_grads, got_grads):
        assert np.array_equal(a.data, b.data)
    # outer: forward + its recomputation; inner: the forward, again inside the outer
    # recomputation, and its own recomputation when backward reaches it
    assert calls == {"outer": 2, "inner": 3}


def test_checkpoint_under_no_grad_just_runs():
    x = ckpt.ones(3, requires_grad=True)
    with ckpt.no_grad():
        y = ckpt.checkpoint(lambda t: t * 2, x)
    assert not y.requires_grad and y.tolist() == [2.0, 2.0, 2.0]


def test_graph_keeps_only_the_segment_inputs():
    """``graph.saved_bytes`` sees through checkpoint's handles: a segment keeps its inputs."""
    ckpt.manual_seed(0)
    net = nn.Sequential(*[nn.Sequential(nn.Linear(64, 64), nn.Tanh()) for _ in range(8)])
    x = ckpt.randn(128, 64)
    act, weight = 128 * 64 * 4, 64 * 64 * 4
    store_all = ckpt.autograd.graph.saved_bytes(net(x).sum())
    # every Linear keeps its input, every tanh its output: x and 8 tanh outputs; the Linears
    # 2..8 keep their weight too (their input needs a gradient; the first one's does not)
    assert store_all == 9 * act + 7 * weight
    checkpointed = ckpt.autograd.graph.saved_bytes(ckpt.checkpoint_sequential(net, 4, x).sum())
    # 4 segments of 2 blocks: the 3 checkpointed ones keep their inputs (x and 2 boundaries);
    # the last, stored, keeps its input, 2 tanh outputs and its 2 weights
    assert checkpointed == 3 * act + 3 * act + 2 * weight


def test_hooks_and_observers_are_removed_even_when_the_function_raises():
    before = (list(Extensions.observers), list(_HookStack.pairs))

    def bad(t):
        (t * 2).sum()
        raise KeyError("boom")
    with pytest.raises(KeyError):
        ckpt.checkpoint(bad, ckpt.ones(2, requires_grad=True))
    assert (Extensions.observers, _HookStack.pairs) == before


# ---- errors ---------------------------------------------------------------------------------

def shape_changing():
    calls = {"n": 0}

    def f(t):
        calls["n"] += 1
        k = 3 if calls["n"] == 1 else 2  # the recomputation takes fewer columns
        return t[:, :k].exp().sum()
    return f


def test_checkpoint_error_when_shapes_change_between_calls():
    x = ckpt.randn(4, 4, requires_grad=True)
    y = ckpt.checkpoint(shape_changing(), x)
    with pytest.raises(ckpt.CheckpointError) as info:
        y.backward()
    message = str(info.value)
    assert "ExpBackward0" in message
    assert "shape [4, 3] dtype float32" in message and "shape [4, 2] dtype float32" in message
    assert "debug=True" in message


def test_checkpoint_error_debug_lists_both_op_sequences():
    x = ckpt.randn(4, 4, requires_grad=True)
    y = ckpt.checkpoint(shape_changing(), x, debug=True)
    with pytest.raises(ckpt.CheckpointError) as info:
        y.backward()
    message = str(info.value)
    assert "forward" in message and "recomputation" in message
    assert "ExpBackward0 -> [4, 3] float32" in message
    assert "ExpBackward0 -> [4, 2] float32" in message
    assert "<-- differs" in message


def test_checkpoint_error_when_the_number_of_saved_tensors_changes():
    calls = {"n": 0}

    def f(t):
        calls["n"] += 1
        y = t.exp()
        if calls["n"] == 1:
            y = y.sin()  # one more saved tensor in the forward than in the recomputation
        return y.sum()
    x = ckpt.randn(3, requires_grad=True)
    with pytest.raises(ckpt.CheckpointError, match=r"forward saved 2 tensors .* recomputation saved 1"):
        ckpt.checkpoint(f, x).backward()


def test_determinism_check_none_skips_the_metadata_comparison():
    calls = {"n": 0}

    def f(t):
        calls["n"] += 1
        return (t * (1.0 if calls["n"] == 1 else 2.0)).exp().sum()  # same shapes, other values
    x = ckpt.zeros(3, requires_grad=True)
    ckpt.checkpoint(f, x, determinism_check="none").backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0]  # recomputed exp(0 * 2) = 1, times the factor 1
    with pytest.raises(ValueError, match="determinism_check should be one of"):
        ckpt.checkpoint(f, x, determinism_check="strict")


def test_inplace_change_of_an_input_after_checkpoint_is_refused():
    x = ckpt.randn(3, requires_grad=True)
    h = x * 1.0
    y = ckpt.checkpoint(lambda t: (t * t).sum(), h)
    h.data[0] = 5.0
    h._vc[0] += 1  # as an in-place op would
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()
