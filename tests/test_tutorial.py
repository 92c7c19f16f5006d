"""The behaviours a PyTorch autograd tutorial teaches, and the Tensor API basics."""
import numpy as np
import pytest
import torch

import ckpt

from conftest import assert_close, to_torch


# ---- the classic examples -----------------------------------------------------------------

def test_a_times_a_plus_2():
    a = ckpt.tensor([1.0], requires_grad=True)
    c = a * (a + 2)
    c.backward()
    assert a.grad.tolist() == [4.0]  # dc/da = 2a + 2


def test_vector_jacobian_product_with_gradient_argument():
    x = ckpt.ones(3, requires_grad=True)
    f = 8 * x ** 2
    f.backward(gradient=[1.0, 2.0, 3.0])  # a list works as the vector, like torch.tensor(...)
    assert x.grad.tolist() == [16.0, 32.0, 48.0]
    x2 = ckpt.ones(3, requires_grad=True)
    (8 * x2 ** 2).backward(ckpt.tensor([1.0, 2.0, 3.0]))
    assert x2.grad.tolist() == [16.0, 32.0, 48.0]


def test_three_stacked_linear_maps(rng):
    w1, w2, w3 = rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((2, 5))
    W1, W2, W3 = (ckpt.Tensor(w, requires_grad=True) for w in (w1, w2, w3))
    x = ckpt.Tensor(rng.standard_normal(3), requires_grad=True)
    y = W3 @ (W2 @ (W1 @ x))
    y.backward(ckpt.ones(2, dtype=ckpt.float64))
    # d(sum_i y_i)/dx = 1^T W3 W2 W1: the column sums of the product
    np.testing.assert_allclose(x.grad.data, (w3 @ w2 @ w1).sum(axis=0), rtol=1e-12)
    # and the weights' gradients agree with torch
    T1, T2, T3, tx = (to_torch(t) for t in (W1, W2, W3, x))
    (T3 @ (T2 @ (T1 @ tx))).backward(torch.ones(2, dtype=torch.float64))
    for ours, theirs in ((W1, T1), (W2, T2), (W3, T3)):
        assert_close(ours.grad, theirs.grad)


@pytest.mark.parametrize("bias", [False, True])
def test_three_stacked_linear_layers(rng, bias):
    """The same example with nn.Linear layers and a batch of inputs. With bias the map is
    affine, x -> W3 W2 W1 x + const, so dy/dx (and x.grad) is the same as without bias."""
    ckpt.manual_seed(0)
    L1, L2, L3 = (ckpt.nn.Linear(i, o, bias=bias, dtype=ckpt.float64)
                  for i, o in ((3, 4), (4, 5), (5, 2)))
    xs = rng.standard_normal((6, 3))
    x = ckpt.Tensor(xs, requires_grad=True)
    y = L3(L2(L1(x)))
    assert y.shape == (6, 2)
    y.backward(ckpt.ones_like(y))
    w1, w2, w3 = (L.weight.data for L in (L1, L2, L3))
    # every row of x.grad is 1^T W3 W2 W1: the column sums of the product (numpy, independent)
    expected = np.broadcast_to((w3 @ w2 @ w1).sum(axis=0), xs.shape)
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-12, atol=1e-14)
    # torch, with the same weights (and biases), agrees
    T = [torch.nn.Linear(L.in_features, L.out_features, bias=bias, dtype=torch.float64)
         for L in (L1, L2, L3)]
    with torch.no_grad():
        for t, L in zip(T, (L1, L2, L3)):
            t.weight.copy_(torch.from_numpy(L.weight.data))
            if bias:
                t.bias.copy_(torch.from_numpy(L.bias.data))
    tx = to_torch(x)
    ty = T[2](T[1](T[0](tx)))
    assert_close(y, ty)
    ty.backward(torch.ones_like(ty))
    assert_close(x.grad, tx.grad)
    for L, t in zip((L1, L2, L3), T):
        assert_close(L.weight.grad, t.weight.grad)


# ---- leaves and requires_grad -------------------------------------------------------------

def test_is_leaf_and_requires_grad_propagation():
    a = ckpt.randn(3, requires_grad=True)
    b = ckpt.randn(3)
    assert a.is_leaf and a.requires_grad and a.grad_fn is None
    assert b.is_leaf and not b.requires_grad
    c = a * b
    assert c.requires_grad and not c.is_leaf and c.grad_fn is not None
    d = b * 2 + b.exp()
    assert not d.requires_grad and d.is_leaf and d.grad_fn is None
    e = d + c
    assert e.requires_grad and not e.is_leaf
    with ckpt.no_grad():
        f = a * 2
    assert not f.requires_grad and f.is_leaf
    g = ckpt.randn(2).requires_grad_()
    assert g.requires_grad and g.is_leaf
    e.sum().backward()
    assert a.grad is not None and b.grad is None
    with pytest.warns(UserWarning, match="not a leaf Tensor is being accessed"):
        assert c.grad is None  # non-leaf grads not kept; reading one warns, as in torch


