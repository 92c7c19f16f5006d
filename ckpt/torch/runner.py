"""One training step of a torch model following a plan's ops: the engine of ``ckpt.torch``.

The step's forward is the plain one: each stage runs once, in order (a plan's ops before its
first backward do that: the ``forward i`` or ``forward_save i`` that first makes x_i), and
torch's engine records every op, so the loss's graph is the model's own graph. What a stage
saves for backward goes through ``saved_tensors_hooks``: a stage whose first run the plan
keeps (``forward_save i``) saves its tensors as usual; one it does not (``forward i``) packs a
placeholder for each instead. Torch's own backward then runs the step: a hook on stage i's
output gradient δ_i starts the plan's ops up to ``backward i`` on the op cursor — drops, and
recomputations from the kept checkpoints, where ``forward_save i`` fills stage i's
placeholders in the order they were packed — and torch's engine backpropagates stage i
itself, unpacking the recomputed tensors and accumulating each parameter's gradient as it is
computed, as in a plain step; a recomputed tensor is freed when torch releases the node that
saved it (its placeholder, a weak key of the table, dies). So ``autograd.grad``, gradient
hooks and DDP's reducer see the plain graph. This is how ``torch.utils.checkpoint`` works
with ``use_reentrant=False`` (its docs); here the plan says what to recompute and when. A
``Step`` holds the values the simulator names — checkpoints x_i, the outputs of saving runs
x̄_i — and frees each at the op that frees it.

Staging "auto" (``ckpt.torch.stages``): the model's own ``forward`` runs; ckpt intercepts the
calls of the blocks. The prologue (code before the first block) runs as written, saving
(``forward_save 1``) or packing placeholders (``forward 1``); recomputing it reruns the
model's ``forward`` until the first block is called. The epilogue (code after the last block,
then the loss) always runs as written, saving: plans run it once, right before its backward.

Recomputations replay the RNG state of the stage's first run (CPU and the CUDA devices in
use), as ``torch.utils.checkpoint`` does, and run with BatchNorm's momentum at 0, so the
running statistics and ``num_batches_tracked`` are updated once per step while the stage does
the same ops, saving the same tensors, as on its first run.

>>> import torch
>>> from ckpt import planner
>>> from ckpt.torch.stages import resolve
>>> net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(3)])
>>> ops = planner.plan(planner.zoo.uniform(3), "recompute_all").ops
>>> x = torch.randn(4, 8)
>>> out = Step(net, resolve(net), ops, (x,), {}).run()
>>> out.sum().backward()
>>> torch.allclose(out, net(x)), net[0].weight.grad is not None
(True, True)
"""
import contextlib
import weakref

import torch
from torch import nn

from .ledger import storage_bytes
from .stages import StageError

__all__ = ["Step", "PlanRunError", "cuda_devices", "RngState", "stage_norms", "run_in_order"]
class PlanRunError(RuntimeError):
    """A plan cannot run on this model as staged (what is wrong and what would be right)."""


class _StopAtFirstBlock(Exception):
    def __init__(self, hidden):
        super().__init__()
        self.hidden = hidden


