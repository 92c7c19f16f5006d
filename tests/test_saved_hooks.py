"""Saved-tensor hooks (ckpt.autograd.graph.saved_tensors_hooks) and saved-bytes accounting."""
from collections import Counter

import numpy as np
import pytest
import torch

import ckpt
from ckpt.autograd import Function
from ckpt.autograd.graph import saved_bytes, saved_tensors_hooks

from conftest import assert_close, to_torch
from test_ops_gradcheck import CASES, _make_inputs
import test_nn_ops


class Recorder:
    """Pack to a private numpy copy, unpack from it; count both."""

    def __init__(self):
        self.packed = []    # the tensors handed to pack, in order
        self.unpacked = []  # the handles handed to unpack

    def pack(self, t):
        self.packed.append(t)
        return (len(self.packed) - 1, t.data.copy())

    def unpack(self, handle):
        self.unpacked.append(handle[0])
        return ckpt.Tensor(handle[1])

    def hooks(self):
        return saved_tensors_hooks(self.pack, self.unpack)


def _mlp(x, w1, b1, w2, b2, target):
    h = (x @ w1 + b1).relu()
    out = h @ w2 + b2
    return ((out - target) ** 2).mean()


def _mlp_inputs(rng, x_requires_grad=False):
    shapes = [(4, 3), (3, 5), (5,), (5, 2), (2,), (4, 2)]
    arrays = [rng.standard_normal(s) for s in shapes]
    grads = [x_requires_grad, True, True, True, True, False]
    return [ckpt.Tensor(a, requires_grad=g) for a, g in zip(arrays, grads)]


def test_mlp_every_save_packed_once_and_unpacked_by_backward(rng):
    x, w1, b1, w2, b2, target = _mlp_inputs(rng)
    rec = Recorder()
    with rec.hooks():
        loss = _mlp(x, w1, b1, w2, b2, target)
    # matmul saves each factor only when the other needs a gradient (as torch does): x @ w1
    # keeps x (for w1's grad) but not w1, since x needs none; h @ w2 keeps both. relu saves
    # its output, pow (** 2) its base: 5 saves
    assert [tuple(t.shape) for t in rec.packed] == [(4, 3), (4, 5), (4, 5), (5, 2), (4, 2)]
    assert rec.packed[0] is x and rec.packed[3] is w2
    assert rec.unpacked == []  # nothing is unpacked before backward needs it
    loss.backward()
    assert sorted(rec.unpacked) == list(range(5))  # each exactly once
    assert len(rec.packed) == 5  # backward packed nothing new


@pytest.mark.parametrize("x_requires_grad", [False, True])
def test_mlp_pack_and_unpack_counts_match_torch(rng, x_requires_grad):
    leaves = _mlp_inputs(rng, x_requires_grad=x_requires_grad)
    counts = {}
    for lib, hooks_cls, make in ((ckpt, saved_tensors_hooks,
                                  lambda t: ckpt.Tensor(t.data.copy(), requires_grad=t.requires_grad)),
                                 (torch, torch.autograd.graph.saved_tensors_hooks, to_torch)):
        n = {"pack": 0, "unpack": 0}

        def pack(t, n=n):
            n["pack"] += 1
            return t

        def unpack(t, n=n):
            n["unpack"] += 1
            return t

        inputs = [make(t) for t in leaves]
        with hooks_cls(pack, unpack):
            loss = _mlp(*inputs)
        loss.backward()
        counts[lib.__name__] = n
    assert counts["ckpt"] == counts["torch"]


def test_numpy_offload_gives_identical_gradients(rng):
    inputs = _mlp_inputs(rng, x_requires_grad=True)
    _mlp(*inputs).backward()
    expected = [t.grad.data.copy() if t.grad is not None else None for t in inputs]
    for t in inputs:
        t.grad = None
    with saved_tensors_hooks(lambda t: t.detach().numpy().copy(), lambda a: ckpt.Tensor(a)):
        loss = _mlp(*inputs)
    loss.backward()
    for t, e in zip(inputs, expected):
        if e is None:
            assert t.grad is None
        else:
            np.testing.assert_array_equal(t.grad.data, e)


