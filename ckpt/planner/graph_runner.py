"""The op-level runner shared by ``profile_graph`` and the graph executor: a traced training
step (``bind``) and a table of values that the training graph's ops fill and empty.

Why this design makes the prediction provable (docs/planner.md, "Executing a graph plan"):
every value the simulator names is one object here, holding exactly its bytes, and nothing
else holds them:

- forward op v: its outputs, each owning its buffer (an output that is a view of an input,
  of another output or of part of a larger array is cloned), and the *extras* its graph
  saved for backward (buffers that are neither an input, an output, a parameter nor data),
  each held by a ``ckpt.memory.SavedBuffer``. v is replayed from its recorded call on
  detached copies (views, no new memory) of its inputs' current values, so its graph never
  links to another op's: freeing v frees exactly output + extras.
- saved tensors that are inputs, outputs or constants are not kept by v's graph: a
  saved-tensor hook packs a reference (which value, which view of its buffer) and unpacks
  the *current* value when the backward runs -- the one the schedule made resident, which
  may be a recomputation (bit-identical: same op, same inputs, same RNG state).
- backward(v): the gradients of v's inputs, one array per input output, each its own buffer.
  It runs v's recorded graph through the engine from an anchor (a custom Function of v's
  outputs whose backward hands on the summed gradients of v's consumers) and catches what
  reaches the inputs and parameters with pre-hooks on their ``AccumulateGrad`` nodes.

So memory after each op is the simulator's, and the peak of an op is that plus a transient
that depends on the op alone (temporaries inside it, gradients in flight), measured once by
``profile_graph``.

Side effects that must happen once per step (BatchNorm's running statistics and batch
count) never happen here: the trace and every replay run as recomputations
(``ckpt.autograd.events.recomputing``), and ``program.updates_statistics`` tells the
executor that the step's one update is still to be made.
"""
from typing import NamedTuple

import numpy as np

from ..autograd import grad_mode
from ..autograd.engine import backward as _engine_backward, grad as _engine_grad
from ..autograd.events import recomputing
from ..autograd.function import Function
from ..autograd.graph import AccumulateGrad, root_buffer, saved_tensors_hooks, walk
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.accounting.track import SavedBuffer
from .graph import Graph, Node, READS
from .graph_training import backward_name
from .runner import sum_loss
from .op_trace import TraceError, ValueRef, replace_tensors, tensors_in, trace

__all__ = ["GraphProgram", "bind", "OpRunner", "owned_outputs", "classify_saved"]


def owned_outputs(outs, foreign):
    """Per output: does it own its buffer? It does when its buffer is a whole array of its
    own: not a view of ``foreign`` (ids of the arguments' root arrays), of an earlier
    output, or of part of a larger array. Outputs that do not are cloned by the runner.

    >>> import numpy as np, ckpt
    >>> x = ckpt.ones(4)
    >>> owned_outputs([x.exp(), x[:2], x.exp()[:2]], {id(x.data)})
    [True, False, False]
    """
    seen, owned = set(foreign), []
    for t in outs:
        root = root_buffer(t.data)
        own = id(root) not in seen and root.nbytes == t.data.nbytes
        owned.append(own)
        seen.add(id(root))
    return owned


class Saved(NamedTuple):
    """How one saved tensor is kept: ``kind`` ("input", "output", "constant", "extra"),
    ``key`` (the ``ValueRef`` or output number for references, else the array)."""
    kind: str
    key: object


def classify_saved(arrays, inputs, constants, outputs):
    """Sort the arrays an op's graph saved: a view of an input value (``inputs``: root id
    -> ValueRef), of a constant (``constants``: root ids), of an output the op owns
    (``outputs``: root id -> output number), or an extra. Returns the ``Saved`` per array
    and the extras' root arrays (``{id: root}``).

    >>> import numpy as np
    >>> a, b, c = np.ones(2), np.ones(3), np.ones(4)
    >>> kinds, extras = classify_saved([a, b[1:], c], {id(a): ValueRef(0, 0)}, set(), {})
    >>> [k.kind for k in kinds], sorted(r.nbytes for r in extras.values())
    (['input', 'extra', 'extra'], [24, 32])
    """
    kinds, extras = [], {}
    for a in arrays:
        root = root_buffer(a)
        r = id(root)
        if r in inputs:
            kinds.append(Saved("input", inputs[r]))
        elif r in constants:
            kinds.append(Saved("constant", a))
        elif r in outputs:
            kinds.append(Saved("output", outputs[r]))
        else:
            kinds.append(Saved("extra", a))
            extras[r] = root
    return kinds, extras


