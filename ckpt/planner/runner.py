"""The runner both planner edges use: the value table of a chain's ops on a ``Sequential``.

``Runner`` runs the four ops of a plan (``forward``, ``forward_save``, ``backward``,
``drop``) on the children of a ``ckpt.nn.Sequential``, stage i = child i; ``execute`` runs a
whole plan with it, ``profile`` measures each op with it, ``apply`` runs a plan inside a
training step with it. Its value table and the ops' rules are documented in the module
``ckpt.planner.execute`` and in docs/planner.md, "The executor".
"""
from contextlib import contextmanager

import numpy as np

from ..autograd import grad_mode
from ..autograd.engine import grad as _autograd_grad
from ..autograd.events import recomputing
from ..autograd.graph import AccumulateGrad, root_buffer, walk
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.accounting.track import SavedBuffer
from .errors import ExecutionError, PlanMismatchError
from ..units import format_size

__all__ = ["Runner", "sum_loss", "loss_data", "stage_saved_bytes", "check_model", "data_bytes",
           "undo_on_mismatch", "root_bytes"]


def sum_loss(out):
    return out.sum()


def loss_data(model, x0, loss_fn):
    """The tensors ``loss_fn`` reads besides the model's output that outlive the step --
    targets, labels, class weights, captured by the caller -- each root buffer once. Like
    the input, they are data the caller holds throughout: ``profile`` counts them in the
    chain's ``input_bytes`` and ``execute`` in what is alive at entry.

    Found by calling ``loss_fn`` twice on the output of an evaluation-mode ``no_grad``
    forward (module modes and the RNG restored): a buffer the loss saves for backward in
    both calls is one it did not create (the model's parameters excluded). So ``profile``
    and ``execute`` call ``loss_fn`` twice more than their steps do, and run one more
    forward: a loss that counts its calls sees them.

    >>> import ckpt
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(4, 2))
    >>> x, target = ckpt.randn(8, 4), ckpt.randn(8, 2)
    >>> [t is target for t in loss_data(net, x, lambda out: ((out - target) ** 2).mean())]
    []
    >>> [t is target for t in loss_data(net, x, lambda out: (out * target).sum())]
    [True]
    """
    if loss_fn is None:
        return []
    from ..autograd.graph import saved_tensors_hooks
    modes = [(m, m.training) for m in model.modules()]
    rng = get_rng_state()
    try:
        model.eval()
        with grad_mode.no_grad():
            out = model(x0)
    finally:
        for m, mode in modes:
            m.training = mode
        set_rng_state(rng)
    probe = out.detach().requires_grad_()
    own = {id(root_buffer(t.data)) for t in [probe, x0, *model.parameters()]}
    calls = []
    for _ in range(2):
        saved = {}

        def pack(t):
            root = root_buffer(t.data)
            if id(root) not in own:
                saved.setdefault(id(root), t)
            return t

        with saved_tensors_hooks(pack, lambda t: t):
            loss_fn(probe)
        calls.append(saved)      # holding the tensors: no id is reused by the second call
    return [calls[0][k] for k in calls[0] if k in calls[1]]


