"""Errors and warnings a ported torch program matches on: the same type, and the phrase
torch's own tests look for."""
import warnings

import pytest
import torch
import torch.utils.checkpoint as torch_cp

import ckpt
from ckpt.runtime import set_checkpoint_debug_enabled


def error_of(program, lib):
    try:
        program(lib)
    except Exception as error:  # noqa: BLE001 -- the error is what is compared
        return type(error).__name__, str(error)
    return None


def switching(first, then):
    """A function that runs ``first`` on its first call and ``then`` on later ones."""
    calls = []

    def f(x):
        calls.append(1)
        return first(x) if len(calls) == 1 else then(x)
    return f


def recomputation(lib, first, then, debug=False, debug_enabled=None):
    cp = ckpt.checkpoint if lib is ckpt else torch_cp.checkpoint
    enabled = set_checkpoint_debug_enabled if lib is ckpt else torch_cp.set_checkpoint_debug_enabled
    x = lib.ones(1, requires_grad=True)
    with enabled(debug_enabled):
        cp(switching(first, then), x, use_reentrant=False, debug=debug).sum().backward()


def three_saves(x):
    return x.sin().exp().sin()


def two_saves(x):
    return x.sin().exp()


def bad_function(lib, both=False):
    class Bad(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g

        if both:
            @staticmethod
            def vjp(ctx, g):
                return g
    return Bad


class Legacy:
    def __init__(self, lib):
        class LegacyFunction(lib.autograd.Function):
            def forward(self, x):
                return x
        self.function = LegacyFunction


CASES = {
    "fewer saves in the recomputation": (
        lambda lib: recomputation(lib, three_saves, two_saves),
        "A different number of tensors was saved"),
    "other metadata in the recomputation": (
        lambda lib: recomputation(lib, two_saves, lambda x: x.sin() * lib.ones(2)),
        "Recomputed values for the following tensors have different metadata"),
    "grad without inputs": (
        lambda lib: lib.autograd.grad(lib.ones(1, requires_grad=True) * 2, [],
                                      grad_outputs=lib.ones(1)),
        "`inputs` argument to `grad()` cannot be empty."),   # torch 2.6: a ValueError
    "batched grad_outputs of the wrong shape": (
        lambda lib: lib.autograd.grad(
            (lib.ones(3, requires_grad=True) * 2,), (lib.ones(3, requires_grad=True),),
            (lib.ones(2, 2),), is_grads_batched=True, allow_unused=True),
        "If `is_grads_batched=True`, we interpret the first"),
    "a Function without forward": (
        lambda lib: type("NoForward", (lib.autograd.Function,), {}).apply(lib.ones(1)),
        "You must implement the forward function for custom autograd.Function"),
    "a Function with backward and vjp": (
        lambda lib: bad_function(lib, both=True).apply(
            lib.ones(1, requires_grad=True)).sum().backward(),
        "Implementing both 'backward' and 'vjp'"),
    "a legacy Function called": (
        lambda lib: Legacy(lib).function()(lib.ones(1)),
        "Legacy autograd function with non-static forward method is deprecated"),
}


@pytest.mark.parametrize("name", CASES)
def test_error_as_in_torch(name):
    program, phrase = CASES[name]
    ours, theirs = error_of(program, ckpt), error_of(program, torch)
    assert theirs is not None and phrase in theirs[1], theirs
    assert ours is not None and ours[0] == theirs[0] and phrase in ours[1], ours


def class_under_no_grad(lib):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @lib.no_grad()
        class Built:
            def __init__(self):
                self.grad_enabled = lib.is_grad_enabled()

            def method(self):
                return lib.is_grad_enabled()
    built = Built()
    return [[w.category.__name__ for w in caught], "Decorating classes is deprecated"
            in str(caught[0].message), built.grad_enabled, built.method()]


def legacy_constructors(lib):
    return [(t.tolist(), str(t.dtype).split(".")[-1]) for t in (
        lib.LongTensor([3, 1]), lib.FloatTensor([1.5]), lib.DoubleTensor((2.0, 1.0)),
        lib.BoolTensor([True]), lib.LongTensor(2, 3).fill_(0))]


@pytest.mark.parametrize("program", [class_under_no_grad, legacy_constructors])
def test_same_result_as_torch(program):
    assert program(ckpt) == program(torch)


def test_set_checkpoint_debug_enabled_overrides_debug():
    """ckpt alone: torch 2.13's debug listing fails with a TypeError from its second use in a
    process on (test_checkpoint_like_torch.py compares one debug=True run with torch)."""
    def run(first_call_debug, enabled):
        try:
            recomputation(ckpt, two_saves, lambda x: x.sin() * ckpt.ones(2),
                          debug=first_call_debug, debug_enabled=enabled)
        except ckpt.CheckpointError as error:
            return "You are seeing this error because you passed `debug=True`" in str(error)
    assert run(False, True) and not run(True, False) and run(True, None) and not run(False, None)
