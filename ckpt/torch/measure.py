"""Measuring planned torch steps: ``profile`` (model -> Chain) and ``execute`` (one step
under a plan, measured). Both run the same ``Step`` machinery that ``plan``'s wrapper
trains with, under the ``Ledger``, and read each op's window: bytes when it began, the most
held while it ran, bytes when it ended.

Why the prediction holds: an op's footprint (what it creates, frees, and holds on top
while it runs) depends only on its stage — the same code on tensors of the same shapes —
so what the profiler measures in its own op order holds in every plan's order, and the
simulator, adding it up op by op, predicts what ``execute`` measures.
"""
import contextlib
import os
import sys
import time
from typing import NamedTuple

import torch

from ..planner import Chain, Stage, simulate
from ..planner.errors import PlanMismatchError
from ..planner.schedule import Op
from .clock import fault_seconds, minor_faults, op_clock
from .ledger import Ledger, storage_bytes
from .runner import RngState, Step, cuda_devices
from .stages import refuse_sharded, resolve

__all__ = ["profile", "execute", "TorchExecution", "profile_ops", "profiler_peak_bytes",
           "CpuAllocatorPeak"]


def split_sample(sample):
    """Positional and keyword arguments of the model from ``sample``: a tensor, a tuple or
    list of positional arguments, or a dict of keyword arguments.

    >>> import torch
    >>> args, kwargs = split_sample({"input_ids": torch.zeros(2, 3, dtype=torch.long)})
    >>> args, list(kwargs)
    ((), ['input_ids'])
    """
    if isinstance(sample, dict):
        return (), dict(sample)
    if isinstance(sample, (tuple, list)):
        return tuple(sample), {}
    return (sample,), {}


def default_loss(out):
    """The loss when none is given: the sum of the output's first tensor (``logits`` of a
    HuggingFace output, a tuple's first element).

    >>> import torch
    >>> default_loss((torch.ones(2, 2), None)).item()
    4.0
    """
    if isinstance(out, torch.Tensor):
        return out.sum()
    if hasattr(out, "logits") and isinstance(out.logits, torch.Tensor):
        return out.logits.sum()
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0].sum()
    raise TypeError(f"the model returned a {type(out).__name__}; give a loss_fn that "
                    "turns it into a scalar tensor")


def profile_ops(L, auto):
    """The profiler's op order: ``forward i`` for each stage but the last (the step's first
    runs, checkpoints kept), ``forward_save L``, ``backward L``, then for each earlier stage
    ``drop i``, ``forward_save i`` (a recomputation) and ``backward i``.

    >>> [str(op) for op in profile_ops(3, auto=False)]
    ['forward 1', 'forward 2', 'forward_save 3', 'backward 3', 'drop 2', 'forward_save 2', 'backward 2', 'drop 1', 'forward_save 1', 'backward 1']
    """
    ops = [Op("forward", i) for i in range(1, L)] + [Op("forward_save", L), Op("backward", L)]
    for i in range(L - 1, 0, -1):
        ops += [Op("drop", i), Op("forward_save", i), Op("backward", i)]
    return ops


class _Windows:
    """The observer of a ``Step``: per op, bytes at its start, peak, bytes at its end, its
    duration (seconds; CUDA synchronized; CPU: ``op_clock``) and its minor page faults."""

    def __init__(self, n, ledger=None, cuda=False):
        self.ledger, self.cuda = ledger, cuda
        self.before, self.peak, self.after = [0] * n, [0] * n, [0] * n
        self.seconds, self.faults = [0.0] * n, [0] * n
        self.open, self.t0 = None, (0.0, 0)

    def _now(self):
        if self.cuda:
            torch.cuda.synchronize()
            return time.perf_counter(), 0
        return op_clock(), minor_faults()

    def _close(self, now):
        k = self.open
        if k is None:
            return
        self.seconds[k], self.faults[k] = now[0] - self.t0[0], now[1] - self.t0[1]
        if self.ledger is not None:
            self.peak[k] = self.ledger.mark()
            self.after[k] = self.ledger.current
        self.open = None

    def begin(self, k):
        now = self._now()
        self._close(now)
        self.open, self.t0 = k, now
        if self.ledger is not None:
            self.ledger.mark()
            self.before[k] = self.ledger.current

    def forget(self, t):
        if self.ledger is not None:
            self.ledger.forget(t)

    def end(self, k):
        if self.open == k:
            self._close(self._now())

    def close(self):
        self._close(self._now())


