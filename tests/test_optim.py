"""ckpt.optim: SGD and Adam trajectories match torch.optim on the same parameters and
gradients; hyperparameter validation, parameter groups, zero_grad and state_dict."""
import numpy as np
import pytest
import torch

import ckpt
import ckpt.nn as nn
import ckpt.optim as optim

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.1, momentum=0.8, weight_decay=0.05),
    dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True),
]
ADAM_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.02, weight_decay=0.1),
    dict(lr=0.02, betas=(0.3, 0.8), eps=1e-6, weight_decay=0.1, amsgrad=True),  # lerp's >= 0.5 branch
    dict(lr=0.01, maximize=True),
]
TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=1e-5, atol=1e-6)}
SHAPES = [(7, 3), (5,), ()]


def _trajectory(ck_cls, torch_cls, config, dtype, rng, steps=5):
    """Run both optimizers for ``steps`` on copies of the same parameters and gradient
    sequence; return the per-step parameter values of each."""
    start = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    grads = [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]
    ck_params = [nn.Parameter(ckpt.tensor(a)) for a in start]
    t_params = [torch.nn.Parameter(torch.tensor(a)) for a in start]
    ck_opt, t_opt = ck_cls(ck_params, **config), torch_cls(t_params, **config)
    ck_path, t_path = [], []
    for step_grads in grads:
        for p, tp, g in zip(ck_params, t_params, step_grads):
            p.grad, tp.grad = ckpt.tensor(g), torch.tensor(g)
        ck_opt.step()
        t_opt.step()
        ck_path.append([p.data.copy() for p in ck_params])
        t_path.append([tp.detach().numpy().copy() for tp in t_params])
    return ck_path, t_path, ck_opt, t_opt, ck_params, t_params


def _assert_paths_close(ck_path, t_path, dtype, what):
    for step, (ck_vals, t_vals) in enumerate(zip(ck_path, t_path)):
        for i, (a, b) in enumerate(zip(ck_vals, t_vals)):
            assert a.dtype == dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, **TOLERANCE[dtype],
                                       err_msg=f"{what}: param {i} after step {step + 1}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_trajectory_matches_torch(config, dtype, rng):
    ck_path, t_path, ck_opt, t_opt, ck_params, t_params = _trajectory(
        optim.SGD, torch.optim.SGD, config, dtype, rng)
    _assert_paths_close(ck_path, t_path, dtype, f"SGD {config}")
    if config.get("momentum"):
        for p, tp in zip(ck_params, t_params):
            np.testing.assert_allclose(ck_opt.state[p]["momentum_buffer"].data,
                                       t_opt.state[tp]["momentum_buffer"].numpy(),
                                       **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=str)
