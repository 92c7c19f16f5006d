"""``profile``: a model (or a recorded graph) -> a ``Chain`` with measured costs and sizes.

Two ways in (docs/planner.md, "Profiling"):

- a ``ckpt.nn.Sequential``: each child is a stage. The profiler runs the executor's own ops
  (``ckpt.planner.runner``) under ``ckpt.memory.track`` — ``forward i``, ``drop i``,
  ``forward_save i`` for i = 1..L, then ``backward i`` for i = L..1 — and reads each op's
  logical peak (``report.peak_since_mark``) and the bytes alive after it. Per stage:
  ω_x^i = bytes created by ``forward i``; o_f^i = its peak above that; ω_x̄^i = bytes
  created by ``forward_save i`` (its output plus what the stage's graph saved, each buffer
  once, the input and the parameters excluded) — also summed from the saved-tensor hooks'
  record of every saved buffer (``Node.saved_buffers``), and the two must agree;
  ō_f^i = the peak of ``forward_save i`` above ω_x̄^i; o_b^i = the peak of ``backward i``
  above what was alive plus δ_{i-1} (for i = L it holds ``loss_fn``'s forward and seed).
  ``param_bytes`` is what is alive at the start besides the input: parameters, their
  gradients (the executor gives every parameter a gradient buffer before the first op) and
  module buffers. Times are medians over ``repeats`` untracked runs of ``forward_save i``
  and ``backward i`` (seconds). Exact: ``execute`` of any plan on this chain, same model and
  input shapes, measures the simulator's peak to the byte.
- a function of tensors (``profile(fn, x)``) or a root tensor (``profile(y, x)``, the graph
  already recorded from ``x``): the graph of ops is reduced to a chain at the ops that every
  path from the input to the output passes through (``reduce_graph``). Sizes come from the
  graph (ω_x from tensor shapes, ω_x̄ from the saved buffers of each stage's nodes), times
  from one forward and backward per repeat (a function) or op counts (a root tensor); the
  transients are not measured (0). Such a chain is for planning; to execute, make the
  stages children of a ``Sequential``.

Profiling has no side effect on the model or on randomness: the RNG state is restored,
BatchNorm statistics are not updated, gradients are left as they were.
"""
import statistics
import sys as _sys
import time
import types as _types
from typing import NamedTuple

import networkx as nx
import numpy as np

from ..autograd import grad_mode
from ..autograd.events import Observer, observing, recomputing
from ..autograd.graph import AccumulateGrad, grad_accumulator, root_buffer, walk
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.accounting.track import track
from ..memory.foreign import reject_torch
from .chain import Chain, Stage
from .errors import PlannerError
from .runner import Runner, data_bytes, loss_data, stage_saved_bytes, sum_loss

__all__ = ["profile", "reduce_graph", "GraphReduction", "ProfileError"]


class ProfileError(PlannerError):
    """The model cannot be described as a chain the executor can match (a stage that
    returns a view of its input, keeps memory outside autograd, ...)."""


