"""In-place writes through views, as torch does them: a write with grad into a view of a
tensor that had no graph gives the base a graph (``CopySlices``), every alias of the base
sees the write and differentiates through it, a retained grad follows the tensor to its
new version, and a write into an expanded tensor reaches its shared memory."""
import numpy as np
import pytest
import torch

import ckpt
from torch_oracle import assert_same_as_torch

WEIGHTS = np.arange(1.0, 13.0).reshape(3, 4)

# view of a (3, 4) tensor -> the views torch and ckpt both give
VIEWS = {
    "columns": lambda x: x[:, 1:3],          # x.narrow(1, 1, 2)
    "row": lambda x: x[1],                    # x.select(0, 1)
    "element": lambda x: x[2, 3],
    "every_other_row": lambda x: x[::2],
    "part_of_a_row": lambda x: x[1, 1:3],
    "flat_view": lambda x: x.view(12)[2:7],
    "reshape": lambda x: x.reshape(4, 3),
    "transpose_row": lambda x: x.t()[1],
    "transpose": lambda x: x.transpose(0, 1),
    "permute": lambda x: x.permute(1, 0)[2:],
    "chained_slices": lambda x: x[1:][:, 2:][0],
    "unsqueeze": lambda x: x.unsqueeze(0)[0, 1:],
}

WRITES = {
    "mul_": lambda v, w: v.mul_(w),
    "add_": lambda v, w: v.add_(w),
    "copy_": lambda v, w: v.copy_(w),
    "setitem": lambda v, w: v.__setitem__(Ellipsis, w),
    "add_then_pow_": lambda v, w: v.add_(w).pow_(2),
}


def weight_for(lib, view):
    """A weight requiring grad, shaped like ``view``, with distinct values."""
    values = np.arange(2.0, 2.0 + view.numel()).reshape(tuple(view.shape)) / 4
    return lib.tensor(values, requires_grad=True)


def written(lib, view_of, write):
    """``x`` (graph-less, a clone of a root that needs no grad), one of its views written in
    place with a weight ``w`` that requires grad."""
    root = lib.tensor(WEIGHTS)
    x = root.clone()
    view = view_of(x)
    w = weight_for(lib, view)
    write(view, w)
    return root, x, view, w


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("view", VIEWS)
def test_a_write_through_a_view_gives_a_graph_less_base_its_history_as_in_torch(view, write):
    def program(lib):
        root, x, v, w = written(lib, VIEWS[view], WRITES[write])
        facts = [x.requires_grad, v.requires_grad, x._version, v._version, x, v]
        (x * lib.tensor(WEIGHTS)).sum().backward()
        return facts + [w.grad, root.requires_grad]
    assert_same_as_torch(program)


@pytest.mark.parametrize("write", ["mul_", "copy_"])
@pytest.mark.parametrize("view", VIEWS)
def test_backward_through_the_written_view_as_in_torch(view, write):
    def program(lib):
        _, x, v, w = written(lib, VIEWS[view], WRITES[write])
        (v * v).sum().backward()
        return [w.grad, x]
    assert_same_as_torch(program)


def test_the_briefs_three_forms_as_in_torch():
    def program(lib):
        b = lib.tensor([[2.0, 3.0]] * 3, requires_grad=True)
        w = lib.tensor([5.0, 7.0], requires_grad=True)
        x = lib.tensor(WEIGHTS).clone()
        x[:, 2:4].mul_(b)
        buf = lib.zeros(4)
        buf[0:2].copy_(w)
        z = lib.zeros(3, 4)
        z[lib.tensor([0, 2]), 1] = w
        ((x ** 2).sum() + (buf * buf).sum() + (z * lib.tensor(WEIGHTS)).sum()).backward()
        return [b.grad, w.grad, x, buf, z, buf._version, z.requires_grad]
    assert_same_as_torch(program)


def test_several_writes_and_an_overlapping_view_made_before_them_as_in_torch():
    def program(lib):
        w1 = lib.tensor([2.0, 3.0, 4.0], requires_grad=True)
        w2 = lib.tensor([5.0, 6.0], requires_grad=True)
        x = lib.ones(3, 4)
        overlapping = x[:, 1]               # made before any write, still graph-less
        later = x.view(12)
        x[:, 1].mul_(w1)
        x[0, 1:3].add_(w2)
        x.mul_(2)
        facts = [overlapping.requires_grad, later.requires_grad, x._version, overlapping]
        (overlapping * overlapping).sum().backward(retain_graph=True)
        grads = [w1.grad.clone(), w2.grad.clone()]
        later.sum().backward()
        return facts + grads + [w1.grad, w2.grad]
    assert_same_as_torch(program)


def test_a_write_into_the_base_reaches_a_graph_less_view_made_before_it_as_in_torch():
    def program(lib):
        w = lib.tensor([[2.0], [3.0]], requires_grad=True)
        x = lib.ones(2, 3)
        column = x[:, 2]
        x.mul_(w)
        (column * lib.tensor([1.0, 10.0])).sum().backward()
        return [column.requires_grad, column, w.grad]
    assert_same_as_torch(program)


