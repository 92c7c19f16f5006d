"""nn ops (losses, normalization, dropout, embedding, im2col/col2im, conv, pooling):
gradcheck and gradgradcheck in float64, differential tests against torch.nn.functional
(values, first and second derivatives), batch-norm running statistics, dropout's RNG
replay, and error messages."""
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, strategies as st

import ckpt
import ckpt.nn.functional as F
from ckpt.autograd import gradcheck, gradgradcheck
from ckpt.autograd.gradcheck import GradcheckError
from ckpt.autograd.ops.nn import conv as nn_conv, norm as nn_norm
from ckpt.nn.grad import conv2d_input, conv2d_weight

F64 = np.float64


# ---- helpers --------------------------------------------------------------------------

def leaf(rng, *shape, scale=1.0, dtype=F64):
    return ckpt.Tensor((rng.standard_normal(shape) * scale).astype(dtype), requires_grad=True)


def distinct(rng, *shape, gap=0.05):
    """A leaf with no two values closer than ``gap`` (no ties for max pooling)."""
    n = int(np.prod(shape))
    vals = rng.permutation(n) * gap + rng.uniform(0, gap / 4, n) - n * gap / 2
    return ckpt.Tensor(vals.reshape(shape), requires_grad=True)


def positive(rng, *shape):
    return ckpt.Tensor(rng.uniform(0.5, 1.5, shape), requires_grad=False)


def indices(rng, high, *shape):
    return ckpt.tensor(rng.integers(0, high, shape))


def twin(x):
    """A torch copy of a ckpt tensor (leaf, same requires_grad); other values pass through."""
    if isinstance(x, ckpt.Tensor):
        return torch.tensor(x.data.copy(), requires_grad=x.requires_grad)
    return x