def _tensors_in(value, name):
    """(name, tensor) for each tensor in an argument, looking into tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (tuple, list)):
        for k, v in enumerate(value):
            yield from _tensors_in(v, f"{name}[{k}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors_in(v, f"{name}[{k!r}]")


def _running_stats_norms(model):
    """The modules that update running statistics in training (BatchNorm, InstanceNorm with
    ``track_running_stats``, and any module following their convention)."""
    return [m for m in model.modules() if m.training
            and getattr(m, "track_running_stats", False) is True
            and isinstance(getattr(m, "running_mean", None), torch.Tensor)]


def stage_norms(model, staging):
    """Per stage i (1-based), the running-statistics norms a recomputation of stage i may
    update: those inside its module, or, for the prologue and for stages that are plain
    callables, every one of the model's that is not inside a block.

    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    >>> from ckpt.torch.stages import resolve
    >>> [len(n) for n in stage_norms(net, resolve(net)).values()]
    [0, 1]
    """
    norms = _running_stats_norms(model)
    if staging.kind == "auto":
        units = [None, *staging.blocks, None]
    else:
        units = [c if isinstance(c, nn.Module) else None for c in staging.callables]
    inside = {id(m) for u in units if u is not None for m in u.modules()}
    loose = [m for m in norms if id(m) not in inside]
    chosen = {}
    for i, unit in enumerate(units, 1):
        if unit is None:
            chosen[i] = loose if staging.kind == "auto" else norms
        else:
            mine = {id(m) for m in unit.modules()}
            chosen[i] = [m for m in norms if id(m) in mine]
    return chosen


@contextlib.contextmanager
def _frozen_norm_stats(norms):
    """BatchNorm without updating running statistics: momentum 0 (the update then keeps
    them: ``(1 - 0) * running + 0 * batch``) and ``num_batches_tracked`` put back after, on
    ``norms``. Training mode normalizes with the batch's statistics, as the first run did,
    through the same op saving the same tensors (switching ``track_running_stats`` off
    would save two fewer). Batch statistics that are not finite would spoil the kept ones."""
    kept = [(m, m.momentum, None if m.num_batches_tracked is None
             else int(m.num_batches_tracked)) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for m, momentum, tracked in kept:
                m.momentum = momentum
                if tracked is not None:
                    m.num_batches_tracked.fill_(tracked)


def cuda_devices(values):
    """The CUDA device indices of the tensors among ``values`` (whose RNG a step replays).

    >>> cuda_devices([torch.zeros(1), "not a tensor"])
    []
    """
    return sorted({t.device.index or 0 for t in values
                   if isinstance(t, torch.Tensor) and t.is_cuda})


class RngState:
    """The RNG states of the CPU and of the CUDA ``devices`` now; ``restore()`` puts them back.
    A generator that has not moved since ``previous`` (an earlier ``RngState``) shares its
    tensor: fewer small blocks live between a step's activations (fewer page faults).

    >>> state = RngState([])
    >>> a = torch.rand(1); state.restore(); torch.equal(a, torch.rand(1))
    True
    >>> later = RngState([], previous=state); again = RngState([], previous=later)
    >>> later.states[0] is state.states[0], again.states[0] is later.states[0]
    (False, True)
    """

    def __init__(self, devices, previous=None):
        self.devices = devices
        now = [torch.get_rng_state(), *(torch.cuda.get_rng_state(d) for d in devices)]
        same = previous is not None and list(previous.devices) == list(devices)
        kept = previous.states if same else [None] * len(now)
        self.states = [k if k is not None and torch.equal(k, s) else s for k, s in zip(kept, now)]

    def restore(self):
        torch.set_rng_state(self.states[0])
        for d, s in zip(self.devices, self.states[1:]):
            torch.cuda.set_rng_state(s, d)


def _first(out):
    """The chained value of a stage's result: the tensor, or a tuple's first element."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise PlanRunError(f"a stage returned a {type(out).__name__}; a stage must return a "
                       "tensor or a tuple whose first element is the tensor passed on")


def run_in_order(staging, args, kwargs):
    """The plain forward of a list of stages, called as a plan's step calls them: stage 1
    gets the call's arguments, each next stage the tensor the one before passed on.

    >>> import torch
    >>> from ckpt.torch.stages import resolve
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    >>> x = torch.ones(4, 2)
    >>> torch.equal(run_in_order(resolve(net, [net[0], net[1]]), (x,), {}), net(x))
    True
    """
    x = _stage_input(args)
    for i in range(1, len(staging.callables) + 1):
        x = _call_listed(staging, i, x, args, kwargs)
    return x


def _stage_input(args):
    if not args:
        raise PlanRunError(
            "the model was called with no positional argument; with a list of stages (or an "
            "nn.Sequential) the first positional argument is stage 1's input: call it as "
            "model(x, ...)")
    return args[0]


