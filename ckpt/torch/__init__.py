"""ckpt.torch: the planner's plans on PyTorch models — profile a model into a chain, wrap it
so that training follows a plan, and measure a planned step (predicted beside measured).

>>> import torch, ckpt.torch
>>> net = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(4)])
>>> x = torch.randn(32, 64)
>>> wrapped = ckpt.torch.plan(net, x, strategy="recompute_all", repeats=1)
>>> wrapped(x).sum().backward()          # the recomputations happen here
>>> net[0].weight.grad.shape
torch.Size([64, 64])

``import ckpt`` never imports torch; this package needs it (``pip install "ckpt[torch]"``).
"""
try:
    import torch as _torch  # noqa: F401
except ImportError:  # pragma: no cover - exercised without torch installed
    raise ImportError('ckpt.torch needs PyTorch: pip install "ckpt[torch]"') from None

from .ledger import Ledger
from .measure import TorchExecution, execute, profile
from .planned import PlannedModule, plan
from .runner import PlanRunError
from .stages import StageError, find_blocks

__all__ = ["profile", "plan", "execute", "PlannedModule", "TorchExecution", "Ledger",
           "StageError", "PlanRunError", "find_blocks"]