def close(a, b, rtol=1e-10, atol=1e-12, what=""):
    a = a.data if isinstance(a, ckpt.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


def against_torch(ours, theirs, args, kwargs=None, rng=None, second_order=True, rtol=1e-10,
                  atol=1e-12):
    """Compare value, gradients of every differentiable input and (optionally) the
    gradient of <grad, v> (a Hessian-vector product) with torch."""
    kwargs = kwargs or {}
    rng = rng or np.random.default_rng(7)
    targs = [twin(a) for a in args]
    tkwargs = {k: twin(v) for k, v in kwargs.items()}
    out, tout = ours(*args, **kwargs), theirs(*targs, **tkwargs)
    close(out, tout, rtol, atol, "value")
    assert out.dtype == tout.detach().numpy().dtype
    diff = [i for i, a in enumerate(args) if isinstance(a, ckpt.Tensor) and a.requires_grad]
    if not diff:
        return
    g = rng.standard_normal(out.shape).astype(out.dtype)
    grads = ckpt.autograd.grad(out, [args[i] for i in diff], ckpt.Tensor(g), create_graph=True,
                               allow_unused=True)
    tgrads = torch.autograd.grad(tout, [targs[i] for i in diff], torch.tensor(g),
                                 create_graph=True, allow_unused=True)
    for i, a, b in zip(diff, grads, tgrads):
        if b is None:
            assert a is None or not np.any(a.data), f"grad {i}: torch has none"
            continue
        close(a, b, rtol, atol, f"grad of input {i}")
        assert a.dtype == b.detach().numpy().dtype
    if not second_order:
        return
    pairs = [(a, b) for a, b in zip(grads, tgrads) if a is not None and a.requires_grad
             and b is not None and b.requires_grad]
    vs = [rng.standard_normal(a.shape) for a, _ in pairs]
    hv = ckpt.autograd.grad([a for a, _ in pairs], [args[i] for i in diff],
                            [ckpt.Tensor(v) for v in vs], allow_unused=True)
    thv = torch.autograd.grad([b for _, b in pairs], [targs[i] for i in diff],
                              [torch.tensor(v) for v in vs], allow_unused=True)
    for i, a, b in zip(diff, hv, thv):
        if b is None:
            assert a is None or np.allclose(a.data, 0, atol=1e-12), f"2nd grad {i}: torch has none"
        else:
            assert a is not None, f"2nd grad of input {i} missing"
            close(a, b, rtol * 10, atol * 10, f"second derivative wrt input {i}")


# ---- gradcheck / gradgradcheck table --------------------------------------------------
# (id, rng -> (function, inputs))

def _dropout_fixed(p):
    state = ckpt.get_rng_state()

    def f(x):
        ckpt.set_rng_state(state)
        return F.dropout(x, p)
    return f


CASES = [
    ("nll_mean_weight", lambda r: (lambda x: F.nll_loss(x, ckpt.tensor([0, 2, 1, 2]), weight=ckpt.tensor([0.5, 1.0, 2.0], dtype=F64)),
                                   (leaf(r, 4, 3),))),
    ("nll_none_ignore_nd", lambda r: (lambda x: F.nll_loss(x, ckpt.tensor([[[0, 1], [-100, 2]], [[2, 2], [1, 0]]]), reduction="none"),
                                      (leaf(r, 2, 3, 2, 2),))),
    ("nll_1d_sum", lambda r: (lambda x: F.nll_loss(x, ckpt.tensor(1), reduction="sum"), (leaf(r, 3),))),
    ("ce_smoothing", lambda r: (lambda x: F.cross_entropy(x, ckpt.tensor([1, 0, 3]), label_smoothing=0.1), (leaf(r, 3, 4),))),
    ("ce_nd_weight_ignore", lambda r: (lambda x: F.cross_entropy(x, ckpt.tensor([[0, -100], [2, 1]]), weight=ckpt.tensor([1.0, 2.0, 0.5], dtype=F64), label_smoothing=0.2),
                                       (leaf(r, 2, 3, 2),))),
    ("ce_probabilities", lambda r: (lambda x, t: F.cross_entropy(x, t, reduction="sum"),
                                    (leaf(r, 3, 4), ckpt.Tensor(r.dirichlet(np.ones(4), 3))))),
    ("mse_mean", lambda r: (F.mse_loss, (leaf(r, 3, 4), leaf(r, 3, 4)))),
    ("mse_none_broadcast", lambda r: (lambda a, b: F.mse_loss(a, b, reduction="none"), (leaf(r, 2, 3), leaf(r, 3)))),
    ("mse_sum", lambda r: (lambda a, b: F.mse_loss(a, b, reduction="sum"), (leaf(r, 5), leaf(r, 5)))),
    ("layer_norm_affine", lambda r: (lambda x, w, b: F.layer_norm(x, 4, w, b), (leaf(r, 3, 4), leaf(r, 4), leaf(r, 4)))),
    ("layer_norm_2d_plain", lambda r: (lambda x: F.layer_norm(x, (2, 3), eps=1e-3), (leaf(r, 2, 2, 3),))),
    ("batch_norm_train_nc", lambda r: (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                                       (leaf(r, 4, 3), leaf(r, 3), leaf(r, 3)))),
    ("batch_norm_train_nchw", lambda r: (lambda x, w: F.batch_norm(x, None, None, w, training=True),
                                         (leaf(r, 2, 2, 2, 3), leaf(r, 2)))),
    ("batch_norm_eval", lambda r: (lambda x, w, b: F.batch_norm(x, ckpt.tensor([0.1, -0.2], dtype=F64), ckpt.tensor([0.5, 2.0], dtype=F64), w, b),
                                   (leaf(r, 3, 2, 2, 2), leaf(r, 2), leaf(r, 2)))),
    ("dropout", lambda r: (_dropout_fixed(0.3), (leaf(r, 3, 4),))),
    ("dropout_3d", lambda r: (_dropout_fixed(0.6), (leaf(r, 2, 3, 2),))),
    # (padding_idx and scale_grad_by_freq change the gradient on purpose: checked against torch)
    ("embedding_repeats", lambda r: (lambda w: F.embedding(ckpt.tensor([[1, 3, 1], [0, 4, 3]]), w), (leaf(r, 5, 3),))),
    ("embedding_1d", lambda r: (lambda w: F.embedding(ckpt.tensor([2, 2, 0, 1, 2]), w), (leaf(r, 4, 2),))),
    ("unfold", lambda r: (lambda x: F.unfold(x, 2), (leaf(r, 1, 2, 3, 3),))),
    ("unfold_geometry", lambda r: (lambda x: F.unfold(x, (2, 3), dilation=(1, 2), padding=1, stride=2), (leaf(r, 2, 1, 4, 5),))),
    ("fold", lambda r: (lambda c: F.fold(c, (3, 3), 2), (leaf(r, 1, 8, 4),))),
    ("fold_geometry", lambda r: (lambda c: F.fold(c, (4, 5), (2, 3), dilation=(1, 2), padding=1, stride=2), (leaf(r, 2, 6, 6),))),
    ("conv2d", lambda r: (F.conv2d, (leaf(r, 1, 2, 4, 4), leaf(r, 3, 2, 2, 2), leaf(r, 3)))),
    ("conv2d_geometry_groups", lambda r: (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=(1, 0), dilation=(1, 2), groups=2),
                                          (leaf(r, 2, 2, 4, 5), leaf(r, 4, 1, 2, 2), leaf(r, 4)))),
    ("conv2d_unbatched", lambda r: (lambda x, w: F.conv2d(x, w, padding="same"), (leaf(r, 1, 3, 3), leaf(r, 2, 1, 3, 3)))),
    ("conv2d_depthwise", lambda r: (lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=3), (leaf(r, 2, 3, 5, 4), leaf(r, 3, 1, 3, 2)))),
    ("conv2d_input", lambda r: (lambda w, g: conv2d_input((1, 2, 4, 4), w, g, padding=1), (leaf(r, 3, 2, 3, 3), leaf(r, 1, 3, 4, 4)))),
    ("conv2d_input_geometry_groups", lambda r: (lambda w, g: conv2d_input((2, 2, 4, 5), w, g, stride=2, padding=(1, 0), dilation=(1, 2), groups=2),
                                                (leaf(r, 4, 1, 2, 2), leaf(r, 2, 4, 3, 2)))),
    ("conv2d_weight", lambda r: (lambda x, g: conv2d_weight(x, (3, 2, 3, 3), g, padding=1), (leaf(r, 1, 2, 4, 4), leaf(r, 1, 3, 4, 4)))),
    ("conv2d_weight_geometry_groups", lambda r: (lambda x, g: conv2d_weight(x, (4, 1, 2, 2), g, stride=2, padding=(1, 0), dilation=(1, 2), groups=2),
                                                 (leaf(r, 2, 2, 4, 5), leaf(r, 2, 4, 3, 2)))),
    ("max_pool2d", lambda r: (lambda x: F.max_pool2d(x, 2), (distinct(r, 1, 2, 4, 4),))),
    ("max_pool2d_overlap_pad", lambda r: (lambda x: F.max_pool2d(x, 3, stride=2, padding=1), (distinct(r, 1, 1, 5, 5),))),
    ("max_pool2d_ceil_dilation", lambda r: (lambda x: F.max_pool2d(x, 2, stride=2, dilation=(1, 2), ceil_mode=True),
                                            (distinct(r, 2, 5, 6),))),
    ("avg_pool2d", lambda r: (lambda x: F.avg_pool2d(x, 2), (leaf(r, 1, 2, 4, 4),))),
    ("avg_pool2d_pad_exclude", lambda r: (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
                                          (leaf(r, 1, 1, 5, 4),))),
    ("avg_pool2d_unbatched_override", lambda r: (lambda x: F.avg_pool2d(x, (2, 3), stride=1, divisor_override=4),
                                                 (leaf(r, 2, 3, 4),))),
]


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_gradcheck_and_gradgradcheck(name, make):
    fn, inputs = make(np.random.default_rng(abs(hash(name)) % 2 ** 32))
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_checkers_reject_statistics_treated_as_constants(monkeypatch):
    """A layer-norm VJP that treats mean/rstd as constants fails gradcheck; one computed on
    raw numpy (not differentiable) passes gradcheck but fails gradgradcheck."""
    rng = np.random.default_rng(0)
    x = leaf(rng, 3, 4)
    fn = lambda x: F.layer_norm(x, 4)  # noqa: E731

    def constant_stats(self, g, x, weight, mean, rstd):
        d = x.data
        rstd = 1 / np.sqrt(d.var(-1, keepdims=True) + self.eps)
        return g * rstd, None, None

    def numpy_stats(self, g, x, weight, mean, rstd):
        d = x.data
        rstd = 1 / np.sqrt(d.var(-1, keepdims=True) + self.eps)
        xhat = (d - d.mean(-1, keepdims=True)) * rstd
        gx = rstd * (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True))
        return gx, None, None

    assert gradcheck(fn, (x,)) and gradgradcheck(fn, (x,))
    # these rules read ``x.data`` and use Tensor methods: they opt out of array rules
    monkeypatch.setattr(nn_norm.NativeLayerNormBackward0, "_array_rule", False)
    monkeypatch.setattr(nn_norm.NativeLayerNormBackward0, "vjp", constant_stats)
    with pytest.raises(GradcheckError):
        gradcheck(fn, (x,))
    monkeypatch.setattr(nn_norm.NativeLayerNormBackward0, "vjp", numpy_stats)
    assert gradcheck(fn, (x,))
    with pytest.raises(GradcheckError):
        gradgradcheck(fn, (x,))


