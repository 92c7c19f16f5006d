"""ckpt.nn: the Module API, Parameter representation, state_dict, initialization, and layers
and small networks whose forward values, gradients and buffers match torch.nn's when the
weights are copied over."""
import copy
import math

import numpy as np
import pytest
import torch

import ckpt
import ckpt.nn as nn
import ckpt.optim as optim
from ckpt.autograd.tensor import Tensor

from conftest import assert_close


# ---- helpers ----------------------------------------------------------------------------
def copy_into_torch(ck_module, torch_module):
    """Copy every parameter and buffer of a ckpt module into the same-named torch ones."""
    ck_state = ck_module.state_dict()
    t_state = torch_module.state_dict()
    assert list(ck_state) == list(t_state), "ckpt and torch state_dict keys differ"
    torch_module.load_state_dict({k: torch.from_numpy(np.array(v.data, copy=True))
                                  for k, v in ck_state.items()})


def assert_grads_match(ck_module, torch_module, dtype):
    ck = dict(ck_module.named_parameters())
    tp = dict(torch_module.named_parameters())
    assert list(ck) == list(tp)
    for name in ck:
        assert ck[name].grad is not None, f"no gradient for {name}"
        assert_close(ck[name].grad, tp[name].grad, dtype=dtype, what=f"grad of {name}")


def tensors(rng, *shape, dtype=np.float64):
    data = rng.standard_normal(shape).astype(dtype)
    return ckpt.tensor(data), torch.tensor(data)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(4, 2)
        self.register_buffer("steps", ckpt.zeros(1))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ---- Parameter --------------------------------------------------------------------------
def test_parameter_is_an_exact_tensor_flagged_in_the_registry():
    data = ckpt.tensor([1.0, 2.0])
    p = nn.Parameter(data)
    assert type(p) is Tensor and p.__class__ is Tensor
    assert isinstance(p, nn.Parameter) and isinstance(p, Tensor)
    assert not isinstance(data, nn.Parameter) and not isinstance(np.ones(2), nn.Parameter)
    assert p.requires_grad and p.is_leaf and not data.requires_grad
    assert p.data is data.data  # shares memory, as torch.nn.Parameter(t) does
    frozen = nn.Parameter(ckpt.ones(2), requires_grad=False)
    assert isinstance(frozen, nn.Parameter) and not frozen.requires_grad
    assert nn.Parameter().shape == (0,)


def test_parameter_flows_through_the_exact_class_fast_path():
    # ops recognize inputs with ``x.__class__ is Tensor``: a Parameter must take part in the graph
    p = nn.Parameter(ckpt.tensor([1.0, 2.0, 3.0]))
    y = (p * p).sum() + ckpt.exp(p).sum() + (2.0 * p).sum()
    y.backward()
    np.testing.assert_allclose(p.grad.data, 2 * p.data + np.exp(p.data) + 2.0, rtol=1e-6)
    saved = (p * p).grad_fn.saved_buffers()
    assert saved == {id(p.data): p.data.nbytes}


def test_parameter_registry_forgets_dead_tensors():
    from ckpt.nn.parameter import _PARAMETERS
    before = len(_PARAMETERS)
    p = nn.Parameter(ckpt.ones(3))
    assert len(_PARAMETERS) == before + 1
    del p
    assert len(_PARAMETERS) == before


def test_integer_parameter_refuses_requires_grad():
    with pytest.raises(RuntimeError, match="floating point"):
        nn.Parameter(ckpt.arange(3))


# ---- registration and traversal ---------------------------------------------------------
def test_setattr_registers_parameters_modules_and_buffers():
    m = TwoLayer()
    assert [n for n, _ in m.named_parameters()] == ["fc1.weight", "fc1.bias", "fc2.weight",
                                                    "fc2.bias"]
    assert [n for n, _ in m.named_buffers()] == ["steps"]
    assert [n for n, _ in m.named_children()] == ["fc1", "act", "fc2"]
    assert [n for n, _ in m.named_modules()] == ["", "fc1", "act", "fc2"]
    assert list(m.parameters(recurse=False)) == []
    assert len(list(m.fc1.parameters())) == 2
    assert m.fc1 is m._modules["fc1"] and "fc1" not in m.__dict__
    m.extra = nn.Parameter(ckpt.zeros(2))
    assert [n for n, _ in m.named_parameters()][0] == "extra"  # own parameters come first
    m.extra = None
    assert m.extra is None and len(list(m.parameters())) == 4
    m.plain = 3
    assert m.plain == 3 and "plain" not in m.state_dict()
    del m.fc2
    assert [n for n, _ in m.named_children()] == ["fc1", "act"]


