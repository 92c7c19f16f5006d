"""ckpt.checkpoint against torch.utils.checkpoint (non-reentrant): the same program gives the
same gradients, runs the same Python code during recomputation, and fails the same way."""
import contextlib
import warnings

import numpy as np
import pytest
import torch
import torch.utils.checkpoint as torch_cp

import ckpt
from ckpt.runtime import set_checkpoint_early_stop


def both(program):
    """Run ``program(lib, checkpoint, early_stop_ctx)`` with ckpt and with torch."""
    return (program(ckpt, ckpt.checkpoint, set_checkpoint_early_stop),
            program(torch, torch_cp.checkpoint, torch_cp.set_checkpoint_early_stop))


def three_ops(calls):
    def f(a):
        b = a.sin()
        calls.append("sin")
        c = b.exp()
        calls.append("exp")
        d = c * 2
        calls.append("mul")
        return d
    return f


def calls_during_backward(lib, cp, early_ctx, **keywords):
    calls = []
    x = lib.ones(3, requires_grad=True)
    if "context" in keywords:
        with early_ctx(keywords.pop("context")):
            y = cp(three_ops(calls), x, use_reentrant=False, **keywords)
    else:
        y = cp(three_ops(calls), x, use_reentrant=False, **keywords)
    calls.clear()
    y.sum().backward()
    return calls, x.grad.numpy()


@pytest.mark.parametrize("keywords", [{}, {"early_stop": True}, {"early_stop": False},
                                      {"context": False}, {"context": True},
                                      {"context": True, "early_stop": False},
                                      {"context": False, "early_stop": True}])
def test_early_stop_runs_the_same_code_again_as_torch(keywords):
    (ours, g_ours), (theirs, g_theirs) = both(
        lambda lib, cp, ctx: calls_during_backward(lib, cp, ctx, **dict(keywords)))
    assert ours == theirs
    np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-6)


def test_early_stop_is_the_default_and_skips_the_tail_of_the_segment():
    (ours, _), _ = both(calls_during_backward)
    assert ours == ["sin"]   # exp saved the last tensor backward needs: stop inside exp


def more_saves_in_the_recomputation(lib, cp, ctx, early_stop):
    runs = []

    def g(a):
        runs.append(1)
        b = a.sin()
        return b.exp() if len(runs) > 1 else b   # the recomputation saves one tensor more
    x = lib.tensor([0.5, 1.0], requires_grad=True)
    y = cp(g, x, use_reentrant=False, early_stop=early_stop)
    try:
        y.sum().backward()
    except Exception as error:   # noqa: BLE001 - the test compares the errors
        return type(error).__name__, str(error)
    return x.grad.numpy()


def test_a_recomputation_that_saves_more_succeeds_with_early_stop():
    ours, theirs = both(lambda lib, cp, ctx: more_saves_in_the_recomputation(lib, cp, ctx, True))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_allclose(ours, np.cos([0.5, 1.0]), rtol=1e-6)


def test_a_recomputation_that_saves_more_fails_without_early_stop():
    ours, theirs = both(lambda lib, cp, ctx: more_saves_in_the_recomputation(lib, cp, ctx, False))
    assert ours[0] == theirs[0] == "CheckpointError"
    for words in ("more tensors during recomputation", "original forward"):
        assert words in ours[1] and words in theirs[1]


def test_fewer_saves_in_the_recomputation_fail_as_in_torch():
    def program(lib, cp, ctx):
        runs = []

        def g(a):
            runs.append(1)
            b = a.sin()
            return b.exp() if len(runs) == 1 else b
        x = lib.ones(2, requires_grad=True)
        with pytest.raises(Exception) as info:
            cp(g, x, use_reentrant=False).sum().backward()
        return type(info.value).__name__, str(info.value).lower()
    ours, theirs = both(program)
    assert ours[0] == theirs[0] == "CheckpointError"
    assert "different number of tensors" in ours[1] and "different number of tensors" in theirs[1]


def test_autograd_grad_inside_the_checkpointed_function_works_as_in_torch():
    def program(lib, cp, ctx, early_stop):
        calls = []
        x = lib.tensor([0.5, 1.0, 2.0], requires_grad=True)

        def f(a):
            calls.append("f")
            b = a.sin() * a
            g, = lib.autograd.grad(b.sum(), a, create_graph=True)
            return (g * b).exp()
        y = cp(f, x, use_reentrant=False, early_stop=early_stop)
        gx, = lib.autograd.grad(y.sum(), x)
        return calls, gx.numpy()
    for early_stop in (True, False):
        (ours, g_ours), (theirs, g_theirs) = both(
            lambda lib, cp, ctx: program(lib, cp, ctx, early_stop))
        assert ours == theirs == ["f", "f", "f"]   # forward, its inner grad's, backward's
        np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-5)


