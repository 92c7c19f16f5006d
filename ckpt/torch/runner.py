"""One training step of a torch model following a plan's ops: the engine of ``ckpt.torch``.

Every stage i that ckpt runs is one node of torch's graph, ``StageFunction`` (a custom
``torch.autograd.Function`` taking the stage's input and parameters). Its forward runs the
plan's ops up to the first one that produces stage i's output; its backward — called by
torch's engine with δ_i — runs the ops up to and including ``backward i`` and returns
δ_{i-1} and the parameters' gradients, which torch's engine accumulates into ``.grad``
(so hooks, DDP's reducer and any optimizer see an ordinary backward). The ops between
(recomputations, drops) run where the plan puts them. A ``Step`` holds the values the
simulator names — checkpoints x_i, saved stages x̄_i (an output with its graph), gradients
δ_i — and frees each at the op that frees it.

Staging "auto" (``ckpt.torch.stages``): the model's own ``forward`` runs; ckpt intercepts the
calls of the blocks. The prologue (code before the first block) runs as written, saving
(``forward_save 1``) or not (``forward 1``); recomputing it reruns the model's ``forward``
until the first block is called; the first block's node backpropagates it. The epilogue (code after the last block, then the loss) always runs as written,
saving: plans run it once, right before its backward.

Recomputations replay the RNG state of the stage's first run (CPU and the CUDA devices in
use), as ``torch.utils.checkpoint`` does, and run with BatchNorm's running statistics
frozen, so the statistics and ``num_batches_tracked`` are updated once per step.

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

import torch
from torch import nn

from ..planner.schedule import direct_backwards
from .ledger import storage_bytes
from .stages import StageError

__all__ = ["Step", "StageFunction", "PlanRunError", "cuda_devices", "direct_stages",
           "RngState", "stage_norms"]


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
    """BatchNorm without updating running statistics: ``track_running_stats`` off (training
    mode then normalizes with the batch's statistics, as the first run did) on ``norms``."""
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def cuda_devices(values):
    """The CUDA device indices of the tensors among ``values`` (whose RNG a step replays).

    >>> cuda_devices([torch.zeros(1), "not a tensor"])
    []
    """
    return sorted({t.device.index or 0 for t in values
                   if isinstance(t, torch.Tensor) and t.is_cuda})


class RngState:
    """The RNG states of the CPU and of the CUDA ``devices`` now; ``restore()`` puts them back.

    >>> state = RngState([])
    >>> a = torch.rand(1); state.restore(); torch.equal(a, torch.rand(1))
    True
    """

    def __init__(self, devices):
        self.devices = devices
        self.cpu = torch.get_rng_state()
        self.cuda = [torch.cuda.get_rng_state(d) for d in devices]

    def restore(self):
        torch.set_rng_state(self.cpu)
        for d, s in zip(self.devices, self.cuda):
            torch.cuda.set_rng_state(s, d)


def _first(out):
    """The chained value of a stage's result: the tensor, or a tuple's first element."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise PlanRunError(f"a stage returned a {type(out).__name__}; a stage must return a "
                       "tensor or a tuple whose first element is the tensor passed on")


def _second_backward():
    return PlanRunError(
        "this planned step was backpropagated already: a plan's backward runs once (its "
        "values are freed as it goes; retain_graph is not supported); run the planned "
        "module's forward again for another backward")


def direct_stages(plan):
    """The stages of ``plan`` that a ``Step`` leaves to torch's engine, as a plain step does
    (no stage node holds δ_i while they run): those the plan saves once and backpropagates
    right after the next (``planner.schedule.direct_backwards``) whose chain measured that
    mode (``Stage.direct_backward_transient``), so that the prediction counts what runs.

    >>> from ckpt import planner
    >>> stage = planner.Stage("s", 1, 1, 8, 8, direct_backward_transient=0)
    >>> sorted(direct_stages(planner.plan(planner.Chain([stage] * 3), "store_all")))
    [1, 2, 3]
    """
    stages = plan.chain.stages
    return {i for i in direct_backwards(plan.ops)
            if stages[i - 1].direct_backward_transient is not None}


class StageFunction(torch.autograd.Function):
    """Stage i of a ``Step`` as one node of torch's graph (see the module doc)."""

    @staticmethod
    def forward(ctx, step, i, token, x_in, *params):
        ctx.step, ctx.i = step, i
        return step.forward_to(i, x_in).detach()

    @staticmethod
    def backward(ctx, grad):
        step, i = ctx.step, ctx.i
        if step is None:
            raise _second_backward()
        d_in, grads = step.backward_to(i, grad)
        ctx.step = None
        return (None, None, None, d_in, *[grads.get(id(p)) for p in step.fn_params[i]])


class Step:
    """The state of one planned step: the value table and the op cursor (module doc).

    ``direct``: the stages whose backward torch's engine runs itself (``direct_stages``);
    the others are stage nodes. ``observer``, if given, has ``begin(k)`` and ``end(k)``
    called around op k (what
    ``execute`` and ``profile`` measure by; an op run by torch itself — the epilogue and its
    backward — ends when the next begins, the last one when torch's backward returns);
    ``run()`` starts the step and returns the model's output.
    """

    def __init__(self, model, staging, ops, args, kwargs, observer=None, direct=()):
        self.model, self.staging = model, staging
        self.ops = [(op.kind, op.stage) if hasattr(op, "kind") else tuple(op) for op in ops]
        self.L = len(staging)
        self.args, self.kwargs = tuple(args), dict(kwargs)
        self.observer = observer
        self.k = 0                    # index of the next op to run
        self.begun = -1               # the last op the observer was told of
        self.x = {}                   # checkpoints: i -> tensor (no graph)
        self.xbar = {}                # i -> (output with graph, its input leaf or None)
        self.delta = {}               # i -> δ_i (from torch's engine)
        self.rng = {}                 # i -> RngState before stage i's first run
        self.ran = set()
        self.natural = set()          # x̄_i held by torch (the epilogue, as written)
        self.context = {}             # i -> (args, kwargs) of block stage i beyond its input
        self.output_bytes = {}        # i -> bytes of stage i's output (first run)
        self.stopping = False
        self.grads = {}               # id(param) -> gradient, gathered for the next return
        self.token = torch.empty(0, requires_grad=True)
        self.devices = cuda_devices([*self.args, *self.kwargs.values()])
        self.fn_params = {i: list(p) for i, p in enumerate(staging.params, 1)}
        if staging.kind == "auto":
            self.fn_params[1] = self._prologue_params()
        if self.ops and self.ops[0][1] != 1:
            raise PlanRunError(f"a plan begins with stage 1, this one with {self.ops[0]}")
        self.direct = set(direct)
        self.norms = stage_norms(model, staging)    # i -> what a recomputation freezes

    # ---- the op cursor --------------------------------------------------------------------
    def _begin(self, k):
        if self.observer is not None and k != self.begun:
            self.begun = k
            self.observer.begin(k)

    def _produced(self, i):
        return i in self.x or i in self.xbar

    def forward_to(self, i, x_in):
        """Run ops until stage i has produced its output for the first time; return it."""
        if i == 1 and self.staging.kind == "sequence":
            self.x0 = x_in
        while not (i in self.ran and self._produced(i)) or (
                self.ops[self.k][1] == i and self.ops[self.k][0] != "backward"):
            self._run_next()      # (the profiler's 'forward i, drop i, forward_save i')
        return _first(self.x[i] if i in self.x else self.xbar[i][0])

    def backward_to(self, i, grad):
        """Given δ_i, run ops through ``backward i``; return δ_{i-1} and the parameters'
        gradients of every backward run (by parameter id)."""
        self.delta[i] = grad
        self.grads = {}
        d_in = None
        while self.k < len(self.ops):
            kind, j = self.ops[self.k]
            if kind == "backward" and j == i:
                d_in = self._run_next()
                break
            self._run_next()
        grads, self.grads = self.grads, {}
        return d_in, grads

    def _run_next(self):
        kind, i = self.ops[self.k]
        k = self.k
        self._begin(k)
        self.k += 1
        if kind == "drop":
            del self.x[i]
            result = None
        elif kind == "backward":
            result = self._backward(i)
        else:
            result = self._forward(i, save=(kind == "forward_save"))
        if self.observer is not None:
            self.observer.end(k)
        return result

    # ---- ops --------------------------------------------------------------------------------
    def _input_of(self, i):
        if i == 1:
            return self.x0 if self.staging.kind == "sequence" else None
        if i - 1 in self.x:
            return self.x[i - 1]
        return _first(self.xbar[i - 1][0])

    def _forward(self, i, save, graph_input=None):
        """Run stage i (saving or not). ``graph_input``: a direct stage's input, the previous
        stage's output with its graph, which the stage extends as a plain forward would."""
        if self.staging.kind == "auto" and i == self.L:
            raise PlanRunError(f"the plan runs the epilogue (stage {i}) a second time; with "
                               "stages='auto' it runs once, saving, before its backward")
        first = i not in self.ran
        if first:
            self.rng[i] = RngState(self.devices)
        inp = self._input_of(i) if graph_input is None else graph_input
        leaf = None
        if save and inp is not None and graph_input is None:
            leaf = inp.detach().requires_grad_(inp.is_floating_point() or inp.is_complex())
            inp = leaf
        version = None if inp is None else inp._version
        if first:
            out = self._call(i, inp, save)
        else:
            with torch.random.fork_rng(devices=self.devices, enabled=True):
                self.rng[i].restore()
                with _frozen_norm_stats(self.norms[i]):
                    out = self._call(i, inp, save)
        if inp is not None and inp._version != version:
            raise StageError(
                f"stage {i} ({self.staging.names[i - 1]}) modifies its input in place (an "
                "in-place op such as ReLU(inplace=True) at its start): a stage's input may be "
                "a kept checkpoint; merge it with the previous stage or make the op "
                "out-of-place")
        self.ran.add(i)
        if i not in self.output_bytes:
            self.output_bytes[i] = storage_bytes([_first(out)])
        if save:
            self.xbar[i] = (out, leaf)
        else:
            self.x[i] = out
        return None

    def run_direct(self, i, x_in):
        """Run ops up to ``forward_save i`` of a direct stage, then the stage itself on
        ``x_in`` (the previous stage's output, with its graph); return the stage's output,
        whose backward torch's engine runs (a hook on it starts the plan's ``backward i``
        on the op cursor). A direct prologue of auto staging is the model's own code
        (``_prologue_done``)."""
        if i == 1 and self.staging.kind == "sequence":
            self.x0 = x_in
        while self.ops[self.k] != ("forward_save", i):
            self._run_next()
        k = self.k
        self._begin(k)
        self.k += 1
        self._forward(i, save=True, graph_input=x_in)
        out = _first(self.xbar[i][0])
        self._direct_backward_at(i, out)
        if self.observer is not None:
            self.observer.end(k)
        return out

    def _direct_backward_at(self, i, out):
        self.natural.add(i)
        if out.requires_grad:
            out.register_hook(lambda grad: self._direct_backward_begins(i))

    def _direct_backward_begins(self, i):
        if ("backward", i) not in self.ops[self.k:]:
            raise _second_backward()
        while self.ops[self.k] != ("backward", i):
            self._run_next()
        self._begin(self.k)
        self.k += 1
        self.xbar.pop(i, None)

    def _call(self, i, inp, save):
        with torch.set_grad_enabled(save):
            if self.staging.kind == "sequence":
                if i == 1:
                    rest = self.args[1:]
                    return _first(self.staging.callables[0](inp, *rest, **self.kwargs))
                return _first(self.staging.callables[i - 1](inp))
            if i == 1:
                return self._rerun_prologue()
            a, kw = self.context[i]
            with self._unintercepted(i - 2) as block:
                # the first run happens inside the model's own call of the block, whose
                # hooks have run; a recomputation calls the block (hooks, compiled calls)
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

    def _backward(self, i):
        if i in self.natural:        # torch backpropagates it (the epilogue)
            self.xbar.pop(i, None)
            return None
        out, leaf = self.xbar.pop(i)
        out = _first(out)
        grad = self.delta.pop(i, None)
        wants_input = leaf is not None and leaf.requires_grad
        params = self.staging.params[i - 1]
        if i == 1 and self.staging.kind == "auto":
            params = self._prologue_params()
        inputs = ([leaf] if wants_input else []) + list(params)
        if not out.requires_grad or not inputs:
            return None
        grads = torch.autograd.grad(out, inputs, grad, allow_unused=True)
        d_in = grads[0] if wants_input else None
        for p, g in zip(params, grads[1:] if wants_input else grads):
            if g is None:
                continue
            key = id(p)
            self.grads[key] = g if key not in self.grads else self.grads[key] + g
        return d_in

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
            self._prologue_done(hidden)
        elif not self._produced(i - 1):
            raise PlanRunError(f"the model's forward called {self.staging.names[i - 1]} "
                               f"before {self.staging.names[i - 2]}: stages='auto' needs "
                               "the blocks called once each, in order")
        self.context[i] = (args, kwargs)
        with torch.enable_grad():
            if b == 0 and 1 not in self.direct:
                # the prologue as a node of its own; its graph is reached by ckpt
                hidden = StageFunction.apply(self, 1, self.token, hidden.detach(),
                                             *self.fn_params[1])
            if i in self.direct:
                out = self.run_direct(i, hidden)
            else:
                out = StageFunction.apply(self, i, self.token, hidden, *self.fn_params[i])
        if i == self.L - 1:          # the epilogue runs next, as written, saving
            self._epilogue_begins(hidden)
            torch.set_grad_enabled(self.outer_grad)
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

    def _prologue_done(self, hidden):
        kind, _ = self.ops[0]
        self.k = 1
        self.ran.add(1)
        self.output_bytes[1] = storage_bytes([hidden])
        if 1 in self.direct:
            self.xbar[1] = (hidden, None)     # torch's engine backpropagates it
            self._direct_backward_at(1, hidden)
        elif kind == "forward_save":
            self.xbar[1] = (hidden, None)     # its graph is reached only through ckpt
        elif ("drop", 1) in self.ops[:self.ops.index(("backward", self.L))]:
            # the plan frees x_1 in the forward phase, but the model's code may hold the
            # tensor it passed to the first block until its forward returns (nn.Sequential's
            # call does): keep the storage here and leave that tensor empty
            self.x[1] = hidden.detach()
            self._release_callers(hidden)
        else:
            self.x[1] = hidden

    def _prologue_params(self):
        return list(dict.fromkeys(
            [*self.staging.params[0], *[t for t in (*self.args, *self.kwargs.values())
                                        if isinstance(t, torch.Tensor) and t.requires_grad]]))

    def _epilogue_begins(self, hidden):
        L = self.L
        while self.ops[self.k] != ("forward_save", L):
            if self.ops[self.k] == ("drop", L - 2):
                # the caller holds the last block's input until that call returns: the
                # plan frees it now, so leave the caller's tensor (ckpt's alias) empty
                self._release_callers(hidden)
            self._run_next()
        self._begin(self.k)
        self.k += 1
        self.ran.add(L)
        self.natural.add(L)
        self.xbar[L] = (None, None)

    def _release_callers(self, t):
        """Leave tensor ``t``, which the model's code holds, empty: its storage is then held
        only by ckpt's table (the ledger, if measuring, stops counting ``t``)."""
        if self.observer is not None:
            self.observer.forget(t)
        with torch.no_grad():
            t.set_()

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

    def prologue_leaves(self):
        """The parameters (and inputs) the prologue's graph reaches: rerun it once with grad,
        RNG and BatchNorm statistics left as they were, and walk its graph."""
        with torch.random.fork_rng(devices=self.devices), \
                _frozen_norm_stats(_running_stats_norms(self.model)):
            hidden = self._call(1, None, save=True)
        found, stack, seen = [], [hidden.grad_fn], set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            variable = getattr(node, "variable", None)
            if variable is not None:
                found.append(variable)
            stack.extend(n for n, _ in node.next_functions)
        return found

    # ---- the forward phase ------------------------------------------------------------------
    def run(self):
        """Run the forward phase (the ops before the first backward) and return the
        model's output; its backward runs the rest."""
        self._check_epilogue()
        self.outer_grad = torch.is_grad_enabled()
        if self.staging.kind == "sequence":
            if not self.args:
                raise PlanRunError(
                    "the model was called with no positional argument; with a list of stages "
                    "(or an nn.Sequential) the first positional argument is stage 1's input: "
                    "call it as model(x, ...)")
            x = self.args[0]
            for i in range(1, self.L + 1):
                with torch.enable_grad():
                    x = self.run_direct(i, x) if i in self.direct else \
                        StageFunction.apply(self, i, self.token, x, *self.fn_params[i])
            self._forward_done()
            return x
        first_saves = self.ops[0][0] == "forward_save"
        self._begin(0)
        self.rng[1] = RngState(self.devices)
        with self._intercept(), torch.set_grad_enabled(first_saves):
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
            self.xbar.pop(self.L, None)