def test_setattr_errors_name_the_attribute():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign 'ckpt.FloatTensor' as parameter 'weight'"):
        m.weight = ckpt.ones(2, 2)
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        m.nope
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", ckpt.ones(1))
    with pytest.raises(TypeError, match="buffer 'x'"):
        m.register_buffer("x", [1.0])

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ckpt.ones(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(net.parameters())) == 2
    assert len(list(net.modules())) == 3
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_train_eval_propagate_and_validate():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    assert all(mod.training for mod in m.modules())
    assert m.eval() is m
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())
    with pytest.raises(ValueError, match="boolean"):
        m.train("no")


def test_zero_grad_requires_grad_and_apply():
    m = nn.Linear(3, 2)
    m(ckpt.ones(4, 3)).sum().backward()
    grad = m.weight.grad
    m.zero_grad(set_to_none=False)
    assert m.weight.grad is grad and not grad.data.any()
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    assert not m(ckpt.ones(1, 3)).requires_grad
    m.requires_grad_()
    names = []
    net = nn.Sequential(m, nn.Tanh())
    assert net.apply(lambda mod: names.append(type(mod).__name__)) is net
    assert names == ["Linear", "Tanh", "Sequential"]


def test_forward_hooks():
    m = nn.Linear(2, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: calls.append("pre"))
    h2 = m.register_forward_hook(lambda mod, args, out: out * 0)
    out = m(ckpt.ones(1, 2))
    assert calls == ["pre"] and not out.data.any()
    h1.remove(), h2.remove()
    assert m(ckpt.ones(1, 2)).data.any() and calls == ["pre"]


def test_missing_forward_raises():
    with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required "forward"'):
        nn.Module()(1)


def test_dtype_conversion_keeps_tensor_identity():
    m = TwoLayer()
    w = m.fc1.weight
    m.double()
    assert m.fc1.weight is w and w.dtype == np.float64 and m.steps.dtype == np.float64
    assert isinstance(m.fc1.weight, nn.Parameter)
    assert m(ckpt.ones(1, 3, dtype=ckpt.float64)).dtype == np.float64
    m.float()
    assert w.dtype == np.float32


def test_deepcopy_gives_independent_parameters_and_gradients():
    m = nn.Linear(2, 1)
    m(ckpt.ones(1, 2)).sum().backward()  # creates gradient accumulators on the originals
    c = copy.deepcopy(m)
    assert isinstance(c.weight, nn.Parameter) and c.weight is not m.weight
    m.zero_grad()
    c.zero_grad()
    c(ckpt.ones(1, 2)).sum().backward()
    assert m.weight.grad is None, "gradients of the copy went into the original"
    np.testing.assert_array_equal(c.weight.grad.data, [[1.0, 1.0]])


# ---- containers ---------------------------------------------------------------------------
def test_sequential_indexing_slicing_and_mutation():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    net = nn.Sequential(*layers)
    assert len(net) == 3 and list(net) == layers
    assert net[0] is layers[0] and net[-1] is layers[2]
    head = net[:2]
    assert isinstance(head, nn.Sequential) and list(head) == layers[:2]
    assert list(head.state_dict()) == ["0.weight", "0.bias"]
    with pytest.raises(IndexError, match="index 3 is out of range"):
        net[3]
    x = ckpt.ones(4, 2)
    np.testing.assert_allclose(net(x).data, layers[2](layers[1](layers[0](x))).data)
    net[1] = nn.Tanh()
    assert isinstance(net[1], nn.Tanh)
    del net[1]
    assert [n for n, _ in net.named_children()] == ["0", "1"] and net[1] is layers[2]
    net.append(nn.Sigmoid())
    assert len(net) == 3
    from collections import OrderedDict
    named = nn.Sequential(OrderedDict(enc=nn.Linear(2, 2), act=nn.GELU()))
    assert list(named.state_dict()) == ["enc.weight", "enc.bias"]