class _CheckedWindows(_Windows):
    """``_Windows`` that compares what each stage's first saving forward keeps (x̄_i) with
    the plan's chain as soon as it ends, and raises ``PlanMismatchError`` on a difference:
    a plan for another model or input keeps other bytes (the prologue of auto staging,
    which also makes the late input, is left out)."""

    def __init__(self, plan, auto, ledger, cuda):
        super().__init__(len(plan.ops), ledger, cuda)
        firsts = {}
        for k, op in enumerate(plan.ops):
            if op.kind == "forward_save" and not (auto and op.stage == 1):
                firsts.setdefault(op.stage, k)
        self.expect = {k: (i, int(plan.chain.xbar[i]), plan.chain.stages[i - 1].name)
                       for i, k in firsts.items()}

    def _close(self, now):
        k = self.open
        super()._close(now)
        if k in self.expect:
            i, expected, name = self.expect[k]
            kept = self.after[k] - self.before[k]
            if kept != expected:
                raise PlanMismatchError(
                    f"stage {i} ({name}) keeps {kept} bytes for backward where the plan's "
                    f"chain says {expected}: the plan is for another model or input; profile "
                    "this one and plan again")


def _entry(model, args, kwargs):
    params = [p for p in model.parameters()]
    inputs = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
    return params, inputs


def _stand_ins(params):
    """Zero ``.grad`` for parameters without one: the cost model counts gradients from the
    start."""
    for p in params:
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


def _ledger_step(model, staging, ops, args, kwargs, loss_fn, params, inputs, cuda):
    """One step measured by a fresh ledger: the bytes at entry, the op windows, the step."""
    ledger = Ledger()
    ledger.register(*params, *[p.grad for p in params if p.grad is not None],
                    *model.buffers(), *inputs)
    entry = ledger.current
    win = _Windows(len(ops), ledger, cuda)
    with ledger, ledger.hooks():
        _, step = _measured_step(model, staging, ops, args, kwargs, loss_fn, win)
    return entry, win, step


def _measured_step(model, staging, ops, args, kwargs, loss_fn, windows):
    step = Step(model, staging, ops, args, kwargs, observer=windows)
    loss = loss_fn(step.run())
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError("loss_fn must return a scalar tensor, got "
                        + (f"shape {list(loss.shape)}" if isinstance(loss, torch.Tensor)
                           else type(loss).__name__))
    value = float(loss.detach())
    step.loss_bytes = loss.untyped_storage().nbytes()
    loss.backward()
    del loss
    windows.close()
    return value, step