def test_requires_grad_errors():
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        ckpt.arange(3).requires_grad_()
    with pytest.raises(RuntimeError, match="only Tensors of floating point"):
        ckpt.tensor([1, 2], requires_grad=True)
    y = ckpt.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="you can only change requires_grad flags of leaf variables"):
        y.requires_grad_(False)
    leaf = ckpt.ones(2, requires_grad=True)
    leaf.requires_grad_(False)
    assert not leaf.requires_grad


def test_detach_shares_data_and_version_but_not_grad():
    x = ckpt.randn(3, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    assert np.shares_memory(d.data, y.data)
    v0 = y._version
    d.add_(1.0)  # in place through the detached alias
    assert y._version == v0 + 1 and d._version == y._version
    np.testing.assert_array_equal(y.data, d.data)
    dx = x.detach()
    dx[0] = 100.0
    assert x.data[0] == 100.0


def test_inplace_through_detached_alias_is_caught():
    x = ckpt.randn(3, requires_grad=True)
    e = x * 1
    y = e * e  # saves e
    e.detach().mul_(3.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


# ---- grad modes ---------------------------------------------------------------------------

def test_no_grad_enable_grad_contexts():
    x = ckpt.ones(2, requires_grad=True)
    with ckpt.no_grad():
        assert not ckpt.is_grad_enabled()
        assert not (x * 2).requires_grad
        with ckpt.enable_grad():
            assert ckpt.is_grad_enabled()
            assert (x * 2).requires_grad
        assert not ckpt.is_grad_enabled()
    assert ckpt.is_grad_enabled()
    assert (x * 2).requires_grad


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with ckpt.no_grad():
            raise ValueError("boom")
    assert ckpt.is_grad_enabled()


def test_set_grad_enabled():
    x = ckpt.ones(2, requires_grad=True)
    with ckpt.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert ckpt.is_grad_enabled()
    with ckpt.no_grad():
        with ckpt.set_grad_enabled(True):
            assert (x * 2).requires_grad
        assert not ckpt.is_grad_enabled()
    ckpt.set_grad_enabled(False)  # a plain call takes effect immediately, as in torch
    try:
        assert not ckpt.is_grad_enabled()
    finally:
        ckpt.set_grad_enabled(True)
    assert ckpt.is_grad_enabled()
    with pytest.raises(TypeError):
        ckpt.set_grad_enabled("yes")


def test_inference_mode_context():
    x = ckpt.ones(2, requires_grad=True)
    with ckpt.inference_mode():
        y = x * 2
        assert not ckpt.is_grad_enabled()
    assert not y.requires_grad
    with ckpt.no_grad():
        with ckpt.inference_mode(False):  # torch: InferenceMode(false) enables grad mode
            assert ckpt.is_grad_enabled()
    with torch.no_grad(), torch.inference_mode(False):
        assert torch.is_grad_enabled()  # the oracle for the line above


def test_grad_modes_as_decorators():
    x = ckpt.ones(2, requires_grad=True)

    @ckpt.no_grad()
    def f_no():
        """doc"""
        return x * 2

    @ckpt.no_grad
    def f_bare():
        return x * 2

    @ckpt.enable_grad()
    def f_en():
        return x * 2

    @ckpt.enable_grad
    def f_en_bare():
        return x * 2

    @ckpt.set_grad_enabled(False)
    def f_set():
        return x * 2

    @ckpt.inference_mode()
    def f_inf():
        return x * 2

    @ckpt.inference_mode
    def f_inf_bare():
        return x * 2

    assert ckpt.is_grad_enabled()  # decorating changed nothing
    assert f_no.__name__ == "f_no" and f_no.__doc__ == "doc"
    for fn in (f_no, f_bare, f_set, f_inf, f_inf_bare):
        assert not fn().requires_grad, fn.__name__
        assert ckpt.is_grad_enabled()
    with ckpt.no_grad():
        assert f_en().requires_grad and f_en_bare().requires_grad
        assert not ckpt.is_grad_enabled()

    calls = []

    @ckpt.no_grad()
    def recursive(n):
        calls.append(ckpt.is_grad_enabled())
        return recursive(n - 1) if n else (x * 2)

    assert not recursive(3).requires_grad and calls == [False] * 4
    assert ckpt.is_grad_enabled()


# ---- accumulation, hooks, retain_grad -------------------------------------------------------

def test_grad_accumulates_across_backward_calls():
    x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    first = x.grad.tolist()
    (3 * x).sum().backward()
    assert first == [2.0, 4.0]
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad.zero_()
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]
    x.grad = None
    (3 * x).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_grad_is_not_aliased_with_broadcast_memory():
    """A leaf's .grad must be its own writable array even when the gradient came from an
    expand (whose gradient of a sum is a broadcast view of ones)."""
    x = ckpt.ones(3, requires_grad=True)
    x.sum().backward()
    x.grad.data[0] = 7.0  # must not raise (read-only broadcast) nor touch other memory
    assert x.grad.tolist() == [7.0, 1.0, 1.0]
    w = ckpt.ones(1, requires_grad=True)
    (w.expand(4) * 1).sum().backward()
    assert w.grad.tolist() == [4.0]


def test_tensor_hooks_modify_and_remove():
    x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    h_leaf = x.register_hook(lambda g: g * 10)
    y = x * 3
    h_mid = y.register_hook(lambda g: seen.append(g.tolist()))  # returns None: grad unchanged
    h_mid2 = y.register_hook(lambda g: g + 1)
    (y * y).sum().backward()
    # dL/dy = 2y = [6, 12]; +1 -> [7, 13]; through *3 -> [21, 39]; leaf hook *10
    assert seen == [[6.0, 12.0]]
    assert x.grad.tolist() == [210.0, 390.0]
    h_leaf.remove()
    h_mid.remove()
    h_mid2.remove()
    h_mid2.remove()  # removing twice is harmless
    x.grad = None
    y = x * 3
    (y * y).sum().backward()
    assert x.grad.tolist() == [18.0, 36.0]
    assert seen == [[6.0, 12.0]]


def test_tensor_hooks_match_torch(rng):
    def program(lib, x):
        x.register_hook(lambda g: g * 2)
        y = x.exp()
        y.register_hook(lambda g: g - 1)
        z = y * x
        z.register_hook(lambda g: g * g)
        z.sum().backward()
        return x.grad

    data = rng.standard_normal(4)
    ours = program(ckpt, ckpt.Tensor(data.copy(), requires_grad=True))
    theirs = program(torch, torch.tensor(data, requires_grad=True))
    assert_close(ours, theirs)


def test_register_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="cannot register a hook on a tensor that doesn't require gradient"):
        ckpt.ones(2).register_hook(lambda g: g)


