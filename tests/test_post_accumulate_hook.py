"""``Tensor.register_post_accumulate_grad_hook``: the same program in torch and in ckpt logs
the same hook calls, leaves the same values and raises the same errors."""
import numpy as np
import pytest
import torch

import ckpt

from torch_oracle import assert_same_as_torch


def logged_pass(lib, pass_):
    """A leaf ``x`` with a hook of every kind that logs, two post-accumulate hooks among
    them (one removed after the first pass), run through ``pass_`` twice. Leaf ``w``'s hook
    logs apart: the engine may reach two leaves in another order than torch (README)."""
    log, w_log = [], []
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    w = lib.tensor([3.0, 4.0], requires_grad=True)
    acc = (x * 1).grad_fn.next_functions[0][0]
    x.register_post_accumulate_grad_hook(
        lambda t: log.append(("post-acc 1", t is x, t.grad.tolist(), lib.is_grad_enabled())))
    x.register_hook(lambda g: log.append(("tensor hook", g.tolist())))
    acc.register_prehook(lambda go: log.append(("accumulator prehook", go[0].tolist())))
    acc.register_hook(lambda gi, go: log.append(("accumulator posthook", len(gi))))
    second = x.register_post_accumulate_grad_hook(lambda t: log.append(("post-acc 2",)))
    w.register_post_accumulate_grad_hook(lambda t: w_log.append(t.grad.tolist()))
    for _ in range(2):
        pass_(lib, x, w)
        log.append("--")
        second.remove()
    second.remove()  # a second remove() does nothing
    return log, w_log


PASSES = {
    "backward()": lambda lib, x, w: (x * w + x * 2).sum().backward(),
    "backward(create_graph=True)": lambda lib, x, w: (x * x * w).sum().backward(create_graph=True),
    "backward(inputs=[x])": lambda lib, x, w: (x * w).sum().backward(inputs=[x]),
    "x.backward(gradient)": lambda lib, x, w: x.backward(lib.tensor([5.0, 6.0])),
    "autograd.grad(c, [x, w])": lambda lib, x, w: lib.autograd.grad((x * w).sum(), [x, w]),
}


@pytest.mark.parametrize("name", sorted(PASSES))
def test_hooks_run_when_and_in_the_order_torch_runs_them(name):
    ours, theirs = logged_pass(ckpt, PASSES[name]), logged_pass(torch, PASSES[name])
    assert ours == theirs
    assert any(e[0] == "post-acc 1" for e in theirs[0] if isinstance(e, tuple)) == (
        "grad(" not in name)   # the log checks the hooks where a pass runs them


def test_the_hook_sees_the_leaf_after_a_reused_leafs_gradients_are_summed():
    def program(lib):
        seen = []
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.clone()))
        (x * 2 + x * x).sum().backward()
        return seen
    assert_same_as_torch(program)


def test_an_sgd_step_in_the_hook_updates_the_leaf_and_frees_its_grad():
    def program(lib):
        w = lib.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
        b = lib.tensor([0.25, -1.0], requires_grad=True)

        def sgd(p):
            with lib.no_grad():
                p.sub_(0.1 * p.grad)
            p.grad = None
        for p in (w, b):
            p.register_post_accumulate_grad_hook(sgd)
        x = lib.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]])
        for _ in range(3):
            ((x @ w + b).tanh() ** 2).sum().backward()
        return w, b
    ours, theirs = program(ckpt), program(torch)
    for o, t in zip(ours, theirs):
        assert o.grad is None and t.grad is None
        np.testing.assert_allclose(o.detach().numpy(), t.detach().numpy(), rtol=1e-6)


def test_the_hook_runs_when_the_accumulator_runs_without_a_gradient():
    def program(lib):
        class NoGradForA(lib.autograd.Function):
            @staticmethod
            def forward(ctx, a, b):
                return a * 2 + b

            @staticmethod
            def backward(ctx, g):
                return None, g
        log = []
        x, w = lib.ones(2, requires_grad=True), lib.ones(2, requires_grad=True)
        x.register_post_accumulate_grad_hook(lambda t: log.append(t.grad))
        NoGradForA.apply(x, w).sum().backward()
        y = x * 2   # an accumulator pre-hook that drops the gradient
        y.grad_fn.next_functions[0][0].register_prehook(lambda go: (None,))
        y.sum().backward()
        return log, x.grad
    assert_same_as_torch(program)


@pytest.mark.parametrize("make", [
    lambda lib: lib.ones(2, requires_grad=True) * 2,                     # not a leaf
    lambda lib: lib.ones(2),                                             # doesn't require grad
    lambda lib: lib.ones(2, dtype=lib.int64),
    lambda lib: lib.ones(2, requires_grad=True).detach(),
])
def test_registering_on_what_torch_refuses_raises_torchs_error(make):
    assert_same_as_torch(lambda lib: make(lib).register_post_accumulate_grad_hook(print) and None)


@pytest.mark.parametrize("returned", [
    lambda lib: lib.zeros(2),    # a Tensor: RuntimeError
    lambda lib: 5,               # anything else: TypeError naming its type
    lambda lib: (None,),
])
def test_a_hook_that_returns_something_raises_torchs_error(returned):
    def program(lib):
        x = lib.ones(2, requires_grad=True)
        x.register_post_accumulate_grad_hook(lambda t: returned(lib))
        (x * 3).sum().backward()
    assert_same_as_torch(program)


def test_an_error_in_the_hook_propagates_after_the_grad_was_accumulated():
    def program(lib):
        x = lib.ones(2, requires_grad=True)
        x.register_post_accumulate_grad_hook(lambda t: 1 / 0)
        try:
            (x * 3).sum().backward()
        except ZeroDivisionError:
            return x.grad
    assert_same_as_torch(program)