# ---- differential tests against torch -------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2, 3), (4,)])
def test_nll_loss_and_cross_entropy_match_torch(shape, weighted, reduction):
    rng = np.random.default_rng(1)
    x = leaf(rng, *shape)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, C, tshape)
    if t.ndim:
        t.reshape(-1)[1] = -1  # an ignored target
    target = ckpt.tensor(t)
    weight = ckpt.tensor(rng.uniform(0.5, 2, C)) if weighted else None
    logp = F.log_softmax(x, 0 if len(shape) == 1 else 1)
    kw = dict(weight=weight, ignore_index=-1, reduction=reduction)
    against_torch(lambda x: F.nll_loss(x, target, **kw), lambda x: TF.nll_loss(x, twin(target), **{k: twin(v) for k, v in kw.items()}),
                  (logp.detach().requires_grad_(),))
    for smoothing in (0.0, 0.25):
        kw = dict(weight=weight, ignore_index=-1, reduction=reduction, label_smoothing=smoothing)
        against_torch(lambda x: F.cross_entropy(x, target, **kw),
                      lambda x: TF.cross_entropy(x, twin(target), **{k: twin(v) for k, v in kw.items()}), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_probability_targets_match_torch(reduction):
    rng = np.random.default_rng(2)
    x = leaf(rng, 4, 3, 2)
    p = ckpt.Tensor(rng.dirichlet(np.ones(3), (4, 2)).transpose(0, 2, 1).copy())
    w = ckpt.tensor(rng.uniform(0.5, 2, 3))
    for kw in (dict(), dict(weight=w, label_smoothing=0.3)):
        against_torch(lambda x: F.cross_entropy(x, p, reduction=reduction, **kw),
                      lambda x: TF.cross_entropy(x, twin(p), reduction=reduction, **{k: twin(v) for k, v in kw.items()}), (x,))


def test_cross_entropy_accepts_array_weight():
    x = ckpt.tensor([[0.1, 0.2, 0.3], [0.3, -0.2, 0.0]], dtype=F64)
    w = np.array([1.0, 2.0, 0.5])
    out = F.cross_entropy(x, ckpt.tensor([2, 1]), weight=w, label_smoothing=0.1)
    expected = TF.cross_entropy(twin(x), torch.tensor([2, 1]), weight=torch.tensor(w), label_smoothing=0.1)
    close(out, expected)


def test_nll_loss_all_ignored_mean_is_nan_with_zero_grad():
    x = ckpt.zeros(2, 3, dtype=F64, requires_grad=True)
    loss = F.nll_loss(x, ckpt.tensor([-100, -100]))
    expected = TF.nll_loss(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([-100, -100]))
    assert np.isnan(loss.item()) and torch.isnan(expected)
    loss.backward()
    assert np.array_equal(x.grad.data, np.zeros((2, 3)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((5,), (5,))])
def test_mse_loss_matches_torch(shapes, reduction):
    rng = np.random.default_rng(3)
    a, b = leaf(rng, *shapes[0]), leaf(rng, *shapes[1])
    with pytest.warns(UserWarning) if shapes[0] != shapes[1] else _nothing():
        against_torch(lambda a, b: F.mse_loss(a, b, reduction=reduction),
                      lambda a, b: TF.mse_loss(a, b, reduction=reduction), (a, b))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("shape,ns,affine", [((3, 5), (5,), True), ((2, 3, 4), (3, 4), True),
                                             ((2, 3, 4), (4,), False), ((4, 6), (4, 6), True)])
def test_layer_norm_matches_torch(shape, ns, affine):
    rng = np.random.default_rng(4)
    x = leaf(rng, *shape, scale=3.0)
    w, b = (leaf(rng, *ns), leaf(rng, *ns)) if affine else (None, None)
    against_torch(lambda x, w, b: F.layer_norm(x, ns, w, b, eps=1e-4),
                  lambda x, w, b: TF.layer_norm(x, ns, w, b, eps=1e-4), (x, w, b))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (3, 2, 4, 5), (4, 3, 5)])