def _call_listed(staging, i, inp, args, kwargs):
    """Stage ``i`` of a list on ``inp``: stage 1 also gets the call's other arguments."""
    stage = staging.callables[i - 1]
    return _first(stage(inp, *args[1:], **kwargs) if i == 1 else stage(inp))


def _second_backward():
    return PlanRunError(
        "this planned step was backpropagated already: a plan's backward runs once (its "
        "values are freed as it goes; retain_graph is not supported); run the planned "
        "module's forward again for another backward")


class _Slot:
    """What a stage the plan does not keep packs instead of a tensor (a weak key)."""
    __slots__ = ("__weakref__",)


class _Packer:
    """The step's saved-tensor hooks. ``mode`` says what ``pack`` does with stage ``stage``'s
    tensors: "save" keeps them (a detached alias, as a plain step's graph would hold the
    tensor); "slot" packs placeholders, remembered weakly in pack order; "fill" (a
    recomputation that saves) puts the k-th tensor under the k-th placeholder; "discard" (a
    recomputation that does not) keeps nothing. The hooks hold no graph (no cycle through
    the nodes that keep them)."""

    def __init__(self):
        self.mode, self.stage, self.count = "save", None, 0
        self.depth = 0                                     # our hooks installed now
        self.slots = {}                                    # stage -> weak refs, pack order
        self.recomputed = weakref.WeakKeyDictionary()      # placeholder -> tensor

    @contextlib.contextmanager
    def packing(self, mode, stage):
        """``mode`` for stage ``stage`` inside; "save" outside any other packing leaves the
        hooks that were there (the user's, a ledger's) to save as they would."""
        before = self.mode, self.stage, self.count, self.depth
        self.mode, self.stage, self.count = mode, stage, 0
        if mode == "slot":
            self.slots[stage] = []
        ours = mode != "save" or self.depth > 0
        self.depth += ours
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack) if ours \
                    else contextlib.nullcontext():
                yield self
        finally:
            self.mode, self.stage, self.count, self.depth = before

    def pack(self, t):
        if self.mode == "save":
            return t.detach()
        if self.mode == "slot":
            slot = _Slot()
            self.slots[self.stage].append(weakref.ref(slot))
            return slot
        if self.mode == "fill":
            refs = self.slots.get(self.stage, ())
            slot = refs[self.count]() if self.count < len(refs) else None
            if slot is not None:
                self.recomputed[slot] = t.detach()
        self.count += 1
        return None

    def unpack(self, packed):
        if isinstance(packed, torch.Tensor):
            return packed
        t = self.recomputed.get(packed)
        if t is None:
            raise PlanRunError(
                "torch's backward needs a tensor a planned stage saved before the plan "
                "recomputed it: the step was backpropagated already (a plan's backward runs "
                "once), or a stage's result other than its first tensor reaches the loss "
                "(stages pass on their first tensor only)")
        return t


