"""``apply``: a planned ckpt model that trains step after step.

``planned = ckpt.planner.apply(model, plan)`` wraps a ``ckpt.nn.Sequential`` (child i =
stage i of ``plan.chain``) in a ``ckpt.nn.Module``. In training mode with grad enabled,
``planned(x)`` runs the plan's ops up to its first ``backward`` (the forwards, with their
drops, exactly as ``execute`` runs them: ``runner.Runner``) and returns x_L as the
output of a custom ``ckpt.autograd.Function`` holding the runner's value table. Any
ordinary loss computed from it, then ``loss.backward()``, reaches that Function's backward
with δ_L, the gradient of the loss with respect to the output; it seeds ``backward L``
with it (the runner's ``seed``: the loss is outside the plan) and runs the plan's
remaining ops — recomputations, backwards, drops — in the plan's order. The parameter
gradients it collects are returned to the engine, which puts them into ``.grad`` as
``loss.backward()`` on the plain model would: bit for bit the same values. If the input
requires grad, stage 1 gets a detached input too and its gradient flows back.

Randomness and side effects as in ``execute``: the RNG state before the first forward of a
stage is restored before each of its recomputations (a dropout mask is the same mask), the
generator is left after the forward where the plain forward leaves it and is restored after
the backward (plain backward draws nothing); BatchNorm updates its statistics once per step.

In eval mode, or under ``no_grad``, ``planned(x)`` is the plain ``model(x)``. The plan is
checked against the model as it runs: a stage output of another size than the chain's,
or a stage keeping other bytes for backward, raises ``PlanMismatchError`` (batch size or model changed: profile and plan again), with
the RNG and the module buffers put back.
"""
import sys as _sys
import types as _types

from ..autograd import grad_mode
from ..autograd.function import Function
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.foreign import reject_torch
from ..nn.module import Module
from .errors import ExecutionError
from .runner import Runner, check_model, undo_on_mismatch

__all__ = ["apply", "PlannedModule"]


class PlannedModule(Module):
    """A ``Sequential`` that trains under a plan (made by ``apply``).

    ``planned.model`` is the wrapped model (its parameters are the planned module's),
    ``planned.plan`` the ``Plan``, ``planned.chain`` its chain, ``planned.explain()`` the
    plan's table. Calling it in training mode with grad enabled runs the plan; otherwise it
    is the plain model.

    >>> import ckpt
    >>> from ckpt import planner
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(4, 4), ckpt.nn.Tanh())
    >>> x = ckpt.randn(2, 4)
    >>> planned = planner.apply(net, planner.plan(planner.profile(net, x, repeats=1), "store_all"))
    >>> planned.plan.strategy, len(list(planned.parameters()))
    ('store_all', 2)
    """

    def __init__(self, model, plan):
        super().__init__()
        self.model = model
        object.__setattr__(self, "plan", plan)

    @property
    def chain(self):
        """The chain the plan was made for.

        >>> import ckpt
        >>> from ckpt import planner
        >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(4, 4), ckpt.nn.Tanh())
        >>> chain = planner.profile(net, ckpt.randn(2, 4), repeats=1)
        >>> planner.apply(net, planner.plan(chain, "sqrt")).chain is chain
        True
        """
        return self.plan.chain

    def explain(self, max_ops=80):
        """The plan's account (``Plan.explain``): its numbers, then op by op.

        >>> import ckpt
        >>> from ckpt import planner
        >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(4, 4), ckpt.nn.Tanh())
        >>> chain = planner.profile(net, ckpt.randn(2, 4), repeats=1)
        >>> print(planner.apply(net, planner.plan(chain, "store_all")).explain().splitlines()[0])
        plan 'store_all' for chain 'Sequential' (L=2): 4 ops, no budget
        """
        return self.plan.explain(max_ops)

    def forward(self, x):
        if not (self.training and self.model.training and grad_mode.is_grad_enabled()):
            return self.model(x)
        if not isinstance(x, Tensor):
            raise ExecutionError(f"a planned model takes one ckpt.Tensor, got "
                                 f"{type(x).__name__}")
        return _planned_step(self.model, self.plan, x)

    def extra_repr(self):
        return f"plan={self.plan!r}"


