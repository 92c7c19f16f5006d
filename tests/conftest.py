"""Shared helpers for the autograd test suite: torch conversion, tolerances, input makers,
and one hypothesis profile for every property test (modest example count, no deadline)."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

import ckpt
from ckpt.autograd import grad_mode
from ckpt.autograd.node import _HookStack

settings.register_profile(
    "ckpt", max_examples=20, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ckpt")

torch.set_default_dtype(torch.float32)

class Double(ckpt.autograd.Function):
    """A custom Function with forward and backward but no jvp: ``2 * x``."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


# (rtol, atol) per dtype for comparisons against torch
TOL = {np.dtype(np.float64): (1e-10, 1e-12), np.dtype(np.float32): (1e-5, 1e-5)}


def to_torch(t, requires_grad=None):
    """A torch tensor holding a copy of a ckpt tensor (or numpy array)'s values.

    ``requires_grad`` defaults to the ckpt tensor's flag; the result is a torch leaf."""
    data = t.data if isinstance(t, ckpt.Tensor) else np.asarray(t)
    out = torch.from_numpy(np.array(data, copy=True))
    if requires_grad is None:
        requires_grad = isinstance(t, ckpt.Tensor) and t.requires_grad
    if requires_grad:
        out.requires_grad_(True)
    return out


def to_numpy(t):
    """numpy value of a ckpt tensor, a torch tensor, or an array-like."""
    if isinstance(t, ckpt.Tensor):
        return t.data
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    return np.asarray(t)


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, what=""):
    """``actual`` (ckpt / numpy) equals ``expected`` (torch / numpy) in shape and value."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    if dtype is None:
        dtype = e.dtype if e.dtype.kind == "f" else np.dtype(np.float64)
    r, t = TOL.get(np.dtype(dtype), (1e-5, 1e-6))
    np.testing.assert_allclose(a, e, rtol=rtol if rtol is not None else r,
                               atol=atol if atol is not None else t, err_msg=what)


def rand_tensor(shape, rng, dtype=np.float64, requires_grad=True, low=None, high=None,
                away_from=None, margin=0.2):
    """A ckpt leaf of ``shape`` with values from ``rng``.

    ``low/high`` draw uniformly; otherwise standard normal. ``away_from`` (a number) pushes
    values at least ``margin`` away from it (for kinks: abs, relu, clamp)."""
    if low is not None:
        data = rng.uniform(low, high, size=shape)
    else:
        data = rng.standard_normal(size=shape)
    if away_from is not None:
        d = data - away_from
        sign = np.where(d >= 0, 1.0, -1.0)
        data = away_from + sign * (margin + np.abs(d))
    return ckpt.Tensor(np.asarray(data, dtype=dtype), requires_grad=requires_grad)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _clean_global_state():
    """Every test starts and ends with grad mode on and no saved-tensor hooks installed."""
    grad_mode._State.enabled = True
    _HookStack.pairs.clear()
    yield
    leaked_mode = grad_mode._State.enabled
    leaked_hooks = list(_HookStack.pairs)
    grad_mode._State.enabled = True
    _HookStack.pairs.clear()
    assert leaked_mode, "test left grad mode disabled"
    assert not leaked_hooks, "test left saved-tensor hooks installed"
