"""nn.Module.register_full_backward_hook / register_full_backward_pre_hook: the same program in
torch and ckpt sees the same gradients in its hooks, in the same order, with the same effect."""
import warnings

import pytest
import torch

import ckpt

from torch_oracle import assert_same_as_torch


def hooked_linear(lib, log, x_requires_grad=True, scale_input=False, scale_output=False):
    lib.manual_seed(0)
    m = lib.nn.Linear(3, 2).double()
    with lib.no_grad():
        m.weight.copy_(lib.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]], dtype=lib.float64))

    def pre(mod, grad_output):
        log.append(("pre", mod is m, type(grad_output).__name__, [g.tolist() for g in grad_output]))
        if scale_output:
            return tuple(g * 2 for g in grad_output)

    def full(mod, grad_input, grad_output):
        log.append(("full", mod is m, type(grad_input).__name__,
                    [None if g is None else g.tolist() for g in grad_input],
                    [g.tolist() for g in grad_output]))
        if scale_input:
            return tuple(None if g is None else g * 10 for g in grad_input)
    handles = [m.register_full_backward_pre_hook(pre), m.register_full_backward_hook(full)]
    x = lib.ones(1, 3, dtype=lib.float64, requires_grad=x_requires_grad)
    return m, x, handles


@pytest.mark.parametrize("options", [{}, {"x_requires_grad": False}, {"scale_input": True},
                                     {"scale_output": True}])
def test_hooks_see_and_change_gradients_as_torch(options):
    def program(lib):
        log = []
        m, x, _ = hooked_linear(lib, log, **options)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = m(x)
            log.append(y.grad_fn.name())
            (y * lib.tensor([[1.0, 2.0]], dtype=lib.float64)).sum().backward()
        log.append([str(w.message)[:60] for w in caught if w.category is UserWarning])
        log += [x.grad, m.weight.grad]
        return log
    assert_same_as_torch(program)


def test_removed_hooks_and_no_grad_calls_run_nothing_as_torch():
    def program(lib):
        log = []
        m, x, handles = hooked_linear(lib, log)
        with lib.no_grad():
            m(x)
        for h in handles:
            h.remove()
        y = m(x)
        y.sum().backward()
        return log, y.grad_fn.name() == "BackwardHookFunctionBackward"
    assert_same_as_torch(program)


def test_in_place_on_a_hooked_module_output_is_refused_as_torch():
    def program(lib):
        relu = lib.nn.ReLU()
        relu.register_full_backward_hook(lambda *args: None)
        out = relu(lib.ones(2, requires_grad=True) * 1)
        out.mul_(2)
    assert_same_as_torch(program)


def test_full_hook_not_run_again_by_a_double_backward_as_torch():
    def program(lib):
        calls = []
        loss_fn = lib.nn.MSELoss()
        loss_fn.register_full_backward_hook(lambda mod, gi, go: calls.append(len(gi)))
        x = lib.tensor([0.5, 2.0], dtype=lib.float64, requires_grad=True)
        f = loss_fn(x, lib.tensor([1.0, 1.0], dtype=lib.float64))
        (gx,) = lib.autograd.grad(f, x, create_graph=True)
        first = list(calls)
        (ggx,) = lib.autograd.grad(gx.sum(), x)
        return first, list(calls), gx, ggx
    assert_same_as_torch(program)


def test_full_hook_runs_between_the_input_node_hooks_as_torch():
    def program(lib):
        order = []
        m = lib.nn.Tanh()
        m.register_full_backward_hook(lambda *args: order.append("module"))
        x = lib.tensor([0.5, 2.0], requires_grad=True)
        y = m(x)
        node = y.grad_fn.next_functions[0][0].next_functions[0][0]   # the inputs' identity
        node.register_prehook(lambda grads: order.append("pre " + node.name()))
        node.register_hook(lambda grads_in, grads_out: order.append("post " + node.name()))
        y.sum().backward()
        return order
    assert_same_as_torch(program)


def test_full_hook_with_an_input_that_needs_no_grad_first_as_torch():
    def program(lib):
        log = []

        class Mix(lib.nn.Module):
            def forward(self, a, b):
                return a * b

        m = Mix()

        def full(mod, grad_input, grad_output):
            log.append([None if g is None else g.tolist() for g in grad_input])
            return (None, grad_input[1] * 3)
        m.register_full_backward_hook(full)
        a = lib.tensor([2.0, 3.0])
        b = lib.tensor([1.0, 1.0], requires_grad=True)
        m(a, b).sum().backward()
        return log, b.grad
    assert_same_as_torch(program)
