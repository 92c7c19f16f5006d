"""``checkpoint(..., use_reentrant=True)`` and ``checkpoint_sequential(..., use_reentrant=True)``
against torch's: the same gradients, the same reruns, the same refusals."""
import warnings

import pytest
import torch
import torch.utils.checkpoint as torch_cp

import ckpt
from torch_oracle import assert_same_as_torch


def checkpoint(lib, *args, **kwargs):
    return (ckpt.checkpoint if lib is ckpt else torch_cp.checkpoint)(
        *args, use_reentrant=True, **kwargs)


def sequential(lib, *args):
    return (ckpt.checkpoint_sequential if lib is ckpt else torch_cp.checkpoint_sequential)(
        *args, use_reentrant=True)


def gradients_and_reruns(lib):
    lib.manual_seed(0)
    layer = lib.nn.Linear(3, 3)
    calls = []

    def segment(t):
        calls.append("run")
        return layer(t).tanh() * t
    x = lib.tensor([[0.5, -1.0, 2.0]], requires_grad=True)
    y = checkpoint(lib, segment, x)
    ran_in_forward = len(calls)
    (y * y).sum().backward()
    expected = [p.grad.clone() for p in (x, layer.weight)]
    for p in (x, layer.weight, layer.bias):
        p.grad = None
    (segment(x) ** 2).sum().backward()
    return [ran_in_forward, len(calls), y.grad_fn is not None,
            all(bool(lib.allclose(a, p.grad)) for a, p in zip(expected, (x, layer.weight)))]


def autograd_grad_is_refused(lib):
    x = lib.ones(2, requires_grad=True)
    return lib.autograd.grad(checkpoint(lib, lib.exp, x).sum(), x)


def backward_with_inputs_is_refused(lib):
    x = lib.ones(2, requires_grad=True)
    checkpoint(lib, lib.exp, x).sum().backward(inputs=[x])


def backward_works_after_a_refusal(lib):
    x = lib.ones(2, requires_grad=True)
    try:
        lib.autograd.grad(checkpoint(lib, lib.exp, x).sum(), x)
    except RuntimeError:
        pass
    checkpoint(lib, lib.exp, x).sum().backward()
    return [round(g, 5) for g in x.grad.tolist()]


def non_tensors_in_and_out(lib):
    t1 = lib.tensor([1.0, 2.0], requires_grad=True)
    t2 = lib.tensor([3.0, 4.0], requires_grad=True)
    t3 = lib.tensor([0.5, 0.25])

    def f(a, b, scale, nothing, c):
        return scale, (a + b * c) * scale, nothing, "bar", a * b, a
    out = checkpoint(lib, f, t1, t2, 3, None, t3)
    out[1].sum().backward(retain_graph=True)
    out[4].sum().backward(retain_graph=True)
    out[5].sum().backward()
    return [out[0], out[1], out[2], out[3], out[5], t1.grad, t2.grad, t3.grad]


def backward_twice(lib):
    x = lib.ones(2, requires_grad=True)
    y = checkpoint(lib, lambda t: t * 2, x)
    y.sum().backward()
    y.sum().backward()


def no_input_requires_grad(lib):
    layer = lib.nn.Linear(2, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = checkpoint(lib, layer, lib.ones(1, 2))
    return [y.requires_grad, [str(w.message) for w in caught]]


def no_output_requires_grad(lib):
    x = lib.ones(2, requires_grad=False)
    w = lib.ones(2, requires_grad=True)
    checkpoint(lib, lambda a, b: a * 2, x, w).sum().backward()


def partial_grad(lib):
    x = lib.ones(1, 4, requires_grad=True)
    other = lib.ones(1, 4)
    out = checkpoint(lib, lambda a, b: (a * 3, b), x, other)
    out[0].sum().backward()
    return [x.grad, other.grad, out[1].requires_grad]


def random_ops_replay(lib):
    lib.manual_seed(0)
    x = lib.ones(1000, requires_grad=True)
    y = checkpoint(lib, lambda t: t * lib.rand(1000), x)
    lib.rand(7)   # the RNG moves on between the forward and the backward
    y.sum().backward()
    after = lib.rand(1)
    lib.manual_seed(0)
    factor = lib.rand(1000)
    lib.rand(7)
    return [bool((x.grad == factor).all()), bool((after == lib.rand(1)).all())]


def sequential_reruns_all_but_the_last_segment(lib):
    counts = [0] * 4

    def counter(i):
        def f(t):
            counts[i] += 1
            return t * 2.0
        return f
    x = lib.ones(2, requires_grad=True)
    out = sequential(lib, [counter(i) for i in range(4)], 2, x)
    out.sum().backward()
    return [counts, x.grad]


PROGRAMS = {
    "gradients and reruns": gradients_and_reruns,
    "autograd.grad is refused": autograd_grad_is_refused,
    "backward(inputs=) is refused": backward_with_inputs_is_refused,
    "backward works after a refusal": backward_works_after_a_refusal,
    "non-tensors in and out": non_tensors_in_and_out,
    "backward twice": backward_twice,
    "no input requires grad": no_input_requires_grad,
    "no output requires grad": no_output_requires_grad,
    "partial grad": partial_grad,
    "random ops replay": random_ops_replay,
    "sequential": sequential_reruns_all_but_the_last_segment,
    "keyword arguments are refused": lambda lib: checkpoint(lib, lambda t, k: t, lib.ones(1), k=1),
    "context_fn is refused": lambda lib: checkpoint(lib, lambda t: t, lib.ones(1),
                                                    context_fn=lambda: (None, None)),
    "debug is refused": lambda lib: checkpoint(lib, lambda t: t, lib.ones(1), debug=True),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_reentrant_checkpoint_as_in_torch(name):
    assert_same_as_torch(PROGRAMS[name])
