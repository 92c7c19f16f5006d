"""Selective activation checkpointing (torch.utils.checkpoint's
``create_selective_checkpoint_contexts`` and ``CheckpointPolicy``): a per-op policy says
which tensors a checkpointed function keeps and which it recomputes.

Pass the contexts as ``checkpoint``'s ``context_fn``. A tensor the checkpointed function's
ops save for backward is kept when the op that produced it has a ``*_SAVE`` policy, and
recomputed otherwise. Differences from torch: ``op`` is the op's name as torch's aten names
it (``"mm"``, ``"sin"``, ``"log_softmax"``: ckpt has no op overload objects), ``args`` and
``kwargs`` are empty; a recomputation runs only when a tensor backward needs was not kept
(torch reruns the function and takes kept outputs from its cache), so keeping every needed
tensor skips it; the ``*_CPU_OFFLOAD`` policies keep the tensor (it is in CPU memory).
"""
import enum
import functools
import re


class CheckpointPolicy(enum.Enum):
    """What the policy says of one op's output."""
    MUST_SAVE = 0
    PREFER_SAVE = 1
    MUST_RECOMPUTE = 2
    PREFER_RECOMPUTE = 3
    MUST_CPU_OFFLOAD = 4
    PREFER_CPU_OFFLOAD = 5


_KEPT = {CheckpointPolicy.MUST_SAVE, CheckpointPolicy.PREFER_SAVE,
         CheckpointPolicy.MUST_CPU_OFFLOAD, CheckpointPolicy.PREFER_CPU_OFFLOAD}


class SelectiveCheckpointContext:
    """The ``ctx`` a policy function receives: ``is_recompute`` says which run it is in."""

    def __init__(self, *, is_recompute):
        self.is_recompute = is_recompute


def op_name(node_name):
    """The aten-style op name behind a node's name.

    >>> op_name("MmBackward0"), op_name("LogSoftmaxBackward0")
    ('mm', 'log_softmax')
    """
    stem = re.sub(r"Backward\d*$", "", node_name)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


class SelectiveContext:
    """One of the two context managers ``create_selective_checkpoint_contexts`` returns;
    ``checkpoint`` reads its policy (entering it does nothing more)."""

    def __init__(self, policy_fn, is_recompute):
        self.policy_fn, self.is_recompute = policy_fn, is_recompute

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keeps(self, node_name):
        """Whether the policy keeps the output of the op whose node is named ``node_name``
        (asked in the forward, as torch asks)."""
        policy = self.policy_fn(SelectiveCheckpointContext(is_recompute=False), op_name(node_name))
        if isinstance(policy, bool):
            policy = CheckpointPolicy.MUST_SAVE if policy else CheckpointPolicy.PREFER_RECOMPUTE
        if not isinstance(policy, CheckpointPolicy):
            raise ValueError(f"policy_fn must return a CheckpointPolicy or a bool, got "
                             f"{policy!r} for op {op_name(node_name)!r}")
        return policy in _KEPT


def _name_of(op):
    return op if isinstance(op, str) else getattr(op, "_opname", None) or op.__name__


def _listed(names, ctx, op, *args, **kwargs):
    return CheckpointPolicy.MUST_SAVE if op in names else CheckpointPolicy.PREFER_RECOMPUTE


def create_selective_checkpoint_contexts(policy_fn_or_list, allow_cache_entry_mutation=False):
    """The (forward, recomputation) context pair for ``checkpoint``'s ``context_fn``:
    ``policy_fn(ctx, op, *args, **kwargs)`` returns a ``CheckpointPolicy`` (or a bool, True
    for ``MUST_SAVE``) per op; a list of ops (names, or ckpt functions such as ``ckpt.mm``)
    saves those and recomputes the rest.

    >>> import functools, ckpt
    >>> from ckpt.runtime import create_selective_checkpoint_contexts
    >>> x = ckpt.ones(3, requires_grad=True); runs = []
    >>> def f(x):
    ...     runs.append(1)
    ...     return x.sin().exp()
    >>> keep_all = functools.partial(create_selective_checkpoint_contexts, ["sin", ckpt.exp])
    >>> ckpt.checkpoint(f, x, use_reentrant=False, context_fn=keep_all).sum().backward()
    >>> len(runs)   # everything backward needs was kept: no recomputation
    1
    """
    if isinstance(policy_fn_or_list, (list, tuple, set)):
        policy_fn = functools.partial(_listed, {_name_of(op) for op in policy_fn_or_list})
    elif callable(policy_fn_or_list):
        policy_fn = policy_fn_or_list
    else:
        raise TypeError("policy_fn_or_list must be either a function or a list of ops.")
    return SelectiveContext(policy_fn, False), SelectiveContext(policy_fn, True)