def test_batch_norm_matches_torch(shape, training):
    rng = np.random.default_rng(5)
    C = shape[1]
    x, w, b = leaf(rng, *shape, scale=2.0), leaf(rng, C), leaf(rng, C)
    rm, rv = ckpt.tensor(rng.standard_normal(C)), ckpt.tensor(rng.uniform(0.5, 2, C))
    trm, trv = twin(rm), twin(rv)
    against_torch(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training, 0.2, 1e-3),
                  lambda x, w, b: TF.batch_norm(x, trm, trv, w, b, training, 0.2, 1e-3), (x, w, b))
    close(rm, trm, what="running_mean")
    close(rv, trv, what="running_var")


def test_batch_norm_running_statistics_follow_torch_over_steps():
    rng = np.random.default_rng(6)
    rm, rv = ckpt.zeros(3, dtype=F64), ckpt.ones(3, dtype=F64)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for step in range(4):
        x = rng.standard_normal((5, 3, 2, 2)) * (step + 1) + step
        F.batch_norm(ckpt.tensor(x), rm, rv, training=True, momentum=0.3)
        TF.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.3)
        close(rm, trm, what=f"running_mean step {step}")
        close(rv, trv, what=f"running_var step {step}")
    version = rm._version
    before = rm.data.copy()
    F.batch_norm(ckpt.tensor(x), rm, rv, training=False)  # eval: untouched
    assert np.array_equal(rm.data, before) and rm._version == version
    F.batch_norm(ckpt.tensor(x), rm, rv, training=True)  # in place: same buffer, new version
    assert rm._version == version + 1 and not np.array_equal(rm.data, before)


def test_batch_norm_update_is_not_recorded():
    rm = ckpt.zeros(2, dtype=F64)
    x = leaf(np.random.default_rng(0), 4, 2)
    F.batch_norm(x, rm, None, training=True)
    assert not rm.requires_grad and rm.grad_fn is None


def test_embedding_matches_torch():
    rng = np.random.default_rng(8)
    w = leaf(rng, 7, 3)
    idx = ckpt.tensor(rng.integers(0, 7, (4, 5)))
    for kw in (dict(), dict(padding_idx=2), dict(padding_idx=-1, scale_grad_by_freq=True)):
        against_torch(lambda w: F.embedding(idx, w, **kw), lambda w: TF.embedding(twin(idx), w, **kw), (w,))


def test_embedding_gradient_adds_repeats_and_skips_padding():
    w = ckpt.zeros(4, 2, dtype=F64, requires_grad=True)
    F.embedding(ckpt.tensor([1, 1, 3, 0, 1]), w, padding_idx=0).sum().backward()
    assert w.grad.tolist() == [[0.0, 0.0], [3.0, 3.0], [0.0, 0.0], [1.0, 1.0]]


UNFOLD_GEOMETRIES = [dict(kernel_size=2), dict(kernel_size=(2, 3), stride=2, padding=1),
                     dict(kernel_size=(3, 2), dilation=(2, 1), padding=(2, 0), stride=(1, 2))]


@pytest.mark.parametrize("geometry", UNFOLD_GEOMETRIES)
def test_unfold_and_fold_match_torch(geometry):
    rng = np.random.default_rng(9)
    x = leaf(rng, 2, 3, 6, 7)
    against_torch(lambda x: F.unfold(x, **geometry), lambda x: TF.unfold(x, **geometry), (x,))
    blocks = F.unfold(x, **geometry).shape
    cols = leaf(rng, *blocks)
    against_torch(lambda c: F.fold(c, (6, 7), **geometry), lambda c: TF.fold(c, (6, 7), **geometry), (cols,))
    against_torch(lambda x: F.unfold(x, **geometry), lambda x: TF.unfold(x, **geometry), (leaf(rng, 3, 6, 7),))