def _wipe(a):
    """Overwrite ``a`` with values no computation should read: NaN; for integers (indices) a
    value far out of range; for booleans (masks, conditions) their negation."""
    if a.dtype.kind in "fc":
        a[...] = np.nan
    elif a.dtype.kind == "b":
        np.logical_not(a, out=a)
    else:
        a[...] = np.iinfo(a.dtype).max // 2


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_op_saves_only_through_hooks(case):
    """Per op: with hooks that copy at pack time, wiping every original buffer (inputs,
    outputs and whatever was packed) before backward leaves the gradients bit-identical, and
    every packed tensor is unpacked exactly once. An op that kept a tensor outside the hooks
    would read the wiped values."""
    _check_saves_only_through_hooks(case[1], _make_inputs(case[2], seed=3))


@pytest.mark.parametrize("case", test_nn_ops.CASES, ids=[c[0] for c in test_nn_ops.CASES])
def test_every_nn_op_saves_only_through_hooks(case):
    """As above for the nn ops (losses, normalizations, convolution, pooling, embedding,
    dropout): their statistics, masks, targets and weights go through the hooks too."""
    fn, inputs = case[1](np.random.default_rng(3))
    _check_saves_only_through_hooks(fn, inputs)


def _check_saves_only_through_hooks(fn, inputs):
    def run(hooked):
        ins = [ckpt.Tensor(t.data.copy(), requires_grad=t.requires_grad) for t in inputs]
        rec = Recorder()
        if hooked:
            with rec.hooks():
                outs = fn(*ins)
        else:
            outs = fn(*ins)
        outs = outs if isinstance(outs, tuple) else (outs,)
        cots = [ckpt.Tensor(np.random.default_rng(1).standard_normal(o.shape)) for o in outs]
        if hooked:
            for t in list(ins) + list(outs) + rec.packed:
                if t.data.flags.writeable:  # (broadcast views are read-only; their base is wiped)
                    _wipe(t.data)  # in place, behind the version counter's back
        ckpt.autograd.backward(list(outs), cots)
        return [t.grad for t in ins], rec

    expected, _ = run(hooked=False)
    got, rec = run(hooked=True)
    for e, g in zip(expected, got):
        assert (e is None) == (g is None)
        if e is not None:
            np.testing.assert_array_equal(g.data, e.data)
    assert sorted(rec.unpacked) == list(range(len(rec.packed)))


def _argument_cases(lib):
    """Ops whose backward needs a tensor argument that gets no gradient: a condition, an
    index or mask, the indices max returns, class targets and weights. Each returns
    ``(loss, argument)`` for ``lib`` (ckpt or torch) on the same values."""
    F = ckpt.nn.functional if lib is ckpt else torch.nn.functional

    def x():
        return lib.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], requires_grad=True)

    def where():
        cond = lib.tensor([[True, False, True], [False, True, False]])
        return lib.where(cond, x(), 0.0).sum(), cond

    def index():
        idx = lib.tensor([1, 0, 1])
        return (x()[idx] * lib.tensor([1.0, 2.0, 3.0]).reshape(3, 1)).sum(), idx

    def mask():
        m = lib.tensor([[True, False, True], [False, True, True]])
        return (x()[m] * lib.arange(4.0)).sum(), m

    def setitem():
        idx = lib.tensor([2, 0])
        y = x() * 1.0
        y[0, idx] = lib.tensor([5.0, 6.0], requires_grad=True)
        return (y * y).sum(), idx

    def max_indices():
        values, indices = x().max(1)
        return (values * lib.tensor([1.0, 2.0])).sum(), indices

    def nll_target():
        target = lib.tensor([2, 0])
        return F.nll_loss(x(), target, weight=lib.tensor([1.0, 2.0, 3.0])), target

    def nll_weight():
        weight = lib.tensor([1.0, 2.0, 3.0])
        return F.nll_loss(x(), lib.tensor([2, 0]), weight=weight), weight

    return {"where": where, "index": index, "mask": mask, "setitem": setitem,
            "max_indices": max_indices, "nll_target": nll_target, "nll_weight": nll_weight}


ARGUMENT_CASES = list(_argument_cases(ckpt))