def test_adam_trajectory_matches_torch(config, dtype, rng):
    ck_path, t_path, ck_opt, t_opt, ck_params, t_params = _trajectory(
        optim.Adam, torch.optim.Adam, config, dtype, rng)
    _assert_paths_close(ck_path, t_path, dtype, f"Adam {config}")
    keys = ["step", "exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if config.get("amsgrad") else [])
    for p, tp in zip(ck_params, t_params):
        assert sorted(ck_opt.state[p]) == sorted(t_opt.state[tp]) == sorted(keys)
        for key in keys:
            np.testing.assert_allclose(ck_opt.state[p][key].data, t_opt.state[tp][key].numpy(),
                                       **TOLERANCE[dtype], err_msg=key)


def test_adamw_trajectory_matches_torch(rng):
    ck_path, t_path, *_ = _trajectory(optim.AdamW, torch.optim.AdamW,
                                      dict(lr=0.05, weight_decay=0.3), np.float64, rng)
    _assert_paths_close(ck_path, t_path, np.float64, "AdamW")


@pytest.mark.parametrize("make", [
    lambda ps: (optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                lambda tps: torch.optim.SGD(tps, lr=0.05, momentum=0.9, nesterov=True,
                                            weight_decay=0.01)),
    lambda ps: (optim.Adam(ps, lr=0.05, amsgrad=True, weight_decay=0.01),
                lambda tps: torch.optim.Adam(tps, lr=0.05, amsgrad=True, weight_decay=0.01)),
], ids=["sgd", "adam"])
def test_training_loop_with_closure_matches_torch(make, rng):
    """Gradients that depend on the parameters: 5 steps of a least-squares fit."""
    a = rng.standard_normal((20, 4))
    b = rng.standard_normal((20, 1))
    w0 = rng.standard_normal((4, 1))
    w, tw = nn.Parameter(ckpt.tensor(w0)), torch.nn.Parameter(torch.tensor(w0))
    opt, make_torch = make([w])
    topt = make_torch([tw])
    A, tA, B, tB = ckpt.tensor(a), torch.tensor(a), ckpt.tensor(b), torch.tensor(b)

    def closure():
        opt.zero_grad()
        loss = ((A @ w - B) ** 2).mean()
        loss.backward()
        return loss

    def tclosure():
        topt.zero_grad()
        loss = ((tA @ tw - tB) ** 2).mean()
        loss.backward()
        return loss

    losses = [opt.step(closure).item() for _ in range(5)]
    tlosses = [topt.step(tclosure).item() for _ in range(5)]
    np.testing.assert_allclose(losses, tlosses, rtol=1e-12)
    np.testing.assert_allclose(w.data, tw.detach().numpy(), rtol=1e-12)
    assert losses[-1] < losses[0]


# ---- behaviour --------------------------------------------------------------------------
def test_step_updates_in_place_without_graph_and_bumps_version():
    p = nn.Parameter(ckpt.tensor([1.0, 2.0]))
    data = p.data
    y = p * p  # saves p for backward
    p.grad = ckpt.tensor([1.0, 1.0])
    opt = optim.SGD([p], lr=0.5)
    opt.step()
    assert p.data is data and p.is_leaf and p.grad_fn is None and p.requires_grad
    np.testing.assert_array_equal(p.data, [0.5, 1.5])
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_parameters_without_grad_are_skipped():
    a, b = nn.Parameter(ckpt.ones(2)), nn.Parameter(ckpt.ones(2))
    a.grad = ckpt.ones(2)
    for opt in (optim.SGD([a, b], lr=0.1, momentum=0.9), optim.Adam([a, b], lr=0.1)):
        opt.step()
        assert b not in opt.state and b.data.tolist() == [1.0, 1.0]
        assert a in opt.state


def test_zero_grad():
    p = nn.Parameter(ckpt.ones(3))
    (p * 2).sum().backward()
    opt = optim.Adam([p])
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and not grad.data.any()
    opt.zero_grad()
    assert p.grad is None


def test_param_groups_use_their_own_hyperparameters():
    a, b = nn.Parameter(ckpt.ones(1)), nn.Parameter(ckpt.ones(1))
    a.grad, b.grad = ckpt.ones(1), ckpt.ones(1)
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1)
    opt.step()
    assert a.data.tolist() == pytest.approx([0.9]) and b.data.tolist() == pytest.approx([0.5])
    c = nn.Parameter(ckpt.ones(1))
    opt.add_param_group({"params": [c], "momentum": 0.9})
    assert opt.param_groups[2]["lr"] == 0.1 and opt.param_groups[2]["momentum"] == 0.9
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_model_parameters_generator_is_accepted():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    opt = optim.Adam(model.parameters(), lr=0.01)
    assert len(opt.param_groups[0]["params"]) == 4
    x, y = ckpt.randn(16, 3), ckpt.randn(16, 1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name, kwargs, message", [
    ("SGD", dict(lr=-1.0), "Invalid learning rate: -1.0"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "Invalid momentum value: -0.5"),
    ("SGD", dict(lr=0.1, weight_decay=-1), "Invalid weight_decay value: -1"),
    ("SGD", dict(lr=0.1, nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     "Nesterov momentum requires a momentum and zero dampening"),
    ("Adam", dict(lr=-0.1), "Invalid learning rate: -0.1"),
    ("Adam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    ("Adam", dict(betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    ("Adam", dict(eps=-1e-8), "Invalid epsilon value: -1e-08"),
    ("Adam", dict(weight_decay=-0.5), "Invalid weight_decay value: -0.5"),
])
def test_invalid_hyperparameters_raise_torch_messages(name, kwargs, message):
    with pytest.raises(ValueError) as info:
        getattr(optim, name)([nn.Parameter(ckpt.ones(1))], **kwargs)
    assert str(info.value) == message
    with pytest.raises(ValueError) as torch_info:  # torch says exactly the same
        getattr(torch.optim, name)([torch.nn.Parameter(torch.ones(1))], **kwargs)
    assert str(torch_info.value) == message


def test_invalid_params_raise():
    with pytest.raises(TypeError, match="iterable of Tensors or dicts, but got ckpt.FloatTensor"):
        optim.SGD(nn.Parameter(ckpt.ones(1)), lr=0.1)
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="can only optimize Tensors, but one of the params is int"):
        optim.SGD([1], lr=0.1)
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([nn.Parameter(ckpt.ones(1)) * 2], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": {nn.Parameter(ckpt.ones(1))}}], lr=0.1)


# ---- state_dict ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls, config", [(optim.SGD, dict(lr=0.1, momentum=0.9)),
                                         (optim.Adam, dict(lr=0.05, amsgrad=True))])