def test_retain_grad():
    x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    z = y * 3
    y.retain_grad()
    assert y.retains_grad and not z.retains_grad
    z.sum().backward(retain_graph=True)
    assert y.grad.tolist() == [3.0, 3.0]
    with pytest.warns(UserWarning, match="use .retain_grad()"):
        assert z.grad is None
    x.retain_grad()  # a no-op on leaves
    assert not x.retains_grad
    z2 = y * 3
    z2.sum().backward()
    assert y.grad.tolist() == [6.0, 6.0]  # retained grads accumulate like leaf grads
    with pytest.raises(RuntimeError, match="can't retain_grad on Tensor that has requires_grad=False"):
        ckpt.ones(2).retain_grad()


def test_retain_grad_sees_hooked_grad_like_torch():
    def program(lib, data):
        x = lib.tensor(data, requires_grad=True)
        y = x * 2
        y.retain_grad()
        y.register_hook(lambda g: g * 5)
        (y * y).sum().backward()
        return y.grad, x.grad

    data = [1.0, -2.0]
    (ay, ax), (ty, tx) = program(ckpt, data), program(torch, data)
    assert_close(ay, ty)
    assert_close(ax, tx)


def test_node_prehook_and_posthook():
    x = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64, requires_grad=True)
    y = x * x
    z = y.exp()
    log = []

    def pre(grad_outputs):
        log.append(("pre", [g.tolist() for g in grad_outputs]))
        return (grad_outputs[0] * 0 + 1,)  # replace d/dy with ones

    def post(grad_inputs, grad_outputs):
        log.append(("post", [g.tolist() if g is not None else None for g in grad_inputs],
                    [g.tolist() for g in grad_outputs]))
        return tuple(g * 2 if g is not None else None for g in grad_inputs)

    h_pre = y.grad_fn.register_prehook(pre)
    h_post = y.grad_fn.register_hook(post)
    z.sum().backward(retain_graph=True)
    e = np.exp([1.0, 4.0]).tolist()
    assert log[0] == ("pre", [e])
    # MulBackward0 of x * x gives (g * x, g * x) = ([1, 2], [1, 2]); the post hook doubles both
    assert log[1] == ("post", [[1.0, 2.0], [1.0, 2.0]], [[1.0, 1.0]])
    assert x.grad.tolist() == [4.0, 8.0]
    h_pre.remove()
    h_post.remove()
    x.grad = None
    z.sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.array([1.0, 2.0]) * np.array(e))
    assert len(log) == 2


