"""Executing a ``GraphPlan`` on a ckpt model, op by op, measured.

``execute_graph(model, plan, sample, loss_fn)`` traces the model once (untracked, the RNG
restored: ``graph_runner.bind``) to bind the plan's op names to this model's op calls,
checks that the traced graph is the one the plan was made for, then runs ``plan.ops`` with
the ``graph_runner.OpRunner`` inside ``ckpt.memory.track(gradients_in_flight=True)``:
``compute <forward op>`` replays that single op on the current values of its inputs (a
first computation or a recomputation alike), ``compute backward(<op>)`` runs its backward,
``free`` drops the value. After each op it reads the op's logical peak
(``report.peak_since_mark``) and marks it, so ``result.op_peaks[k]`` can be compared with
``plan.simulate().during[k]``: for a plan made on ``profile_graph(model, sample,
loss_fn)`` they are equal, op by op (the runner's module doc says why).

Gradients: ``.grad`` of every parameter ends as ``loss_fn(model(sample)).backward()``
leaves it, bit for bit: a value's gradients are summed in the order the engine adds them
(recorded at the trace), and each gradient is held laid out as the engine made it. One
exception: a parameter read by three or more ops gets its contributions in the plan's
order of backwards, which may differ from the engine's in the last bit. Dropout masks
are replayed from the RNG state each op started with; the RNG ends where an uninterrupted
step leaves it.

BatchNorm in training mode: every computation of its op, first or recomputed, runs as a
recomputation (statistics frozen; its output depends on the batch alone), and after the
step one forward under ``no_grad`` from the step's RNG state updates the running
statistics and the batch count once, bit for bit as the plain step does. In-place writes run
as their out-of-place ops (``op_trace``). Refused: in-place writes that cannot (into a view,
a parameter, the sample; ``x[i] = v``: ``TraceError``), a plan made for another graph
(``PlanMismatchError``, naming both graphs and the first node that differs; nothing is
updated then).
"""
from ..autograd.grad_mode import no_grad
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.accounting.track import track
from ..memory.foreign import reject_torch
from ..units import format_size
from .errors import ExecutionError, PlanMismatchError
from .execute import Execution
from .graph_plan import GraphPlan
from .graph_profile import tracked_objects
from .graph_runner import OpRunner, bind
from .runner import sum_loss

__all__ = ["execute_graph", "check_same_graph", "update_statistics"]


def update_statistics(model, sample, loss_fn, rng):
    """The step's one update of BatchNorm's running statistics and batch count: a forward
    and loss under ``no_grad`` from RNG state ``rng`` (the RNG is left as it was).

    >>> import ckpt
    >>> bn = ckpt.nn.BatchNorm1d(2)
    >>> update_statistics(bn, ckpt.tensor([[1.0, 2.0], [3.0, 2.0]]), None, ckpt.get_rng_state())
    >>> bn.running_mean.tolist(), int(bn.num_batches_tracked.item())
    ([0.20000000298023224, 0.20000000298023224], 1)
    """
    end = get_rng_state()
    set_rng_state(rng)
    try:
        with no_grad():
            (loss_fn or sum_loss)(model(sample))
    finally:
        set_rng_state(end)