def profile(model, sample_input, loss_fn=None, repeats=3, name=None):
    """A ``Chain`` for ``model`` measured on ``sample_input``.

    ``model`` is a ``ckpt.nn.Sequential`` (each child a stage; exact sizes, times in
    seconds), a function of one tensor, or a root ``Tensor`` whose graph was recorded from
    ``sample_input`` (both reduced with ``reduce_graph``). ``loss_fn(output)`` gives the
    scalar loss (default ``output.sum()``); its cost and memory belong to the last stage's
    backward. ``repeats`` runs are timed (median). See the module docstring.

    >>> import ckpt
    >>> from ckpt import planner
    >>> _ = ckpt.manual_seed(0)
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(64, 128), ckpt.nn.ReLU(), ckpt.nn.Linear(128, 10))
    >>> chain = planner.profile(net, ckpt.randn(32, 64), repeats=1)
    >>> chain.x.tolist()            # input, then each stage's output (float32)
    [8192, 16384, 16384, 1280]
    >>> chain.xbar.tolist()[1:]     # ReLU saves its output; Linear only its input and weight
    [16384, 16384, 1280]
    >>> chain.cost_unit
    's'
    """
    reject_torch("ckpt.planner.profile", [model, sample_input],
                 "it measures ckpt models on ckpt tensors",
                 "ckpt.torch.profile(model, sample, loss_fn)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    from ..nn.container import Sequential
    if isinstance(model, Sequential):
        return _profile_sequential(model, sample_input, loss_fn, repeats, name)
    if isinstance(model, Tensor):
        return _profile_root(model, sample_input, name)
    if callable(model):
        return _profile_function(model, sample_input, loss_fn, repeats, name)
    raise TypeError(f"profile takes a ckpt.nn.Sequential, a function of a tensor or a root "
                    f"Tensor, got a {type(model).__name__}")


# ---- a Sequential: every child a stage, measured with the executor's ops ------------------

def _stage_names(model):
    """A stage is named by its module's type, and by its key when the Sequential names its
    children (``features (Sequential)``); the stage's number is its position, so positional
    keys (0, 1, ...) are left out."""
    return [type(m).__name__ if str(key) == str(k) else f"{key} ({type(m).__name__})"
            for k, (key, m) in enumerate(model._modules.items())]


def _profile_sequential(model, x0, loss_fn, repeats, name):
    if not isinstance(x0, Tensor):
        raise TypeError(f"sample_input must be a ckpt.Tensor, got {type(x0).__name__}")
    stages = list(model)
    L = len(stages)
    if L == 0:
        raise ProfileError("the Sequential has no children: a chain needs at least one stage")
    names = _stage_names(model)
    params = list(model.parameters())
    rng0 = get_rng_state()
    fwd_times = [[] for _ in range(L + 1)]
    bwd_times = [[] for _ in range(L + 1)]
    # the gradient stand-ins the executor will create (released again at the end)
    created = Runner(stages, x0, loss_fn).prepare_grads(params)
    try:
        sizes = _measure_memory(stages, names, x0, loss_fn, model, params, created)
        for _ in range(repeats):
            set_rng_state(rng0)
            runner = Runner(stages, x0, loss_fn, recompute_only=True, accumulate=False)
            runner.prepare_grads(params, only=created)
            for i in range(1, L + 1):
                t0 = time.perf_counter()
                runner.forward_save(i)
                fwd_times[i].append(time.perf_counter() - t0)
            for i in range(L, 0, -1):
                t0 = time.perf_counter()
                runner.backward(i)
                bwd_times[i].append(time.perf_counter() - t0)
            del runner
    finally:
        for p in params:
            if id(p) in created:
                p.grad = None
        set_rng_state(rng0)
    chain_stages = []
    for i in range(1, L + 1):
        s = sizes["stages"][i]
        chain_stages.append(Stage(names[i - 1], statistics.median(fwd_times[i]),
                                  statistics.median(bwd_times[i]), s["x"], s["xbar"],
                                  forward_transient=s["of"], backward_transient=s["ob"],
                                  forward_save_transient=s["ofs"]))
    return Chain(chain_stages, input_bytes=sizes["input"], param_bytes=sizes["params"],
                 name=name or type(model).__name__, cost_unit="s")


def _measure_memory(stages, names, x0, loss_fn, model, params, created):
    L = len(stages)
    runner = Runner(stages, x0, loss_fn, recompute_only=True, accumulate=False)
    runner.prepare_grads(params, only=created)
    out = {"stages": {}}
    held = loss_data(model, x0, loss_fn)        # targets etc.: data, as the input
    with track(model, x0, *held, gradients_in_flight=True, find_optimizers=False) as report:
        input_bytes = data_bytes([x0] + held)
        out["input"] = input_bytes
        out["params"] = report.current_bytes - input_bytes

        def step(fn, i, label):
            before = report.current_bytes
            fn(i)
            peak = report.peak_since_mark
            report.mark(f"{label} {i}")
            return before, peak, report.current_bytes

        sizes = out["stages"]
        for i in range(1, L + 1):
            before, peak, after = step(runner.forward, i, "forward")
            y = runner.x[i]
            x = after - before
            if root_buffer(y.data) is root_buffer(runner.input_of(i).data):
                raise ProfileError(
                    f"stage {i} ({names[i - 1]}) returns a view of its input (a reshape, a "
                    "flatten, an identity); it creates no buffer of its own, which a chain "
                    "cannot describe: put it in one Sequential with its neighbour")
            if x != y.data.nbytes:
                raise ProfileError(
                    f"stage {i} ({names[i - 1]}): its output holds {y.data.nbytes} bytes but "
                    f"forward {i} left {x} bytes more alive (an output that views a larger "
                    "buffer, or memory kept outside autograd); a chain needs ω_x = bytes of "
                    "the output")
            sizes[i] = {"x": x, "of": peak - after}
            del y                   # the executor holds nothing else: neither may we
            step(runner.drop, i, "drop")
            before, peak, after = step(runner.forward_save, i, "forward_save")
            xbar = after - before
            y, x_in, leaf = runner.xbar[i]
            if not y.requires_grad:
                raise ProfileError(f"stage {i} ({names[i - 1]}) does not depend on its input "
                                   "or parameters (its output needs no gradient)")
            hooked = stage_saved_bytes(y, x_in, runner.x[0], params)
            if hooked != xbar:
                raise ProfileError(
                    f"stage {i} ({names[i - 1]}): its graph saves {hooked} bytes (output "
                    f"included) but forward_save {i} left {xbar} bytes more alive; the stage "
                    "keeps memory outside autograd's saved tensors, which the executor "
                    "cannot free at backward")
            del y, x_in, leaf
            sizes[i].update(xbar=xbar, ofs=peak - after)
        for i in range(L, 0, -1):
            before, peak, after = step(runner.backward, i, "backward")
            d_prev = sizes[i - 1]["x"] if i > 1 else 0
            d_this = sizes[i]["x"] if i < L else 0
            expected = before - sizes[i]["xbar"] - d_this + d_prev
            if after != expected:
                raise ProfileError(
                    f"backward {i} ({names[i - 1]}) left {after - before:+d} bytes, the cost "
                    f"model expects {expected - before:+d} (frees x̄{i} and δ{i}, creates "
                    f"δ{i - 1}); something of the stage outlives its backward")
            sizes[i]["ob"] = peak - (before + d_prev)
    return out


# ---- recorded graphs: reduction to a chain ------------------------------------------------

class GraphReduction(NamedTuple):
    """The chain structure of a recorded graph (``reduce_graph``).

    ``graph``: the networkx ``DiGraph`` of the graph's nodes (``grad_fn`` objects), an edge
    from each node to the nodes that consume its output (forward direction); ``source``:
    the input's node; ``boundaries``: the nodes whose outputs are x_1 .. x_L (the last is
    the root's node); ``stages``: per stage, its nodes in forward order (parameter leaves
    left out; ops on parameters alone go to the first stage that needs them).
    """
    graph: object
    source: object
    boundaries: tuple
    stages: tuple


def _input_node(x):
    if x.grad_fn is not None:
        return x.grad_fn
    acc = grad_accumulator(x)
    if acc is None:
        raise ProfileError("the input is not part of the recorded graph: record the graph "
                           "from an input that requires grad (x.detach().requires_grad_())")
    return acc


def reduce_graph(root, input):
    """Reduce the graph behind ``root`` (a Tensor) to a chain of stages from ``input``.

    A stage boundary is a node that every path from the input to the root passes through:
    the root's dominators in the forward graph from the input (Lengauer-Tarjan, via
    ``networkx.immediate_dominators``). Cutting there is what a chain needs — nothing
    computed before the boundary is used after it except the boundary's output — so a
    residual block (its skip path rejoins at the add) or an attention block (queries, keys
    and values from one input) becomes one stage. Nodes with several outputs are not
    boundaries (their stages merge). Each stage holds the nodes that lead to its boundary
    and not to the previous one.

    Limits: one input and one output; a tensor used by two stages that does not come from
    the input (a weight computed once and used twice) is counted in the first stage only;
    long skip connections (a U-Net's) leave few boundaries, hence few stages.

    >>> import ckpt
    >>> x = ckpt.randn(4, 8).requires_grad_()
    >>> w = ckpt.randn(8, 8, requires_grad=True)
    >>> h = (x @ w).tanh()
    >>> y = h + (h @ w).relu()             # a residual block: one stage, ending at the add
    >>> r = reduce_graph(y, x)
    >>> [n.name() for n in r.boundaries]     # every op of a plain chain is a boundary
    ['MmBackward0', 'TanhBackward0', 'AddBackward0']
    >>> [[n.name() for n in s] for s in r.stages]
    [['MmBackward0'], ['TanhBackward0'], ['MmBackward0', 'ReluBackward0', 'AddBackward0']]
    """
    if not isinstance(root, Tensor) or root.grad_fn is None:
        raise ProfileError("reduce_graph needs a root Tensor with a recorded graph (grad_fn)")
    source = _input_node(input)
    sink = root.grad_fn
    g = nx.DiGraph()
    g.add_node(sink)
    for node in walk(root):
        for nxt, _ in node.next_functions:
            if nxt is not None:
                g.add_edge(nxt, node)
    if source not in g:
        raise ProfileError("the root does not depend on the input (no path from the input's "
                           "node to the root in the recorded graph)")
    reach = nx.descendants(g, source) | {source}
    if sink not in reach:
        raise ProfileError("the root does not depend on the input")
    idom = nx.immediate_dominators(g.subgraph(reach), source)
    doms = []
    d = sink
    while d is not source:
        doms.append(d)
        d = idom[d]
    doms.reverse()
    boundaries = [d for d in doms[:-1] if not d.multi_output] + [sink]
    order = {n: k for k, n in enumerate(nx.topological_sort(g))}
    seen = {source}
    stages = []
    for b in boundaries:
        part, stack = [], [b]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n.__class__ is not AccumulateGrad:
                part.append(n)
            stack.extend(g.predecessors(n))
        stages.append(tuple(sorted(part, key=order.__getitem__)))
    return GraphReduction(g, source, tuple(boundaries), tuple(stages))


def _output_meta(g, node):
    """(shape, dtype) of ``node``'s output, read from a consumer's input metadata."""
    for c in g.successors(node):
        for j, (nxt, _) in enumerate(c.next_functions):
            if nxt is node and c.input_meta(j) is not None:
                return c.input_meta(j)
    return None


def _nbytes(meta):
    shape, dtype = meta
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _chain_from_reduction(red, root, x0, outputs, fwd, bwd, name, unit):
    """Sizes from the graph, costs given per stage."""
    g, L = red.graph, len(red.boundaries)
    param_ids = set()
    for n in g:
        if n.__class__ is AccumulateGrad and n is not red.source and n.variable is not None:
            param_ids.add(id(root_buffer(n.variable.data)))
    x = [int(root_buffer(x0.data).nbytes)]
    out_ids = {}
    for k, b in enumerate(red.boundaries, 1):
        if k == L:
            x.append(int(root.data.nbytes))
            out_ids[k] = id(root_buffer(root.data))
            continue
        meta = _output_meta(g, b)
        x.append(_nbytes(meta) if meta is not None else 0)
        if outputs is not None and b in outputs:
            out_ids[k] = id(outputs[b])
    out_ids[0] = id(root_buffer(x0.data))
    stages = []
    for k, (b, nodes) in enumerate(zip(red.boundaries, red.stages), 1):
        prev = red.boundaries[k - 2] if k > 1 else red.source
        buffers = {}
        for n in nodes:
            for s in n.saved_entries():
                key, nbytes = s.buffer()
                producer = s.producer(n)
                if producer is prev or key == out_ids.get(k - 1) or key in param_ids:
                    continue        # the stage's input, or a parameter
                if producer is b or key == out_ids.get(k):
                    continue        # the output: counted below
                buffers[key] = nbytes
        xbar = x[k] + sum(buffers.values())
        names = [n.name() for n in nodes]
        label = names[-1] if len(names) == 1 else f"{names[0]}..{names[-1]} ({len(names)} ops)"
        stages.append(Stage(label, fwd[k - 1], bwd[k - 1], x[k], xbar))
    return Chain(stages, input_bytes=x[0], param_bytes=_param_bytes(g, red.source),
                 name=name, cost_unit=unit)


def _param_bytes(g, source):
    """Leaves that require grad other than the input: their data and gradients."""
    total = 0
    seen = set()
    for n in g:
        if n.__class__ is AccumulateGrad and n is not source and n.variable is not None:
            root = root_buffer(n.variable.data)
            if id(root) not in seen:
                seen.add(id(root))
                total += 2 * int(root.nbytes)
    return total


def _profile_root(root, x0, name):
    if not isinstance(x0, Tensor):
        raise TypeError("profile(root_tensor, input): input must be the Tensor the graph was "
                        "recorded from")
    red = reduce_graph(root, x0)
    counts = [float(len(s)) for s in red.stages]
    return _chain_from_reduction(red, root, x0, None, counts, counts, name or "graph", "op")


class _OpClock(Observer):
    """Observer: the time each recorded op finished and its output buffer, by node."""

    def __init__(self):
        self.times = {}
        self.outputs = {}
        self.last = time.perf_counter()

    def op_recorded(self, event):
        now = time.perf_counter()
        node = event.node
        if node is not None:
            self.times[node] = now - self.last
            self.outputs[node] = root_buffer(event.output.data)   # kept: ids stay unique
        self.last = time.perf_counter()


def _profile_function(fn, x0, loss_fn, repeats, name):
    if not isinstance(x0, Tensor):
        raise TypeError(f"sample_input must be a ckpt.Tensor, got {type(x0).__name__}")
    loss_fn = loss_fn or sum_loss
    rng0 = get_rng_state()
    fwd_runs, bwd_runs, result = [], [], None
    try:
        for _ in range(repeats):
            set_rng_state(rng0)
            x = x0.detach().requires_grad_()
            clock = _OpClock()
            # recomputing: no BatchNorm update while profiling
            with recomputing(), observing(clock), grad_mode.enable_grad():
                y = fn(x)
                t0 = time.perf_counter()
                loss = loss_fn(y)
                t_loss = time.perf_counter() - t0
            if not isinstance(y, Tensor) or y.grad_fn is None:
                raise ProfileError("the function's output has no recorded graph from its input")
            red = reduce_graph(y, x)
            if result is None:
                result = _chain_from_reduction(red, y, x, clock.outputs, [0.0] * len(red.stages),
                                               [0.0] * len(red.stages), name or getattr(
                                                   fn, "__name__", "function"), "s")
            elif len(red.stages) != len(result):
                raise ProfileError("the function's graph changed between runs")
            fwd_runs.append([sum(clock.times.get(n, 0.0) for n in s) for s in red.stages])
            bwd_runs.append(_timed_backward(loss, red, t_loss))
            del y, loss, red, clock, x
    finally:
        set_rng_state(rng0)
    fwd = [statistics.median(col) for col in zip(*fwd_runs)]
    bwd = [statistics.median(col) for col in zip(*bwd_runs)]
    stages = [Stage(s.name, f, b, s.output_bytes, s.saved_bytes)
              for s, f, b in zip(result.stages, fwd, bwd)]
    return Chain(stages, input_bytes=result.input_bytes, param_bytes=result.param_bytes,
                 name=result.name, cost_unit="s")


def _timed_backward(loss, red, t_loss):
    """Seconds of backward per stage (the loss's forward and backward in the last stage),
    from pre/post hooks on every node; gradients go nowhere (``autograd.grad``)."""
    stage_of = {n: k for k, s in enumerate(red.stages) for n in s}
    spent = [0.0] * len(red.stages)
    spent[-1] += t_loss
    starts = {}
    handles = []
    for n in walk(loss):
        if n.__class__ is AccumulateGrad:
            continue
        k = stage_of.get(n, len(red.stages) - 1)

        def pre(grads, n=n):
            starts[n] = time.perf_counter()

        def post(grads_in, grads_out, n=n, k=k):
            spent[k] += time.perf_counter() - starts.pop(n, time.perf_counter())

        handles.append(n.register_prehook(pre))
        handles.append(n.register_hook(post))
    leaves = [n.variable for n in walk(loss)
              if n.__class__ is AccumulateGrad and n.variable is not None]
    from ..autograd.engine import grad as autograd_grad
    autograd_grad(loss, leaves, allow_unused=True)
    for h in handles:
        h.remove()
    return spent


class _CallableModule(_types.ModuleType):
    """Importing this module rebinds the package attribute ``ckpt.planner.profile`` to it;
    calling the module calls ``profile``, so ``ckpt.planner.profile(...)`` always works."""

    def __call__(self, *args, **kwargs):
        return profile(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