def test_module_list_and_dict():
    ml = nn.ModuleList([nn.Linear(1, 1), nn.ReLU()])
    ml.append(nn.Linear(1, 2))
    ml += [nn.Tanh()]
    assert len(ml) == 4 and isinstance(ml[1:3], nn.ModuleList) and len(ml[1:3]) == 2
    assert [n for n, _ in ml.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    ml.insert(1, nn.Sigmoid())
    assert [type(m).__name__ for m in ml] == ["Linear", "Sigmoid", "ReLU", "Linear", "Tanh"]
    del ml[0]
    assert [n for n, _ in ml.named_parameters()] == ["2.weight", "2.bias"]
    md = nn.ModuleDict({"a": nn.Linear(1, 1)})
    md["b"] = nn.ReLU()
    assert list(md) == ["a", "b"] and [n for n, _ in md.named_parameters()] == ["a.weight", "a.bias"]


def test_repr_matches_torch():
    ck = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Linear(3, 1, bias=False),
                                                                 nn.GELU(approximate="tanh")),
                       nn.Flatten(), nn.Identity(), nn.Tanh(), nn.Sigmoid())
    tn = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(),
                             torch.nn.Sequential(torch.nn.Linear(3, 1, bias=False),
                                                 torch.nn.GELU(approximate="tanh")),
                             torch.nn.Flatten(), torch.nn.Identity(), torch.nn.Tanh(),
                             torch.nn.Sigmoid())
    assert repr(ck) == repr(tn)


# ---- state_dict -------------------------------------------------------------------------
def test_state_dict_matches_torch_layout_and_shares_memory():
    m = TwoLayer()
    sd = m.state_dict()
    assert list(sd) == ["steps", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert sd["fc1.weight"].data is m.fc1.weight.data
    assert not sd["fc1.weight"].requires_grad
    assert m.state_dict(keep_vars=True)["fc1.weight"] is m.fc1.weight
    m.register_buffer("scratch", ckpt.zeros(2), persistent=False)
    assert "scratch" not in m.state_dict() and "scratch" in dict(m.named_buffers())


def test_state_dict_round_trip_restores_outputs():
    ckpt.manual_seed(0)
    a = TwoLayer()
    ckpt.manual_seed(1)
    b = TwoLayer()
    x = ckpt.randn(5, 3)
    assert not np.allclose(a(x).data, b(x).data)
    w = b.fc1.weight
    version = w._version
    result = b.load_state_dict(copy.deepcopy(a.state_dict()))
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.fc1.weight is w and w._version > version  # copied in place
    np.testing.assert_array_equal(a(x).data, b(x).data)
    a.fc1.weight.data[...] = 0  # b keeps its own copy
    assert b.fc1.weight.data.any()


def test_load_state_dict_errors_name_keys_and_shapes():
    m = TwoLayer()
    sd = m.state_dict()
    bad = dict(sd)
    del bad["fc1.bias"]
    bad["fc3.weight"] = ckpt.zeros(1)
    bad["fc2.weight"] = ckpt.zeros(3, 3)
    with pytest.raises(RuntimeError) as info:
        m.load_state_dict(bad)
    msg = str(info.value)
    assert msg.startswith("Error(s) in loading state_dict for TwoLayer:")
    assert 'Missing key(s) in state_dict: "fc1.bias".' in msg
    assert 'Unexpected key(s) in state_dict: "fc3.weight".' in msg
    assert ("size mismatch for fc2.weight: copying a param with shape [3, 3] from checkpoint, "
            "the shape in current model is [2, 4].") in msg
    assert msg.index("Missing") < msg.index("Unexpected") < msg.index("size mismatch")
    # nothing was copied by the failed call
    np.testing.assert_array_equal(m.fc2.weight.data, sd["fc2.weight"].data)

    partial = {k: v for k, v in sd.items() if k != "fc1.bias"}
    partial["extra"] = ckpt.ones(1)
    result = m.load_state_dict(partial, strict=False)
    assert result.missing_keys == ["fc1.bias"] and result.unexpected_keys == ["extra"]
    with pytest.raises(RuntimeError, match="size mismatch for fc1.bias"):
        m.load_state_dict({"fc1.bias": ckpt.zeros(7)}, strict=False)


def test_state_dict_loads_into_torch_and_back():
    ckpt.manual_seed(3)
    ck = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    tn = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    copy_into_torch(ck, tn)
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    assert_close(ck(ckpt.tensor(x)), tn(torch.tensor(x)), dtype=np.float32)
    back = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    back.load_state_dict({k: ckpt.tensor(v.detach().numpy()) for k, v in tn.state_dict().items()})
    np.testing.assert_array_equal(back(ckpt.tensor(x)).data, ck(ckpt.tensor(x)).data)


# ---- initialization ---------------------------------------------------------------------
def test_manual_seed_makes_init_reproducible():
    ckpt.manual_seed(42)
    a = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    ckpt.manual_seed(42)
    b = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))
    c = nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 3))  # the generator moved on
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data, err_msg=name)
        assert not np.array_equal(pa.data, pc.data), name
        assert pa.dtype == np.float32