class Runner:
    """The value table and the four ops, shared by ``execute`` and ``profile``.

    ``recompute_only``: every forward runs as a recomputation (no BatchNorm update): what
    ``profile`` uses so measuring leaves the model as it was. ``accumulate``: add gradients
    into ``.grad`` that existed before the step (``execute``) or leave them (``profile``);
    the stand-ins of ``prepare_grads`` are swapped for the computed gradients either way (the
    memory is the same), and ``release_grads`` puts None back.

    ``apply``'s mode (the loss is outside the plan): ``seed`` set to δ_L before ``backward
    L`` replaces ``loss_fn`` (B_L starts from the incoming gradient); ``collect=True`` keeps
    parameter gradients in ``grads`` (id -> Tensor) instead of ``.grad``; ``input_grad=True``
    gives stage 1 a detached input too, so B_1 leaves δ_0 (``delta[0]``). ``chain``, when
    given, is checked at the first forward of each stage (an output of another size than the
    chain's ω_x^i) and at its first forward that saves (a graph keeping other bytes than its
    ω_x̄^i): either raises ``PlanMismatchError``.
    """

    def __init__(self, stages, x0, loss_fn, recompute_only=False, accumulate=True,
                 chain=None, collect=False, input_grad=False):
        self.stages = list(stages)
        self.L = len(self.stages)
        self.loss_fn = loss_fn if loss_fn is not None else sum_loss
        self.recompute_only = recompute_only
        self.accumulate = accumulate
        self.chain = chain
        self.grads = {} if collect else None
        self.input_grad = input_grad
        self.seed = None
        self.x = {0: x0.detach()}     # checkpoints (x_0: the data, owned by the caller)
        self.xbar = {}                # i -> (output, stage input, its detached leaf)
        self.delta = {}               # i -> SavedBuffer holding δ_i
        self.rng = {1: get_rng_state()}
        self.rng_end = None
        self.ran = set()
        self.saved_checked = set()    # stages whose ω_x̄ was compared with the chain's
        self.loss = None
        self.stand_ins = set()        # ids of parameters whose .grad is a zero stand-in
        self.created = set()          # ids of parameters given a .grad by this step

    # ---- gradients of parameters ---------------------------------------------------------
    def prepare_grads(self, params, only=None):
        """Give every parameter that requires grad and has none (or those in ``only``) a
        zero stand-in ``.grad``."""
        self._params = [p for p in params if p.requires_grad]
        for p in self._params:
            if (p.grad is None) if only is None else (id(p) in only):
                p.grad = Tensor(np.zeros_like(p.data))
                self.stand_ins.add(id(p))
                self.created.add(id(p))
        return set(self.created)

    def release_grads(self):
        """Parameters no stage reached get ``.grad = None`` back (as backward leaves them)."""
        for p in self._params:
            if id(p) in self.stand_ins:
                p.grad = None
        self.stand_ins.clear()

    def _put_grad(self, p, g):
        key = id(p)
        if self.grads is not None:       # collected; summed as backward() sums them
            prev = self.grads.get(key)
            self.grads[key] = g if prev is None else Tensor(prev.data + g.data)
            return
        if key in self.stand_ins:        # the engine's gradient takes the stand-in's place
            self.stand_ins.discard(key)
            p.grad = g if g.data.flags.writeable else Tensor(g.data.copy())
        elif key in self.created or self.accumulate:   # as backward() accumulates
            if p.grad is None:
                p.grad = g if g.data.flags.writeable else Tensor(g.data.copy())
            else:
                p.grad = Tensor(p.grad.data + g.data)

    # ---- ops -----------------------------------------------------------------------------
    def input_of(self, i):
        if i - 1 in self.x:
            return self.x[i - 1]
        return self.xbar[i - 1][0]

    def _run(self, i, inp):
        first = i not in self.ran
        set_rng_state(self.rng[i])
        with recomputing(bool(self.recompute_only or not first)):
            out = self.stages[i - 1](inp)
        if not isinstance(out, Tensor):
            raise ExecutionError(f"stage {i} ({type(self.stages[i - 1]).__name__}) returned a "
                                 f"{type(out).__name__}; a stage must return one Tensor")
        if first:
            if self.chain is not None:
                self._check_size(i, out)
            self.ran.add(i)
            self.rng[i + 1] = get_rng_state()
        return out

    def _check_size(self, i, out):
        want, got = int(self.chain.x[i]), int(out.data.nbytes)
        if want != got:
            chain = self.chain
            raise PlanMismatchError(
                f"the plan was made for a chain ({chain.name!r}) whose stage {i} "
                f"({chain.stages[i - 1].name}) outputs {format_size(want)}; this model and "
                f"input ({format_size(root_bytes(self.x[0]))}) give {format_size(got)}: "
                "profile this model at this batch size and plan again")

    def _check_saved(self, i, out, x_in):
        params = [p for stage in self.stages for p in stage.parameters()]
        want = int(self.chain.xbar[i])
        got = stage_saved_bytes(out, x_in, self.x[0], params)
        self.saved_checked.add(i)
        if want != got:
            chain = self.chain
            raise PlanMismatchError(
                f"the plan was made for a chain ({chain.name!r}) whose stage {i} "
                f"({chain.stages[i - 1].name}) keeps {format_size(want)} for backward; this "
                f"model and input keep {format_size(got)}: profile this model at this batch "
                "size and plan again")

    def forward(self, i):
        inp = self.input_of(i)
        with grad_mode.no_grad():
            self.x[i] = self._run(i, inp)

    def forward_save(self, i):
        inp = self.input_of(i)
        detached = i == 1 and not self.input_grad      # the data needs no gradient
        x_in, leaf = (None, None) if detached else _stage_input(inp)
        with grad_mode.enable_grad():
            out = self._run(i, inp.detach() if detached else x_in)
        if self.chain is not None and i not in self.saved_checked:
            self._check_saved(i, out, x_in)
        self.xbar[i] = (out, x_in, leaf)

    def backward(self, i):
        out, x_in, base = self.xbar[i]
        holder = None
        if x_in is not None:   # δ_{i-1} exists from the start of B_i, as the model counts it
            holder = SavedBuffer(np.empty(x_in.data.shape, x_in.data.dtype), f"δ{i - 1}")
        if i == self.L and self.seed is not None:     # apply: δ_L comes from the user's loss
            root, seed = out, self.seed
            self.seed = None
        elif i == self.L:
            set_rng_state(self.rng[self.L + 1])
            with grad_mode.enable_grad():
                root = self.loss_fn(out)
            if not isinstance(root, Tensor) or root.data.size != 1:
                raise ExecutionError("loss_fn must return a scalar Tensor, got "
                                     + (f"shape {list(root.shape)}" if isinstance(root, Tensor)
                                        else type(root).__name__))
            self.rng_end = get_rng_state()
            self.loss = float(root.data.reshape(()))
            seed = None
        else:
            root, seed = out, Tensor(self.delta[i].data)
        if root.requires_grad:
            leaves = [n.variable for n in walk(root)
                      if n.__class__ is AccumulateGrad and n.variable is not None
                      and n.variable is not base]
            inputs = ([x_in] if x_in is not None else []) + leaves
            grads = _autograd_grad(root, inputs, grad_outputs=seed, allow_unused=True)
            start = 0
            if x_in is not None:
                start = 1
                if grads[0] is not None:
                    np.copyto(holder.data, grads[0].data)
                else:
                    holder.data[...] = 0
            for p, g in zip(leaves, grads[start:]):
                if g is not None:
                    self._put_grad(p, g)
        elif holder is not None:   # the stage does not depend on its input
            holder.data[...] = 0
        del self.xbar[i]
        self.delta.pop(i, None)
        if holder is not None:
            self.delta[i - 1] = holder

    def drop(self, i):
        del self.x[i]

    def run(self, op):
        getattr(self, op.kind)(op.stage)

    def finish(self):
        if self.rng_end is not None:
            set_rng_state(self.rng_end)


