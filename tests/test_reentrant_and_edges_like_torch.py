"""Programs torch runs and ckpt used to refuse: a 2000-deep reentrant backward, ``numpy()``
under ``no_grad``; and an extra ``saved_tensors_hooks.__exit__`` fails as in
torch (a RuntimeError) without disturbing the hooks in effect."""
import sys
import threading

import numpy as np
import pytest
import torch

import ckpt


def reentrant_function(lib, at_the_bottom):
    """A custom Function whose backward runs a backward of its own until its input, counted
    down by one per level, is negative; there it returns ``at_the_bottom(g)``."""
    class DeepReentrant(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            with lib.enable_grad():
                ctx.x = x.detach().requires_grad_() - 1
            return ctx.x.detach()

        @staticmethod
        def backward(ctx, g):
            if ctx.x.item() < 0:
                return at_the_bottom(g)
            with lib.enable_grad():
                DeepReentrant.apply(ctx.x).sum().backward()
            return g * 2
    return DeepReentrant


def deep_reentrant(lib, depth):
    v = lib.tensor(float(depth), requires_grad=True)
    reentrant_function(lib, lambda g: g).apply(v).sum().backward()
    return v.grad.item()


def test_a_2000_deep_reentrant_backward_works_as_in_torch():
    assert sys.getrecursionlimit() < 2000 * 8   # a plain recursive run would hit the limit
    assert deep_reentrant(ckpt, 2000) == deep_reentrant(torch, 2000) == 2.0


def test_an_error_deep_inside_a_reentrant_backward_reaches_the_caller():
    def fail(g):
        raise KeyError("deepest level")
    before = threading.active_count()
    with pytest.raises(KeyError, match="deepest level"):
        reentrant_function(ckpt, fail).apply(ckpt.tensor(100.0, requires_grad=True)).sum().backward()
    assert threading.active_count() == before
    assert ckpt.is_grad_enabled()   # the pass restored the mode it changed
    x = ckpt.ones(2, requires_grad=True)
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


@pytest.mark.parametrize("under_no_grad", [False, True])
@pytest.mark.parametrize("leaf", [True, False])
def test_numpy_of_a_tensor_that_requires_grad_as_in_torch(under_no_grad, leaf):
    outcomes = []
    for lib in (ckpt, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        t = x if leaf else x * 2
        try:
            if under_no_grad:
                with lib.no_grad():
                    outcomes.append(t.numpy().tolist())
            else:
                outcomes.append(t.numpy().tolist())
        except RuntimeError as error:
            outcomes.append(("RuntimeError", "detach().numpy()" in str(error)))
    assert outcomes[0] == outcomes[1]
    assert isinstance(outcomes[0], list) == under_no_grad


def test_an_extra_saved_tensors_hooks_exit_raises_runtime_error_as_in_torch():
    for lib in (ckpt, torch):
        hooks = lib.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
        hooks.__enter__()
        hooks.__exit__(None, None, None)
        with pytest.raises(RuntimeError):
            hooks.__exit__(None, None, None)
    packed = []
    x = ckpt.ones(2, requires_grad=True)
    with ckpt.autograd.graph.saved_tensors_hooks(lambda t: packed.append(1) or t, lambda t: t):
        stray = ckpt.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)
        with pytest.raises(RuntimeError, match="without a matching __enter__"):
            stray.__exit__(None, None, None)
        y = (x * x).sum()   # the outer hooks are still in effect
    y.backward()
    assert packed == [1, 1] and np.array_equal(x.grad.data, [2.0, 2.0])


def test_saved_tensors_hooks_exited_out_of_order_remove_their_own_pair():
    seen = []
    outer = ckpt.autograd.graph.saved_tensors_hooks(lambda t: seen.append("outer") or t,
                                                    lambda t: t)
    inner = ckpt.autograd.graph.saved_tensors_hooks(lambda t: seen.append("inner") or t,
                                                    lambda t: t)
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)
    ckpt.ones(1, requires_grad=True).exp()
    inner.__exit__(None, None, None)
    ckpt.ones(1, requires_grad=True).exp()
    assert seen == ["inner"]