def test_state_dict_resume_equals_uninterrupted_run(cls, config, rng):
    start = rng.standard_normal((3, 2))
    grads = [rng.standard_normal((3, 2)) for _ in range(6)]

    def run(steps, params, opt):
        for g in steps:
            params[0].grad = ckpt.tensor(g)
            opt.step()

    ref = [nn.Parameter(ckpt.tensor(start))]
    ref_opt = cls(ref, **config)
    run(grads, ref, ref_opt)

    first = [nn.Parameter(ckpt.tensor(start))]
    first_opt = cls(first, **config)
    run(grads[:3], first, first_opt)
    saved = first_opt.state_dict()
    assert list(saved["state"]) == [0] and saved["param_groups"][0]["params"] == [0]
    assert saved["param_groups"][0]["lr"] == config["lr"]

    resumed = [nn.Parameter(ckpt.tensor(first[0].data.copy()))]
    resumed_opt = cls(resumed, lr=123.0)
    resumed_opt.load_state_dict(saved)
    assert resumed_opt.param_groups[0]["lr"] == config["lr"]
    assert resumed_opt.param_groups[0]["params"][0] is resumed[0]
    run(grads[3:], resumed, resumed_opt)
    np.testing.assert_array_equal(resumed[0].data, ref[0].data)
    # the loaded state is a copy: stepping the resumed optimizer left the saved one alone
    run(grads[3:4], first, first_opt)
    assert not np.array_equal(first[0].data, resumed[0].data)


def test_state_dict_layout_matches_torch():
    ck_ps = [nn.Parameter(ckpt.ones(2)), nn.Parameter(ckpt.ones(3))]
    t_ps = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    ck_opt = optim.Adam([{"params": ck_ps[:1]}, {"params": ck_ps[1:], "lr": 0.1}])
    t_opt = torch.optim.Adam([{"params": t_ps[:1]}, {"params": t_ps[1:], "lr": 0.1}])
    for p in ck_ps:
        p.grad = ckpt.ones_like(p)
    for p in t_ps:
        p.grad = torch.ones_like(p)
    ck_opt.step()
    t_opt.step()
    ck_sd, t_sd = ck_opt.state_dict(), t_opt.state_dict()
    assert [g["params"] for g in ck_sd["param_groups"]] == [g["params"] for g in t_sd["param_groups"]]
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"):
        assert [g[key] for g in ck_sd["param_groups"]] == [g[key] for g in t_sd["param_groups"]]
    assert ck_sd["state"].keys() == t_sd["state"].keys()
    for i in ck_sd["state"]:
        assert ck_sd["state"][i].keys() == t_sd["state"][i].keys()
        assert float(ck_sd["state"][i]["step"].item()) == float(t_sd["state"][i]["step"])


def test_load_state_dict_validates_groups():
    a, b = nn.Parameter(ckpt.ones(1)), nn.Parameter(ckpt.ones(1))
    saved = optim.SGD([a, b], lr=0.1).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        optim.SGD([a], lr=0.1).load_state_dict(saved)