def _geometry(array, root):
    """Where ``array`` lies in ``root``'s buffer (None: it is the root)."""
    if array is root:
        return None
    offset = array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return offset, array.shape, array.strides, array.dtype


def _view(root, geometry):
    if geometry is None:
        return root
    offset, shape, strides, dtype = geometry
    return np.ndarray(shape, dtype, buffer=root, offset=offset, strides=strides)


class GraphProgram:
    """A training step traced into ops (``bind``): the ``calls`` that reach the loss (in
    trace order), their graph ``names``, the ``loss`` call, the ``params`` (leaves that
    require grad), the ``data`` tensors (the sample and constants the ops read), per call
    ``output_bytes``, ``saved_bytes`` and ``reads``, ``consumers`` (per call, the calls
    reading it, in the order ``backward()`` adds their gradients), ``rng_end`` (the RNG
    state after an uninterrupted forward and loss) and ``updates_statistics`` (a
    BatchNorm in training mode would update running statistics in a plain step).

    >>> import ckpt
    >>> w = ckpt.ones(3, requires_grad=True)
    >>> prog = bind(lambda x: (x * w).exp(), ckpt.ones(3))
    >>> prog.output_bytes, prog.consumers
    ({0: 12, 1: 12, 2: 4}, {0: [1], 1: [2], 2: []})
    """

    def __init__(self, calls, loss, params, data, rng_end, sizes, out_meta, name):
        self.calls = {c.index: c for c in calls}
        self.out_meta = out_meta
        self.order = [c.index for c in calls]
        self.names = {c.index: f"{c.name}_{k}" for k, c in enumerate(calls)}
        self.by_name = {v: k for k, v in self.names.items()}
        self.loss, self.params, self.data, self.rng_end = loss, params, data, rng_end
        self.output_bytes = {k: s[0] for k, s in sizes.items()}
        self.saved_bytes = {k: s[1] for k, s in sizes.items()}
        self.reads = {k: s[2] for k, s in sizes.items()}
        self.name = name
        self.updates_statistics = any(_updates_statistics(c) for c in calls)
        self.consumers = {k: [] for k in self.order}
        for k in self.order:
            for i in self.calls[k].inputs:
                self.consumers[i].append(k)

    def graph(self, input_bytes, param_bytes, costs=None, transients=None, cost_unit="s"):
        """The ``Graph`` of this step (costs and transients per call index, default 0).

        >>> import ckpt
        >>> net = ckpt.nn.Linear(4, 2)
        >>> prog = bind(net, ckpt.ones(3, 4))
        >>> [(n.name, n.inputs, n.output_bytes) for n in prog.graph(48, 80).nodes]
        [('linear_0', (), 24), ('sum_1', ('linear_0',), 4)]
        """
        costs = costs or {}
        transients = transients or {}
        nodes = []
        for k in self.order:
            fc, bc = costs.get(k, (0.0, 0.0))
            ft, bt = transients.get(k, (0, 0))
            nodes.append(Node(self.names[k], tuple(self.names[i] for i in self.calls[k].inputs),
                              fc, bc, self.output_bytes[k], self.saved_bytes[k],
                              self.reads[k], ft, bt))
        return Graph(nodes, input_bytes=input_bytes, param_bytes=param_bytes, name=self.name,
                     cost_unit=cost_unit)


def _updates_statistics(call):
    """Is ``call`` a training-mode ``batch_norm`` given running statistics?"""
    if call.name != "batch_norm":
        return False
    _, running_mean, running_var, _, _, training = call.args[:6]
    return bool(training) and (running_mean is not None or running_var is not None)