def stage_saved_bytes(out, x_in, x0, params):
    """ω_x̄ of a stage from the saved-tensor record of its graph: every buffer its nodes saved
    and the output's, each once, minus the stage's input (``x_in``, or ``x0`` when the
    stage ran on the detached data) and the ``params``.

    >>> import ckpt
    >>> lin = ckpt.nn.Linear(4, 4)
    >>> x = ckpt.randn(2, 4)
    >>> out = ckpt.nn.functional.relu(lin(x))    # Linear saves x and its weight; ReLU its output
    >>> stage_saved_bytes(out, None, x, list(lin.parameters()))   # the 2x4 float32 output
    32
    """
    buffers = {}
    for node in walk(out):
        buffers.update(node.saved_buffers())
    root = root_buffer(out.data)
    buffers[id(root)] = root.nbytes
    buffers.pop(id(root_buffer((x_in if x_in is not None else x0).data)), None)
    for p in params:
        buffers.pop(id(root_buffer(p.data)), None)
    return sum(buffers.values())


def _stage_input(inp):
    """x_{i-1} as the start of stage i's graph: a view of ``inp.detach().requires_grad_()``
    (no new buffer). The view is recorded as a recomputation: ``ckpt.memory.track`` takes
    the leaves it finds on a graph's edges for parameters, except while recomputing
    (detached inputs are not parameters), and ``autograd.grad`` gives the gradient of the
    view as readily as a leaf's."""
    leaf = inp.detach().requires_grad_()
    with recomputing(), grad_mode.enable_grad():
        return leaf.view(leaf.shape), leaf


def check_model(model, plan, api="execute"):
    from ..nn.container import Sequential
    if not isinstance(model, Sequential):
        raise ExecutionError(f"{api} runs a ckpt.nn.Sequential (each child a stage), got a "
                             f"{type(model).__name__}; wrap the blocks of the model in a "
                             "Sequential (plans are made for chains of stages; a model of "
                             "another shape will run once plans for graphs exist)")
    chain = getattr(plan, "chain", None)
    if chain is None or not hasattr(plan, "ops"):
        raise ExecutionError(f"{api} needs a ckpt.planner.Plan, got a {type(plan).__name__}")
    if len(model) != len(chain):
        raise ExecutionError(f"the plan's chain has {len(chain)} stages but the Sequential has "
                             f"{len(model)} children; profile the same model to plan it")


def data_bytes(tensors):
    """Bytes of the distinct root buffers behind ``tensors`` (the input and the loss's
    data: what a profiled chain calls ``input_bytes``).

    >>> import ckpt
    >>> x = ckpt.ones(4, 4)
    >>> data_bytes([x, x[1:], ckpt.ones(2)])
    72
    """
    roots = {id(r): r for r in (root_buffer(t.data) for t in tensors)}
    return sum(int(r.nbytes) for r in roots.values())


@contextmanager
def undo_on_mismatch(model):
    """On ``PlanMismatchError`` inside the block, put ckpt's RNG state and the model's
    buffers (BatchNorm statistics) back as they were at its start, then re-raise: the
    stages that ran before the mismatch leave nothing changed.

    >>> import ckpt
    >>> bn = ckpt.nn.BatchNorm1d(2)
    >>> try:
    ...     with undo_on_mismatch(bn):
    ...         _ = bn(ckpt.randn(4, 2))
    ...         raise PlanMismatchError("a stage of another size")
    ... except PlanMismatchError:
    ...     pass
    >>> int(bn.num_batches_tracked.item()), bn.running_mean.tolist()
    (0, [0.0, 0.0])
    """
    rng = get_rng_state()
    saved = [(b, b.data.copy()) for b in model.buffers() if b is not None]
    try:
        yield
    except PlanMismatchError:
        set_rng_state(rng)
        for b, data in saved:
            np.copyto(b.data, data)
        raise


def root_bytes(t):
    """Bytes of the numpy buffer behind tensor ``t`` (its root array, views followed)."""
    return int(root_buffer(t.data).nbytes)
