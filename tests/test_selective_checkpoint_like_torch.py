"""Selective checkpointing: create_selective_checkpoint_contexts with CheckpointPolicy as
checkpoint's context_fn gives torch's gradients, and asks the policy in the forward."""
import functools

import numpy as np

import pytest
import torch
import torch.utils.checkpoint as torch_checkpoint

import ckpt
from ckpt.runtime import CheckpointPolicy, create_selective_checkpoint_contexts


def checkpoint_module(lib):
    return torch_checkpoint if lib is torch else ckpt.runtime


def block(lib, x, w):
    return ((x @ w).sin() * x.sum()).exp().sum()


def program(lib, save, calls):
    """Gradients of a checkpointed block whose policy saves the ops named in ``save``."""
    cp = checkpoint_module(lib)

    def policy(ctx, op, *args, **kwargs):
        name = op if isinstance(op, str) else op._opname
        calls.add(ctx.is_recompute)
        return CheckpointPolicy.MUST_SAVE if name in save else CheckpointPolicy.PREFER_RECOMPUTE
    policy_types = {torch: torch_checkpoint.CheckpointPolicy, ckpt: CheckpointPolicy}
    lib.manual_seed(0)
    x = lib.tensor([[0.1, 0.2, 0.3], [0.4, -0.5, 0.6]], dtype=lib.float64, requires_grad=True)
    w = lib.tensor([[1.0, 2.0], [0.5, -1.0], [0.0, 1.0]], dtype=lib.float64, requires_grad=True)

    def translate(ctx, op, *args, **kwargs):  # our policy answers in ckpt's enum
        return policy_types[lib][policy(ctx, op).name]
    context_fn = functools.partial(cp.create_selective_checkpoint_contexts, translate)
    y = cp.checkpoint(functools.partial(block, lib), x, w, use_reentrant=False,
                      context_fn=context_fn)
    y.backward()
    return x.grad.tolist(), w.grad.tolist()


@pytest.mark.parametrize("save", [(), ("mm",), ("mm", "sin", "exp", "mul", "sum")])
def test_selective_checkpoint_gradients_as_torch(save):
    ours_calls, theirs_calls = set(), set()
    ours, theirs = program(ckpt, save, ours_calls), program(torch, save, theirs_calls)
    for a, b in zip(ours, theirs):
        assert np.allclose(a, b, rtol=1e-13, atol=0)
    assert ours_calls == theirs_calls == {False}   # asked in the forward only


def test_keeping_everything_backward_needs_skips_the_recomputation():
    runs = []
    x = ckpt.ones(2, 3, requires_grad=True)

    def f(x):
        runs.append(1)
        return (x.sin() * 2).exp().sum()
    everything = functools.partial(create_selective_checkpoint_contexts,
                                   lambda ctx, op: CheckpointPolicy.PREFER_SAVE)
    ckpt.checkpoint(f, x, use_reentrant=False, context_fn=everything).backward()
    kept_grad = x.grad.tolist()
    x.grad = None
    nothing = functools.partial(create_selective_checkpoint_contexts, [])
    ckpt.checkpoint(f, x, use_reentrant=False, context_fn=nothing).backward()
    assert runs == [1, 1, 1] and x.grad.tolist() == kept_grad


def test_bad_policies_are_refused_as_torch():
    for lib, cp in ((ckpt, ckpt.runtime), (torch, torch_checkpoint)):
        with pytest.raises(TypeError, match="policy_fn_or_list must be either a function or a list of ops"):
            cp.create_selective_checkpoint_contexts(3)
    assert [p.name for p in CheckpointPolicy] == [p.name for p in torch_checkpoint.CheckpointPolicy]
