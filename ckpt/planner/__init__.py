"""The planner core: chains of stages with per-stage costs, strategies that choose what to
keep and what to recompute under a byte budget, a simulator that validates and predicts
every plan, and sweeps. Pure planning: numpy and networkx only, no model is ever run here.
Its two edges, ``profile`` (model -> Chain) and ``execute`` (Plan on a model, measured),
use autograd, nn and memory and are imported on first use. See docs/planner.md for the
cost model and the memory accounting.

>>> from ckpt import planner
>>> chain = planner.zoo.vgg16(batch=8)
>>> p = planner.plan(chain, "optimal", budget="2.5GiB")
>>> p.peak <= planner.parse_size("2.5GiB")
True
>>> planner.simulate(chain, p).peak == p.peak
True
"""
from . import zoo
from .chain import Chain, Stage
from .errors import (BudgetError, ChainError, ChainFormatError, InvalidPlanError,
                     PlannerError)
from .plan import Plan, plan
from .schedule import Op
from .simulate import Simulation, simulate
from .strategies import STRATEGIES
from .strategies.revolve import optimal_advances, revolve
from .sweep import Row, Sweep, sweep
from .units import format_size, parse_size


# The edges (profile: model -> Chain; execute: Plan on a model) use autograd, nn and memory;
# the core above must not, so they load on first call. Their modules are callable
# (``ckpt.planner.profile(...)`` works whether or not ``ckpt.planner.profile`` the module was
# imported, which rebinds the package attribute).
def profile(model, sample_input, loss_fn=None, repeats=3, name=None):
    """A ``Chain`` measured on a model: see ``ckpt.planner.profile.profile``."""
    from .profile import profile as _profile
    return _profile(model, sample_input, loss_fn=loss_fn, repeats=repeats, name=name)


def execute(model, plan, input, loss_fn=None, tracemalloc=False):
    """One training step following a plan, measured: see ``ckpt.planner.execute.execute``."""
    from .execute import execute as _execute
    return _execute(model, plan, input, loss_fn=loss_fn, tracemalloc=tracemalloc)

__all__ = ["Chain", "Stage", "Op", "Plan", "plan", "simulate", "Simulation", "sweep", "Sweep",
           "profile", "execute",
           "Row", "revolve", "optimal_advances", "zoo", "parse_size", "format_size",
           "STRATEGIES", "PlannerError", "ChainError", "ChainFormatError", "BudgetError",
           "InvalidPlanError"]
