"""``ckpt.torch.plan``: a torch model wrapped so that every training step follows a plan.

>>> import torch, ckpt.torch
>>> net = torch.nn.Sequential(*[torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh())
...                             for _ in range(6)])
>>> x = torch.randn(32, 64)
>>> planned = ckpt.torch.plan(net, x, strategy="sqrt", repeats=1)
>>> opt = torch.optim.SGD(planned.parameters(), lr=0.1)
>>> for _ in range(2):
...     opt.zero_grad()
...     planned(x).pow(2).mean().backward()
...     opt.step()
>>> planned.plan.strategy, len(planned.chain)
('sqrt', 6)
"""
import weakref

import torch
from torch import nn

from .. import planner
from .compiled import (block_checkpoint_min_memory, block_checkpoint_plan, checkpointed_stages,
                       compiled_step)
from .measure import profile
from .runner import Step, run_in_order
from .stages import resolve

__all__ = ["PlannedModule", "plan", "COMPILED_STRATEGIES"]

# what ``plan(..., compile=True)`` takes as its strategy
COMPILED_STRATEGIES = ("optimal", "min_memory")


class PlannedModule(nn.Module):
    """``model`` whose training steps follow ``plan`` (a ``ckpt.planner.Plan`` for the
    chain ``ckpt.torch.profile`` measured on it with the same ``stages``).

    Called in training mode with grad enabled, it runs the plan's forward phase and returns
    the model's output; backpropagating a loss of it runs the rest of the plan (the
    recomputations where the plan puts them); parameters get their gradients through
    torch's engine, as from a plain backward. In eval mode or under ``no_grad``, and under a
    plan that keeps everything (store-all), it is the model (given an explicit list of
    stages: those stages, in order, as the step calls them). ``plan``, ``chain`` and
    ``explain()`` describe the schedule; parameters, buffers and the state dict are the model's (``planned.model``).

    ``compile=True`` (or a dict of ``torch.compile`` options) runs the model as one compiled
    graph in every mode, the blocks ``plan`` checkpoints under ``torch.utils.checkpoint``;
    ``plan`` must be a compiled plan (``ckpt.torch.compiled.block_checkpoint_plan``;
    docs/torch.md, "Compiled plans").
    """

    def __init__(self, model, plan, stages="auto", compile=False):
        super().__init__()
        self.model = model
        self.staging = resolve(model, stages)
        if len(self.staging) != len(plan.chain):
            raise ValueError(
                f"the plan is for a chain of {len(plan.chain)} stages; the model cut with "
                f"stages={stages!r} has {len(self.staging)} ({', '.join(self.staging.names)})"
                "; profile it with the same stages")
        # an explicit list may differ from the model's code in how it computes (compiled
        # stages): the plain forward runs it too
        self.explicit = not isinstance(stages, str)
        self.plan = plan
        self.chain = plan.chain
        # a plan that keeps every stage's first run and recomputes nothing (store-all) is
        # the plain step
        self.plain = all(op.kind in ("forward_save", "backward") for op in plan.ops)
        # compiled: the options, the checkpointed stages, and the step, made for the model
        # it was made for (a deep copy of this module makes its own)
        self.compile_options = _compile_options(compile)
        self.checkpointed = None
        self._step, self._step_for = None, None
        if self.compile_options is not None:
            self.checkpointed = set(checkpointed_stages(plan))
            self._compiled_step()          # refuses stages it cannot checkpoint

    def _compiled_step(self):
        if self._step_for is None or self._step_for() is not self.model:
            self._step = compiled_step(self.model, self.staging, self.checkpointed,
                                       self.compile_options)
            self._step_for = weakref.ref(self.model)
        return self._step

    def forward(self, *args, **kwargs):
        if self.compile_options is not None:
            return self._compiled_step()(*args, **kwargs)
        if not (self.training and torch.is_grad_enabled()) or self.plain:
            return (run_in_order(self.staging, args, kwargs) if self.explicit else
                    self.model(*args, **kwargs))
        return Step(self.model, self.staging, self.plan.ops, args, kwargs).run()

    def explain(self, max_ops=80):
        """The plan's table: its numbers, then each op with memory during and after it.

        >>> import torch, ckpt.torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
        >>> print(ckpt.torch.plan(net, torch.randn(2, 8), repeats=1).explain().splitlines()[0])
        plan 'optimal' for chain 'Sequential' (L=2): 4 ops, no budget
        """
        return self.plan.explain(max_ops=max_ops)


def plan(model, sample, loss_fn=None, budget=None, strategy="optimal", stages="auto",
         repeats=3, compile=False, **options):
    """Profile ``model`` on ``sample`` (``ckpt.torch.profile``), plan it with ``strategy``
    under ``budget`` (bytes or "512MiB"; None: unconstrained) and return the model wrapped
    (``PlannedModule``) to train with: ``loss_fn(wrapped(x)).backward()`` follows the plan.
    ``options`` go to the strategy (``ckpt.planner.plan``). ``compile=True`` (or a dict of
    ``torch.compile`` options) plans instead which blocks to checkpoint inside one compiled
    graph and runs the model compiled: ``strategy`` "optimal", the least recomputation within
    ``budget`` (``block_checkpoint_plan``), or "min_memory", the least memory
    (``block_checkpoint_min_memory``).

    >>> import torch, ckpt.torch
    >>> net = torch.nn.Sequential(*[torch.nn.Linear(32, 32) for _ in range(4)])
    >>> x = torch.randn(16, 32)
    >>> wrapped = ckpt.torch.plan(net, x, budget="1GiB", repeats=1)
    >>> torch.equal(wrapped(x), net(x))
    True
    """
    if _compile_options(compile) is not None and (strategy not in COMPILED_STRATEGIES
                                                  or options):
        raise ValueError(
            f"compile=True plans which blocks run under torch.utils.checkpoint inside the "
            f"compiled graph: strategy 'optimal' (the least recomputation within the budget) "
            f"or 'min_memory' (the least memory), without options; got {strategy!r}"
            + (f" with {sorted(options)}" if options else ""))
    chain = profile(model, sample, loss_fn=loss_fn, stages=stages, repeats=repeats)
    if compile is not False:
        checkpointable = range(2, len(chain)) if resolve(model, stages).kind == "auto" else None
        compiled_plan = (block_checkpoint_plan if strategy == "optimal" else
                         block_checkpoint_min_memory)(chain, budget, checkpointable=checkpointable)
        return PlannedModule(model, compiled_plan, stages=stages, compile=compile)
    return PlannedModule(model, planner.plan(chain, strategy, budget=budget, **options),
                         stages=stages)




def _compile_options(compile):
    """``compile`` (False, True or a dict of ``torch.compile`` options) as None (not
    compiled) or the options."""
    if compile is False:
        return None
    if compile is True or isinstance(compile, dict):
        return {} if compile is True else dict(compile)
    raise TypeError(f"compile must be True, False or a dict of torch.compile options (such as "
                    f"{{'mode': 'max-autotune'}}), got {type(compile).__name__} {compile!r}")