def profile(model, sample, loss_fn=None, stages="auto", repeats=3, name=None):
    """A ``ckpt.planner.Chain`` measured on a torch model: per stage, forward and backward
    seconds (the least of ``repeats`` timed runs; on a CPU the thread's CPU time less its
    page faults, ``ckpt.torch.clock``), and bytes measured by the ledger — output, saved
    for backward (each storage once), and the transients of each op.

    ``sample`` is what the model is called with (a tensor, a tuple of arguments or a dict
    of keyword arguments); ``loss_fn(output)`` returns the scalar loss (default: the sum of
    the output). ``stages``: "auto" or a list (``ckpt.torch.stages``). The model is left as
    it was: gradients, RNG state and BatchNorm statistics are restored.

    >>> import torch, ckpt.torch
    >>> net = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(4)])
    >>> chain = ckpt.torch.profile(net, torch.randn(32, 64), repeats=1)
    >>> len(chain), chain.stages[0].output_bytes, chain.cost_unit
    (4, 8192, 's')
    """
    refuse_sharded(model, "profile")
    args, kwargs = split_sample(sample)
    staging = resolve(model, stages)
    loss_fn = loss_fn or default_loss
    L, auto = len(staging), staging.kind == "auto"
    ops = profile_ops(L, auto)
    params, inputs = _entry(model, args, kwargs)
    leaves = params + [t for t in inputs if t.requires_grad]
    saved_grads = [t.grad for t in leaves]
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    cuda = any(t.is_cuda for t in inputs)
    with torch.random.fork_rng(devices=cuda_devices(inputs)):
        try:
            _stand_ins(params)
            entry, win, step = _ledger_step(model, staging, ops, args, kwargs, loss_fn,
                                            params, inputs, cuda)
            input_bytes = storage_bytes(inputs)
            made = step.output_bytes
            per_fault, times = 0.0 if cuda else fault_seconds(), []
            for _ in range(max(1, repeats)):
                t = _Windows(len(ops), None, cuda)
                _measured_step(model, staging, ops, args, kwargs, loss_fn, t)
                times.append([max(0.0, s - f * per_fault) for s, f in zip(t.seconds, t.faults)])
        finally:
            for t, g in zip(leaves, saved_grads):
                t.grad = g
            with torch.no_grad():
                for n, b in model.named_buffers():
                    b.copy_(buffers[n])
    at = {(op.kind, op.stage): k for k, op in enumerate(ops)}
    cost = [min(run[k] for run in times) for k in range(len(ops))]
    out_bytes, stages_, residue = {0: input_bytes}, [], 0
    for i in range(1, L + 1):
        s = at[("forward_save", i)]
        xbar = win.after[s] - win.before[s]
        ofs = win.peak[s] - win.after[s]
        if ("forward", i) in at:
            f = at[("forward", i)]
            x = win.after[f] - win.before[f]
            of = win.peak[f] - win.after[f]
            if auto and i == 1:
                # what the model's code keeps beside the stages from its first run of the
                # prologue on (the blocks' masks and position ids, held for their
                # recomputations): data appearing late. A recomputation of the prologue
                # makes them again while it runs: part of its transient.
                residue, x = x - made[1], made[1]
                of += residue
        else:   # the last stage never runs without saving: a forward no cheaper than saving
            x, of = xbar, ofs
        out_bytes[i] = x
        b = at[("backward", i)]
        d_in = out_bytes[i - 1] if i > 1 else 0
        # torch's engine frees δ_i once used: the transient may be negative (down to -δ_{i-1})
        ob = win.peak[b] - win.before[b] - d_in
        stages_.append(Stage(staging.names[i - 1], cost[s], cost[b], x, max(xbar, x),
                             forward_transient=max(of, 0), backward_transient=max(ob, 0),
                             forward_save_transient=max(ofs, 0),
                             direct_backward_transient=ob if ob < 0 else None))
    held = 0
    if L > 1:
        # gradients torch's engine holds from B_L to the end of the step: a parameter used
        # after the last block and before the first (tied embeddings) gets its gradient only
        # when both contributions are in; and the loss and the seed of its gradient, which
        # outlive B_L: parameter bytes appearing late, at the end of B_L.
        last = at[("backward", L)]
        expected = win.before[last] - (stages_[-1].saved_bytes) + out_bytes[L - 1]
        held = max(0, win.before[last + 1] - expected)
    return Chain(stages_, input_bytes=input_bytes + residue,
                 param_bytes=entry - input_bytes + held,
                 name=name or type(model).__name__, cost_unit="s",
                 input_late_bytes=residue, param_late_bytes=held)


class TorchExecution(NamedTuple):
    """What ``ckpt.torch.execute`` returns: the ``loss`` (float), the predicted and
    measured peaks (bytes), the allocator's peak (CPU: profiler memory events; CUDA:
    ``torch.cuda.max_memory_allocated``), the step's seconds, the plan's ``simulation``
    and, per op, the measured logical bytes ``op_peaks`` and ``op_after`` (parallel to
    ``simulation.timeline``, what ``ckpt.plot.memory_timeline`` overlays). ``entry_bytes``
    is what the ledger counted before the step began: parameters, their gradient buffers,
    buffers and the inputs (the chain's ``param_bytes`` + ``input_bytes``, less what the
    profiler adds to them for values held beyond the stages)."""
    loss: float
    predicted_peak_bytes: int
    measured_peak_bytes: int
    allocator_peak_bytes: int
    step_seconds: float
    simulation: object
    op_peaks: tuple
    op_after: tuple
    entry_bytes: int

    @property
    def timeline(self):
        """Per op: (op, predicted during, measured during, measured after) in bytes."""
        return [(e.op, e.during, p, a) for e, p, a in
                zip(self.simulation.timeline, self.op_peaks, self.op_after)]


