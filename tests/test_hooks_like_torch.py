"""Where and in which order backward runs hooks: the same program in ckpt and in torch logs
the same hook calls (tensor hooks, node pre-/post-hooks, the leaf accumulator's hooks)."""
import numpy as np
import pytest
import torch

import ckpt


def two_branches(lib, log):
    """c = (x * 2) * (w * 3) with a logging hook of every kind on both branches."""
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    w = lib.tensor([3.0, 4.0], requires_grad=True)
    a, b = x * 2, w * 3
    for name, t in (("a", a), ("b", b), ("x", x), ("w", w)):
        t.register_hook(lambda g, name=name: log.append(f"{name} tensor hook"))
    for name, t in (("a", a), ("b", b)):
        t.grad_fn.register_prehook(lambda go, name=name: log.append(f"{name} node prehook"))
        t.grad_fn.register_hook(lambda gi, go, name=name: log.append(f"{name} node posthook"))
    return x, w, a, b, a * b


PASSES = {
    "backward(inputs=[b])": lambda lib, x, w, a, b, c: c.sum().backward(inputs=[b]),
    "backward(inputs=[w])": lambda lib, x, w, a, b, c: c.sum().backward(inputs=[w]),
    "backward(inputs=[a, w])": lambda lib, x, w, a, b, c: c.sum().backward(inputs=[a, w]),
    "backward()": lambda lib, x, w, a, b, c: c.sum().backward(),
    "grad(c, b)": lambda lib, x, w, a, b, c: lib.autograd.grad(c.sum(), b),
    "grad(c, w)": lambda lib, x, w, a, b, c: lib.autograd.grad(c.sum(), w),
    "grad(c, [a, x])": lambda lib, x, w, a, b, c: lib.autograd.grad(c.sum(), [a, x]),
}


@pytest.mark.parametrize("name", sorted(PASSES))
def test_hooks_run_exactly_where_torch_runs_them(name):
    logs = []
    for lib in (ckpt, torch):
        log = []
        PASSES[name](lib, *two_branches(lib, log))
        logs.append(log)
    assert logs[0] == logs[1]


def test_a_pass_that_never_reaches_a_tensor_runs_none_of_its_hooks():
    log = []
    x, w, a, b, c = two_branches(ckpt, log)
    c.sum().backward(inputs=[b])
    assert not any(entry.startswith(("a ", "x ", "w ")) for entry in log)
    assert x.grad is None and w.grad is None and b.grad is not None


def leaf_hook_order(lib):
    log = []
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    c = x * 2
    acc = c.grad_fn.next_functions[0][0]
    acc.register_prehook(lambda go: log.append(("accumulator prehook", go[0].tolist())))
    acc.register_hook(lambda gi, go: log.append(("accumulator posthook", len(gi),
                                                  go[0].tolist(), x.grad.tolist())))
    x.register_hook(lambda g: (log.append(("tensor hook 1", g.tolist())), g * 10)[1])
    x.register_hook(lambda g: log.append(("tensor hook 2", g.tolist())))
    c.sum().backward()
    log.append(("grad", x.grad.tolist()))
    return log


def test_leaf_tensor_hooks_run_before_the_accumulators_hooks_as_in_torch():
    ours, theirs = leaf_hook_order(ckpt), leaf_hook_order(torch)
    assert ours == theirs
    assert [entry[0] for entry in ours] == ["tensor hook 1", "tensor hook 2",
                                            "accumulator prehook", "accumulator posthook",
                                            "grad"]


def test_grad_of_a_captured_non_leaf_gives_the_hooked_gradient_as_torch():
    results = []
    for lib in (ckpt, torch):
        x = lib.tensor([1.0, -2.0], requires_grad=True)
        a = x.exp()
        a.register_hook(lambda g: g * 3)
        a.grad_fn.register_prehook(lambda go: (go[0] * 100,))   # a never runs: not applied
        (g,) = lib.autograd.grad((a * a).sum(), a)
        results.append(g.detach().numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
