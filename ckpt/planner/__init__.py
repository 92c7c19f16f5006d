"""The planner core: chains of stages with per-stage costs, strategies that choose what to
keep and what to recompute under a byte budget, a simulator that validates and predicts
every plan, and sweeps. Pure planning: numpy and networkx only, no model is ever run here.
Its edges, ``profile`` (model -> Chain), ``execute`` (Plan on a model, one measured step)
and ``apply`` (a model that trains under a plan), use autograd, nn and memory and are
imported on first use. See docs/planner.md for the cost model and the memory accounting.

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
from .errors import (BudgetError, ChainError, ChainFormatError, GraphError, GraphFormatError,
                     InvalidPlanError, PlannerError)
from . import graph_zoo
from .graph import Graph, Node
from .graph_plan import GRAPH_STRATEGIES, GraphPlan, plan_graph
from .graph_simulate import GraphOp, GraphSimulation, simulate_graph
from .graph_training import TrainingGraph
from .plan import Plan, plan
from .schedule import Op
from .simulate import Simulation, simulate
from .strategies import STRATEGIES
from .strategies.revolve import optimal_advances, revolve
from .sweep import Row, Sweep, sweep
from ..units import format_size, parse_size


# The edges (profile: model -> Chain; execute: Plan on a model, measured; apply: a model that
# trains under a plan) use autograd, nn and memory; the core above must not, so they load on
# first call. Their modules are callable (``ckpt.planner.profile(...)`` works whether or not
# ``ckpt.planner.profile`` the module was imported, which rebinds the package attribute to
# the module: then ``help(ckpt.planner.profile)`` shows the module's whole documentation).
def profile(model, sample_input, loss_fn=None, repeats=3, name=None):
    """A ``Chain`` measured on ``model``: a ``ckpt.nn.Sequential`` (each child a stage: sizes
    exact, times in seconds, medians of ``repeats`` runs), a function of one tensor, or a root
    Tensor recorded from ``sample_input``. ``loss_fn(output)`` is the scalar loss (default
    ``output.sum()``). The model is left as it was (RNG, BatchNorm statistics, gradients).
    Documented in full in the module ``ckpt.planner.profile`` and in docs/planner.md, "The
    edges".

    >>> import ckpt
    >>> from ckpt import planner
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.Tanh())
    >>> planner.profile(net, ckpt.randn(4, 8), repeats=1).x.tolist()
    [128, 128, 128]
    """
    from .profile import profile as _profile
    return _profile(model, sample_input, loss_fn=loss_fn, repeats=repeats, name=name)


def execute(model, plan, input, loss_fn=None, tracemalloc=False):
    """One training step following ``plan.ops``, measured. For a ``GraphPlan``: any ckpt
    model, op by op (``ckpt.planner.graph_execute``). For a chain ``Plan``: a
    ``ckpt.nn.Sequential``, with an
    ``Execution`` whose ``peak_bytes`` equals ``predicted_peak`` for a plan made on
    ``profile(model, input, loss_fn)``; gradients as ``loss_fn(model(input)).backward()``
    gives them, bit for bit. A plan made for another model or batch size raises
    ``PlanMismatchError``. Documented in full in the module ``ckpt.planner.execute`` and in
    docs/planner.md, "The executor".

    >>> import ckpt
    >>> from ckpt import planner
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.Tanh())
    >>> x = ckpt.randn(4, 8)
    >>> r = planner.execute(net, planner.plan(planner.profile(net, x, repeats=1), "sqrt"), x)
    >>> r.peak_bytes == r.predicted_peak
    True
    """
    from .execute import execute as _execute
    return _execute(model, plan, input, loss_fn=loss_fn, tracemalloc=tracemalloc)


def profile_graph(model, sample, loss_fn=None, repeats=3, name=None):
    """A ``Graph`` of ``model``'s ops (any ``ckpt.nn.Module`` or function of one tensor:
    U-Nets, residual nets, transformer blocks), measured on ``sample``: per op its output
    bytes, the extra bytes its backward keeps, what its backward reads, its transients and
    its forward and backward seconds (medians of ``repeats`` runs). BatchNorm in training
    mode and in-place writes (``relu_``, ``+=``) are fine; the model, its BatchNorm
    statistics, gradients and the RNG are left as they were. Plan it with ``plan_graph``
    and run the plan with ``execute``. Documented in full in the module
    ``ckpt.planner.graph_profile`` and in docs/planner.md, "Graphs from a model".

    >>> import ckpt
    >>> from ckpt import planner
    >>> w = ckpt.randn(8, 8, requires_grad=True)
    >>> g = planner.profile_graph(lambda x: (x @ w).tanh(), ckpt.randn(4, 8), repeats=1)
    >>> [n.name for n in g.nodes]
    ['matmul_0', 'tanh_1', 'sum_2']
    """
    from .graph_profile import profile_graph as _profile_graph
    return _profile_graph(model, sample, loss_fn=loss_fn, repeats=repeats, name=name)


def apply(model, plan):
    """A ``ckpt.nn.Module`` that trains ``model`` (a ``ckpt.nn.Sequential``) under ``plan``
    step after step: ``loss_fn(planned(x)).backward()`` recomputes as the plan says and gives
    the plain model's gradients bit for bit; eval mode and ``no_grad`` run the plain model.
    Documented in full, with a training loop, in the module ``ckpt.planner.apply``, the
    README ("Plan your own model") and docs/planner.md.

    >>> import ckpt
    >>> from ckpt import planner
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.Tanh())
    >>> x = ckpt.randn(4, 8)
    >>> planned = planner.apply(net, planner.plan(planner.profile(net, x, repeats=1), "sqrt"))
    >>> planned(x).sum().backward(); net[0].weight.grad.shape
    (8, 8)
    """
    from .apply import apply as _apply
    return _apply(model, plan)


__all__ = ["Chain", "Stage", "Op", "Plan", "plan", "simulate", "Simulation", "sweep", "Sweep",
           "profile", "profile_graph", "execute", "apply",
           "Row", "revolve", "optimal_advances", "zoo", "parse_size", "format_size",
           "STRATEGIES", "PlannerError", "ChainError", "ChainFormatError", "BudgetError",
           "InvalidPlanError", "Graph", "Node", "TrainingGraph", "GraphPlan", "plan_graph",
           "GRAPH_STRATEGIES", "GraphOp", "GraphSimulation", "simulate_graph", "graph_zoo",
           "GraphError", "GraphFormatError"]