def profiler_peak_bytes(prof):
    """The most bytes allocated at once (above the start) in a ``torch.profiler.profile``
    run with ``profile_memory=True``: its memory events summed in time order.

    >>> import torch
    >>> with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
    ...                             profile_memory=True) as prof:
    ...     a = torch.zeros(1024); b = a + 1; del a, b
    >>> 8192 <= profiler_peak_bytes(prof) < 8192 + 64    # two 4 KiB tensors (+ scalars)
    True
    """
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    total = peak = 0
    for _, n in events:
        total += n
        peak = max(peak, total)
    return peak


@contextlib.contextmanager
def _fd2_silenced():
    """File descriptor 2 pointed at /dev/null: the profiler's C++ start/stop lines go there."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class CpuAllocatorPeak:
    """A context manager measuring the CPU allocator's peak of the code inside it (bytes
    above the start, ``profiler_peak_bytes`` of a memory-profiling ``torch.profiler`` run),
    without the lines torch's profiler writes to stderr when it starts and stops.

    >>> import torch
    >>> with CpuAllocatorPeak() as measured:
    ...     a = torch.zeros(1024); b = a + 1; del a, b
    >>> 8192 <= measured.bytes < 8192 + 64
    True
    """

    def __enter__(self):
        self.bytes = None
        self._prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                            profile_memory=True)
        with _fd2_silenced():
            self._prof.start()
        return self

    def __exit__(self, *exc):
        with _fd2_silenced():
            self._prof.stop()
        self.bytes = profiler_peak_bytes(self._prof)
        return False


def execute(model, plan, sample, loss_fn=None, stages="auto"):
    """One training step of ``model`` under ``plan``, measured: gradients accumulate into
    ``.grad`` (a parameter without one gets a zero buffer first: the cost model counts
    gradients from the start), BatchNorm statistics update once, RNG replays.

    >>> import torch, ckpt.torch
    >>> from ckpt import planner
    >>> net = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(4)])
    >>> x = torch.randn(32, 64)
    >>> chain = ckpt.torch.profile(net, x, repeats=1)
    >>> r = ckpt.torch.execute(net, planner.plan(chain, "recompute_all"), x)
    >>> r.measured_peak_bytes == r.predicted_peak_bytes
    True

    A plan for another model or input (a stage keeping other bytes for backward than its
    chain says) raises ``PlanMismatchError`` at that stage's first saving forward, before
    any backward; gradients, buffers and the RNG state are then left as they were.
    """
    refuse_sharded(model, "execute")
    args, kwargs = split_sample(sample)
    staging = resolve(model, stages)
    if len(staging) != len(plan.chain):
        raise ValueError(f"the plan is for a chain of {len(plan.chain)} stages, the model has "
                         f"{len(staging)} ({', '.join(staging.names)}); profile this model "
                         "with the same stages to plan it")
    loss_fn = loss_fn or default_loss
    simulation = simulate(plan.chain, plan.ops)
    params, inputs = _entry(model, args, kwargs)
    cuda = any(t.is_cuda for t in inputs)
    grads = [p.grad for p in params]
    buffers = [b.clone() for b in model.buffers()]
    rng = RngState(cuda_devices(inputs))
    try:
        return _execute(model, plan, staging, args, kwargs, loss_fn, simulation, params,
                        inputs, cuda)
    except PlanMismatchError:
        for p, g in zip(params, grads):
            p.grad = g
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        rng.restore()
        raise


def _execute(model, plan, staging, args, kwargs, loss_fn, simulation, params, inputs, cuda):
    _stand_ins(params)
    ledger = Ledger()
    ledger.register(*params, *[p.grad for p in params if p.grad is not None],
                    *model.buffers(), *inputs)
    entry = ledger.current
    win = _CheckedWindows(plan, staging.kind == "auto", ledger, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    if cuda:
        with ledger, ledger.hooks():
            loss, _ = _measured_step(model, staging, plan.ops, args, kwargs, loss_fn, win)
        allocator = torch.cuda.max_memory_allocated() - base + entry
    else:
        with CpuAllocatorPeak() as measured:
            with ledger, ledger.hooks():
                loss, _ = _measured_step(model, staging, plan.ops, args, kwargs,
                                         loss_fn, win)
        allocator = entry + measured.bytes
    seconds = time.perf_counter() - t0
    return TorchExecution(loss, simulation.peak, ledger.peak, allocator, seconds,
                          simulation, tuple(win.peak), tuple(win.after), entry)