def test_a_base_with_history_and_a_graph_less_write_keep_their_gradients_as_in_torch():
    def program(lib):
        root = lib.tensor(WEIGHTS, requires_grad=True)
        b = lib.tensor([2.0, 3.0], requires_grad=True)
        x = root.clone()
        x[1, 2:4].mul_(b)
        x[0].zero_()
        (x * x).sum().backward()
        return [root.grad, b.grad]
    assert_same_as_torch(program)


def test_a_write_without_grad_leaves_the_base_without_a_graph_as_in_torch():
    def program(lib):
        x = lib.ones(2, 3)
        view = x[0]
        view.mul_(lib.tensor([1.0, 2.0, 3.0]))
        x[1] = 4.0
        return [x.requires_grad, view.requires_grad, x.grad_fn is None, x._version, x]
    assert_same_as_torch(program)


# ---- retain_grad and in place ------------------------------------------------------

def retained(lib, write, backward_from):
    """``a`` (a non-leaf of 4 ones) and its view ``v = a[:2]``, ``v`` and ``a`` retaining
    grad as named, then ``write``; backward from ``backward_from(a, v)``; ``(a.grad, v.grad)``."""
    leaf = lib.ones(4, requires_grad=True)
    a = leaf * 1
    v = a[:2]
    for t, name in ((a, "a"), (v, "v")):
        if name in write.split(":")[0]:
            t.retain_grad()
    target = {"a": a, "v": v}[write.split(":")[1]]
    target.mul_(3)
    backward_from(a, v).backward()
    return [a.grad if a.retains_grad else None, v.grad if v.retains_grad else None,
            a.retains_grad, v.retains_grad]


@pytest.mark.parametrize("write", ["a:a", "v:v", "a:v", "v:a", "av:v", "av:a"])
@pytest.mark.parametrize("backward_from", ["base", "view", "both"])
def test_a_retained_grad_follows_the_tensor_through_an_in_place_write_as_in_torch(write,
                                                                                   backward_from):
    losses = {"base": lambda a, v: (a * a).sum(), "view": lambda a, v: (v * v).sum(),
              "both": lambda a, v: a.sum() + (v * v).sum()}
    assert_same_as_torch(lambda lib: retained(lib, write, losses[backward_from]))


def test_retain_grad_then_mul_gives_the_grad_of_the_current_version_as_in_torch():
    def program(lib):
        a = lib.ones(2, requires_grad=True) * 1
        a.retain_grad()
        a.mul_(2)
        a.sum().backward()
        return a.grad
    assert_same_as_torch(program)


# ---- expanded tensors ------------------------------------------------------------------

@pytest.mark.parametrize("write", [
    "e[0] = 1.0", "e[0, 1] = 7.0", "e[1:] = lib.ones(1, 3)", "e[0].add_(1.0)", "e.fill_(2.0)",
    "e.zero_()", "e.mul_(2.0)", "e[:] = 1.0", "e[:, 1] = 7.0", "e.copy_(lib.ones(2, 3))",
    "e.add_(lib.ones(2, 3))"])
def test_a_write_into_an_expanded_tensor_as_in_torch(write):
    def program(lib):
        base = lib.tensor([[1.0, 2.0, 3.0]])
        e = base.expand(2, 3)
        exec(write, {"lib": lib, "e": e})
        return [e, base, base._version]
    assert_same_as_torch(program)


def test_a_write_with_grad_into_an_expanded_tensor_as_in_torch():
    def program(lib):
        w = lib.tensor([4.0, 5.0, 6.0], requires_grad=True)
        base = lib.tensor([[1.0, 2.0, 3.0]]) * 1
        e = base.expand(2, 3)
        e[0] = w
        (base * lib.tensor([[1.0, 10.0, 100.0]])).sum().backward()
        return [e, base, w.grad]
    assert_same_as_torch(program)


def test_del_grad_leaves_none_as_in_torch():
    def program(lib):
        x = lib.ones(2, requires_grad=True)
        (x * 3).sum().backward()
        del x.grad
        first = x.grad
        (x * 2).sum().backward()
        return [first, x.grad]
    assert_same_as_torch(program)


def test_the_base_and_its_views_share_memory_after_writes():
    x = ckpt.zeros(2, 3)
    v = x.t()[1:]
    v.copy_(ckpt.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True))
    assert np.shares_memory(x.data, v.data) and x.tolist() == [[0.0, 1.0, 3.0], [0.0, 2.0, 4.0]]


def test_a_retained_grad_follows_an_input_a_custom_function_marks_dirty_as_in_torch():
    def program(lib):
        class Double(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.mark_dirty(x)
                return x.mul_(2)

            @staticmethod
            def backward(ctx, g):
                return g * 2
        a = lib.ones(2, requires_grad=True) * 1
        a.retain_grad()
        (Double.apply(a) * 3).sum().backward()
        return a.grad
    assert_same_as_torch(program)