def bind(model, sample, loss_fn=None, name=None):
    """Trace one forward and loss of ``model(sample)`` into a ``GraphProgram`` (the RNG
    is left as it was; traced as a recomputation, so BatchNorm's statistics are too).

    >>> import ckpt
    >>> w = ckpt.ones(3, requires_grad=True)
    >>> prog = bind(lambda x: (x * w).tanh(), ckpt.ones(3))
    >>> [prog.names[k] for k in prog.order], prog.reads[prog.order[1]]
    (['mul_0', 'tanh_1', 'sum_2'], ('output',))
    """
    if not isinstance(sample, Tensor):
        raise TypeError(f"sample must be a ckpt.Tensor, got {type(sample).__name__}")
    loss_fn = sum_loss if loss_fn is None else loss_fn
    rng0 = get_rng_state()
    try:
        with recomputing():
            traced = trace(lambda: loss_fn(model(sample)))
        rng_end = get_rng_state()
    finally:
        set_rng_state(rng0)
    loss = traced.result
    if not isinstance(loss, Tensor) or loss.data.size != 1:
        got = f"shape {list(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise TraceError(f"loss_fn must return a scalar Tensor, got {got}")
    ref = traced.ref_of(loss)
    if ref is None:
        raise TraceError("the loss is not the output of a ckpt op (nothing to differentiate)")
    keep, stack = set(), [ref.op]
    while stack:
        k = stack.pop()
        if k not in keep:
            keep.add(k)
            stack.extend(traced.calls[k].inputs)
    calls = [c for c in traced.calls if c.index in keep]
    params = {id(p): p for p in (model.parameters() if hasattr(model, "parameters") else ())
              if p.requires_grad}
    for c in calls:
        for t in c.constants():
            if t.requires_grad and t.grad_fn is None and t is not sample:
                params.setdefault(id(t), t)
    base = {id(root_buffer(t.data)) for t in list(params.values()) + [sample]}
    if hasattr(model, "buffers"):
        base |= {id(root_buffer(b.data)) for b in model.buffers() if b is not None}
    made = {}
    for c in traced.calls:
        for t in traced.outputs[c.index]:
            r = id(root_buffer(t.data))
            if r not in base:
                made.setdefault(r, c)
    data = {id(sample): sample}
    for c in calls:
        for t in c.constants():
            r = id(root_buffer(t.data))
            if r in made:
                raise TraceError(f"op {c.name} reads a tensor that shares memory with the output "
                                 f"of op {made[r].name} but did not come from it through ckpt ops "
                                 "(detach(), .data?); the graph executor replays ops and cannot "
                                 "follow it")
            if id(t) not in params:
                data.setdefault(id(t), t)
    sizes = {c.index: _traced_sizes(c, traced) for c in calls}
    out_meta = {c.index: [(t.data.shape, t.data.dtype) for t in traced.outputs[c.index]]
                for c in calls}
    for c in calls:
        c.saved = []        # the traced arrays: sized, no longer needed
    label = name or (type(model).__name__ if hasattr(model, "parameters")
                     else getattr(model, "__name__", "graph"))
    program = GraphProgram(calls, ref.op, list(params.values()), list(data.values()), rng_end,
                           sizes, out_meta, label)
    if any(len(c) > 2 for c in program.consumers.values()):   # two sum alike in any order
        arrival = _arrival_order(traced, keep, loss, list(params.values()))
        for k in program.order:  # consumers in the order backward() delivers their gradients
            program.consumers[k] = list(dict.fromkeys(arrival[k] + program.consumers[k]))
    return program