@pytest.mark.parametrize("name", ARGUMENT_CASES)
def test_tensor_arguments_are_saved_through_the_hooks(name):
    """The argument is handed to pack (not kept beside the hooks), the graph's saved bytes
    count it, and changing it in place before backward raises the version error, as in torch."""
    rec = Recorder()
    with rec.hooks():
        loss, arg = _argument_cases(ckpt)[name]()
    assert any(t is arg for t in rec.packed)
    assert saved_bytes(loss.grad_fn) >= arg.data.nbytes
    loss.backward()
    assert len(rec.unpacked) == len(rec.packed)

    for lib in (ckpt, torch):
        loss, arg = _argument_cases(lib)[name]()
        with lib.no_grad():
            arg[...] = ~arg if arg.dtype == lib.bool else 2 - arg
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_nested_hooks_innermost_wins():
    outer, inner = Recorder(), Recorder()
    x = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64, requires_grad=True)
    with outer.hooks():
        a = x.exp()  # outer
        with inner.hooks():
            b = a * a  # inner (2 saves)
            c = b.sin()  # inner
        d = c.tanh()  # outer again
    assert len(outer.packed) == 2 and len(inner.packed) == 3
    d.sum().backward()
    assert sorted(outer.unpacked) == [0, 1] and sorted(inner.unpacked) == [0, 1, 2]
    tx = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    ta = tx.exp()
    (ta * ta).sin().tanh().sum().backward()
    assert_close(x.grad, tx.grad)


def test_hooks_inactive_outside_context():
    rec = Recorder()
    x = ckpt.ones(2, requires_grad=True)
    with rec.hooks():
        pass
    (x * x).sum().backward()
    assert rec.packed == []


def test_pack_receives_the_saved_tensor_itself():
    seen = []
    x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    with saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        y = x * x
        e = y.exp()
    assert len(seen) == 3
    assert seen[0] is x and seen[1] is x  # inputs: the tensor itself
    assert seen[2] is e  # the op's own output


def test_unpack_must_return_tensor():
    x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    with saved_tensors_hooks(lambda t: t.data.copy(), lambda a: a):  # returns a bare ndarray
        y = (x * x).sum()
    with pytest.raises(TypeError, match="unpack_hook expected to be a Tensor"):
        y.backward()


def test_version_check_still_applies_with_hooks():
    a = ckpt.randn(3, requires_grad=True)
    x = a * 1
    with saved_tensors_hooks(lambda t: t.data.copy(), lambda d: ckpt.Tensor(d)):
        y = (x * x).sum()
    x.add_(1.0)
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation.*\[3\].*is at version 1; expected version 0"):
        y.backward()


def test_retain_graph_unpacks_again():
    rec = Recorder()
    x = ckpt.tensor([0.5, 1.5], dtype=ckpt.float64, requires_grad=True)
    with rec.hooks():
        y = x.sin().sum()
    y.backward(retain_graph=True)
    y.backward()
    assert rec.unpacked == [0, 0]
    np.testing.assert_allclose(x.grad.data, 2 * np.cos([0.5, 1.5]))


def test_custom_function_saves_go_through_hooks():
    class Cube(Function):
        @staticmethod
        def forward(ctx, x, y):
            out = x ** 3 * y
            ctx.save_for_backward(x, y, out)
            return out

        @staticmethod
        def backward(ctx, g):
            x, y, out = ctx.saved_tensors
            return g * 3 * x ** 2 * y, g * out / y

    rec = Recorder()
    x = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64, requires_grad=True)
    y = ckpt.tensor([3.0, 4.0], dtype=ckpt.float64, requires_grad=True)
    with rec.hooks():
        z = Cube.apply(x, y)
    assert len(rec.packed) == 3 and rec.packed[0] is x and rec.packed[1] is y
    for t in (x, y, z):  # wipe the originals: backward must use the packed copies
        t.data[...] = np.nan
    z.sum().backward()
    assert sorted(rec.unpacked) == [0, 1, 2]
    assert x.grad.tolist() == [9.0, 48.0] and y.grad.tolist() == [1.0, 8.0]


def test_create_graph_through_hooked_saves(rng):
    def f(lib, x):
        return (x.sin() * x.exp() + x ** 3).sum()

    data = rng.standard_normal(3)
    x = ckpt.Tensor(data.copy(), requires_grad=True)
    rec = Recorder()
    with rec.hooks():
        y = f(ckpt, x)
    (g,) = ckpt.autograd.grad(y, x, create_graph=True)
    rows = [ckpt.autograd.grad(g[i], x, retain_graph=True)[0].data for i in range(3)]
    expected = torch.autograd.functional.hessian(lambda t: f(torch, t), torch.from_numpy(data))
    assert_close(np.stack(rows), expected)
    assert len(rec.packed) == 5  # sin: x; exp: its output; mul: both factors; pow: x
    assert sorted(set(rec.unpacked)) == list(range(5))


