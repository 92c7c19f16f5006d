"""The backward pass: a dependency-counted walk over the recorded graph, no recursion.

``backward`` accumulates into leaves' ``.grad``; ``grad`` returns gradients for chosen
inputs without touching ``.grad``. Both run ``_execute``: count how many edges point at each
node, start from the roots, and run a node's VJP once every consumer has delivered its
gradient (``run_node``: one path for every node, arrays or Tensors chosen once per pass by
``_Pass``). The engine, not the ops, un-broadcasts gradients to each input's shape.
"""
import sys
import threading
import warnings

import numpy as np

from . import grad_mode
from .batch import Batch
from .accumulate import accumulate_array, accumulate_into
from .node import (AccumulateGrad, Extensions, GradientEdge, SavedTensor, _FREED_MESSAGE, _HookStack,
                   _type_name)
from .tensor import Tensor, _wrap

_GradState = grad_mode._State


def _as_tuple(x):
    if x is None:
        return ()
    if isinstance(x, Tensor) or x.__class__ is GradientEdge:
        return (x,)
    return tuple(x)


def _make_root_grads(outputs, grad_outputs, create_graph):
    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            if out.data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            grads.append(_wrap(np.ones_like(out.data)))
            continue
        if not isinstance(g, Tensor):
            g = _wrap(np.asarray(g, dtype=out.data.dtype))
        if g.data.shape != out.data.shape:
            raise RuntimeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {_size(g.data.shape)} and "
                f"output[{i}] has a shape of {_size(out.data.shape)}.")
        grads.append(g if create_graph else g.detach())
    return grads


def _make_batched_root_grads(outputs, grad_outputs, create_graph):
    grads = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if g is None:
            raise RuntimeError("is_grads_batched=True needs every grad_output, each with a leading "
                               f"batch dim; grad_outputs[{i}] is None")
        if not isinstance(g, Tensor):
            g = _wrap(np.asarray(g, dtype=out.data.dtype))
        if g.data.shape[1:] != out.data.shape or (grads and g.data.shape[0] != grads[0].data.shape[0]):
            raise RuntimeError(
                f"Mismatch in shape: grad_output[{i}] has a shape of {_size(g.data.shape)} and "
                f"output[{i}] has a shape of {_size(out.data.shape)}. If `is_grads_batched=True`, "
                "we interpret the first dimension of each grad_output as the batch dimension "
                "(the same B for every output); the sizes of the remaining dimensions are "
                "expected to match the shape of the corresponding output.")
        grads.append(g if create_graph else g.detach())
    return grads


def _size(shape):
    """A shape as ``str(tensor.shape)`` prints it (torch's messages print its ``torch.Size``)."""
    return str(tuple(shape))


def _root_edges(outputs):
    edges = []
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise TypeError(f"element {i} of tensors is a {type(out).__name__}, expected a Tensor")
        if not out.requires_grad:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn")
        fn = out.grad_fn
        edges.append((fn, out._output_nr) if fn is not None else (out._get_accumulator(), 0))
    return edges


