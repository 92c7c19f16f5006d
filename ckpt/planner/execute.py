"""``execute``: one training step of a ``Sequential`` following a plan's ops, measured.

The planner's edge toward a real model (docs/planner.md, "The executor"). Stage i
is child i of the ``Sequential``; the executor keeps a table of the values the simulator
names and frees each one at exactly the op that frees it:

- x_i: the output of ``forward i`` (stage i under ``no_grad``), a plain tensor;
- x̄_i: the output of ``forward_save i`` (stage i with grad on ``x_{i-1}.detach()`` made to
  require grad, so the graphs of different stages never link) with that detached input (a
  view of it, in fact: see ``_stage_input``) — the output and its graph hold exactly the
  stage's saved bytes;
- δ_i: the gradient of the loss with respect to x_i, a numpy array.

``backward i`` first allocates δ_{i-1} (so it exists while x̄_i and δ_i do, as the cost
model counts it), backpropagates x̄_i's output with δ_i (for i = L: ``loss_fn`` of it, whose
gradient is the seed) through ``ckpt.autograd.grad`` to the detached input and the stage's
parameters, copies the input's gradient into δ_{i-1} and frees x̄_i and δ_i. B_1 computes
no input gradient: the input is data.

Parameter gradients go into ``.grad`` as ``loss.backward()`` would put them there: bit for
bit the same values (a parameter's gradient is computed by the same nodes from the same
upstream gradient). The cost model counts gradients as a constant (``param_bytes``), so a
parameter whose ``.grad`` is None gets a zero buffer before the first op, a stand-in that
``backward i`` swaps for the gradient the engine computed (not added to: 0.0 + -0.0 would
lose a sign); later contributions (a parameter shared by several stages) and an existing
``.grad`` are added as ``backward()`` adds them (``grad = grad + g``). Either way the
gradient the engine makes is in flight beside the ``.grad`` it joins (counted: the tracker
sees gradients in flight), so a step with stand-ins and one accumulating into existing
gradients measure the same, what the cost model predicts. Parameters no stage reached get
``.grad = None`` back.

Randomness is replayed per stage: ckpt's RNG state before the first forward of stage i is
restored before every forward of stage i, so a recomputed dropout mask is the same mask;
the generator ends where an uninterrupted forward and loss would have left it. BatchNorm
updates its running statistics once, on the first forward of its stage: later forwards run
as recomputations (``ckpt.autograd.events.recomputing``).

The step runs inside ``ckpt.memory.track`` with ``gradients_in_flight=True`` (the arrays
backward passes between nodes are counted, as ``profile`` counts them); after each op the
executor reads the logical peak of that op (``report.peak_since_mark``) and marks the op
(``report.mark(str(op))``), so the measured peak of op k can be compared with
``plan.simulate().timeline[k].during``.
"""
import sys as _sys
import tracemalloc as _tracemalloc
import types as _types
from typing import NamedTuple

from ..autograd.tensor import Tensor
from ..memory.accounting.track import track
from ..memory.foreign import reject_torch
from .errors import ExecutionError, PlanMismatchError
from .runner import Runner, check_model, data_bytes, loss_data, undo_on_mismatch
from .simulate import simulate
from ..units import format_size

__all__ = ["execute", "Execution", "ExecutionError", "PlanMismatchError"]


class Execution(NamedTuple):
    """What ``execute`` returns.

    ``loss`` (a float), the ``report`` (``ckpt.memory.MemoryReport`` of the step, one mark
    per op), the ``simulation`` of the plan on its chain (the prediction), and per op the
    measured logical bytes ``op_peaks`` (the most held while the op ran) and ``op_after``
    (held when it finished), parallel to ``simulation.timeline`` (for a graph plan:
    ``simulation`` is a ``GraphSimulation``, parallel to its ``during`` and ``after``).
    """
    loss: float
    report: object
    simulation: object
    op_peaks: tuple
    op_after: tuple

    @property
    def peak_bytes(self):
        """The measured logical peak of the step (``report.peak_bytes``)."""
        return self.report.peak_bytes

    @property
    def predicted_peak(self):
        """The simulator's peak for the plan on its chain."""
        return self.simulation.peak

    @property
    def entry_bytes(self):
        """Logical bytes alive when the step began: parameters, their gradients, buffers
        and the input (what the chain calls ``param_bytes + input_bytes``)."""
        return self.report.timeline[0].total

    @property
    def tracemalloc_peak_bytes(self):
        """tracemalloc's peak over the step plus ``entry_bytes`` (tracemalloc measures from
        the block's entry, when those buffers already existed), comparable with
        ``peak_bytes``; None when tracemalloc was off."""
        tm = self.report.tracemalloc_peak_bytes
        return None if tm is None else tm + self.entry_bytes


