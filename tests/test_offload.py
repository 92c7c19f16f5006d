"""ckpt.autograd.graph.save_on_disk: saved tensors go to memory-mapped files and come back
bit for bit; resident saved memory drops to ~0; the files go when the graph does."""
import gc
import os

import numpy as np
import pytest

import ckpt
from ckpt import nn
from ckpt.autograd.graph import save_on_disk, saved_bytes


def mlp(seed=0):
    ckpt.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 64),
                         nn.Tanh(), nn.Linear(64, 8))


def step(hooks=None, create_graph=False):
    net = mlp()
    ckpt.manual_seed(7)
    x = ckpt.randn(256, 32)
    if hooks is None:
        loss = (net(x) ** 2).mean()
    else:
        with hooks:
            loss = (net(x) ** 2).mean()
    loss.backward(create_graph=create_graph)
    return [p.grad.data.copy() for p in net.parameters()]


def test_gradients_are_bit_identical(tmp_path):
    reference = step()
    got = step(save_on_disk(tmp_path))
    assert all(np.array_equal(a, b) for a, b in zip(reference, got))


def test_transposed_and_strided_saved_tensors_keep_values_and_layout(tmp_path):
    ckpt.manual_seed(0)
    a = ckpt.randn(16, 8, requires_grad=True)
    b = ckpt.randn(16, 8, requires_grad=True)
    results = []
    for hooks in (None, save_on_disk(tmp_path)):
        def f():
            at = a * 1.0   # non-leaf, so it is written
            return ((at.mT @ (b * 2.0)) * at[::2].sum()).sum()
        if hooks is None:
            y = f()
        else:
            with hooks:
                y = f()
        results.append(ckpt.autograd.grad(y, (a, b)))
    for g1, g2 in zip(*results):
        assert np.array_equal(g1.data, g2.data)


def test_double_backward_through_offloaded_tensors(tmp_path):
    x = ckpt.randn(5, requires_grad=True)
    grads = []
    for hooks in (None, save_on_disk(tmp_path)):
        if hooks is None:
            y = (x.sin() * x.exp()).sum()
        else:
            with hooks:
                y = (x.sin() * x.exp()).sum()
        (g,) = ckpt.autograd.grad(y, x, create_graph=True)
        (gg,) = ckpt.autograd.grad(g.sum(), x)
        grads.append((g.data, gg.data))
    for a, b in zip(*grads):
        assert np.array_equal(a, b)


def test_resident_saved_bytes_drop_to_about_zero(tmp_path):
    net = mlp()
    x = ckpt.randn(1024, 32)
    params = sum(p.nbytes for p in net.parameters())
    with ckpt.memory.track(net, x, tracemalloc=True) as stored:
        loss = (net(x) ** 2).mean()
        held_stored = saved_bytes(loss)
        loss.backward()
    del loss
    net.zero_grad()
    with ckpt.memory.track(net, x, tracemalloc=True) as offloaded:
        with save_on_disk(tmp_path):
            loss = (net(x) ** 2).mean()
        held_offloaded = saved_bytes(loss)
        files = len(os.listdir(tmp_path))
        loss.backward()
    # the graph keeps only parameters resident (they are in memory anyway, so not written)
    assert held_offloaded <= params < held_stored / 10
    assert files >= 6  # x, relu out, mask, dropout out, tanh out, output, ...
    saved_before = stored.category_peaks["saved_for_backward"]
    assert saved_before > 1024 * 64 * 4 * 3
    assert offloaded.category_peaks["saved_for_backward"] == 0
    # the activations left resident memory (they did not stay as something else): what is
    # left at the peak is parameters, gradients, x and what one Linear has alive at once
    # (its input, x @ W.T and + b)
    layer = 1024 * 64 * 4
    assert offloaded.peak_bytes <= 2 * params + x.nbytes + 3 * layer < stored.peak_bytes
    assert offloaded.tracemalloc_peak_bytes < 0.6 * stored.tracemalloc_peak_bytes


def test_files_are_removed_after_backward(tmp_path):
    net = mlp()
    with save_on_disk(tmp_path):
        loss = (net(ckpt.randn(64, 32)) ** 2).mean()
    assert len(os.listdir(tmp_path)) > 0
    loss.backward()
    assert os.listdir(tmp_path) == []


def test_files_are_removed_when_the_graph_is_freed_without_backward(tmp_path):
    net = mlp()
    with save_on_disk(tmp_path):
        loss = (net(ckpt.randn(64, 32)) ** 2).mean()
    assert len(os.listdir(tmp_path)) > 0
    del loss
    assert os.listdir(tmp_path) == []


def test_files_are_removed_after_an_exception(tmp_path):
    net = mlp()

    def failing_step():
        with save_on_disk(tmp_path):
            loss = (net(ckpt.randn(64, 32)) ** 2).mean()
            assert len(os.listdir(tmp_path)) > 0
            raise RuntimeError("out of budget")
        return loss

    with pytest.raises(RuntimeError, match="out of budget"):
        failing_step()
    gc.collect()  # the traceback held the frame (and the graph) until now
    assert os.listdir(tmp_path) == []

    def failing_backward():
        with save_on_disk(tmp_path):
            loss = (net(ckpt.randn(64, 32)) ** 2).mean()
        loss.backward(gradient=ckpt.ones(3))  # wrong shape: raises inside backward

    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        failing_backward()
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_temporary_directory_is_removed_with_its_last_file():
    hooks = save_on_disk()
    x = ckpt.randn(64, requires_grad=True)
    with hooks:
        y = (x * 1.0).exp().sum()
    directory = hooks._directory.path()
    assert os.path.isdir(directory) and len(os.listdir(directory)) == 1
    y.backward()
    assert os.listdir(directory) == []
    del hooks, y
    gc.collect()
    assert not os.path.exists(directory)


def test_unpacked_tensors_are_mapped_from_the_file(tmp_path):
    x = ckpt.randn(100, requires_grad=True)
    with save_on_disk(tmp_path):
        y = (x * 1.0).exp()
    (packed,) = [s.packed for s in y.grad_fn._saved]
    assert os.path.exists(packed.path) and os.path.getsize(packed.path) == 400
    assert isinstance(packed.load().base, np.memmap) or isinstance(packed.load(), np.memmap)
    del y


def test_a_tensor_saved_by_two_ops_is_written_once_until_it_changes(tmp_path):
    x = ckpt.randn(8, 4)
    w1 = ckpt.randn(4, 4, requires_grad=True)
    w2 = ckpt.randn(4, 4, requires_grad=True)
    with save_on_disk(tmp_path):
        h = (x @ w1).relu()      # relu saves h; h @ w2 saves h again (for w2's grad)
        out = (h @ w2).sum()     # x is saved by the first matmul: 2 files in all
    assert len(os.listdir(tmp_path)) == 2
    out.backward()
    assert os.listdir(tmp_path) == []
    y = ckpt.randn(6, requires_grad=True)
    with save_on_disk(tmp_path):
        z = y * 1.0
        a = z.exp() * z            # z saved by the product (exp saves its own output)
        z.mul_(2.0)                # z changes: saving it again must write the new values
        b = (z * z).sum()
    assert len(os.listdir(tmp_path)) == 3  # exp's output, z before, z after (once for b)
    b.backward()
    np.testing.assert_array_equal(y.grad.data, 8 * y.data)
    del a