def _input_edge(t, i):
    if t.__class__ is GradientEdge:   # graph.get_gradient_edge's, for grad()
        return (t.node, t.output_nr)
    if not isinstance(t, Tensor):
        raise TypeError(f"inputs[{i}] is a {type(t).__name__}, expected a Tensor")
    if not t.requires_grad:
        raise RuntimeError("One of the differentiated Tensors does not require grad")
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr)
    return (t._acc, 0)  # None when the leaf never entered a graph


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate gradients of ``tensors`` into the ``.grad`` of leaves (or of ``inputs``).

    ``grad_tensors`` holds the vector of each vector-Jacobian product (needed for non-scalar
    outputs); ``retain_graph`` defaults to ``create_graph``.

    >>> import ckpt
    >>> x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    >>> ckpt.autograd.backward((x * x).sum())
    >>> x.grad.tolist()
    [2.0, 4.0]
    """
    outputs = _as_tuple(tensors)
    grad_outputs = _as_tuple(grad_tensors) if grad_tensors is not None else (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(
            f"got {len(grad_outputs)} tensors in grad_tensors but {len(outputs)} in tensors")
    if retain_graph is None:
        retain_graph = create_graph
    if create_graph:
        warnings.warn(_CREATE_GRAPH_WARNING, UserWarning, stacklevel=2)
    roots = _root_edges(outputs)
    root_grads = _make_root_grads(outputs, grad_outputs, create_graph)
    if not create_graph:   # a gradient the caller holds never becomes a .grad (torch clones it)
        root_grads = [r if given is None else _wrap(r.data.copy())
                      for r, given in zip(root_grads, grad_outputs)]
    if inputs is None:
        _execute(roots, root_grads, retain_graph, create_graph)
        return
    inputs = _as_tuple(inputs)
    if not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    targets = [_input_edge(t, i) for i, t in enumerate(inputs)]
    captured = _execute(roots, root_grads, retain_graph, create_graph, targets, accumulate_leaves=True)
    for t, edge, g in zip(inputs, targets, captured):
        # leaves were accumulated by their node; a GradientEdge only bounds the pass, as in torch
        if g is not None and t.__class__ is not GradientEdge and t.grad_fn is not None:
            accumulate_into(t, g, create_graph, in_place=False)


_CREATE_GRAPH_WARNING = (
    "Using backward() with create_graph=True will create a reference cycle between the parameter "
    "and its gradient which can cause a memory leak. We recommend using autograd.grad when "
    "creating the graph to avoid this. If you have to use this function, make sure to reset the "
    ".grad fields of your parameters to None after use to break the cycle and avoid the leak.")


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """Return d(outputs)/d(inputs) (vector-Jacobian products) without touching ``.grad``.

    With ``is_grads_batched=True`` each ``grad_outputs[i]`` carries a leading batch dim B and
    the B vector-Jacobian products come out stacked the same way, from one backward pass.

    >>> import ckpt
    >>> x = ckpt.tensor([3.0], requires_grad=True)
    >>> (dx,) = ckpt.autograd.grad(x ** 3, x, create_graph=True)
    >>> (ddx,) = ckpt.autograd.grad(dx, x)
    >>> dx.item(), ddx.item()
    (27.0, 18.0)
    """
    outputs = _as_tuple(outputs)
    inputs_t = _as_tuple(inputs)
    if not inputs_t:
        raise RuntimeError("`inputs` argument to `grad()` cannot be empty.")
    grad_outputs = _as_tuple(grad_outputs) if grad_outputs is not None else (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(
            f"grad requires one grad_output per output: got {len(grad_outputs)} grad_outputs "
            f"and {len(outputs)} outputs")
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True, "
                         "but got: allow_unused=False.")
    if retain_graph is None:
        retain_graph = create_graph
    roots = _root_edges(outputs)
    if is_grads_batched:
        root_grads = _make_batched_root_grads(outputs, grad_outputs, create_graph)
        batch = root_grads[0].data.shape[:1]
    else:
        root_grads = _make_root_grads(outputs, grad_outputs, create_graph)
        batch = ()
    targets = [_input_edge(t, i) for i, t in enumerate(inputs_t)]
    captured = _execute(roots, root_grads, retain_graph, create_graph, targets,
                        accumulate_leaves=False, batched=is_grads_batched)
    result = []
    for i, (t, g) in enumerate(zip(inputs_t, captured)):
        if g is None:
            if materialize_grads and t.__class__ is GradientEdge:
                raise RuntimeError(f"materialize_grads cannot be used when the given input is a "
                                   f"GradientEdge (inputs[{i}] got no gradient: pass the tensor)")
            if materialize_grads:
                g = Tensor(np.zeros(batch + t.data.shape, t.data.dtype), requires_grad=create_graph)
            elif not allow_unused:
                raise RuntimeError(
                    f"The differentiated Tensor at index {i} appears to not have been used in the "
                    "graph. Set allow_unused=True if this is the desired behavior.")
        result.append(g)
    return tuple(result)


def _validate(node, i, g, arrays, batch_dims=0):
    """Bring gradient ``i`` of ``node`` to its input's shape (un-broadcasting) and dtype, as
    a numpy array when ``arrays`` else as a Tensor; reject what can't be brought there.
    ``batch_dims`` leading dims of a batched gradient are kept (and never summed)."""
    shape, dtype = node._meta[2 * i], node._meta[2 * i + 1]
    if shape is None:
        return g
    if g.__class__ is np.ndarray and not batch_dims and arrays:
        extra = g.ndim - len(shape)
        # broadcast over leading dims, as a bias is: the general path below takes the MLP
        # step of bench_autograd 20 µs longer (batch 2, width 4; 2026-12-07)
        if extra > 0 and g.shape[extra:] == shape:
            g = g.sum(axis=tuple(range(extra)))
            return g if g.dtype == dtype else g.astype(dtype)
    if isinstance(g, Tensor):
        d = g.data
    elif isinstance(g, (np.ndarray, np.generic, float, int)):
        d = g = np.asarray(g)
    else:
        raise TypeError(f"{node.name()} returned a {type(g).__name__} as gradient {i}, expected a Tensor")
    batch, inner = d.shape[:batch_dims], d.shape[batch_dims:]
    if inner != shape:
        # torch's check: the input's shape expands to the gradient's (numpy's broadcast_shapes,
        # which also lets a smaller gradient through, costs ~5 us a call)
        if len(inner) < len(shape) or any(s != 1 and s != t for s, t in
                                           zip(reversed(shape), reversed(inner))):
            raise RuntimeError(
                f"Function {node.name()} returned an invalid gradient at index {i} - got "
                f"{list(inner)} but expected shape compatible with {list(shape)}")
        if not arrays and not isinstance(g, Tensor):
            g = _wrap(d)
        g = _sum_to(g if not arrays else d, batch, inner, shape)
    elif arrays:
        g = d
    elif not isinstance(g, Tensor):
        g = _wrap(d)
    if arrays:
        return g if g.dtype == dtype else g.astype(dtype)
    return g if g.data.dtype == dtype else g.to(dtype)


def _sum_to(g, batch, inner, shape):
    """Sum the broadcast gradient ``g`` (``batch + inner``; an array or a Tensor) down to
    ``batch + shape``."""
    if not batch and g.__class__ is Tensor:
        return g.sum_to_size(shape)
    nb, extra = len(batch), len(inner) - len(shape)
    axes = tuple(range(nb, nb + extra)) + tuple(
        nb + extra + j for j, s in enumerate(shape) if s == 1 and inner[extra + j] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True) if g.__class__ is not Tensor else g.sum(axes, keepdim=True)
    return g.reshape(batch + tuple(shape)) if batch or extra else g


def _discover(root_nodes):
    """Dependency counts: how many edges of the reachable graph point at each node (every
    reachable node, roots included, is a key)."""
    deps = dict.fromkeys(root_nodes, 0)
    stack = list(deps)
    while stack:
        for nxt, _ in stack.pop().next_functions:
            if nxt is not None:
                count = deps.get(nxt)
                if count is None:
                    deps[nxt] = 1
                    stack.append(nxt)
                else:
                    deps[nxt] = count + 1
    return deps


def _to_run(nodes, captures, accumulate_leaves):
    """The nodes whose VJP must run to reach the captured targets: those with a target
    strictly below them (plus the targets' own nodes when ``backward(inputs=...)``)."""
    parents = {}
    for node in nodes:
        for nxt, _ in node.next_functions:
            if nxt is not None:
                parents.setdefault(nxt, []).append(node)
    to_run = set()
    stack = [n for n in captures if n in nodes]
    while stack:
        for p in parents.get(stack.pop(), ()):
            if p not in to_run:
                to_run.add(p)
                stack.append(p)
    if accumulate_leaves:   # backward(inputs=...) runs the targets' own nodes too, as torch does
        to_run.update(n for n in captures if n in nodes)
    return to_run


def _add(buffer, g, dest):
    if buffer is None:
        return g
    total = buffer + g
    if Extensions.grad_observers:
        _observe(((dest, 0),), (total,))
    return total


def _observe(edges, grads):
    """Tell ``Extensions.grad_observers`` of the gradient arrays the engine now holds:
    ``grads[k]`` is bound for the node of ``edges[k]`` (a VJP's results with its
    ``next_functions``, or one sum or cast). A Tensor (from a custom Function's backward)
    counts by its array."""
    if grads.__class__ is not tuple and grads.__class__ is not list:
        grads = (grads,)
    arrays = [g.data if g.__class__ is Tensor else g for (dest, _), g in zip(edges, grads)
              if dest is not None and (g.__class__ is np.ndarray or g.__class__ is Tensor)]
    if arrays:
        for observer in Extensions.grad_observers:
            observer.on_grads(arrays)


class _Pass:
    """What one backward pass decides once and every node reads.

    ``arrays``: without ``create_graph`` gradients flow as numpy arrays and array rules skip
    the Tensor wrappers; with it they flow as Tensors, so the backward pass is itself
    recorded. Inside a forward-AD level rules must see Tensors, whose tangents they
    propagate (forward-over-reverse). ``observed``: memory trackers learn of the arrays
    passed between nodes (``Extensions.grad_observers``). ``direct``: every node with
    ``_plain`` set runs straight to its rule (nothing is captured, pruned or batched);
    else ``direct_nodes`` are the ones that may (to be run, not captured, not batched).
    ``anomaly``: anomaly mode's watcher (``Extensions.anomaly``), which sees every node's
    results; ``running`` is then the node whose rule runs now (parent of what it records).
    """
    __slots__ = ("arrays", "observed", "keep_graph", "create_graph", "captures", "to_run",
                 "batched", "direct", "direct_nodes", "nodes", "callbacks", "anomaly", "running",
                 "__weakref__")

    def __init__(self, keep_graph, create_graph, captures, to_run, batched):
        self.arrays = not create_graph and not Extensions.forward_ad
        self.observed = bool(Extensions.grad_observers) and self.arrays
        self.keep_graph, self.create_graph = keep_graph, create_graph
        self.captures, self.to_run = captures, to_run
        self.batched = batched
        self.anomaly, self.running = Extensions.anomaly, None
        self.direct = not batched and to_run is None and not captures and self.anomaly is None
        self.direct_nodes = (to_run.difference(captures) if to_run is not None and not batched
                             and self.anomaly is None else frozenset())
        self.nodes = None   # every node reachable from the roots (set by the pass)
        self.callbacks = None   # what ``queue_callback`` asked to run at the end of the pass

    def reaches(self, node):
        """Whether this pass runs ``node`` or captures a gradient there."""
        return node in self.nodes and (self.to_run is None or node in self.to_run
                                       or node in self.captures)


class _Reentry:
    """How many backward passes run inside one another (a custom Function's backward may run
    one), and those passes (``_Pass``), innermost last."""
    depth = 0
    passes = []


def current_pass():
    """The innermost backward pass running now (its ``reaches(node)`` says whether it runs or
    captures ``node``), or None outside backward.

    >>> from ckpt.autograd.engine import current_pass
    >>> current_pass() is None
    True
    """
    passes = _Reentry.passes
    return passes[-1] if passes else None


def queue_callback(callback):
    """Run ``callback()`` once the backward pass running now has run all its nodes, after
    the callbacks queued before it (torch's ``Variable._execution_engine.queue_callback``).

    >>> import ckpt
    >>> from ckpt.autograd.engine import queue_callback
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> y = x * 2
    >>> seen = []
    >>> _ = y.register_hook(lambda g: queue_callback(lambda: seen.append(x.grad.tolist())))
    >>> y.sum().backward(); seen
    [[2.0, 2.0]]
    """
    running = current_pass()
    if running is None:
        raise RuntimeError("Final callbacks can only be installed during backward pass.")
    if running.callbacks is None:
        running.callbacks = []
    running.callbacks.append(callback)


# Every this many nested passes the next one runs on a fresh thread, so that a deep chain of
# reentrant backward calls never meets Python's recursion limit (torch does the same): a
# custom Function's backward running a pass nests 8 Python frames, 32 of them about 260.
_PASSES_PER_THREAD = 32


def _execute(*args, **kwargs):
    """``_run_pass(*args, **kwargs)``, on a fresh thread when enough passes are nested."""
    depth = _Reentry.depth
    _Reentry.depth = depth + 1
    # the saved-tensor hooks in effect, put back after the pass (hooks entered or exited
    # during it are undone, as torch's thread-local state is); none, commonly
    hooks = _HookStack.state() if _HookStack.pairs else None
    try:
        if depth and depth % _PASSES_PER_THREAD == 0:
            return _on_fresh_thread(_run_pass, args, kwargs)
        return _run_pass(*args, **kwargs)
    finally:
        _Reentry.depth = depth
        if hooks is not None or _HookStack.pairs:
            _HookStack.restore(hooks or _HookStack.NONE)


def _on_fresh_thread(function, args, kwargs):
    """Run ``function`` on a new thread and wait: its value, or its exception raised here."""
    outcome = []

    def run():
        try:
            outcome.append((True, function(*args, **kwargs)))
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread
            outcome.append((False, error))
    thread = threading.Thread(target=run, name="ckpt nested backward")
    thread.start()
    thread.join()
    finished, value = outcome[0]
    if not finished:
        raise value
    return value


def _run_pass(roots, root_grads, keep_graph, create_graph, targets=None, accumulate_leaves=True,
              batched=False):
    root_nodes = [n for n, _ in roots]
    deps = _discover(root_nodes)
    to_run = None
    captures = {}
    if targets is not None:
        for n, nr in targets:
            if n is not None:
                captures.setdefault(n, {})[nr] = None
        to_run = _to_run(deps, captures, accumulate_leaves)
    p = _Pass(keep_graph, create_graph, captures, to_run, batched)
    p.nodes = deps
    arrays, observed, direct = p.arrays, p.observed, p.direct
    leaves_now = direct and arrays and not observed and not batched
    buffers = {}
    for (node, nr), g in zip(roots, root_grads):
        _buffer_add(buffers, node, nr, g.data if arrays else g)
    ready = [node for node in dict.fromkeys(root_nodes) if deps[node] == 0]

    previous_mode = _GradState.enabled
    _GradState.enabled = create_graph
    previous_batch, Batch.dims = Batch.dims, (1 if batched else 0)
    pop_buffer = buffers.pop
    _Reentry.passes.append(p)
    try:
        if observed:   # the seeds (e.g. the ones of a scalar loss)
            _observe(roots, [g.data for g in root_grads])
        while ready:
            node = ready.pop()
            if node._plain and direct:
                # _call_rule for the commonest node, inline: the 300-op chain's backward
                # takes 0.839 ms instead of 0.887 (-5%; quiet machine, 2026-12-05)
                input_grads = pop_buffer(node, None)
                if input_grads is not None:
                    saved = node._saved
                    if saved is None:
                        raise RuntimeError(_FREED_MESSAGE)
                    n_saved = len(saved)
                    if n_saved == 0:
                        input_grads = node.vjp(input_grads)
                    elif n_saved == 1:
                        only = saved[0]
                        input_grads = node.vjp(input_grads, only.unpack(node, arrays)
                                               if only.__class__ is SavedTensor else only)
                        del only
                    elif n_saved == 2:   # (a comprehension: +4% of the chain's backward)
                        first, second = saved
                        input_grads = node.vjp(
                            input_grads,
                            first.unpack(node, arrays) if first.__class__ is SavedTensor else first,
                            second.unpack(node, arrays) if second.__class__ is SavedTensor else second)
                        del first, second
                    else:
                        input_grads = node.vjp(input_grads, *[
                            s.unpack(node, arrays) if s.__class__ is SavedTensor else s for s in saved])
                    if observed:
                        _observe(node.next_functions, input_grads)
                    if saved and not keep_graph:
                        node._saved = saved = None
                    if input_grads.__class__ is not tuple:
                        input_grads = (tuple(input_grads) if isinstance(input_grads, list)
                                       else (input_grads,))
            else:
                input_grads = run_node(node, pop_buffer(node, None), p)
            if input_grads is None:
                for nxt, _ in node.next_functions:
                    if nxt is not None:
                        remaining = deps[nxt] - 1
                        deps[nxt] = remaining
                        if remaining == 0:
                            ready.append(nxt)
                continue
            meta = node._meta
            n_grads = len(input_grads)
            i = 0
            for nxt, nr in node.next_functions:
                if nxt is not None:
                    g = input_grads[i] if i < n_grads else None
                    if g is not None:
                        if batched:
                            g = _validate(node, i, g, arrays, 1)
                        elif arrays:
                            if (g.__class__ is not np.ndarray or g.shape != meta[2 * i]
                                    or (g.dtype is not meta[2 * i + 1] and g.dtype != meta[2 * i + 1])):
                                g = _validate(node, i, g, True)
                                if observed:  # un-broadcast or cast: a new array
                                    _observe(((nxt, nr),), (g,))
                        elif (g.__class__ is not Tensor or g.data.shape != meta[2 * i]
                                or g.data.dtype != meta[2 * i + 1]):
                            g = _validate(node, i, g, False)
                        if nxt._out_meta is None:
                            previous = buffers.get(nxt)
                            if (previous is None and nxt.__class__ is AccumulateGrad and leaves_now
                                    and g.__class__ is np.ndarray and deps[nxt] == 1 and nxt._plain):
                                # a leaf's one gradient, added into its .grad here rather than
                                # by its node from the ready stack (1 µs a leaf)
                                deps[nxt] = 0
                                leaf = nxt._variable()
                                if leaf is not None:
                                    shared = sys.getrefcount(g) > _HELD_BY_LOOP
                                    accumulate_array(leaf, g, shared)
                                i += 1
                                continue
                            buffers[nxt] = g if previous is None else _add(previous, g, nxt)
                        else:
                            _buffer_add(buffers, nxt, nr, g)
                    remaining = deps[nxt] - 1
                    deps[nxt] = remaining
                    if remaining == 0:
                        ready.append(nxt)
                i += 1
            g = None   # (a leaf's accumulator counts who holds its gradient: not this name)
        for callback in p.callbacks or ():   # (the list grows if a callback queues one)
            callback()
    except Exception as error:
        if Extensions.anomaly is not None:
            Extensions.anomaly.failed(locals().get("node"), error)
        raise
    finally:
        _GradState.enabled = previous_mode
        Batch.dims = previous_batch
        _Reentry.passes.pop()
    if targets is None:
        return None
    return [captures[n][nr] if n is not None else None for n, nr in targets]


def _count_held_by_loop():
    """sys.getrefcount of a gradient array that only the pass loop holds when it hands it to
    a leaf (its rule's result tuple and the loop's name), as this interpreter counts it."""
    input_grads = (np.empty(1),)
    g = input_grads[0]
    return sys.getrefcount(g)


_HELD_BY_LOOP = _count_held_by_loop()


def run_node(node, grad, p):
    """Run ``node`` of the pass ``p`` on ``grad``, the sum of the gradients its consumers
    delivered (for a multi-output node a list, one per output, None where none came).
    Returns the gradients of its inputs, in the order of ``next_functions``, or None when
    nothing flows on (no gradient came, a leaf accumulated it, or it isn't needed).

    A ``_plain`` node (one output, no hooks, an array rule) goes straight to its rule when the pass
    lets it (``_Pass.direct``); any other node (multi-output, leaf accumulator, with
    hooks, captured by ``grad()``, pruned or batched) first meets its hooks, captures and
    accumulation, with Tensor gradients (hooks and users see Tensors). Calling
    ``_call_rule`` from the pass loop for plain nodes, skipping this function, measured no
    gain on the 300-op chain (within the 3% noise); the pass loop inlines ``_call_rule``
    itself for a plain node with an array rule, which did pay (see there).
    """
    if node._plain and (p.direct or node in p.direct_nodes):
        return None if grad is None else _call_rule(node, grad, p, p.arrays)
    grads = _prepare(node, grad, p)
    if grads is None:
        return None
    p.running = node
    if p.batched and not node._batched_rule:
        result = _apply_per_sample(node, grads, p)
    else:
        result = _call_rule(node, grads[0] if node._out_meta is None else grads, p, False)
    if p.anomaly is not None:
        p.anomaly.finished(node, result)
    if p.arrays:
        return tuple(g.data if g.__class__ is Tensor else g for g in result)
    return result


def _prepare(node, grad, p):
    """Hooks, captures and leaf accumulation before a node's rule: its gradients as a list
    of Tensors, one per output, or None when its rule must not run."""
    outs = node._out_meta
    if outs is None:
        grads = [grad]
    elif grad is None:
        grads = [None] * len(outs)
    else:
        grads = grad
    runs = p.to_run is None or node in p.to_run
    if not runs and node not in p.captures:
        return None   # a pass that never reaches this node runs none of its hooks, as torch
    if p.arrays:
        grads = [None if g is None else _wrap(g) for g in grads]
    is_leaf_node = node.__class__ is AccumulateGrad
    if is_leaf_node:   # the leaf's tensor hooks come before the accumulator's pre-hooks
        grads = [_hooked_leaf_grad(node, grads[0])]
    if node._tensor_hooks or node._retain_hooks:
        grads = _run_tensor_hooks(node, grads, p.create_graph)
    if node in p.captures:   # what the tensor hooks gave, before the node's pre-hooks (torch)
        wanted = p.captures[node]
        for nr in wanted:
            wanted[nr] = grads[nr]
    if runs and node._pre_hooks:
        grads = _run_node_pre_hooks(node, grads)
    if not runs:
        return None
    if is_leaf_node:
        leaf = node._variable()
        if leaf is not None:
            if grads[0] is not None:
                accumulate_into(leaf, grads[0], p.create_graph)
            if node._post_acc_hooks:   # (even when no gradient came, as torch)
                _run_post_acc_hooks(node._post_acc_hooks, leaf)
            if node._post_hooks and grads[0] is not None:  # with no input gradients, as torch
                _run_post_hooks(node, (), tuple(grads), False)
        return None
    if all(g is None for g in grads) and node._out_meta is None:
        return None   # (torch runs even such a node; ckpt a multi-output one, as a Function's)
    return grads


def _call_rule(node, grad, p, arrays):
    """``node.vjp`` on ``grad`` (a list, one per output, for a multi-output node; arrays
    when ``arrays``, else Tensors) and what the node saved, unpacked the same way (a rule
    that needs Tensors gets Tensors); releases the saved values unless the pass keeps the
    graph, then runs the post-hooks. Returns a tuple, one gradient per input."""
    saved = node._saved
    if saved is None:
        raise RuntimeError(_FREED_MESSAGE)
    as_array = arrays and node._array_rule
    if node._out_meta is None:
        if arrays and not as_array:
            grad = _wrap(grad)
    else:  # every output gets a gradient, zeros where none came (None where no shape is kept)
        grad = [(_wrap(g) if arrays else g) if g is not None else
                None if shape is None else _wrap(np.zeros(shape, dtype))
                for g, (shape, dtype) in zip(grad, node._out_meta)]
    if len(saved) == 1:  # most rules read one saved value: no list to build (chain300: -4%)
        only = saved[0]
        result = node.vjp(grad, only.unpack(node, as_array) if only.__class__ is SavedTensor else only)
        del only
    else:
        result = node.vjp(grad, *[s.unpack(node, as_array) if s.__class__ is SavedTensor else s
                                  for s in saved])
    if p.observed:  # while the saved tensors are still alive
        _observe(node.next_functions, result)
    if saved and not p.keep_graph:
        node._saved = saved = None  # (no name here may keep them alive)
    if result.__class__ is not tuple:
        result = tuple(result) if isinstance(result, list) else (result,)
    if node._post_hooks:
        result = _run_post_hooks(node, result, tuple(grad) if node._out_meta else (grad,), arrays)
    return result


def _buffer_add(buffers, node, nr, g):
    outs = node._out_meta
    if outs is None:
        buffers[node] = _add(buffers.get(node), g, node)
    else:
        slot = buffers.get(node)
        if slot is None:
            slot = buffers[node] = [None] * len(outs)
        slot[nr] = _add(slot[nr], g, node)


def _run_tensor_hooks(node, grads, create_graph):
    """The hooks of each output tensor (called with None for an output no gradient reached,
    as torch does), then its ``retain_grad``."""
    grads = list(grads)
    for nr, hooks in (node._tensor_hooks or {}).items():
        for hook in list(hooks):
            replaced = hook(grads[nr])
            if replaced is not None:
                grads[nr] = _checked(hook, grads[nr], replaced)
    for nr, ref in (node._retain_hooks or {}).items():
        t = ref()
        if t is not None and grads[nr] is not None:
            accumulate_into(t, grads[nr], create_graph, in_place=False)
    return grads


def _run_node_pre_hooks(node, grads):
    for hook in list(node._pre_hooks):
        replaced = hook(tuple(grads))
        if replaced is not None:
            if len(replaced) != len(grads):
                raise RuntimeError(f"hook '{_hook_name(hook)}' has returned an incorrect number of "
                                   f"values (got {len(replaced)}, but expected {len(grads)})")
            grads = [_checked(hook, g, new) for g, new in zip(grads, replaced)]
    return grads


def _checked(hook, value, replaced):
    """A hook's replacement for the gradient ``value``, checked as torch checks it: the same
    dtype and shape (``.grad`` and the rules downstream rely on both)."""
    if value.__class__ is Tensor and replaced.__class__ is Tensor:
        was, got = value._data, replaced._data
        if got.dtype != was.dtype:
            raise RuntimeError(f"hook '{_hook_name(hook)}' has changed the type of value (was "
                               f"ckpt.{_type_name(was.dtype)} got ckpt.{_type_name(got.dtype)})")
        if got.shape != was.shape:
            raise RuntimeError(f"hook '{_hook_name(hook)}' has changed the size of value")
    return replaced


def _hook_name(hook):
    return getattr(hook, "__name__", type(hook).__name__)


def _run_post_acc_hooks(hooks, leaf):
    for hook in list(hooks):
        returned = hook(leaf)
        if isinstance(returned, Tensor):
            raise RuntimeError("Tensor post accumulate grad hooks should return None.")
        if returned is not None:
            raise TypeError(f"expected Variable, but hook returned '{type(returned).__name__}'")


def _hooked_leaf_grad(node, g):
    leaf = node._variable()
    if leaf is not None and leaf._hooks and g is not None:
        for hook in list(leaf._hooks):
            replaced = hook(g)
            if replaced is not None:
                g = _checked(hook, g, replaced)
    return g


def _apply_per_sample(node, grads, p):
    """A node whose rule can't take batched gradients: run it once per batch element and
    stack the results (``ckpt.stack`` keeps them differentiable under ``create_graph``)."""
    from .ops.shape import stack
    size = next(g.data.shape[0] for g in grads if g is not None)
    keep_graph, p.keep_graph = p.keep_graph, True
    Batch.dims = 0
    try:
        per_sample = [_call_rule(node, grads[0][b] if node._out_meta is None else
                                 [None if g is None else g[b] for g in grads], p, False)
                      for b in range(size)]
    finally:
        Batch.dims = 1
        p.keep_graph = keep_graph
    if not keep_graph:
        node._release()
    result = []
    for i in range(max(len(r) for r in per_sample)):
        column = [r[i] if i < len(r) else None for r in per_sample]
        if all(c is None for c in column):
            result.append(None)
            continue
        like = next(c for c in column if c is not None)
        column = [c if c is not None else like * 0 for c in column]
        result.append(stack([c if isinstance(c, Tensor) else _wrap(np.asarray(c)) for c in column]))
    return tuple(result)


def _run_post_hooks(node, result, grads, arrays):
    if arrays:  # hooks see Tensors
        result = tuple(_wrap(g) if isinstance(g, np.ndarray) else g for g in result)
        grads = tuple(_wrap(g) if isinstance(g, np.ndarray) else g for g in grads)
    for hook in list(node._post_hooks):
        replaced = hook(result, grads)
        if replaced is not None:
            result = tuple(replaced)
    if arrays:
        result = tuple(g.data if isinstance(g, Tensor) else g for g in result)
    return result