def execute(model, plan, input, loss_fn=None, tracemalloc=False):
    """Run one training step of ``model`` (a ``ckpt.nn.Sequential``, child i = stage i)
    following ``plan.ops`` exactly, and measure it. A ``GraphPlan`` goes to
    ``ckpt.planner.graph_execute.execute_graph`` (any ckpt model, op by op).

    ``loss_fn(output)`` returns the scalar loss (default: ``output.sum()``). Parameter
    gradients are accumulated into ``.grad`` bit for bit as ``loss_fn(model(input))
    .backward()`` would; RNG is replayed per stage (dropout masks of recomputations are the
    forward's); BatchNorm updates its running statistics once. The result (``Execution``)
    holds the loss, the ``MemoryReport`` (one mark per op), the plan's ``Simulation`` and
    the measured peak of every op. With a plan made on ``profile(model, input, loss_fn)``,
    ``result.peak_bytes == result.predicted_peak`` (see docs/planner.md).

    The measurement is ckpt.memory's logical count. ``tracemalloc=True`` also measures the
    step with tracemalloc (``result.tracemalloc_peak_bytes``; None when off, the default):
    use it to see what the count cannot -- temporaries inside ops, Python objects -- not
    when timing, since it makes a step 2-8x slower.

    >>> import ckpt
    >>> from ckpt import planner
    >>> _ = ckpt.manual_seed(0)
    >>> net = ckpt.nn.Sequential(*[ckpt.nn.Sequential(ckpt.nn.Linear(32, 32), ckpt.nn.Tanh())
    ...                            for _ in range(4)])
    >>> x = ckpt.randn(16, 32)
    >>> chain = planner.profile(net, x, repeats=1)
    >>> r = planner.execute(net, planner.plan(chain, "recompute_all"), x)
    >>> r.peak_bytes == r.predicted_peak
    True
    >>> [e.during for e in r.simulation.timeline] == list(r.op_peaks)    # op by op
    True
    >>> net[0][0].weight.grad.shape
    (32, 32)
    """
    from .graph_plan import GraphPlan
    if isinstance(plan, GraphPlan):     # an op-level plan: ckpt.planner.graph_execute
        if tracemalloc:
            raise ExecutionError("tracemalloc=True is not available for graph plans yet; "
                                 "execute a graph plan without it")
        from .graph_execute import execute_graph
        return execute_graph(model, plan, input, loss_fn)
    reject_torch("ckpt.planner.execute", [model, input],
                 "it runs plans on ckpt models and ckpt tensors",
                 "ckpt.torch.execute(model, plan, sample, loss_fn)")
    check_model(model, plan)
    if not isinstance(input, Tensor):
        raise ExecutionError(f"input must be a ckpt.Tensor, got {type(input).__name__}")
    simulation = simulate(plan.chain, plan.ops)
    params = list(model.parameters())
    held = loss_data(model, input, loss_fn)     # targets etc.: alive at entry, as the input
    _check_input(plan.chain, [input] + held)
    runner = Runner(list(model), input, loss_fn, chain=plan.chain)
    # tracemalloc must see the gradient stand-ins allocated: backward frees them
    started = tracemalloc and not _tracemalloc.is_tracing()
    if started:
        _tracemalloc.start()
    peaks, after = [], []
    try:
        with undo_on_mismatch(model):
            runner.prepare_grads(params)
            with track(model, input, *held, tracemalloc=tracemalloc,
                       gradients_in_flight=True, find_optimizers=False) as report:
                params_at_entry = report.current_bytes - data_bytes([input] + held)
                for op in plan.ops:
                    if op.kind == "backward" and op.stage == runner.L:
                        # here, so that a stage of another size is named first
                        _check_params(plan.chain, params_at_entry)
                    runner.run(op)
                    peaks.append(report.peak_since_mark)
                    report.mark(str(op))
                    after.append(report.current_bytes)
        runner.finish()
    finally:
        runner.release_grads()
        if started:
            _tracemalloc.stop()
    return Execution(runner.loss, report, simulation, tuple(peaks), tuple(after))


def _check_input(chain, tensors):
    got = data_bytes(tensors)
    if got != chain.input_bytes:
        raise PlanMismatchError(
            f"the plan was made for a chain ({chain.name!r}) whose input (with the data the "
            f"loss reads) is {format_size(chain.input_bytes)}; this input and loss give "
            f"{format_size(got)}: profile this model at this batch size and plan again")


def _check_params(chain, got):
    if got != chain.param_bytes:
        raise PlanMismatchError(
            f"the plan was made for a chain ({chain.name!r}) whose parameters and their "
            f"gradients are {format_size(chain.param_bytes)}; this model's are "
            f"{format_size(got)}: profile this model and plan again")


class _CallableModule(_types.ModuleType):
    """Importing this module rebinds the package attribute ``ckpt.planner.execute`` to it;
    calling the module calls ``execute``, so ``ckpt.planner.execute(...)`` always works."""

    def __call__(self, *args, **kwargs):
        return execute(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
