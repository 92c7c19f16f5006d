"""The planner core: chains of stages with per-stage costs, strategies that choose what to
keep and what to recompute under a byte budget, a simulator that validates and predicts
every plan, and sweeps. Pure planning: numpy and networkx only, no model is ever run here.
See docs/planner.md for the cost model and the memory accounting.

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

__all__ = ["Chain", "Stage", "Op", "Plan", "plan", "simulate", "Simulation", "sweep", "Sweep",
           "Row", "revolve", "optimal_advances", "zoo", "parse_size", "format_size",
           "STRATEGIES", "PlannerError", "ChainError", "ChainFormatError", "BudgetError",
           "InvalidPlanError"]