def test_rng_state_replays_init_and_random_factories():
    """get_rng_state/set_rng_state replay parameter init and randn/rand/randint bit for bit,
    and numpy's global RNG (np.random.seed) neither feeds nor disturbs ckpt's generator."""
    def draw():
        fc = nn.Linear(4, 3)
        return [fc.weight.data.copy(), fc.bias.data.copy(), ckpt.randn(5).data.copy(),
                ckpt.rand(2).data.copy(), ckpt.randint(0, 10, (3,)).data.copy()]

    np_state = np.random.get_state()
    try:
        ckpt.manual_seed(123)
        ckpt.randn(7)  # start from a state that is not a fresh seed
        state = ckpt.get_rng_state()
        np.random.seed(0)
        first = draw()
        np.random.seed(99)  # reseeding (and drawing from) numpy's global RNG in between...
        np.random.rand(10)
        ckpt.set_rng_state(state)
        second = draw()
        onward = draw()  # without a restore the generator has moved on
        np.random.seed(0)
        ckpt.set_rng_state(state)
        third = draw()
        assert np.random.rand() == np.random.RandomState(0).rand()  # ckpt left numpy's RNG alone
    finally:
        np.random.set_state(np_state)
    names = ["weight", "bias", "randn", "rand", "randint"]
    for name, a, b, c, d in zip(names, first, second, third, onward):
        assert a.dtype == b.dtype == c.dtype and a.shape == b.shape == c.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)  # ...does not change the replay
        np.testing.assert_array_equal(a, c, err_msg=name)
        assert a.tobytes() == b.tobytes() == c.tobytes(), name
        if name != "randint":  # 3 draws from 10 values may repeat; floats never do
            assert not np.array_equal(a, d), name
    assert first[4].dtype == np.int64 and ((first[4] >= 0) & (first[4] < 10)).all()


def test_linear_default_init_follows_torch_distribution():
    ckpt.manual_seed(0)
    fc = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w, b = fc.weight.data, fc.bias.data
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    # U(-bound, bound): std bound/sqrt(3), mean 0 (120000 samples: tight)
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert abs(w.mean()) < 0.01 * bound
    assert np.abs(w).max() > 0.99 * bound  # really spans the range (not a narrower init)
    assert np.abs(b).max() > 0.95 * bound and abs(b.std() - bound / math.sqrt(3)) < 0.1 * bound
    tw = torch.nn.Linear(400, 300).weight.detach().numpy()
    assert abs(w.std() - tw.std()) < 0.01 * bound


def test_init_functions():
    from ckpt.nn import init
    t = ckpt.empty(200, 300, dtype=ckpt.float64)
    version = t._version
    assert init.xavier_uniform_(t, gain=2.0) is t and t._version > version
    bound = 2.0 * math.sqrt(6 / 500)
    assert np.abs(t.data).max() <= bound and np.abs(t.data).max() > 0.99 * bound
    init.kaiming_uniform_(t, mode="fan_out", nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / 200)
    assert np.abs(t.data).max() <= bound and np.abs(t.data).max() > 0.99 * bound
    init.normal_(t, 3.0, 0.5)
    assert abs(t.data.mean() - 3.0) < 0.01 and abs(t.data.std() - 0.5) < 0.01
    init.kaiming_normal_(t)
    assert abs(t.data.std() - math.sqrt(2 / 300)) < 0.002
    assert not init.zeros_(t).data.any() and (init.ones_(t).data == 1).all()
    assert (init.constant_(t, 0.25).data == 0.25).all()
    p = nn.Parameter(ckpt.zeros(3, 3))
    init.uniform_(p, 1.0, 2.0)  # works on leaves that require grad, records nothing
    assert p.grad_fn is None and (p.data >= 1).all()
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(ckpt.empty(3))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(ckpt.empty(3, 3), mode="fan_avg")
    for name, kw in [("relu", {}), ("tanh", {}), ("leaky_relu", {"param": 0.2}), ("linear", {})]:
        assert init.calculate_gain(name, **kw) == pytest.approx(
            torch.nn.init.calculate_gain(name, **kw))


