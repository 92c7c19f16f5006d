"""When tensor hooks, node pre-hooks and captures run, and what they see, as in torch; the
warning of ``backward(create_graph=True)``; None for non-differentiable outputs on request."""
import warnings

import pytest
import torch

from torch_oracle import assert_same_as_torch


def hooks_and_what_backward_inputs_captures(lib):
    log = []

    def tensor_hook(g):
        log.append("tensor")
        return g * 3

    def node_hook(gs):
        log.append("node")
        return tuple(g * 2 for g in gs)
    a = lib.tensor(1.0, requires_grad=True)
    b = a.clone()
    b.grad_fn.register_prehook(node_hook)
    b.register_hook(tensor_hook)
    b.grad_fn.register_prehook(node_hook)
    b.sum().backward(inputs=(b,), retain_graph=True)
    seen = [list(log), b.grad.item()]
    log.clear()
    (captured,) = lib.autograd.grad(b.sum(), b)
    return seen + [list(log), captured.item()]


def a_hook_gets_none_where_no_gradient_came(lib):
    class FirstGetsNone(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x * y

        @staticmethod
        def backward(ctx, g):
            return None, g
    seen = []
    h = lib.ones(2, requires_grad=True) * 2
    h.register_hook(lambda g: seen.append(g))
    w = lib.ones(2, requires_grad=True)
    FirstGetsNone.apply(h, w).sum().backward()
    return [seen, w.grad]


def backward_warnings(lib):
    b = lib.ones(3, requires_grad=True, dtype=lib.float64)
    c = b * b
    messages = []
    for run in (lambda: c.backward(lib.ones_like(c), create_graph=True),
                lambda: lib.autograd.grad(c, b, lib.ones_like(c), create_graph=True),
                lambda: c.sum().backward(retain_graph=True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        messages.append(any("Using backward() with create_graph=True" in str(w.message)
                            for w in caught))
    return messages


def warning_always(program):
    """``program`` with torch's warnings on every time (torch warns once per process)."""
    def run(lib):
        if lib is not torch:
            return program(lib)
        previous = torch.is_warn_always_enabled()
        torch.set_warn_always(True)
        try:
            return program(lib)
        finally:
            torch.set_warn_always(previous)
    return run


def non_differentiable_gradients(lib, materialize):
    received = []

    class TwoOutputs(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out, flag = x.clone(), x.clone()
            ctx.mark_non_differentiable(flag)
            if materialize is not None:
                ctx._materialize_non_diff_grads = materialize
            return out, flag

        @staticmethod
        def backward(ctx, g, g_flag):
            received.append(g_flag)
            return g
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    TwoOutputs.apply(a)[0].sum().backward()
    return [received, a.grad]


PROGRAMS = {
    "tensor hooks, then the capture, then node pre-hooks": hooks_and_what_backward_inputs_captures,
    "a hook gets None": a_hook_gets_none_where_no_gradient_came,
    "backward(create_graph=True) warns": warning_always(backward_warnings),
    "non-differentiable outputs: zeros": lambda lib: non_differentiable_gradients(lib, None),
    "non-differentiable outputs: None": lambda lib: non_differentiable_gradients(lib, False),
    "materialize_grads with allow_unused=False": lambda lib: lib.autograd.grad(
        lib.ones(1, requires_grad=True) * 2, lib.ones(1, requires_grad=True),
        allow_unused=False, materialize_grads=True),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_hooks_and_gradients_as_in_torch(name):
    assert_same_as_torch(PROGRAMS[name])