def check_same_graph(plan_graph, traced_graph):
    """Raise ``PlanMismatchError`` unless the two training graphs have the same nodes, reads
    and sizes (costs and transients may differ: they are measured), naming both graphs and
    the first node that differs.

    >>> from ckpt.planner.graph import Graph, Node
    >>> a = Graph([Node("x", [], 1, 1, 8)], name="a").training()
    >>> b = Graph([Node("x", [], 1, 1, 16)], name="b").training()
    >>> check_same_graph(a, b)
    Traceback (most recent call last):
    ...
    ckpt.planner.errors.PlanMismatchError: the plan was made for graph 'a', but this model and sample trace to graph 'b': node 'x' holds 8 bytes there and 16 bytes here; profile this model at this sample's shape (profile_graph) and plan again
    """
    def fail(what):
        raise PlanMismatchError(
            f"the plan was made for graph {plan_graph.name!r}, but this model and sample trace "
            f"to graph {traced_graph.name!r}: {what}; profile this model at this sample's "
            "shape (profile_graph) and plan again")

    if len(plan_graph) != len(traced_graph):
        fail(f"{len(plan_graph)} nodes there, {len(traced_graph)} here")
    for k, (a, b) in enumerate(zip(plan_graph.names, traced_graph.names)):
        if a != b:
            fail(f"node {k} is {a!r} there and {b!r} here")
        if plan_graph.deps[k] != traced_graph.deps[k]:
            fail(f"node {a!r} reads {[plan_graph.names[i] for i in plan_graph.deps[k]]} there "
                 f"and {[traced_graph.names[i] for i in traced_graph.deps[k]]} here")
        if plan_graph.size[k] != traced_graph.size[k]:
            fail(f"node {a!r} holds {plan_graph.size[k]} bytes there and "
                 f"{traced_graph.size[k]} bytes here")


def execute_graph(model, plan, sample, loss_fn=None):
    """Run one training step of ``model`` (a ``ckpt.nn.Module`` or a function of one tensor)
    on ``sample`` following the ``GraphPlan`` ``plan`` op by op, and measure it (see the
    module doc). ``ckpt.planner.execute`` calls this for a ``GraphPlan``. Returns an
    ``Execution`` (as for chains) whose ``simulation`` is the plan's ``GraphSimulation``:
    ``op_peaks`` and ``op_after`` are parallel to its ``during`` and ``after``.

    >>> import ckpt
    >>> from ckpt import planner
    >>> _ = ckpt.manual_seed(0)
    >>> lin = ckpt.nn.Linear(16, 16)
    >>> f = lambda x: lin(x).tanh() * x
    >>> x = ckpt.randn(8, 16)
    >>> p = planner.plan_graph(planner.profile_graph(f, x, repeats=1), "recompute_all")
    >>> r = planner.execute(f, p, x)
    >>> r.peak_bytes == r.predicted_peak, list(r.op_peaks) == r.simulation.during.tolist()
    (True, True)
    """
    reject_torch("ckpt.planner.execute", [model, sample],
                 "it runs plans on ckpt models and ckpt tensors",
                 "ckpt.torch.execute(model, plan, sample, loss_fn)")
    if not isinstance(plan, GraphPlan):
        raise ExecutionError(f"execute_graph needs a GraphPlan, got a {type(plan).__name__}")
    if not isinstance(sample, Tensor):
        raise ExecutionError(f"sample must be a ckpt.Tensor, got {type(sample).__name__}")
    rng = get_rng_state()
    program = bind(model, sample, loss_fn)
    check_same_graph(plan.training, program.graph(0, 0).training())
    simulation = plan.simulate()
    runner = OpRunner(program)
    peaks, after = [], []
    try:
        runner.prepare_grads()
        with track(*tracked_objects(model, program), gradients_in_flight=True,
                   find_optimizers=False) as report:
            entry = report.current_bytes
            if entry != plan.training.constant_bytes:
                raise PlanMismatchError(
                    f"the plan was made for graph {plan.training.name!r} whose parameters, "
                    f"gradients and data are {format_size(plan.training.constant_bytes)}; "
                    f"this model and sample hold {format_size(entry)}: profile this model "
                    "(profile_graph) and plan again")
            for op in plan.ops:
                getattr(runner, op.kind)(op.name)
                peaks.append(report.peak_since_mark)
                report.mark(str(op))
                after.append(report.current_bytes)
    finally:
        runner.finish()
    if program.updates_statistics:
        update_statistics(model, sample, loss_fn, rng)
    return Execution(runner.loss, report, simulation, tuple(peaks), tuple(after))