def test_backward_inside_the_checkpointed_function_accumulates_as_in_torch():
    def program(lib, cp, ctx):
        w = lib.tensor([1.5, -2.0], requires_grad=True)

        def f(a):
            (a * w).tanh().sum().backward(retain_graph=True)
            return (a * w).exp()
        x = lib.tensor([0.3, 0.7], requires_grad=True)
        cp(f, x, use_reentrant=False).sum().backward()
        return w.grad.numpy(), x.grad.numpy()
    ours, theirs = both(program)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_leaving_use_reentrant_out_warns_as_torch_does():
    def program(lib, cp, ctx):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cp(lambda a: a.exp(), lib.ones(2, requires_grad=True))
        return [(w.category, str(w.message)) for w in caught]
    ours, theirs = both(program)
    assert len(ours) == len(theirs) == 1
    assert ours[0][0] is theirs[0][0] is UserWarning
    words = "the use_reentrant parameter should be passed explicitly"
    assert words in ours[0][1] and words in theirs[0][1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.checkpoint(lambda a: a.exp(), ckpt.ones(2, requires_grad=True), use_reentrant=False)


def test_checkpoint_sequential_warns_too():
    def program(lib, seq):
        net = lib.nn.Sequential(lib.nn.Linear(2, 2), lib.nn.Linear(2, 2))
        with pytest.warns(UserWarning, match="use_reentrant parameter should be passed"):
            seq(net, 2, lib.ones(1, 2, requires_grad=True))
    program(ckpt, ckpt.checkpoint_sequential)
    program(torch, torch_cp.checkpoint_sequential)


def test_context_fn_wraps_the_forward_and_the_recomputation_as_in_torch():
    def program(lib, cp, ctx):
        log = []

        @contextlib.contextmanager
        def tag(name):
            log.append(name + " enter")
            try:
                yield
            finally:
                log.append(name + " exit")
        x = lib.ones(2, requires_grad=True)
        y = cp(lambda a: a.sin().exp().sum(), x, use_reentrant=False,
               context_fn=lambda: (tag("forward"), tag("recompute")))
        log.append("backward")
        y.backward()
        return log
    ours, theirs = both(program)
    assert ours == theirs
    assert ours == ["forward enter", "forward exit", "backward", "recompute enter",
                    "recompute exit"]


def test_bad_context_fn_raises_type_error_as_in_torch():
    def program(lib, cp, ctx, context_fn):
        with pytest.raises(TypeError) as info:
            cp(lambda a: a.exp(), lib.ones(2, requires_grad=True), use_reentrant=False,
               context_fn=context_fn)
        return str(info.value)
    for bad in (3, lambda: 3):
        ours, _ = both(lambda lib, cp, ctx: program(lib, cp, ctx, bad))
        assert "context_fn" in ours


def test_determinism_check_values_as_in_torch():
    def program(lib, cp, ctx, check):
        x = lib.ones(2, requires_grad=True)
        try:
            cp(lambda a: a.exp(), x, use_reentrant=False, determinism_check=check).sum().backward()
        except ValueError as error:
            return "ValueError", "determinism_check should be one of" in str(error)
        return x.grad.numpy().tolist()
    for check in ("default", "none", "bogus", None):
        ours, theirs = both(lambda lib, cp, ctx: program(lib, cp, ctx, check))
        assert ours == pytest.approx(theirs) if isinstance(ours, list) else ours == theirs


def test_debug_true_adds_the_op_sequences_to_the_error():
    def program(lib, cp, ctx, debug):
        runs = []

        def g(a):
            runs.append(1)
            return a[:3 if len(runs) == 1 else 2].exp().sum()
        with pytest.raises(Exception) as info:
            cp(g, lib.ones(4, requires_grad=True), use_reentrant=False,
               debug=debug).backward()
        return type(info.value).__name__, str(info.value)
    for debug in (False, True):
        ours, theirs = both(lambda lib, cp, ctx: program(lib, cp, ctx, debug))
        assert ours[0] == theirs[0] == "CheckpointError"
        assert ("pass debug=True" in ours[1]) == ("To see a more detailed error" in theirs[1]) \
            == (not debug)
    assert "ExpBackward0 -> [3] float32" in ours[1] and "ExpBackward0 -> [2] float32" in ours[1]


def test_early_stop_must_be_a_bool():
    with pytest.raises(TypeError, match="early_stop must be a bool"):
        ckpt.checkpoint(lambda a: a, ckpt.ones(1), use_reentrant=False, early_stop="yes")
    with pytest.raises(TypeError, match="expects a bool"):
        set_checkpoint_early_stop(1)


def test_early_stop_keeps_dropout_and_batchnorm_exact():
    ckpt.manual_seed(0)
    net = ckpt.nn.Sequential(ckpt.nn.Linear(6, 8), ckpt.nn.BatchNorm1d(8), ckpt.nn.ReLU(),
                             ckpt.nn.Dropout(0.4), ckpt.nn.Linear(8, 2))
    x = ckpt.randn(5, 6)
    grads = []
    for early_stop in (True, False):
        ckpt.manual_seed(7)
        net.zero_grad()
        ckpt.checkpoint(net, x, use_reentrant=False, early_stop=early_stop).sum().backward()
        grads.append([p.grad.data.copy() for p in net.parameters()])
    ckpt.manual_seed(7)
    net.zero_grad()
    net(x).sum().backward()
    for a, b, c in zip(grads[0], grads[1], [p.grad.data for p in net.parameters()]):
        assert np.array_equal(a, c) and np.array_equal(b, c)
