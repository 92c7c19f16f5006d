"""Small behaviours the port of torch's autograd tests checks: the same program in torch and in
ckpt warns, raises and returns the same (non-leaf ``.grad`` warning, instantiating a Function,
``generate_vmap_rule``, strict ``jvp`` messages, gradcheck without differentiable outputs or
with outputs whose shape / dtype depend on the input's values)."""
import warnings

import pytest
import torch

import ckpt
from torch_oracle import assert_same_as_torch, outcome


def caught(program, lib):
    """(category name, message up to torch's "(Triggered internally" note) of each warning."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        program(lib)
    return [(x.category.__name__, str(x.message).split(" (Triggered")[0]) for x in w]


def read_grads(lib):
    x = lib.ones(2, requires_grad=True)
    x.grad                      # a leaf: no warning
    y = x * 2
    y.grad                      # a non-leaf: warns
    y.retain_grad()
    y.grad                      # a non-leaf that retains its gradient: no warning
    (y * y).sum().backward(inputs=[y])
    y.grad                      # populated: no warning


def test_non_leaf_grad_warns_like_torch():
    ours, theirs = caught(read_grads, ckpt), caught(read_grads, torch)
    assert ours == theirs and len(theirs) == 1


def test_backward_into_non_leaf_input_does_not_warn_like_torch():
    def program(lib):
        x = lib.ones(2, requires_grad=True)
        y = x * 2
        (y * y).sum().backward(inputs=[y])
        return y.grad
    assert caught(program, ckpt) == caught(program, torch) == []
    assert outcome(program, ckpt) == outcome(program, torch)


def identity_function(lib):
    class Id(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g
    return Id


@pytest.mark.parametrize("lib", [ckpt, torch])
def test_instantiating_a_function_warns_but_returns_one(lib):
    Id = identity_function(lib)
    [(category, message)] = caught(lambda _: Id(), lib)
    assert category == "DeprecationWarning"
    assert message == (f"{Id} should not be instantiated. Methods on autograd functions are all "
                       "static, so you should invoke them on the class itself. Instantiating an "
                       "autograd function will raise an error in a future version of PyTorch.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(Id(), Id)


def test_vmap_defaults_like_torch():
    def program(lib):
        Id = identity_function(lib)
        return Id.generate_vmap_rule, hasattr(Id, "vmap"), callable(Id.vmap)
    assert outcome(program, ckpt) == outcome(program, torch) == [False, True, True]


@pytest.mark.parametrize("func", [
    lambda x: x.detach() * 2,                               # no gradient at all
    lambda x: x.detach().requires_grad_().clone(),          # requires grad, not from x
    lambda x: x * 2,                                        # fine
])
def test_strict_jvp_messages_like_torch(func):
    def program(lib):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64)
        return lib.autograd.functional.jvp(func, x, lib.ones(2, dtype=lib.float64), strict=True)
    assert_same_as_torch(program)


@pytest.mark.parametrize("fast_mode", [False, True])
@pytest.mark.parametrize("func", [
    lambda x: x.detach() * 2,               # numerical gradient not zero: an error
    lambda x: x.detach() * 0 + 1,           # zero: passes
    lambda x: (),                           # no outputs: passes
])
def test_gradcheck_without_differentiable_outputs_like_torch(func, fast_mode):
    def program(lib):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        return lib.autograd.gradcheck(func, (x,), fast_mode=fast_mode)
    assert_same_as_torch(program)

    def quiet(lib):
        x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        return lib.autograd.gradcheck(func, (x,), fast_mode=fast_mode, raise_exception=False)
    assert_same_as_torch(quiet)


def grows(lib, x):
    return lib.cat([x, x]) if bool((x >= 1).all()) else x


def narrows(lib, x):
    return x.to(lib.float32) if bool((x >= 1).all()) else x


@pytest.mark.parametrize("fast_mode", [False, True])
@pytest.mark.parametrize("func, what", [(grows, "shape"), (narrows, "dtype")])
def test_gradcheck_output_depending_on_values_like_torch(func, what, fast_mode):
    def message(lib):
        a = lib.ones(1, dtype=lib.float64, requires_grad=True)
        try:
            lib.autograd.gradcheck(lambda x: func(lib, x), (a,), fast_mode=fast_mode)
        except AssertionError as e:
            return str(e).split(" but got")[0]
    ours, theirs = message(ckpt), message(torch)
    where = "" if fast_mode else "on index (0,) "  # slow mode perturbs one element at a time
    assert ours == theirs == (f"Expected `func` to return outputs with the same {what} when "
                              f"inputs are perturbed {where}by 1e-06,")