def test_create_graph_hooked_saves_of_leaf_reach_the_leaf():
    """The unpacked tensor must keep the leaf's place in the graph, so a gradient of the
    gradient flows back to the leaf."""
    x = ckpt.tensor([2.0], dtype=ckpt.float64, requires_grad=True)
    with saved_tensors_hooks(lambda t: t.data.copy(), lambda d: ckpt.Tensor(d)):
        y = x * x * x
    (g,) = ckpt.autograd.grad(y, x, create_graph=True)
    (gg,) = ckpt.autograd.grad(g, x)
    assert g.tolist() == [12.0] and gg.tolist() == [12.0]


# ---- saved bytes --------------------------------------------------------------------------

def test_saved_bytes_counts_each_buffer_once():
    a = ckpt.randn(4, 3, dtype=ckpt.float64, requires_grad=True)  # 96 bytes
    m = a.exp()                    # saves its output E (96 bytes)
    n = m.T                        # a view of E
    w = m * n.T                    # saves m and a view of a view of E
    assert w.grad_fn.saved_bytes() == 96
    assert m.grad_fn.saved_bytes() == 96
    q = n.sin()                    # saves the view n
    total = w.sum() + q.sum()
    assert saved_bytes(total) == 96  # E, counted once across three nodes
    r = a * a                      # saves a twice: one more buffer
    assert r.grad_fn.saved_bytes() == 96
    assert saved_bytes(total + r.sum()) == 192
    assert saved_bytes([total, r]) == 192
    assert total.grad_fn.saved_bytes() == 0  # AddBackward0 keeps nothing


def test_saved_bytes_of_slices_counts_the_whole_buffer():
    """A saved slice keeps its whole base buffer alive, so the base's bytes are counted."""
    x = ckpt.randn(10, 10, dtype=ckpt.float64, requires_grad=True)
    h = x * 1
    y = h[0:2].exp() * h[5]  # mul saves exp's fresh (2, 10) output and h[5], a view into h
    assert y.grad_fn.saved_bytes() == 2 * 10 * 8 + 10 * 10 * 8


def test_saved_bytes_with_hooks_still_counts_original_buffers():
    a = ckpt.randn(8, dtype=ckpt.float64, requires_grad=True)  # 64 bytes
    with saved_tensors_hooks(lambda t: t.data.copy(), lambda d: ckpt.Tensor(d)):
        y = a.exp()[::2] * a[::2]
    assert saved_bytes(y) == 64 + 64  # exp's output and a (both viewed), each once


def test_saved_bytes_float32_and_function():
    class Keep(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, x[1:])
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = ckpt.ones(5, requires_grad=True)  # float32: 20 bytes
    y = Keep.apply(x)
    assert y.grad_fn.saved_bytes() == 20


@pytest.mark.parametrize("training", [True, False])
def test_normalization_statistics_are_saved_through_the_hooks(training):
    """layer_norm and batch_norm save their statistics (per row / per channel mean and rstd)
    through the hooks, as torch does, besides the input and the weight."""
    F = ckpt.nn.functional
    rec = Recorder()
    with rec.hooks():
        F.layer_norm(ckpt.ones(3, 4, requires_grad=True), (4,), ckpt.ones(4, requires_grad=True))
    assert [tuple(t.shape) for t in rec.packed] == [(3, 4), (4,), (3, 1), (3, 1)]

    rec, torch_sizes = Recorder(), []
    args = dict(running_mean=ckpt.zeros(2), running_var=ckpt.ones(2), training=training)
    with rec.hooks():
        F.batch_norm(ckpt.ones(5, 2, 3, requires_grad=True), weight=ckpt.ones(2, requires_grad=True),
                     **args)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: torch_sizes.append(t.numel()) or t,
                                                  lambda t: t):
        torch.nn.functional.batch_norm(
            torch.ones(5, 2, 3, requires_grad=True), torch.zeros(2), torch.ones(2),
            weight=torch.ones(2, requires_grad=True), training=training)
    assert [tuple(t.shape) for t in rec.packed] == [(5, 2, 3), (2,), (1, 2, 1), (1, 2, 1)]
    # torch saves these too (and the running statistics, which ckpt's backward doesn't read)
    assert not Counter(t.data.size for t in rec.packed) - Counter(torch_sizes)