def _arrival_order(traced, keep, loss, params):
    """Per kept call, the calls that hand its outputs a gradient, in the order ``backward()``
    delivers them (seen by post-hooks on the traced graph's nodes during one
    ``autograd.grad`` of the loss). The runner sums a value's gradients in this order, so
    the sums are the engine's, bit for bit (floating-point addition is not associative)."""
    order = {c: [] for c in keep}
    handles = []
    for node, w in traced.owner.items():
        if w not in keep:
            continue

        def seen(grad_inputs, grad_outputs, node=node, w=w):
            for (nxt, _), g in zip(node.next_functions, grad_inputs):
                v = traced.owner.get(nxt) if nxt is not None else None   # the call made it
                if v in order and v != w and g is not None and w not in order[v]:
                    order[v].append(w)
        handles.append(node.register_hook(seen))
    try:
        if params and loss.requires_grad:
            _engine_grad(loss, params, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return order


def _traced_sizes(call, traced):
    """(output bytes, extra saved bytes, backward reads) of a traced call."""
    inputs = {}
    for r in call.refs():
        inputs[id(root_buffer(traced.outputs[r.op][r.out].data))] = r
    constants = {id(root_buffer(t.data)) for t in call.constants()}
    outs = traced.outputs[call.index]
    owned = owned_outputs(outs, set(inputs) | constants)
    out_roots = {id(root_buffer(t.data)): j for j, (t, o) in enumerate(zip(outs, owned)) if o}
    kinds, extras = classify_saved(call.saved, inputs, constants, out_roots)
    reads = tuple(r for r, kind in zip(READS, ("input", "output"))
                  if any(k.kind == kind for k in kinds))
    return (sum(int(t.data.nbytes) for t in outs), sum(int(r.nbytes) for r in extras.values()),
            reads)


class _Anchor(Function):
    """The root of one forward op's graph in backward: a 0-byte output of the op's outputs
    whose backward hands on the gradients the runner put in ``ctx.slot``."""

    @staticmethod
    def forward(ctx, slot, *outs):
        ctx.slot = slot
        return Tensor(np.zeros(0, np.float32))

    @staticmethod
    def backward(ctx, _):
        return (None,) + tuple(None if g is None else Tensor(g) for g in ctx.slot)


class _Graph:
    """The recorded graph of one computation of a forward op: ``anchor`` (None: no output
    needs a gradient), the differentiable output numbers ``diff``, the gradient ``slot``,
    ``caught`` (input ValueRef -> gradient array), ``extras`` (SavedBuffers)."""
    __slots__ = ("anchor", "diff", "slot", "caught", "extras")


class OpRunner:
    """The value table of one training step of ``program`` and the two ops of a graph
    schedule, ``compute(name)`` and ``free(name)`` (names of the training graph).

    Parameter gradients: every parameter without a ``.grad`` gets a zero stand-in before
    the step (``prepare_grads``; the cost model counts gradients as constant memory); a
    backward copies its parameter gradient into it (the first contribution) or adds it in
    place (later ones, and into a ``.grad`` that existed before), so ``.grad`` ends bit for
    bit as ``loss.backward()`` leaves it when no parameter is read by more than two ops
    (contributions are added in the plan's order of backwards).
    ``finish()`` removes the hooks, gives ``.grad = None`` back to parameters nothing reached
    and leaves the RNG where an uninterrupted step would.

    >>> import ckpt
    >>> net = ckpt.nn.Linear(3, 2)
    >>> runner = OpRunner(bind(net, ckpt.ones(4, 3)))
    >>> runner.prepare_grads()
    >>> for op in ["linear_0", "sum_1", "backward(sum_1)", "backward(linear_0)"]:
    ...     runner.compute(op)
    >>> runner.finish(); net.bias.grad.tolist()
    [4.0, 4.0]
    """

    def __init__(self, program):
        self.program = program
        self.values = {}      # call index -> list of output Tensors
        self.graphs = {}      # call index -> _Graph of its last computation
        self.grads = {}       # call index -> {input call index: [[array, flowed], ...]}
        self.param_ids = {id(p): p for p in program.params}
        self.param_hooks = {}
        self.param_caught = {}
        self.stand_ins = set()
        self.reached = set()
        self.grads_done = set()
        self.loss = None
        self._saved_now = None
        self._constants = {id(root_buffer(t.data)) for t in program.params + program.data}

    # ---- parameters -----------------------------------------------------------------------
    def prepare_grads(self):
        """Zero stand-in ``.grad`` for every parameter that has none.

        >>> import ckpt
        >>> w = ckpt.ones(2, requires_grad=True)
        >>> OpRunner(bind(lambda x: x * w, ckpt.ones(2))).prepare_grads(); w.grad.tolist()
        [0.0, 0.0]
        """
        for p in self.program.params:
            if p.grad is None:
                p.grad = Tensor(np.zeros_like(p.data))
                self.stand_ins.add(id(p))

    def _put_param_grads(self):
        for key, g in self.param_caught.items():
            p = self.param_ids[key]
            if key in self.stand_ins and key not in self.reached:
                np.copyto(p.grad.data, g)
            else:
                np.add(p.grad.data, g, out=p.grad.data)
            self.reached.add(key)
        self.param_caught.clear()

    def finish(self):
        """Remove the hooks, release unreached stand-ins, restore the RNG's end state.

        >>> import ckpt
        >>> w = ckpt.ones(2, requires_grad=True)
        >>> runner = OpRunner(bind(lambda x: x * w, ckpt.ones(2)))
        >>> runner.prepare_grads(); runner.finish(); w.grad is None
        True
        """
        for handle in self.param_hooks.values():
            handle.remove()
        self.param_hooks.clear()
        for p in self.program.params:
            if id(p) in self.stand_ins and id(p) not in self.reached:
                p.grad = None
        set_rng_state(self.program.rng_end)

    # ---- saved tensors ---------------------------------------------------------------------
    def _pack(self, t):
        box = [t.data]                     # classified once the op returned
        self._saved_now.append(box)
        return box

    def _unpack(self, box):
        kind, key = box[0], box[1]
        if kind == "input" or kind == "output":
            ref, geometry = key
            return Tensor(_view(root_buffer(self.values[ref.op][ref.out].data), geometry))
        return Tensor(key)

    # ---- ops -------------------------------------------------------------------------------
    def compute(self, name):
        """Run the op named ``name`` (a forward op or ``backward(<op>)``).

        >>> import ckpt
        >>> runner = OpRunner(bind(lambda x: x.exp(), ckpt.zeros(2)))
        >>> runner.compute("exp_0"); runner.values[0][0].tolist()
        [1.0, 1.0]
        """
        prog = self.program
        if name.startswith("backward(") and name.endswith(")"):
            self._backward(prog.by_name[name[len("backward("):-1]])
        else:
            self._forward(prog.by_name[name])

    def free(self, name):
        """Drop the value named ``name`` (with a forward value, its graph when that keeps
        extras).

        >>> import ckpt
        >>> runner = OpRunner(bind(lambda x: x.exp(), ckpt.zeros(2)))
        >>> runner.compute("exp_0"); runner.free("exp_0"); runner.values
        {}
        """
        prog = self.program
        if name.startswith("backward(") and name.endswith(")"):
            del self.grads[prog.by_name[name[len("backward("):-1]]]
            return
        k = prog.by_name[name]
        del self.values[k]
        if prog.saved_bytes[k]:
            del self.graphs[k]

    def _forward(self, k):
        call = self.program.calls[k]
        leaves = {}

        def resolve(ref):
            leaf = leaves.get(ref)
            if leaf is None:
                leaf = self.values[ref.op][ref.out].detach()
                if call.grad_enabled and np.issubdtype(leaf.data.dtype, np.inexact):
                    leaf.requires_grad_()
                leaves[ref] = leaf
            return leaf

        if call.rng is not None:
            set_rng_state(call.rng)
        saved = self._saved_now = []
        try:
            with saved_tensors_hooks(self._pack, self._unpack), recomputing(), \
                    grad_mode.set_grad_enabled(call.grad_enabled):
                outs = tensors_in(call.replay(resolve))
                inputs = {id(root_buffer(leaf.data)): ref for ref, leaf in leaves.items()}
                owned = owned_outputs(outs, set(inputs) | self._constants)
                outs = [t if o else t.clone() for t, o in zip(outs, owned)]
        finally:
            self._saved_now = None
        out_roots = {id(root_buffer(t.data)): j for j, t in enumerate(outs)}
        kinds, extras = classify_saved([b[0] for b in saved], inputs, self._constants, out_roots)
        for box, kind in zip(saved, kinds):
            if kind.kind in ("input", "output"):
                ref = kind.key if kind.kind == "input" else ValueRef(k, kind.key)
                value = self.values[ref.op][ref.out] if kind.kind == "input" else outs[ref.out]
                box[:] = [kind.kind, (ref, _geometry(box[0], root_buffer(value.data)))]
            else:
                box[:] = [kind.kind, kind.key]
        graph = _Graph()
        graph.extras = [SavedBuffer(root, "extra") for root in extras.values()]
        graph.caught = {}
        graph.diff = [j for j, t in enumerate(outs) if t.requires_grad]
        graph.slot = [None] * len(graph.diff)
        graph.anchor = None
        if graph.diff:
            with grad_mode.enable_grad():
                graph.anchor = _Anchor.apply(graph.slot, *[outs[j] for j in graph.diff])
            self._hook_leaves(graph, leaves)
        self.values[k] = outs
        self.graphs[k] = graph
        if k == self.program.loss:
            self.loss = float(outs[0].data.reshape(()))

    def _hook_leaves(self, graph, leaves):
        by_leaf = {id(leaf): ref for ref, leaf in leaves.items()}
        caught = graph.caught
        for node in walk(graph.anchor):
            if node.__class__ is not AccumulateGrad:
                continue
            var = node.variable
            if var is None:
                continue
            if id(var) in by_leaf:
                ref = by_leaf[id(var)]

                def catch(grads, ref=ref):
                    caught[ref] = grads[0].data if grads[0] is not None else None
                    return (None,)
                node.register_prehook(catch)
            elif id(var) in self.param_ids and id(var) not in self.param_hooks:
                key = id(var)

                def catch_param(grads, key=key):
                    if grads[0] is not None:
                        prev = self.param_caught.get(key)
                        g = grads[0].data
                        self.param_caught[key] = g if prev is None else prev + g
                    return (None,)
                self.param_hooks[key] = node.register_prehook(catch_param)

    def _backward(self, k):
        prog = self.program
        call = prog.calls[k]
        graph = self.graphs[k]
        caught = {}
        if graph.anchor is not None:
            if k == prog.loss:       # the seed, as backward() makes it for a scalar
                shape, dtype = prog.out_meta[k][0]
                upstream = [np.ones(shape, dtype)]
            else:
                upstream = self._upstream(k, len(prog.out_meta[k]))
            graph.slot[:] = [upstream[j] for j in graph.diff]
            if any(g is not None for g in graph.slot):
                graph.caught.clear()
                _engine_backward(graph.anchor, Tensor(np.zeros(0, np.float32)),
                                 retain_graph=True)
                if k not in self.grads_done:
                    self._put_param_grads()
                self.param_caught.clear()
                caught = dict(graph.caught)
                graph.caught.clear()
            graph.slot[:] = [None] * len(graph.diff)
        holders = {}
        for i in call.inputs:
            holders[i] = [_held(caught.get(ValueRef(i, j)), shape, dtype)
                          for j, (shape, dtype) in enumerate(prog.out_meta[i])]
        del caught
        self.grads_done.add(k)
        self.grads[k] = holders

    def _upstream(self, k, n):
        """Per output of call k: the sum of the gradients its consumers' backwards left
        (None where none flowed), summed in the order ``backward()`` adds them."""
        total = [None] * n
        for w in self.program.consumers[k]:
            for j, cell in enumerate(self.grads[w][k]):
                if cell.array is not None:
                    total[j] = cell.array if total[j] is None else total[j] + cell.array
        return total


class _Held(NamedTuple):
    """One gradient of a backward value: ``array`` (None: no gradient flowed) and the
    ``SavedBuffer``s that hold its bytes."""
    array: object
    buffers: tuple


def _held(g, shape, dtype):
    """A gradient held in buffers of its own, exactly ``shape``/``dtype``'s bytes, laid out
    as the engine made it (the next VJP then computes as it would in ``backward()``: numpy's
    results can depend on strides). A broadcast gradient keeps its compact part and pads
    the rest; no gradient (None) is an unused buffer of the same size.

    >>> import numpy as np
    >>> h = _held(np.broadcast_to(np.ones(3, np.float32), (4, 3)), (4, 3), np.float32)
    >>> h.array.strides, sum(b.data.nbytes for b in h.buffers)
    ((0, 4), 48)
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if g is None:
        return _Held(None, (SavedBuffer(np.empty(nbytes, np.uint8), "gradient"),))
    if 0 in g.strides and g.size > 1:
        index = tuple(slice(0, 1) if st == 0 else slice(None)
                      for st, n in zip(g.strides, g.shape))
        compact = g[index].copy(order="K")
        pad = np.empty(nbytes - compact.nbytes, np.uint8)
        return _Held(np.broadcast_to(compact, g.shape),
                     (SavedBuffer(compact, "gradient"), SavedBuffer(pad, "gradient")))
    own = np.empty_like(g, order="K")
    np.copyto(own, g)
    return _Held(own, (SavedBuffer(own, "gradient"),))
