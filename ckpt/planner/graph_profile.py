"""``profile_graph``: a ckpt model (any shape, not only a ``Sequential``) -> a ``Graph`` of
its ops with measured sizes, transients and times.

The model's forward and loss are traced into ops (``graph_runner.bind``: one node per
top-level ckpt op call, parameters and data are constant memory, not nodes). Per op:

- ``output_bytes``: its outputs (each owning its buffer, as the executor holds them);
- ``saved_bytes``: what its graph saved for backward that is neither an input, an output,
  a parameter nor data (dropout masks, normalization statistics, intermediates of a
  composite op), each buffer once, seen through saved-tensor hooks;
- ``backward_reads``: "inputs" when its graph saved a view of an input, "output" when of
  its output;
- transients: the runner executes every forward op, then every backward (reverse order),
  under ``ckpt.memory.track`` (gradients in flight counted); an op's transient is its
  logical peak minus what was alive before it minus its value; the bytes each op leaves
  must equal its value, or ``ProfileError`` says which op kept what;
- ``forward_cost`` and ``backward_cost``: median seconds over ``repeats`` untracked runs.

``input_bytes`` is the sample plus the constant tensors the ops read (targets, masks);
``param_bytes`` what else is alive when the step begins: parameters, a gradient per
parameter (the executor's stand-ins) and module buffers. Profiling changes neither the
model's gradients, its BatchNorm statistics (every op runs as a recomputation) nor the RNG.
"""
import statistics
import time

from ..autograd.random import get_rng_state, set_rng_state
from ..memory.accounting.track import track
from ..memory.foreign import reject_torch
from .errors import PlannerError
from .runner import data_bytes
from .graph_runner import OpRunner, bind
from .graph_training import backward_name

__all__ = ["profile_graph", "GraphProfileError"]


class GraphProfileError(PlannerError):
    """The model's ops keep memory the graph cannot describe."""


def tracked_objects(model, program):
    """What ``track`` is given for a step of ``program``: the model (its parameters and
    buffers) or, for a function, its parameters; then the data tensors.

    >>> import ckpt
    >>> from ckpt.planner.graph_runner import bind
    >>> net = ckpt.nn.Linear(2, 2); x = ckpt.ones(1, 2)
    >>> tracked_objects(net, bind(net, x))[0] is net
    True
    """
    head = [model] if hasattr(model, "parameters") and hasattr(model, "buffers") \
        else list(program.params)
    return head + list(program.data)


class _SwappedGrads:
    """Give every parameter a zero ``.grad`` for the block and put the old ones back."""

    def __init__(self, params):
        self.params = params

    def __enter__(self):
        self.old = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        return self

    def __exit__(self, *exc):
        for p, g in zip(self.params, self.old):
            p.grad = g
        return False


def _store_all_ops(program):
    names = [program.names[k] for k in program.order]
    return names + [backward_name(n) for n in reversed(names)]


def profile_graph(model, sample, loss_fn=None, repeats=3, name=None):
    """A ``Graph`` of ``model``'s ops (a ``ckpt.nn.Module`` or a function of one tensor)
    on ``sample``, with ``loss_fn(output)`` (default ``output.sum()``) as its last ops;
    measured as the module doc says. Plans of it run with ``ckpt.planner.execute``.

    >>> import ckpt
    >>> from ckpt import planner
    >>> _ = ckpt.manual_seed(0)
    >>> lin = ckpt.nn.Linear(16, 16)
    >>> g = planner.profile_graph(lambda x: lin(x).relu() + x, ckpt.randn(8, 16), repeats=1)
    >>> [(n.name, n.inputs, n.output_bytes, n.backward_reads) for n in g.nodes]
    [('linear_0', (), 512, ()), ('relu_1', ('linear_0',), 512, ('output',)), ('add_2', ('relu_1',), 512, ()), ('sum_3', ('add_2',), 4, ())]
    >>> g.input_bytes, g.param_bytes      # the sample; weight, bias and their gradients
    (512, 2176)
    """
    reject_torch("ckpt.planner.profile_graph", [model, sample],
                 "it measures ckpt models on ckpt tensors",
                 "ckpt.torch.profile(model, sample, loss_fn)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if not callable(model):
        raise TypeError(f"profile_graph takes a ckpt.nn.Module or a function of a tensor, got "
                        f"a {type(model).__name__}")
    program = bind(model, sample, loss_fn, name)
    ops = _store_all_ops(program)
    rng = get_rng_state()
    try:
        with _SwappedGrads(program.params):
            sizes, transients, entry = _measure(model, program, ops)
            times = {op: [] for op in ops}
            for _ in range(repeats):
                for p in program.params:
                    p.grad = None
                runner = OpRunner(program)
                runner.prepare_grads()
                for op in ops:
                    t0 = time.perf_counter()
                    runner.compute(op)
                    times[op].append(time.perf_counter() - t0)
                runner.finish()
                del runner
    finally:
        set_rng_state(rng)
    input_bytes = data_bytes(program.data)
    costs = {k: (statistics.median(times[program.names[k]]),
                 statistics.median(times[backward_name(program.names[k])]))
             for k in program.order}
    return program.graph(input_bytes, entry - input_bytes, costs, transients)


def _measure(model, program, ops):
    runner = OpRunner(program)
    runner.prepare_grads()
    expected = {}
    for k in program.order:
        expected[program.names[k]] = program.output_bytes[k] + program.saved_bytes[k]
        expected[backward_name(program.names[k])] = sum(program.output_bytes[i]
                                                        for i in program.calls[k].inputs)
    peaks = {}
    try:
        with track(*tracked_objects(model, program), gradients_in_flight=True,
                   find_optimizers=False) as report:
            entry = report.current_bytes
            for op in ops:
                before = report.current_bytes
                runner.compute(op)
                peaks[op] = report.peak_since_mark - before
                report.mark(op)
                kept = report.current_bytes - before
                if kept != expected[op]:
                    raise GraphProfileError(
                        f"op {op} left {kept} bytes alive, but its value is {expected[op]} "
                        "bytes (its outputs, and what its graph saved beyond inputs and "
                        "outputs): it keeps memory the graph cannot describe")
    finally:
        runner.finish()
    transients = {}
    for k in program.order:
        f, b = program.names[k], backward_name(program.names[k])
        transients[k] = (peaks[f] - expected[f], peaks[b] - expected[b])
    return expected, transients, entry