def _planned_step(model, plan, x):
    ops = plan.ops
    first_backward = next(k for k, op in enumerate(ops) if op.kind == "backward")
    params = [p for p in model.parameters() if p.requires_grad]
    runner = Runner(list(model), x, None, chain=plan.chain, collect=True,
                     input_grad=x.requires_grad)
    with undo_on_mismatch(model):
        for op in ops[:first_backward]:
            runner.run(op)
    set_rng_state(runner.rng[runner.L + 1])   # where the plain forward leaves it
    return _PlanStep.apply(runner, ops[first_backward:], params, x, *params)


class _PlanStep(Function):
    """The planned step as one node of the user's graph: forward returns x_L (already
    computed by the runner), backward runs the plan's remaining ops from δ_L."""

    @staticmethod
    def forward(ctx, runner, ops, params, x, *param_tensors):
        ctx.runner, ctx.ops, ctx.params = runner, ops, params
        return runner.xbar[runner.L][0].detach()

    @staticmethod
    def backward(ctx, grad_output):
        runner, ctx.runner = ctx.runner, None
        if runner is None:
            raise RuntimeError("a planned step's backward ran already: its plan frees what "
                               "it used (retain_graph=True cannot run it twice); run the "
                               "planned model again for another backward")
        state = get_rng_state()
        runner.seed = grad_output
        try:
            for op in ctx.ops:
                runner.run(op)
        finally:
            set_rng_state(state)        # recomputations replayed their stages' RNG
        delta0 = runner.delta.pop(0, None)
        dx = None if delta0 is None else Tensor(delta0.data)
        grads = [runner.grads.get(id(p)) for p in ctx.params]
        return (None, None, None, dx, *grads)


def apply(model, plan):
    """A ``ckpt.nn.Module`` that runs ``model`` (a ``ckpt.nn.Sequential``, child i = stage
    i) under ``plan`` at every training step: ``loss_fn(planned(x)).backward()`` gives the
    gradients of ``loss_fn(model(x)).backward()``, bit for bit, recomputing as the plan says
    (see the module docstring). Use it in a training loop with any optimizer; the planned
    module's parameters are the model's. Eval mode and ``no_grad`` run the plain model.

    >>> import ckpt
    >>> from ckpt import nn, planner
    >>> _ = ckpt.manual_seed(0)
    >>> model = nn.Sequential(*[nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Dropout(0.1))
    ...                         for _ in range(6)])
    >>> x, target = ckpt.randn(16, 32), ckpt.randn(16, 32)
    >>> loss_fn = lambda out: ((out - target) ** 2).mean()
    >>> chain = planner.profile(model, x, loss_fn, repeats=1)
    >>> planned = planner.apply(model, planner.plan(chain, "min_memory"))
    >>> opt = ckpt.optim.Adam(planned.parameters(), lr=1e-3)
    >>> for step in range(3):
    ...     opt.zero_grad()
    ...     loss = loss_fn(planned(x))
    ...     loss.backward()          # recomputes what the plan dropped
    ...     opt.step()
    >>> model[0][0].weight.grad.shape
    (32, 32)

    The plan must be for this model at this input size: a stage output of another size, or
    a stage keeping other bytes for backward, raises ``PlanMismatchError`` (profile and plan again), and a plan for another number of
    stages ``ExecutionError``.
    """
    reject_torch("ckpt.planner.apply", [model],
                 "it runs plans on ckpt models", "ckpt.torch.plan(model, sample, loss_fn)")
    check_model(model, plan, api="apply")
    return PlannedModule(model, plan)


class _CallableModule(_types.ModuleType):
    """Importing this module rebinds the package attribute ``ckpt.planner.apply`` to it;
    calling the module calls ``apply``, so ``ckpt.planner.apply(...)`` always works."""

    def __call__(self, *args, **kwargs):
        return apply(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