def test_fold_is_the_adjoint_of_unfold():
    rng = np.random.default_rng(10)
    g = dict(kernel_size=(2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    x = rng.standard_normal((2, 3, 5, 6))
    y = rng.standard_normal(F.unfold(ckpt.tensor(x), **g).shape)
    lhs = np.sum(F.unfold(ckpt.tensor(x), **g).data * y)
    rhs = np.sum(x * F.fold(ckpt.tensor(y), (5, 6), **g).data)
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


CONV_CASES = [
    ((2, 3, 6, 5), (4, 3, 3, 2), dict()),
    ((2, 3, 7, 7), (4, 3, 3, 3), dict(stride=2, padding=1)),
    ((1, 2, 8, 6), (3, 2, 2, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    ((2, 4, 5, 5), (6, 2, 3, 3), dict(padding=1, groups=2)),
    ((2, 4, 5, 5), (4, 1, 3, 3), dict(padding="same", groups=4)),
    ((3, 5, 4), (2, 3, 2, 2), dict(padding="valid")),
]


@pytest.fixture(params=["offsets", "lowered"])
def conv_path(request, monkeypatch):
    """Run a convolution test through each kernel: offset by offset, or on each chunk's
    columns (which conv2d picks for few channels per group)."""
    monkeypatch.setattr(nn_conv, "_LOWERED_BELOW", 0 if request.param == "offsets" else 10 ** 9)
    return request.param


@pytest.mark.parametrize("xs,ws,kw", CONV_CASES)
def test_conv2d_matches_torch(xs, ws, kw, conv_path):
    rng = np.random.default_rng(11)
    x, w, b = leaf(rng, *xs), leaf(rng, *ws), leaf(rng, ws[0])
    against_torch(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw), (x, w, b))
    against_torch(lambda x, w: F.conv2d(x, w, **kw), lambda x, w: TF.conv2d(x, w, **kw), (x, w))


@pytest.mark.parametrize("xs,ws,kw", [c for c in CONV_CASES if len(c[0]) == 4])
def test_conv2d_input_and_weight_match_torch_nn_grad(xs, ws, kw, conv_path):
    """The gradients of a convolution as ops of their own (what conv2d's backward is made
    of): values, first and second derivatives against torch.nn.grad."""
    rng = np.random.default_rng(15)
    x, w = leaf(rng, *xs), leaf(rng, *ws)
    g = leaf(rng, *TF.conv2d(twin(x), twin(w), **kw).shape)
    tkw = {k: v for k, v in kw.items()}
    if isinstance(kw.get("padding"), str):   # torch.nn.grad takes numbers only
        tkw["padding"] = (ws[2] - 1) // 2 if kw["padding"] == "same" else 0
    against_torch(lambda w, g: conv2d_input(xs, w, g, **kw),
                  lambda w, g: torch.nn.grad.conv2d_input(xs, w, g, **tkw), (w, g))
    against_torch(lambda x, g: conv2d_weight(x, ws, g, **kw),
                  lambda x, g: torch.nn.grad.conv2d_weight(x, ws, g, **tkw), (x, g))


def test_conv2d_input_and_weight_errors():
    w, g = ckpt.ones(3, 2, 3, 3), ckpt.ones(1, 3, 4, 4)
    with pytest.raises(RuntimeError, match=r"conv2d_input: grad_output has shape \[1, 3, 4, 4\], but "
                                           r"the convolution gives outputs of shape \[1, 3, 2, 2\]"):
        conv2d_input((1, 2, 4, 4), w, g)
    with pytest.raises(RuntimeError, match=r"conv2d_input: input_size must have 4 entries"):
        conv2d_input((2, 4, 4), w, g, padding=1)
    with pytest.raises(RuntimeError, match=r"conv2d_weight: input has 3 channels but weight expects 2"):
        conv2d_weight(ckpt.ones(1, 3, 4, 4), (3, 2, 3, 3), g, padding=1)
    with pytest.raises(TypeError, match=r"conv2d_weight: input dtype float32, grad_output dtype float64 must match"):
        conv2d_weight(ckpt.ones(1, 2, 4, 4), (3, 2, 3, 3), g.to(F64), padding=1)


@given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3), h=st.integers(1, 7),
       w=st.integers(1, 7), kh=st.integers(1, 3), kw=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2))
def test_conv2d_random_geometry_matches_torch(n, c, o, h, w, kh, kw, s, p, d):
    if h + 2 * p < d * (kh - 1) + 1 or w + 2 * p < d * (kw - 1) + 1:
        with pytest.raises(RuntimeError, match="smaller than the kernel"):
            F.conv2d(ckpt.ones(n, c, h, w), ckpt.ones(o, c, kh, kw), stride=s, padding=p, dilation=d)
        return
    rng = np.random.default_rng(n * 1000 + h * 10 + w)
    args = (leaf(rng, n, c, h, w), leaf(rng, o, c, kh, kw), leaf(rng, o))
    for below in (0, 10 ** 9):   # both kernels: offset by offset, and on chunks' columns
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nn_conv, "_LOWERED_BELOW", below)
            against_torch(lambda x, wt, b: F.conv2d(x, wt, b, s, p, d),
                          lambda x, wt, b: TF.conv2d(x, wt, b, s, p, d), args, second_order=False)


POOL_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
              dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 0)),
              dict(kernel_size=3, stride=2, ceil_mode=True)]


@pytest.mark.parametrize("kw", POOL_CASES + [dict(kernel_size=(2, 3), dilation=(2, 1), padding=1),
                                             dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)])
def test_max_pool2d_matches_torch(kw):
    rng = np.random.default_rng(12)
    for x in (distinct(rng, 2, 3, 7, 6), distinct(rng, 3, 5, 5)):
        against_torch(lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), (x,))
        _, idx = F.max_pool2d(x, return_indices=True, **kw)
        _, tidx = TF.max_pool2d(twin(x), return_indices=True, **kw)
        assert np.array_equal(idx.data, tidx.numpy())