def test_node_hooks_match_torch():
    def program(lib):
        x = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        w = lib.tensor([0.5, -1.0, 2.0], requires_grad=True)
        y = x * w
        y.grad_fn.register_prehook(lambda gos: (gos[0] * 3,))
        y.grad_fn.register_hook(lambda gis, gos: (gis[0] + 1, gis[1]))
        y.tanh().sum().backward()
        return x.grad, w.grad

    (ax, aw), (tx, tw) = program(ckpt), program(torch)
    assert_close(ax, tx)
    assert_close(aw, tw)


# ---- the Tensor API -------------------------------------------------------------------------

def test_tensor_dtype_inference():
    assert ckpt.tensor([1.0, 2.0]).dtype == np.float32
    assert ckpt.tensor(1.5).dtype == np.float32
    assert ckpt.tensor([1, 2]).dtype == np.int64
    assert ckpt.tensor([1, 2.0]).dtype == np.float32
    assert ckpt.tensor([True, False]).dtype == np.bool_
    for dt in (np.float64, np.float16, np.int32, np.uint8, np.float32):
        assert ckpt.tensor(np.zeros(2, dtype=dt)).dtype == dt
    assert ckpt.tensor(np.float64(2.0)).dtype == np.float64
    assert ckpt.tensor([1, 2], dtype=ckpt.float64).dtype == np.float64
    # the same as torch where the concept is shared
    for value in ([1.0], [1], 3, 2.5, [[1, 2], [3, 4]], [True]):
        assert str(ckpt.tensor(value).dtype) == str(torch.tensor(value).dtype).replace("torch.", "")


def test_tensor_copies_its_input():
    a = np.zeros(3)
    t = ckpt.tensor(a)
    t.data[0] = 1.0
    assert a[0] == 0.0
    shared = ckpt.from_numpy(a)
    shared.data[1] = 2.0
    assert a[1] == 2.0


def test_factories():
    z = ckpt.zeros(2, 3)
    assert z.shape == (2, 3) and z.dtype == np.float32 and not z.data.any()
    assert ckpt.zeros((2, 3)).shape == (2, 3)
    o = ckpt.ones(4, dtype=ckpt.float64, requires_grad=True)
    assert o.dtype == np.float64 and o.requires_grad and o.data.sum() == 4
    r = ckpt.randn(3, 4)
    assert r.shape == (3, 4) and r.dtype == np.float32
    ckpt.manual_seed(7)
    a = ckpt.randn(5).tolist()
    ckpt.manual_seed(7)
    assert ckpt.randn(5).tolist() == a
    assert ckpt.randn(2, dtype=ckpt.float64).dtype == np.float64
    assert ckpt.arange(4).tolist() == [0, 1, 2, 3] and ckpt.arange(4).dtype == np.int64
    assert ckpt.arange(1, 7, 2).tolist() == [1, 3, 5]
    assert ckpt.arange(0, 1, 0.25).dtype == np.float32
    np.testing.assert_allclose(ckpt.arange(0, 1, 0.25).data, [0, 0.25, 0.5, 0.75])


def test_conversions():
    t = ckpt.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.numpy() is t.data  # shares memory, like torch
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert ckpt.tensor([2.5]).item() == 2.5 and isinstance(ckpt.tensor([2.5]).item(), float)
    assert isinstance(ckpt.tensor(3).item(), int)
    with pytest.raises(RuntimeError, match="a Tensor with 4 elements cannot be converted to Scalar"):
        t.item()
    with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad"):
        ckpt.ones(2, requires_grad=True).numpy()
    assert ckpt.ones(2, requires_grad=True).detach().numpy().tolist() == [1.0, 1.0]
    v = t._version
    assert t.zero_() is t
    assert t.tolist() == [[0.0, 0.0], [0.0, 0.0]] and t._version == v + 1
    assert float(ckpt.tensor(1.5)) == 1.5 and int(ckpt.tensor(3)) == 3
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(ckpt.ones(2))


def test_metadata():
    t = ckpt.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.size() == (2, 3, 4) and t.size(1) == 3
    assert t.ndim == 3 and t.dim() == 3 and t.numel() == 24 and len(t) == 2
    assert t.nbytes == 96 and t.element_size() == 4
    assert t.device == "cpu"
    assert repr(ckpt.tensor([1.0, 2.0], requires_grad=True)) == "tensor([1., 2.], requires_grad=True)"
    assert "grad_fn=<MulBackward0>" in repr(ckpt.ones(1, requires_grad=True) * 2)