# ---- layers vs torch ----------------------------------------------------------------------
@pytest.mark.parametrize("ck_layer, torch_layer", [
    (nn.ReLU(), torch.nn.ReLU()), (nn.GELU(), torch.nn.GELU()),
    (nn.GELU("tanh"), torch.nn.GELU("tanh")), (nn.Tanh(), torch.nn.Tanh()),
    (nn.Sigmoid(), torch.nn.Sigmoid()), (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
    (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)), (nn.Flatten(), torch.nn.Flatten()),
    (nn.Flatten(0, 1), torch.nn.Flatten(0, 1)), (nn.Identity(), torch.nn.Identity()),
])
def test_parameterless_layers_match_torch(ck_layer, torch_layer, rng):
    data = rng.standard_normal((3, 4, 2))
    x = ckpt.tensor(data, requires_grad=True)
    tx = torch.tensor(data, requires_grad=True)
    y, ty = ck_layer(x), torch_layer(tx)
    assert_close(y, ty, dtype=np.float64)
    seed = rng.standard_normal(ty.shape)
    y.backward(ckpt.tensor(seed))
    ty.backward(torch.tensor(seed))
    assert_close(x.grad, tx.grad, dtype=np.float64)


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(ValueError, match="none or tanh"):
        nn.GELU("fast")


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
def test_mlp_mse_step_matches_torch(dtype, rtol, rng):
    ckpt.manual_seed(7)
    ck = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3)).to(dtype)
    tn = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(),
                             torch.nn.Linear(16, 3)).to(torch.float64 if dtype == np.float64
                                                        else torch.float32)
    copy_into_torch(ck, tn)
    x, tx = tensors(rng, 8, 5, dtype=dtype)
    y, ty = tensors(rng, 8, 3, dtype=dtype)
    loss = ((ck(x) - y) ** 2).mean()
    tloss = ((tn(tx) - ty) ** 2).mean()
    loss.backward()
    tloss.backward()
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=rtol)
    for (name, p), tp in zip(ck.named_parameters(), tn.parameters()):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=rtol,
                                   atol=rtol * 1e-2, err_msg=name)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("loss_name", ["CrossEntropyLoss", "MSELoss"])
def test_mlp_loss_module_step_matches_torch(loss_name, dtype, rtol, rng):
    ckpt.manual_seed(11)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    ck = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4)).to(dtype)
    tn = torch.nn.Sequential(torch.nn.Linear(6, 10), torch.nn.ReLU(),
                             torch.nn.Linear(10, 4)).to(tdtype)
    copy_into_torch(ck, tn)
    x, tx = tensors(rng, 12, 6, dtype=dtype)
    if loss_name == "CrossEntropyLoss":
        labels = rng.integers(0, 4, size=12)
        y, ty = ckpt.tensor(labels), torch.tensor(labels)
    else:
        y, ty = tensors(rng, 12, 4, dtype=dtype)
    loss = getattr(nn, loss_name)()(ck(x), y)
    tloss = getattr(torch.nn, loss_name)()(tn(tx), ty)
    loss.backward()
    tloss.backward()
    assert loss.dtype == dtype and loss.shape == ()
    np.testing.assert_allclose(loss.item(), tloss.item(), rtol=rtol)
    for (name, p), tp in zip(ck.named_parameters(), tn.parameters()):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=rtol, atol=rtol * 1e-2,
                                   err_msg=name)


def test_loss_modules_options_match_torch(rng):
    logits, tlogits = tensors(rng, 7, 5)
    labels = rng.integers(0, 5, size=7)
    labels[2] = 1
    weight = rng.uniform(0.5, 2.0, size=5)
    ce = nn.CrossEntropyLoss(weight=ckpt.tensor(weight), ignore_index=1, label_smoothing=0.1)
    tce = torch.nn.CrossEntropyLoss(weight=torch.tensor(weight), ignore_index=1,
                                    label_smoothing=0.1)
    assert [n for n, _ in ce.named_buffers()] == ["weight"]
    assert_close(ce(logits, ckpt.tensor(labels)), tce(tlogits, torch.tensor(labels)))
    for reduction in ("sum", "none"):
        assert_close(nn.MSELoss(reduction=reduction)(logits, logits * 0.5),
                     torch.nn.MSELoss(reduction=reduction)(tlogits, tlogits * 0.5))
        logp = ckpt.log_softmax(logits, 1)
        assert_close(nn.NLLLoss(reduction=reduction)(logp, ckpt.tensor(labels)),
                     torch.nn.NLLLoss(reduction=reduction)(torch.log_softmax(tlogits, 1),
                                                           torch.tensor(labels)))
    with pytest.raises(ValueError, match="avg is not a valid value for reduction"):
        nn.MSELoss(reduction="avg")