class Step:
    """The state of one planned step: the value table and the op cursor (module doc).

    ``observer``, if given, has ``begin(k)`` and ``end(k)`` called around op k (what
    ``execute`` and ``profile`` measure by; an op run by torch's engine — a backward, the
    epilogue — ends when the next begins, the last one when torch's backward returns) and
    ``forget(t)`` for a tensor about to be emptied; ``run()`` starts the step and returns the
    model's output.
    """

    def __init__(self, model, staging, ops, args, kwargs, observer=None):
        self.model, self.staging = model, staging
        self.ops = [(op.kind, op.stage) if hasattr(op, "kind") else tuple(op) for op in ops]
        self.L = len(staging)
        self.args, self.kwargs = tuple(args), dict(kwargs)
        self.observer = observer
        self.k = 0                    # index of the next op to run
        self.begun = -1               # the last op the observer was told of
        self.x = {}                   # checkpoints: i -> tensor (no graph)
        self.xbar = {}                # i -> output of stage i's saving run (no graph)
        self.made = {}                # i -> weak ref to stage i's first output (the graph's)
        self.rng = {}                 # i -> RngState before stage i's first run
        self.wants_grad = {}          # i -> whether stage i's input required grad then
        self.ran = set()
        self.context = {}             # i -> (args, kwargs) of block stage i beyond its input
        self.output_bytes = {}        # i -> bytes of stage i's output (first run)
        self.stopping = False
        self.packer = _Packer()
        self.devices = cuda_devices([*self.args, *self.kwargs.values()])
        self.norms = stage_norms(model, staging)    # i -> what a recomputation freezes
        self.forward_phase = self._check_forward_phase()

    def _check_forward_phase(self):
        """The number of ops before the first backward, which must run each stage once, in
        order (the plain forward the step records)."""
        end = next((k for k, (kind, _) in enumerate(self.ops) if kind == "backward"),
                   len(self.ops))
        runs = [i for kind, i in self.ops[:end] if kind != "drop"]
        if runs != list(range(1, self.L + 1)):
            raise PlanRunError(
                "a plan's ops before its first backward must run each stage once, in order "
                f"(the plain forward torch records); this plan runs stages {runs}")
        return end

    # ---- the op cursor --------------------------------------------------------------------
    def _begin(self, k):
        if self.observer is not None and k != self.begun:
            self.begun = k
            self.observer.begin(k)

    def _end(self, k):
        if self.observer is not None:
            self.observer.end(k)

    def _run_next(self):
        kind, i = self.ops[self.k]
        k = self.k
        self._begin(k)
        self.k += 1
        if kind == "drop":
            del self.x[i]
            if k < self.forward_phase:
                self._release_callers(i)
        elif kind == "backward":       # a stage whose output needs no gradient
            self.xbar.pop(i, None)
        else:
            self._recompute(i, save=(kind == "forward_save"))
        self._end(k)

    def _backward_begins(self, i):
        """δ_i exists (torch's engine is about to backpropagate stage i): run the plan's
        ops up to ``backward i``, which torch's engine then runs."""
        if ("backward", i) not in self.ops[self.k:]:
            raise _second_backward()
        while self.ops[self.k] != ("backward", i):
            self._run_next()
        self._begin(self.k)
        self.k += 1
        self.xbar.pop(i, None)

    # ---- runs of a stage --------------------------------------------------------------------
    def _first_run(self, i, inp, call):
        """Run the ops before stage i's first run (drops), then that run: ``call(inp)`` on
        the graph's input, recorded by torch's engine; return its result."""
        while self.ops[self.k][0] == "drop":
            self._run_next()
        kind, _ = self.ops[self.k]
        k = self.k
        self._begin(k)
        self.k += 1
        self.rng[i] = RngState(self.devices, self.rng.get(i - 1))
        self.wants_grad[i] = inp is not None and inp.requires_grad
        out = self._run_stage(i, inp, call, "save" if kind == "forward_save" else "slot")
        self._made(i, _first(out), kind == "forward_save")
        self._end(k)
        return out

    def _made(self, i, out, save):
        """Stage i's first output ``out`` (with its graph): into the table, and a hook on its
        gradient to start the plan's ``backward i``."""
        self.ran.add(i)
        self.output_bytes[i] = storage_bytes([out])
        (self.xbar if save else self.x)[i] = out.detach()
        self.made[i] = weakref.ref(out)
        if out.requires_grad:
            out.register_hook(lambda grad: self._backward_begins(i))

    def _recompute(self, i, save):
        if i not in self.ran or (self.staging.kind == "auto" and i == self.L):
            raise PlanRunError(f"the plan recomputes stage {i} ({self.staging.names[i - 1]}),"
                               " which it cannot: the epilogue of stages='auto' runs once")
        inp = self._input_of(i)
        if inp is not None:
            inp = inp.detach().requires_grad_(self.wants_grad[i])
        with torch.random.fork_rng(devices=self.devices, enabled=True):
            self.rng[i].restore()
            with _frozen_norm_stats(self.norms[i]):
                out = self._run_stage(i, inp, lambda x: self._call(i, x),
                                      "fill" if save else "discard")
        (self.xbar if save else self.x)[i] = _first(out).detach()

    def _run_stage(self, i, inp, call, mode):
        version = None if inp is None else inp._version
        with self.packer.packing(mode, i) as packer, torch.enable_grad():
            out = call(inp)
            packed = packer.count
        if inp is not None and inp._version != version:
            raise StageError(
                f"stage {i} ({self.staging.names[i - 1]}) modifies its input in place (an "
                "in-place op such as ReLU(inplace=True) at its start): a stage's input may be "
                "a kept checkpoint; merge it with the previous stage or make the op "
                "out-of-place")
        if mode == "fill" and packed != len(self.packer.slots[i]):
            raise PlanRunError(
                f"stage {i} ({self.staging.names[i - 1]}) saved {len(self.packer.slots[i])} "
                f"tensors for backward on its first run and {packed} when recomputed: a "
                "stage must run the same ops every time (RNG and BatchNorm statistics are "
                "replayed; other state that changes its ops is not)")
        return out

    def _input_of(self, i):
        if i == 1:
            return self.args[0] if self.staging.kind == "sequence" else None
        if i - 1 in self.x:
            return self.x[i - 1]
        return self.xbar[i - 1]

    def _call(self, i, inp):
        if self.staging.kind == "sequence":
            return _call_listed(self.staging, i, inp, self.args, self.kwargs)
        if i == 1:
            return self._rerun_prologue()
        a, kw = self.context[i]
        with self._unintercepted(i - 2) as block:
            # the first run happens inside the model's own call of the block, whose hooks
            # have run; a recomputation calls the block (hooks, compiled calls)
            call = block.forward if i not in self.ran else block
            return _first(call(inp, *a, **kw))

    def _rerun_prologue(self):
        self.stopping = True
        try:
            with self._intercept():
                self.model(*self.args, **self.kwargs)
        except _StopAtFirstBlock as stop:
            return stop.hidden
        finally:
            self.stopping = False
        raise PlanRunError("the model's forward never called its first block")

    def _release_callers(self, i):
        """The plan frees x_i in the forward phase, but the model's code may still hold the
        tensor stage i made (nn.Sequential's call holds its input until it returns): leave
        that tensor empty, so that its storage is freed now (the ledger, if measuring, stops
        counting it)."""
        t = self.made[i]()
        if t is None:
            return
        if self.observer is not None:
            self.observer.forget(t)
        with torch.no_grad():
            t.set_()

    # ---- staging "auto": the model's forward, blocks intercepted ---------------------------
    def _check_epilogue(self):
        if self.staging.kind != "auto":
            return
        L = self.L
        runs = [k for k, (kind, i) in enumerate(self.ops) if i == L and kind != "drop"]
        if len(runs) != 2 or self.ops[runs[0]] != ("forward_save", L) or \
                runs[1] != runs[0] + 1:
            raise PlanRunError(
                f"with stages='auto' the epilogue (stage {L}) runs as the model's own code: "
                f"the plan must run 'forward_save {L}' once, then 'backward {L}'; this plan "
                f"has {[f'{a} {b}' for a, b in (self.ops[k] for k in runs)]}")

    def _block_call(self, b, hidden, args, kwargs):
        i = b + 2
        self._check_constant_arguments(i, args, kwargs)
        if self.stopping:
            if b == 0:
                raise _StopAtFirstBlock(hidden)
            raise PlanRunError(f"the model's forward called block {b} before block 0 "
                               "while its prologue was being recomputed")
        if b == 0:
            self.k = 1
            self._made(1, hidden, self.ops[0][0] == "forward_save")
            self.packer.mode = "save"          # the model's code after the prologue saves
        elif i - 1 not in self.ran:
            raise PlanRunError(f"the model's forward called {self.staging.names[i - 1]} "
                               f"before {self.staging.names[i - 2]}: stages='auto' needs "
                               "the blocks called once each, in order")
        self.context[i] = (args, kwargs)
        with self._unintercepted(b) as block:
            out = self._first_run(i, hidden, lambda h: block.forward(h, *args, **kwargs))
        if i == self.L - 1:          # the epilogue runs next, as written, saving
            self._epilogue_begins()
        return out

    def _check_constant_arguments(self, i, args, kwargs):
        """A block's arguments beyond its input are passed to its every run as they were
        first given (masks, position ids): one that requires grad would get none."""
        named = [*(_tensors_in(a, f"positional argument {k + 2}") for k, a in enumerate(args)),
                 *(_tensors_in(v, f"keyword argument '{k}'") for k, v in kwargs.items())]
        for name, t in (pair for found in named for pair in found):
            if t.requires_grad:
                raise PlanRunError(
                    f"{self.staging.names[i - 1]} is called with its {name} requiring grad; "
                    "stages='auto' passes a block's arguments beyond its input as constants, "
                    "so that tensor would get no gradient. Compute it inside the block, carry "
                    "it in the block's input, or give stages=[...] as callables of one input")

    def _epilogue_begins(self):
        L = self.L
        while self.ops[self.k] != ("forward_save", L):
            self._run_next()
        self._begin(self.k)
        self.k += 1
        self.ran.add(L)

    @contextlib.contextmanager
    def _intercept(self):
        """Route the blocks' calls to ``_block_call``: an instance ``forward`` on each block
        (a forward the block already had as an instance attribute is put back after)."""
        blocks = self.staging.blocks
        if getattr(vars(blocks[0]).get("forward"), "ckpt_step", None) is self:
            yield                                # already intercepting (a rerun)
            return
        own = [vars(block).get("forward") for block in blocks]
        for b, block in enumerate(blocks):
            def call(hidden, *args, _b=b, **kwargs):
                return self._block_call(_b, hidden, args, kwargs)
            call.ckpt_step, call.own = self, own[b]
            block.forward = call
        try:
            yield
        finally:
            for block, forward in zip(blocks, own):
                del block.forward
                if forward is not None:
                    block.forward = forward

    @contextlib.contextmanager
    def _unintercepted(self, b):
        """Block ``b`` with its own forward back, to be called for real (its hooks run)."""
        block = self.staging.blocks[b]
        call = vars(block).get("forward")
        ours = getattr(call, "ckpt_step", None) is self
        if ours:
            del block.forward
            if call.own is not None:
                block.forward = call.own
        try:
            yield block
        finally:
            if ours:
                block.forward = call

    # ---- the forward phase ------------------------------------------------------------------
    def run(self):
        """Run the forward phase (the ops before the first backward) and return the
        model's output; its backward runs the rest."""
        self._check_epilogue()
        if self.staging.kind == "sequence":
            x = _stage_input(self.args)
            for i in range(1, self.L + 1):
                x = self._first_run(i, x, lambda h, i=i: self._call(i, h))
            self._forward_done()
            return x
        self._begin(0)
        self.rng[1] = RngState(self.devices)
        self.wants_grad[1] = False
        first = "save" if self.ops[0][0] == "forward_save" else "slot"
        with self._intercept(), self.packer.packing(first, 1):
            out = self.model(*self.args, **self.kwargs)
        if self.L - 1 not in self.ran:
            missing = [n for i, n in enumerate(self.staging.names[1:-1], 2) if i not in self.ran]
            raise PlanRunError(
                f"the model's forward did not call {', '.join(missing)}: stages='auto' needs "
                f"every block of {self.staging.where} called once per forward, in order; for "
                "a forward that skips blocks, give stages=[...] with the ones it runs")
        self._forward_done()
        return out

    def _forward_done(self):
        kind, i = self.ops[self.k]
        if (kind, i) != ("backward", self.L):
            raise PlanRunError(f"after stage {self.L}'s forward the plan must backpropagate "
                               f"it; op {self.k} is '{kind} {i}'")
        self._begin(self.k)          # backward L: the loss, then torch's engine
        if self.staging.kind == "auto":
            self.k += 1