def _transient_bytes(fn):
    """What ``fn()`` holds at its peak beyond what it returns (tracemalloc)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = fn()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - current, current - base


def test_temporaries_are_a_fraction_of_an_activation():
    """conv2d and its gradients (no im2col), batch norm's backward, max pooling, relu's and
    dropout's gradients make no full-size temporaries: what they hold beyond their result
    is well under half an activation (docs/planner.md, "Measured")."""
    rng = np.random.default_rng(16)
    N, C, H, W = 8, 16, 32, 32
    act = N * C * H * W * 4
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((C, C, 3, 3)).astype(np.float32)
    g = rng.standard_normal((N, C, H, W)).astype(np.float32)
    xt = ckpt.Tensor(x, requires_grad=True)
    bn = F.batch_norm(xt, None, None, ckpt.ones(C), ckpt.zeros(C), training=True)
    relu, drop = xt.relu(), F.dropout(xt, 0.3)
    pool = F.max_pool2d(xt, 3, stride=1, padding=1)
    x3, w3 = x[:, :3].copy(), w[:, :3].copy()   # 3 channels in: an image's stem (lowered)
    ops = {"conv2d": lambda: F.conv2d(ckpt.Tensor(x), ckpt.Tensor(w), padding=1).data,
           "conv2d_input": lambda: conv2d_input(x.shape, w, g, padding=1),
           "conv2d_weight": lambda: conv2d_weight(x, w.shape, g, padding=1),
           "stem conv2d": lambda: F.conv2d(ckpt.Tensor(x3), ckpt.Tensor(w3), padding=1).data,
           "stem conv2d_input": lambda: conv2d_input(x3.shape, w3, g, padding=1),
           "stem conv2d_weight": lambda: conv2d_weight(x3, w3.shape, g, padding=1),
           "batch_norm backward": lambda: bn.grad_fn.vjp(g, x, None, *(s.data for s in bn.grad_fn.saved_tensors[2:]))[0],
           "max_pool2d": lambda: F.max_pool2d(xt, 3, stride=1, padding=1),   # + int64 positions
           "max_pool2d backward": lambda: ckpt.autograd.grad(pool, [xt], ckpt.Tensor(g),
                                                             retain_graph=True)[0].data,
           "relu backward": lambda: relu.grad_fn.vjp(g, relu.data),
           "dropout backward": lambda: drop.grad_fn.vjp(g, drop.grad_fn.saved_tensors[0].data)}
    for name, fn in ops.items():
        transient, kept = _transient_bytes(fn)
        assert transient <= 0.4 * act, (name, transient / act)
        assert kept <= (3.01 if name == "max_pool2d" else 1.01) * act, (name, kept / act)
    assert nn_conv._lowered(w3.shape) and not nn_conv._lowered(w.shape)


def test_max_pool2d_overlapping_windows_accumulate_and_ties_pick_first():
    x = ckpt.tensor([[[[1.0, 9.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]]]], dtype=F64, requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()
    assert x.grad.data[0, 0].tolist() == [[0, 2, 0], [0, 0, 0], [0, 1, 1]]
    t = ckpt.ones(1, 1, 2, 2, dtype=F64, requires_grad=True)
    tt = twin(t)
    F.max_pool2d(t, 2).sum().backward()
    TF.max_pool2d(tt, 2).sum().backward()
    close(t.grad, tt.grad, what="tie gradient")


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("kw", POOL_CASES[:3] + [dict(kernel_size=2, divisor_override=3)])
def test_avg_pool2d_matches_torch(kw, count_include_pad):
    rng = np.random.default_rng(13)
    for x in (leaf(rng, 2, 3, 7, 6), leaf(rng, 3, 5, 5)):
        against_torch(lambda x: F.avg_pool2d(x, count_include_pad=count_include_pad, **kw),
                      lambda x: TF.avg_pool2d(x, count_include_pad=count_include_pad, **kw), (x,))


FLOAT32_CASES = [
    ("conv2d", lambda a: F.conv2d(*a, stride=2, padding=1), lambda a: TF.conv2d(*a, stride=2, padding=1), [(2, 3, 6, 6), (4, 3, 3, 3), (4,)]),
    ("layer_norm", lambda a: F.layer_norm(a[0], 5, *a[1:]), lambda a: TF.layer_norm(a[0], (5,), *a[1:]), [(3, 5), (5,), (5,)]),
    ("batch_norm", lambda a: F.batch_norm(a[0], None, None, *a[1:], training=True),
     lambda a: TF.batch_norm(a[0], None, None, *a[1:], training=True), [(4, 3, 2, 2), (3,), (3,)]),
    ("max_pool2d", lambda a: F.max_pool2d(a[0], 2), lambda a: TF.max_pool2d(a[0], 2), [(2, 2, 4, 4)]),
    ("avg_pool2d", lambda a: F.avg_pool2d(a[0], 3, 2, 1), lambda a: TF.avg_pool2d(a[0], 3, 2, 1), [(2, 2, 5, 5)]),
    ("mse_loss", lambda a: F.mse_loss(*a), lambda a: TF.mse_loss(*a), [(3, 4), (3, 4)]),
    ("cross_entropy", lambda a: F.cross_entropy(a[0], ckpt.tensor([0, 2, 1])),
     lambda a: TF.cross_entropy(a[0], torch.tensor([0, 2, 1])), [(3, 4)]),
    ("embedding", lambda a: F.embedding(ckpt.tensor([[0, 2], [2, 1]]), a[0], padding_idx=1),
     lambda a: TF.embedding(torch.tensor([[0, 2], [2, 1]]), a[0], padding_idx=1), [(3, 4)]),
    ("unfold", lambda a: F.unfold(a[0], 2, padding=1), lambda a: TF.unfold(a[0], 2, padding=1), [(1, 2, 3, 3)]),
]


@pytest.mark.parametrize("name,ours,theirs,shapes", FLOAT32_CASES, ids=[c[0] for c in FLOAT32_CASES])
def test_float32_keeps_dtype_and_matches_torch(name, ours, theirs, shapes):
    rng = np.random.default_rng(14)
    args = [leaf(rng, *s, dtype=np.float32) for s in shapes]
    against_torch(lambda *a: ours(a), lambda *a: theirs(a), args, second_order=False, rtol=2e-5, atol=2e-6)


# ---- dropout --------------------------------------------------------------------------

@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_scales_kept_elements_and_replays_with_rng_state(p):
    ckpt.manual_seed(3)
    x = ckpt.Tensor(np.random.default_rng(0).uniform(1, 2, (40, 50)), requires_grad=True)
    state = ckpt.get_rng_state()
    out = F.dropout(x, p)
    mask = out.data != 0
    assert abs(1 - mask.mean() - p) < 0.03, "drop rate far from p"
    np.testing.assert_allclose(out.data, x.data * mask / (1 - p), rtol=1e-15)
    g = np.random.default_rng(1).standard_normal(x.shape)
    (gx,) = ckpt.autograd.grad(out, x, ckpt.Tensor(g))
    # torch with the same mask (its dropout is x * mask / (1 - p) by definition)
    xt = twin(x)
    torch.autograd.backward(xt * torch.tensor(mask) / (1 - p), torch.tensor(g))
    close(gx, xt.grad, what="dropout grad")
    ckpt.set_rng_state(state)
    assert np.array_equal(F.dropout(x, p).data, out.data), "same state must replay the mask"
    assert not np.array_equal(F.dropout(x, p).data, out.data), "next call must draw a new mask"


def test_dropout_identity_zero_and_errors():
    x = ckpt.ones(3, 4, requires_grad=True)
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.7, training=False) is x
    state = ckpt.get_rng_state()
    assert F.dropout(x, 0.0) is x and ckpt.get_rng_state() == state  # no draw
    y = F.dropout(x, 1.0)
    assert y.dtype == np.float32 and not np.any(y.data)
    y.sum().backward()
    assert np.array_equal(x.grad.data, np.zeros((3, 4), np.float32))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"dropout probability has to be between 0 and 1, but got {bad}"):
            F.dropout(x, bad)


def test_dropout_saves_a_one_byte_mask():
    x = ckpt.ones(10, 10, dtype=F64, requires_grad=True)
    node = F.dropout(x, 0.5).grad_fn
    assert node.name() == "NativeDropoutBackward0"
    assert node.saved_bytes() == 100


# ---- node names -----------------------------------------------------------------------

def test_node_names_follow_torch():
    rng = np.random.default_rng(15)
    x4 = leaf(rng, 1, 2, 4, 4)
    names = {
        F.nll_loss(leaf(rng, 2, 3), ckpt.tensor([0, 1])): "NllLossBackward0",
        F.mse_loss(leaf(rng, 2), leaf(rng, 2)): "MseLossBackward0",
        F.layer_norm(leaf(rng, 2, 3), 3): "NativeLayerNormBackward0",
        F.batch_norm(leaf(rng, 2, 3), None, None, training=True): "NativeBatchNormBackward0",
        F.embedding(ckpt.tensor([0]), leaf(rng, 2, 2)): "EmbeddingBackward0",
        F.unfold(x4, 2): "Im2ColBackward0",
        F.fold(leaf(rng, 1, 4, 9), (4, 4), 2): "Col2ImBackward0",
        F.conv2d(x4, leaf(rng, 1, 2, 2, 2)): "ConvolutionBackward0",
        F.max_pool2d(x4, 2): "MaxPool2DWithIndicesBackward0",
        F.avg_pool2d(x4, 2): "AvgPool2DBackward0",
    }
    for out, name in names.items():
        assert out.grad_fn.name() == name


def test_functional_reexports_and_signatures():
    x = ckpt.tensor([[-1.0, 2.0]])
    assert F.relu(x).tolist() == [[0.0, 2.0]]
    y = x * 1
    assert F.relu(y, inplace=True) is y and y.tolist() == [[0.0, 2.0]]
    assert F.softmax(x, dim=1, dtype=ckpt.float64).dtype == np.float64
    with pytest.warns(UserWarning, match="Implicit dimension"):
        assert F.log_softmax(x).shape == (1, 2)
    assert F.linear(x, ckpt.ones(3, 2)).shape == (1, 3)
    for name in F.__all__:
        assert callable(getattr(F, name)) and hasattr(TF, name), name


# ---- errors ---------------------------------------------------------------------------

ERRORS = [
    (lambda: F.conv2d(ckpt.ones(1, 3, 5, 5), ckpt.ones(8, 4, 3, 3)), RuntimeError,
     r"conv2d: input has 3 channels but weight expects 4 \(weight shape \[8, 4, 3, 3\]\)"),
    (lambda: F.conv2d(ckpt.ones(1, 4, 5, 5), ckpt.ones(6, 1, 3, 3), groups=3), RuntimeError,
     r"conv2d: input has 4 channels but weight expects 3 \(weight shape \[6, 1, 3, 3\], groups=3\)"),
    (lambda: F.conv2d(ckpt.ones(1, 2, 5, 5), ckpt.ones(3, 2, 3, 3), ckpt.ones(4)), RuntimeError,
     r"conv2d: bias must have shape \[3\]"),
    (lambda: F.conv2d(ckpt.ones(2, 5, 5), ckpt.ones(3, 2, 3)), RuntimeError, r"conv2d: weight must be 4-D"),
    (lambda: F.conv2d(ckpt.ones(5, 5), ckpt.ones(3, 2, 3, 3)), RuntimeError,
     r"conv2d: expected a 3-D \(unbatched\) or 4-D \(batched\) input, got input of shape \[5, 5\]"),
    (lambda: F.conv2d(ckpt.ones(1, 1, 2, 2), ckpt.ones(1, 1, 3, 3)), RuntimeError,
     r"conv2d: input of spatial size 2x2 .* smaller than the kernel \(3, 3\)"),
    (lambda: F.conv2d(ckpt.ones(1, 1, 4, 4), ckpt.ones(1, 1, 3, 3, dtype=F64)), TypeError,
     r"conv2d: input dtype float32, weight dtype float64"),
    (lambda: F.conv2d(ckpt.ones(1, 1, 4, 4), ckpt.ones(1, 1, 3, 3), stride=0), ValueError,
     r"conv2d: stride must be >= 1, got \(0, 0\)"),
    (lambda: F.conv2d(ckpt.ones(1, 1, 4, 4), ckpt.ones(1, 1, 3, 3), stride=2, padding="same"), ValueError,
     r"padding='same' is not supported for strided convolutions"),
    (lambda: F.nll_loss(ckpt.zeros(2, 3), ckpt.tensor([0, 3])), IndexError,
     r"nll_loss: target 3 is out of bounds for 3 classes \(input shape \[2, 3\]\)"),
    (lambda: F.nll_loss(ckpt.zeros(2, 3), ckpt.tensor([0, 1, 2])), RuntimeError,
     r"nll_loss: expected target of shape \[2\] for input of shape \[2, 3\], got target of shape \[3\]"),
    (lambda: F.nll_loss(ckpt.zeros(2, 3), ckpt.tensor([0.0, 1.0])), RuntimeError,
     r"nll_loss: expected an integer tensor of indices, got dtype float32"),
    (lambda: F.nll_loss(ckpt.zeros(2, 3), ckpt.tensor([0, 1]), weight=ckpt.ones(2)), RuntimeError,
     r"nll_loss: weight must have shape \[3\]"),
    (lambda: F.cross_entropy(ckpt.zeros(2, 3), ckpt.tensor([0, 1]), reduction="avg"), ValueError,
     r"cross_entropy: reduction must be 'none', 'mean' or 'sum', got 'avg'"),
    (lambda: F.cross_entropy(ckpt.zeros(2, 3), ckpt.tensor([0, 1]), label_smoothing=1.5), ValueError,
     r"label_smoothing must be between 0.0 and 1.0, got 1.5"),
    (lambda: F.cross_entropy(ckpt.zeros(2, 3), ckpt.zeros(2, 4)), RuntimeError,
     r"cross_entropy: probability target must have the input's shape \[2, 3\], got \[2, 4\]"),
    (lambda: F.mse_loss(ckpt.zeros(2, 3), ckpt.zeros(4)), RuntimeError,
     r"mse_loss: input shape \[2, 3\] and target shape \[4\] cannot be broadcast"),
    (lambda: F.layer_norm(ckpt.zeros(2, 3), 4), RuntimeError,
     r"layer_norm: Given normalized_shape=\[4\], expected input with shape \[\*, 4\], but got input of size \[2, 3\]"),
    (lambda: F.layer_norm(ckpt.zeros(2, 3), 3, ckpt.ones(2)), RuntimeError,
     r"layer_norm: weight must have shape \[3\], got \[2\]"),
    (lambda: F.batch_norm(ckpt.zeros(2, 3), ckpt.zeros(4), ckpt.ones(3)), RuntimeError,
     r"batch_norm: running_mean must have shape \[3\], got \[4\]"),
    (lambda: F.batch_norm(ckpt.zeros(2, 3), None, None), RuntimeError,
     r"batch_norm: running_mean and running_var must be given when training=False"),
    (lambda: F.batch_norm(ckpt.zeros(1, 3), None, None, training=True), ValueError,
     r"expected more than 1 value per channel when training, got input of shape \[1, 3\]"),
    (lambda: F.embedding(ckpt.tensor([0, 5]), ckpt.zeros(5, 2)), IndexError,
     r"embedding: index 5 is out of range for a weight with 5 rows \(weight shape \[5, 2\]\)"),
    (lambda: F.embedding(ckpt.tensor([-1]), ckpt.zeros(5, 2)), IndexError, r"embedding: index -1 is out of range"),
    (lambda: F.embedding(ckpt.tensor([0.0]), ckpt.zeros(5, 2)), RuntimeError,
     r"embedding: expected an integer tensor of indices, got dtype float32"),
    (lambda: F.embedding(ckpt.tensor([0]), ckpt.zeros(5, 2), padding_idx=5), ValueError,
     r"embedding: padding_idx must be within num_embeddings \(5\), got 5"),
    (lambda: F.fold(ckpt.zeros(1, 4, 5), (3, 3), 2), RuntimeError,
     r"fold: input has 5 blocks \(dimension 2\) but output_size \[3, 3\] .* gives 2 \* 2 = 4 blocks"),
    (lambda: F.fold(ckpt.zeros(1, 5, 4), (3, 3), 2), RuntimeError,
     r"fold: expected size of input's dimension 1 \(5\) to be divisible by the product of kernel_size"),
    (lambda: F.unfold(ckpt.zeros(2, 3), 2), RuntimeError, r"unfold: expected a 3-D \(unbatched\) or 4-D"),
    (lambda: F.max_pool2d(ckpt.zeros(1, 1, 4, 4), 3, padding=2), ValueError,
     r"max_pool2d: pad should be at most half of effective kernel size, but got pad=2, kernel_size=3"),
    (lambda: F.avg_pool2d(ckpt.zeros(1, 1, 4, 4), 2, padding=2), ValueError,
     r"avg_pool2d: pad should be at most half of kernel size, but got pad=2 and kernel_size=2"),
    (lambda: F.max_pool2d(ckpt.zeros(1, 1, 4, 4), (2, 2, 2)), ValueError,
     r"max_pool2d: kernel_size must be an int or a pair of ints, got \(2, 2, 2\)"),
    (lambda: F.avg_pool2d(ckpt.zeros(1, 1, 4, 4), 2, divisor_override=0), ValueError,
     r"avg_pool2d: divisor_override must be nonzero"),
    (lambda: F.dropout(ckpt.zeros(2), 0.5, inplace=True), NotImplementedError,
     r"dropout: inplace=True is not supported"),
    (lambda: F.embedding(ckpt.tensor([0]), ckpt.zeros(5, 2), max_norm=1.0), NotImplementedError,
     r"embedding: max_norm is not supported"),
    (lambda: F.avg_pool2d(ckpt.zeros(1, 1, 4, 4), 2, ceil_mode=True), NotImplementedError,
     r"avg_pool2d: ceil_mode=True is not supported"),
]


@pytest.mark.parametrize("call,exc,message", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_bad_input_raises_clear_error(call, exc, message):
    with pytest.raises(exc, match=message):
        call()