def _conv_nets(dtype):
    ck = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                       nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)).to(dtype)
    tn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                             torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                             torch.nn.Linear(4 * 4 * 4, 5))
    tn.to(torch.float64 if dtype == np.float64 else torch.float32)
    copy_into_torch(ck, tn)
    return ck, tn


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv_net_train_steps_match_torch_with_running_stats(dtype, rng):
    ckpt.manual_seed(5)
    ck, tn = _conv_nets(dtype)
    assert repr(ck) == repr(tn)
    opt = optim.SGD(ck.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tn.parameters(), lr=0.1, momentum=0.9)
    for step in range(2):
        x, tx = tensors(rng, 6, 3, 8, 8, dtype=dtype)
        labels = rng.integers(0, 5, size=6)
        opt.zero_grad()
        topt.zero_grad()
        loss = nn.CrossEntropyLoss()(ck(x), ckpt.tensor(labels))
        tloss = torch.nn.CrossEntropyLoss()(tn(tx), torch.tensor(labels))
        loss.backward()
        tloss.backward()
        assert_close(loss, tloss, dtype=dtype, what=f"loss at step {step}")
        assert_grads_match(ck, tn, dtype)
        opt.step()
        topt.step()
    bn, tbn = ck[1], tn[1]
    assert int(bn.num_batches_tracked) == int(tbn.num_batches_tracked) == 2
    assert_close(bn.running_mean, tbn.running_mean, dtype=dtype, what="running_mean")
    assert_close(bn.running_var, tbn.running_var, dtype=dtype, what="running_var")
    assert not np.allclose(bn.running_var.data, 1.0)  # the stats really moved
    for (name, p), tp in zip(ck.named_parameters(), tn.parameters()):
        assert_close(p, tp, dtype=dtype, what=f"{name} after 2 SGD steps")
    ck.eval()
    tn.eval()
    x, tx = tensors(rng, 2, 3, 8, 8, dtype=dtype)
    assert_close(ck(x), tn(tx), dtype=dtype, what="eval forward")
    assert int(bn.num_batches_tracked) == 2


def test_batchnorm_options_match_torch(rng):
    x, tx = tensors(rng, 5, 3)
    x3, tx3 = tensors(rng, 4, 3, 6)
    for kwargs in [dict(momentum=None), dict(affine=False), dict(track_running_stats=False)]:
        bn, tbn = nn.BatchNorm1d(3, **kwargs).double(), torch.nn.BatchNorm1d(3, **kwargs).double()
        for inp, tinp in ((x, tx), (x3, tx3), (x * 2 + 1, tx * 2 + 1)):
            assert_close(bn(inp), tbn(tinp), what=str(kwargs))
        if bn.track_running_stats:
            assert_close(bn.running_mean, tbn.running_mean, what=str(kwargs))
            assert_close(bn.running_var, tbn.running_var, what=str(kwargs))
        else:
            assert bn.running_mean is None and list(bn.state_dict()) == list(tbn.state_dict())
        bn.eval(), tbn.eval()
        assert_close(bn(x), tbn(tx), what=f"eval {kwargs}")
    with pytest.raises(ValueError, match=r"expected 4D input \(got 3D input\)"):
        nn.BatchNorm2d(3)(x3)
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        nn.BatchNorm1d(3)(ckpt.ones(2, 3, 1, 1))


def test_layernorm_matches_torch(rng):
    ckpt.manual_seed(0)
    for shape, kwargs in [((4,), {}), ((3, 4), dict(eps=1e-3)), ((4,), dict(elementwise_affine=False)),
                          ((4,), dict(bias=False))]:
        ln = nn.LayerNorm(shape, **kwargs).double()
        tln = torch.nn.LayerNorm(shape, **kwargs).double()
        assert repr(ln) == repr(tln)
        for p in ln.parameters():  # make the affine part non-trivial
            ckpt.nn.init.normal_(p)
        copy_into_torch(ln, tln)
        data = rng.standard_normal((2, 3, 4))
        x, tx = ckpt.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
        y, ty = ln(x), tln(tx)
        assert_close(y, ty)
        (y * y).sum().backward()
        (ty * ty).sum().backward()
        assert_close(x.grad, tx.grad)
        assert_grads_match(ln, tln, np.float64)


def test_pooling_layers_match_torch(rng):
    x, tx = tensors(rng, 2, 3, 7, 7)
    for ck, tn in [(nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
                   (nn.MaxPool2d(2, ceil_mode=True), torch.nn.MaxPool2d(2, ceil_mode=True)),
                   (nn.AvgPool2d(3, 2, 1), torch.nn.AvgPool2d(3, 2, 1)),
                   (nn.AvgPool2d(2, count_include_pad=False, padding=1),
                    torch.nn.AvgPool2d(2, count_include_pad=False, padding=1))]:
        assert repr(ck) == repr(tn)
        assert_close(ck(x), tn(tx), what=repr(ck))


def test_conv2d_options_and_init_match_torch(rng):
    ckpt.manual_seed(2)
    for args, kwargs in [((4, 6, 3), dict(stride=2, padding=1, groups=2, bias=False)),
                         ((4, 2, (3, 1)), dict(dilation=2, padding="same"))]:
        ck = nn.Conv2d(*args, **kwargs).double()
        tn = torch.nn.Conv2d(*args, **kwargs).double()
        assert repr(ck) == repr(tn)
        copy_into_torch(ck, tn)
        x, tx = tensors(rng, 2, 4, 9, 9)
        assert_close(ck(x), tn(tx), what=repr(ck))
    conv = nn.Conv2d(8, 16, 5)
    bound = 1 / math.sqrt(8 * 25)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.bias.data).max() <= bound
    assert np.abs(conv.weight.data).max() > 0.98 * bound
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


def test_dropout_train_vs_eval():
    drop = nn.Dropout(0.25)
    x = ckpt.ones(200, 50, requires_grad=True)
    y = drop(x)
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], 1 / 0.75, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, kept / 0.75, rtol=1e-6)  # same mask backward
    drop.eval()
    assert drop(x) is x or np.array_equal(drop(x).data, x.data)
    drop.train()
    state = ckpt.get_rng_state()
    a = drop(x)
    ckpt.set_rng_state(state)
    np.testing.assert_array_equal(drop(x).data, a.data)  # the mask comes from ckpt's generator
    assert repr(drop) == repr(torch.nn.Dropout(0.25))
    assert not np.array_equal(drop(x).data, a.data)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)


def test_embedding_matches_torch(rng):
    ckpt.manual_seed(9)
    emb = nn.Embedding(10, 4, padding_idx=-1)
    assert emb.padding_idx == 9 and not emb.weight.data[9].any()
    w = emb.weight.data
    assert 0.6 < w[:9].std() < 1.4  # N(0, 1)
    temb = torch.nn.Embedding(10, 4, padding_idx=-1)
    assert repr(emb) == repr(temb)
    copy_into_torch(emb, temb)
    idx = rng.integers(0, 10, size=(3, 5))
    idx[0, 0] = 9
    y, ty = emb(ckpt.tensor(idx)), temb(torch.tensor(idx))
    assert_close(y, ty, dtype=np.float32)
    seed = rng.standard_normal(ty.shape).astype(np.float32)
    y.backward(ckpt.tensor(seed))
    ty.backward(torch.tensor(seed))
    assert_close(emb.weight.grad, temb.weight.grad, dtype=np.float32)
    assert not emb.weight.grad.data[9].any()
    with pytest.raises(ValueError, match="Padding_idx must be within num_embeddings"):
        nn.Embedding(3, 2, padding_idx=3)


def _attention_pair(E, H, bias=True, batch_first=True, dropout=0.0):
    ck = nn.MultiheadSelfAttention(E, H, dropout=dropout, bias=bias,
                                   batch_first=batch_first).double()
    tn = torch.nn.MultiheadAttention(E, H, dropout=dropout, bias=bias,
                                     batch_first=batch_first).double()
    copy_into_torch(ck, tn)
    return ck, tn


@pytest.mark.parametrize("case", ["plain", "causal", "float_mask", "per_head_mask",
                                  "key_padding", "seq_first", "no_bias", "unbatched"])
def test_attention_matches_torch_outputs_and_gradients(case, rng):
    ckpt.manual_seed(4)
    E, H, N, L = 12, 3, 2, 5
    ck, tn = _attention_pair(E, H, bias=case != "no_bias", batch_first=case != "seq_first")
    shape = {"seq_first": (L, N, E), "unbatched": (L, E)}.get(case, (N, L, E))
    data = rng.standard_normal(shape)
    x, tx = ckpt.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    kw, tkw = {}, {}
    causal = np.triu(np.ones((L, L), dtype=bool), k=1)
    if case == "causal":
        kw, tkw = dict(is_causal=True), dict(attn_mask=torch.tensor(causal))
    elif case == "float_mask":
        m = rng.standard_normal((L, L))
        kw, tkw = dict(attn_mask=ckpt.tensor(m)), dict(attn_mask=torch.tensor(m))
    elif case == "per_head_mask":
        m = rng.random((N * H, L, L)) < 0.3
        m[..., 0] = False  # every query sees at least one key
        kw, tkw = dict(attn_mask=ckpt.tensor(m)), dict(attn_mask=torch.tensor(m))
    elif case == "key_padding":
        m = np.zeros((N, L), dtype=bool)
        m[1, 3:] = True
        kw, tkw = dict(key_padding_mask=ckpt.tensor(m)), dict(key_padding_mask=torch.tensor(m))
    y = ck(x, **kw)
    ty, _ = tn(tx, tx, tx, need_weights=False, **tkw)
    assert_close(y, ty, what=f"{case} output")
    seed = rng.standard_normal(ty.shape)
    y.backward(ckpt.tensor(seed))
    ty.backward(torch.tensor(seed))
    assert_close(x.grad, tx.grad, what=f"{case} input grad")
    assert_grads_match(ck, tn, np.float64)


def test_attention_init_dropout_and_errors(rng):
    ckpt.manual_seed(0)
    attn = nn.MultiheadSelfAttention(16, 4, dropout=0.5)
    assert not attn.in_proj_bias.data.any() and not attn.out_proj.bias.data.any()
    bound = math.sqrt(6 / (16 + 48))
    w = np.abs(attn.in_proj_weight.data)
    assert w.max() <= bound and w.max() > 0.95 * bound
    x = ckpt.randn(2, 6, 16)
    train_a, train_b = attn(x), attn(x)
    assert not np.allclose(train_a.data, train_b.data)  # dropout on the weights
    attn.eval()
    _, tn = None, torch.nn.MultiheadAttention(16, 4, dropout=0.5, batch_first=True)
    copy_into_torch(attn, tn)
    tn.eval()
    with torch.no_grad():
        assert_close(attn(x), tn(torch.tensor(x.data), torch.tensor(x.data),
                                 torch.tensor(x.data), need_weights=False)[0], dtype=np.float32)
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.MultiheadSelfAttention(10, 3)
    with pytest.raises(RuntimeError, match="shape of attn_mask"):
        attn(x, attn_mask=ckpt.ones(3, 3))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_encoder_layer_matches_torch(norm_first, activation, rng):
    ckpt.manual_seed(5)
    E, H, F_, N, L = 12, 3, 20, 2, 5
    ck = nn.TransformerEncoderLayer(E, H, F_, dropout=0.0, activation=activation,
                                    batch_first=True, norm_first=norm_first).double()
    tn = torch.nn.TransformerEncoderLayer(E, H, F_, dropout=0.0, activation=activation,
                                          batch_first=True, norm_first=norm_first).double()
    copy_into_torch(ck, tn)
    data = rng.standard_normal((N, L, E))
    x, tx = ckpt.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    causal = np.triu(np.ones((L, L), dtype=bool), k=1)
    y = ck(x, is_causal=True)
    ty = tn(tx, src_mask=torch.tensor(causal), is_causal=True)
    assert_close(y, ty, what="encoder layer output")
    seed = rng.standard_normal(ty.shape)
    y.backward(ckpt.tensor(seed))
    ty.backward(torch.tensor(seed))
    assert_close(x.grad, tx.grad, what="encoder layer input grad")
    assert_grads_match(ck, tn, np.float64)


def test_transformer_encoder_layer_dropout_and_errors():
    ckpt.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, batch_first=True)
    x = ckpt.randn(2, 3, 8)
    assert not np.allclose(layer(x).data, layer(x).data)  # dropout in training mode
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, layer(x).data)
    with pytest.raises(RuntimeError, match="activation should be relu/gelu, not tanh"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match="embed_dim must be divisible by num_heads"):
        nn.TransformerEncoderLayer(10, 3)
