"""``checkpoint``: run a segment without keeping its activations; recompute them in backward.

The non-reentrant design (torch.utils.checkpoint with ``use_reentrant=False``), built on
saved-tensor hooks. While the segment runs forward, every tensor an op saves for backward is
packed into a tiny ``_Handle`` (an index into the segment's ``_Frame``); the frame keeps only
the segment's inputs and the RNG state. The first time backward unpacks one of the frame's
handles, the frame runs the segment again, under its own hooks that capture the saved
tensors in order, and every unpack then hands out its tensor and drops it, so each
recomputed buffer is freed as soon as backward has used it. Nothing else changes: the graph
built in the forward is the graph backward runs, so ``backward()``, ``autograd.grad()``,
``inputs=``, ``create_graph=True`` and nesting work as without checkpointing.

Recomputation replays the forward: ckpt's RNG state is restored for it (``preserve_rng_state``)
and the recomputation switch (``ckpt.autograd.events.recomputing``) tells BatchNorm not
to update its running statistics a second time. What the recomputation saves is compared
with what the forward saved (``determinism_check``): a different shape, dtype or number of
saved tensors raises ``CheckpointError`` naming the op; ``debug=True`` adds both op sequences.

Early stop (torch's default): the recomputation stops as soon as it has saved as many tensors
as the forward did, so the rest of the segment (the ops that save nothing backward needs) is
not run again; a recomputation that would save more tensors is cut there and succeeds.
``early_stop=False`` (or ``set_checkpoint_early_stop(False)`` around the call) reruns the
whole segment and then refuses extra saves. ``autograd.grad`` or ``backward`` inside the
segment works: a saved tensor needed while the segment still runs is recomputed on the spot.
"""
import contextlib
import warnings
import weakref

from ..autograd import grad_mode
from ..autograd.engine import current_pass
from ..autograd.events import (Observer, SavedValue, observing, recomputing,
                               reporting_saves)
from ..autograd.graph import root_buffer, saved_tensors_hooks
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.foreign import reject_torch
from .reentrant import reentrant_checkpoint
from .selective import SelectiveContext

__all__ = ["CheckpointError", "checkpoint", "set_checkpoint_debug_enabled",
           "set_checkpoint_early_stop"]

_CHECKS = ("default", "none")


class _EarlyStop:
    """The value ``set_checkpoint_early_stop`` puts in effect (None: each call's ``early_stop``)."""
    override = None


class _Debug:
    """The value ``set_checkpoint_debug_enabled`` puts in effect (None: each call's ``debug``)."""
    override = None


@contextlib.contextmanager
def set_checkpoint_debug_enabled(enabled):
    """Within the block, non-reentrant checkpoints take ``enabled`` (True, False, or None for
    each call's own) as their ``debug``, as torch's context manager of this name.

    >>> import ckpt
    >>> from ckpt.runtime.checkpoint import _Debug, set_checkpoint_debug_enabled
    >>> with set_checkpoint_debug_enabled(True):
    ...     _Debug.override
    True
    """
    previous, _Debug.override = _Debug.override, enabled
    try:
        yield
    finally:
        _Debug.override = previous


class _StopRecomputation(Exception):
    """Raised inside a recomputation once every tensor backward needs has been recomputed."""


class set_checkpoint_early_stop:
    """Within the block, checkpoints made take ``enable`` as their ``early_stop`` (it overrides
    the keyword), as torch's ``torch.utils.checkpoint.set_checkpoint_early_stop``.

    >>> import ckpt
    >>> from ckpt.runtime import set_checkpoint_early_stop
    >>> ran = []
    >>> def f(t):
    ...     a = t.exp(); ran.append("exp")
    ...     return a * 2
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> with set_checkpoint_early_stop(False):
    ...     y = ckpt.checkpoint(f, x, use_reentrant=False)
    >>> ran.clear(); y.sum().backward(); ran   # the whole segment ran again
    ['exp']
    >>> y = ckpt.checkpoint(f, x, use_reentrant=False)
    >>> ran.clear(); y.sum().backward(); ran   # stopped once exp's output was recomputed
    []
    """

    def __init__(self, enable):
        if not isinstance(enable, bool):
            raise TypeError(f"set_checkpoint_early_stop(enable) expects a bool, got "
                            f"{type(enable).__name__}")
        self.enable = enable
        self._previous = []

    def __enter__(self):
        self._previous.append(_EarlyStop.override)
        _EarlyStop.override = self.enable
        return self

    def __exit__(self, *exc):
        _EarlyStop.override = self._previous.pop()
        return False


class CheckpointError(RuntimeError):
    """Backward's recomputation of a checkpointed segment did not reproduce its forward.

    Raised when the recomputation saves tensors with another shape or dtype, or another
    number of them, than the forward did (the segment is not a pure function of its inputs:
    data-dependent shapes, state changed between the calls).

    >>> import ckpt
    >>> issubclass(ckpt.CheckpointError, RuntimeError)
    True
    """


def checkpoint(function, *args, use_reentrant=None, context_fn=None, determinism_check="default",
               debug=False, early_stop=True, preserve_rng_state=True, **kwargs):
    """Run ``function(*args, **kwargs)`` keeping only its inputs for backward; backward runs it
    again to get the tensors its ops saved. A drop-in for torch's
    ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``.

    Works with ``backward()`` and ``autograd.grad()`` (with ``inputs=``), ``create_graph=True``,
    nested checkpoints, keyword arguments and non-tensor inputs and outputs. Parameters used
    inside get their gradients even when no input requires grad. ``preserve_rng_state``
    replays ckpt's generator in the recomputation (dropout masks come out bit for bit the
    same); BatchNorm updates its running statistics once, in the forward.
    ``determinism_check="default"`` compares the shape and dtype of every tensor the
    recomputation saves with the forward's and raises ``CheckpointError`` on a difference
    (``"none"`` skips the comparison); ``debug=True`` adds the op sequences of both runs to
    that error. ``early_stop`` (default True) stops the recomputation once the tensors backward
    needs are recomputed (see the module doc). ``context_fn`` returns two context managers:
    the forward runs inside the first, the recomputation inside the second (called once, as
    torch does). Under ``no_grad`` the function just runs. ``use_reentrant=True`` is
    torch's older form (``ckpt.runtime.reentrant``: ``backward()`` only, no keyword arguments
    for ``function``); leaving ``use_reentrant`` out warns as torch does and, unlike torch
    (whose default is the reentrant form), runs the non-reentrant one.

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0)
    >>> layer = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.Tanh(), ckpt.nn.Dropout(0.5))
    >>> x = ckpt.randn(4, 8)
    >>> y = ckpt.checkpoint(layer, x, use_reentrant=False)
    >>> ckpt.autograd.graph.saved_bytes(y) <= x.nbytes + 8 * 8 * 4   # just the input (and W)
    True
    >>> y.sum().backward()
    >>> layer[0].weight.grad.shape
    (8, 8)
    """
    if use_reentrant is None:
        warnings.warn("ckpt.checkpoint: the use_reentrant parameter should be passed explicitly "
                      "(as torch.utils.checkpoint asks); left out, ckpt runs the non-reentrant "
                      "checkpoint: pass use_reentrant=False", UserWarning, stacklevel=2)
    elif use_reentrant:
        if kwargs:
            raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
        if context_fn is not None or debug is not False:
            raise ValueError("Passing `context_fn` or `debug` is only supported when "
                             "use_reentrant=False.")
    if determinism_check not in _CHECKS:
        raise ValueError(f"determinism_check should be one of {', '.join(map(repr, _CHECKS))}, "
                         f"got {determinism_check!r}")
    if not isinstance(early_stop, bool):
        raise TypeError(f"checkpoint: early_stop must be a bool, got {type(early_stop).__name__}")
    if context_fn is not None and not callable(context_fn):
        raise TypeError("checkpoint: context_fn must be a callable returning two context "
                        f"managers (forward, recomputation), got a {type(context_fn).__name__}")
    reject_torch("ckpt.checkpoint", [function, args, kwargs],
                 "ckpt's checkpoint runs ckpt models on ckpt tensors",
                 "torch.utils.checkpoint or ckpt.torch.plan")
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got a {type(function).__name__}")
    if use_reentrant:
        return reentrant_checkpoint(function, args, preserve_rng_state)
    if not grad_mode.is_grad_enabled():
        return function(*args, **kwargs)
    contexts = _contexts(context_fn)
    if _Debug.override is not None:
        debug = _Debug.override
    if _EarlyStop.override is not None:
        early_stop = _EarlyStop.override
    frame = _Frame(function, args, kwargs, preserve_rng_state, determinism_check, debug,
                   early_stop, contexts[1])
    if isinstance(contexts[0], SelectiveContext):
        frame.policy = contexts[0]
    with contexts[0]:
        return frame.forward()


def _contexts(context_fn):
    """The (forward, recomputation) context managers ``context_fn`` returns."""
    if context_fn is None:
        return contextlib.nullcontext(), contextlib.nullcontext()
    pair = context_fn()
    if not isinstance(pair, tuple) or len(pair) != 2 or not all(
            hasattr(c, "__enter__") and hasattr(c, "__exit__") for c in pair):
        raise TypeError("checkpoint: context_fn must return a tuple of two context managers "
                        f"(forward, recomputation), got {pair!r}")
    return pair


class _Handle:
    """What the graph keeps for one tensor saved inside a checkpointed segment."""
    __slots__ = ("frame", "index")

    def __init__(self, frame, index):
        self.frame = frame
        self.index = index

    def resident_buffers(self):
        """``{buffer_id: nbytes}`` of what the segment keeps in memory for backward: its inputs
        (and, during backward, recomputed tensors not handed out yet)."""
        return self.frame.resident_buffers()


def _recomputed(value):
    """The tensor of a recomputed value: an array, a ``SavedValue``, or (either, the tensor
    itself) for a tensor that needs no gradient."""
    if value.__class__ is tuple:
        return value[1]
    return Tensor(value.data if value.__class__ is SavedValue else value)


def _unpaired(value):
    """The array or ``SavedValue`` of a recomputed value."""
    return value[0] if value.__class__ is tuple else value


class _Frame(Observer):
    """One checkpointed call: inputs, RNG state, what the forward saved (metadata only) and,
    during backward, the recomputed saved tensors waiting to be unpacked."""

    def __init__(self, function, args, kwargs, preserve_rng_state, check, debug, early_stop,
                 recompute_context):
        self.function = function
        self.early_stop = early_stop
        self.recompute_context = recompute_context
        self.needed = None        # during a recomputation: how many saves it must reproduce
        self.stop_early = early_stop  # ... and whether it ends there (always inside the forward)
        self.args = args
        self.kwargs = kwargs
        self.check = check
        self.debug = debug
        self.rng_state = get_rng_state() if preserve_rng_state else None
        self.versions = [(i, a, a._version) for i, a in enumerate(args) if isinstance(a, Tensor)]
        # what a tracker sees the frame keep: its tensor inputs, as saved for backward
        self.held = ([SavedValue(a.data, "checkpoint input") for a in args
                      if isinstance(a, Tensor)] if reporting_saves() else None)
        self.forward_saved = []   # [op name, shape, dtype] per tensor the forward saved
        self.recomputed_saved = None
        self.recomputed_for = None  # (a weakref to) the pass the last recomputation ran for,
        self.unpacked = set()       # and the indices unpacked since
        self.storage = {}         # index -> recomputed array (or SavedBuffer), until unpacked
        self.forward_ops = [] if debug else None
        self.recomputed_ops = None
        self.phase = None         # "forward" or "recompute" while the segment runs
        self.policy = None        # selective checkpointing's SelectiveContext, if any
        self.kept = {}            # index -> a saved tensor the policy keeps
        self.decided = {}         # node -> whether the policy keeps its output (forward)

    # ---- forward --------------------------------------------------------------------------
    def forward(self):
        self.phase = "forward"
        try:
            with observing(self), saved_tensors_hooks(self.pack, self.unpack):
                return self.function(*self.args, **self.kwargs)
        finally:
            self.phase = None
            self.storage = {}   # what a backward inside the segment recomputed and left

    def pack(self, t):
        self.forward_saved.append([None, t.data.shape, t.data.dtype])
        index = len(self.forward_saved) - 1
        if self.policy is not None and (self._keeps(t.grad_fn) if t.grad_fn is not None else
                                        t.requires_grad or any(t is a for a in self.args)):
            self.kept[index] = t.detach()  # (a leaf or an input: kept alive anyway)
        return _Handle(self, index)

    def _keeps(self, node):
        keeps = self.decided.get(node)
        if keeps is None:
            keeps = self.decided[node] = self.policy.keeps(node.name())
        return keeps

    def unpack(self, handle):
        kept = self.kept.get(handle.index)
        if kept is not None:
            return kept
        value = self.storage.pop(handle.index, None)
        if value is None:
            if handle.index in self.unpacked and self.in_recomputed_pass():
                raise CheckpointError(
                    "checkpoint: Unpack is being triggered for a tensor that was already unpacked "
                    "once. If you are calling ctx.saved_tensors in backward, make sure to do so "
                    "only once. Otherwise please open an issue with details on your use case.")
            if self.phase == "recompute":
                raise CheckpointError(
                    "checkpoint: a tensor saved by the checkpointed function was needed for "
                    "backward while its recomputation was running; the recomputation must not "
                    "run backward through the graph of the forward it replays")
            # inside the segment's forward (autograd.grad there) only the saves so far exist
            self.recompute(len(self.forward_saved) if self.phase == "forward" else None)
            value = self.storage.pop(handle.index, None)
            if value is None:
                raise CheckpointError(
                    f"checkpoint: the recomputation saved {len(self.recomputed_saved)} tensors but "
                    f"the forward saved {len(self.forward_saved)}; saved tensor "
                    f"#{handle.index} (saved by {self._name(self.forward_saved, handle.index)}) "
                    "has no recomputed value" + self._listing())
        if self.in_recomputed_pass():
            self.unpacked.add(handle.index)
        return _recomputed(value)

    def in_recomputed_pass(self):
        """Whether the backward pass running now is the one the last recomputation ran for."""
        running = current_pass()
        return running is not None and self.recomputed_for is not None and (
            self.recomputed_for() is running)

    def op_recorded(self, event):
        """Name the op behind each tensor this frame packed (and list ops if debug)."""
        node, out = event.node, event.output
        again = self.phase == "recompute"
        if self.debug:
            ops = self.recomputed_ops if again else self.forward_ops
            name = node.name() if node is not None else "(op recorded without grad)"
            ops.append(f"{name} -> {list(out.data.shape)} {out.data.dtype}")
        if node is None:
            return
        if self.policy is not None and not again:  # torch asks in the forward, of every op
            self._keeps(node)
        name = node.name()
        for packed in event.saved:
            if packed.__class__ is _Handle and packed.frame is self:
                entries = self.recomputed_saved if again else self.forward_saved
                entries[packed.index][0] = name
                if again:
                    value = _unpaired(self.storage.get(packed.index))
                    if value.__class__ is SavedValue:
                        value.label = "recomputed " + name
        if again and self.stop_early and len(self.recomputed_saved) >= self.needed:
            raise _StopRecomputation

    # ---- backward -------------------------------------------------------------------------
    def recompute(self, needed=None):
        """Run the segment again and keep what its ops save, in order, in ``storage``: the
        first ``needed`` saves (all the forward's when None) or, without early stop, all."""
        for i, a, version in self.versions:
            if a._version != version:
                raise RuntimeError(
                    f"checkpoint: input {i} of the checkpointed function was modified by an inplace "
                    f"operation after the forward (version {version}, now {a._version}); "
                    "recomputation would see the new values. Clone the input before modifying it.")
        # one recomputation per backward pass, as torch: a second unpack in the pass raises
        running = current_pass()
        self.recomputed_for = None if running is None else weakref.ref(running)
        self.unpacked = set()
        self.needed = len(self.forward_saved) if needed is None else needed
        self.stop_early = self.early_stop or needed is not None
        self.recomputed_saved = []
        self.storage = {}
        self.recomputed_ops = [] if self.debug else None
        rng_now = None
        if self.rng_state is not None:
            rng_now = get_rng_state()
            set_rng_state(self.rng_state)
        phase, self.phase = self.phase, "recompute"
        try:
            with self.recompute_context, recomputing(), observing(self), \
                    grad_mode.enable_grad(), saved_tensors_hooks(self.recompute_pack,
                                                                 self.recompute_unpack):
                # the inputs themselves, as torch does: a backward inside the segment reaches them
                self.function(*self.args, **self.kwargs)
        except _StopRecomputation:
            pass
        except BaseException:
            self.storage = {}
            raise
        finally:
            self.phase = phase
            if rng_now is not None:
                set_rng_state(rng_now)
        self.compare()

    def recompute_pack(self, t):
        entries = self.recomputed_saved
        index = len(entries)
        if index >= self.needed:
            if self.stop_early:   # the op that saved the last one recorded no event
                raise _StopRecomputation
            raise CheckpointError(
                "checkpoint: trying to save more tensors during recomputation than during the "
                f"original forward pass ({self.needed}); with early_stop=False the recomputation "
                "must save the same tensors as the forward" + self._listing(index))
        entries.append([None, t.data.shape, t.data.dtype])
        if index not in self.kept:
            value = SavedValue(t.data, "recomputed tensor") if reporting_saves() else t.data
            # as torch: a tensor that needs no gradient is handed back itself
            self.storage[index] = value if t.requires_grad else (value, t)
        return _Handle(self, index)

    def recompute_unpack(self, handle):  # only when the segment itself runs backward inside
        value = self.storage.get(handle.index)
        if value is None:
            raise CheckpointError("checkpoint: a recomputed tensor was unpacked after backward "
                                  "had already used it")
        return _recomputed(value)

    def compare(self):
        forward, recomputed = self.forward_saved[:self.needed], self.recomputed_saved
        if self.check == "none":
            return
        for i, (f, r) in enumerate(zip(forward, recomputed)):
            if f[1] != r[1] or f[2] != r[2]:
                self.storage = {}
                raise CheckpointError(
                    f"checkpoint: Recomputed values for the following tensors have different metadata "
                    f"than during the forward pass: saved tensor #{i}: the forward saved shape {list(f[1])} dtype {f[2]} "
                    f"(saved by {f[0] or 'an op outside the op table'}), the recomputation saved "
                    f"shape {list(r[1])} dtype {r[2]} (saved by {r[0] or 'an op outside the op table'}). "
                    "The checkpointed function must compute the same thing when called again with "
                    "the same inputs (no data-dependent shapes, no state changed between the calls); "
                    "determinism_check='none' skips this check" + self._listing(i))
        if len(forward) != len(recomputed):
            self.storage = {}
            i = min(len(forward), len(recomputed))
            longer, which = (forward, "forward") if len(forward) > len(recomputed) else (
                recomputed, "recomputation")
            raise CheckpointError(
                "checkpoint: A different number of tensors was saved during the original forward "
                f"and recomputation: the forward saved {len(forward)} tensors for backward but the "
                f"recomputation saved {len(recomputed)}; the first unmatched one is #{i}, saved "
                f"by {longer[i][0] or 'an op outside the op table'} in the {which} (shape "
                f"{list(longer[i][1])} dtype {longer[i][2]}). The checkpointed function must run "
                "the same ops when called again with the same inputs" + self._listing(i))

    # ---- accounting, messages ---------------------------------------------------------------
    def resident_buffers(self):
        buffers = {}
        for a in self.args:
            if isinstance(a, Tensor):
                root = root_buffer(a.data)
                buffers[id(root)] = root.nbytes
        for value in [t.data for t in self.kept.values()] + list(self.storage.values()):
            value = _unpaired(value)
            root = root_buffer(value.data if value.__class__ is SavedValue else value)
            buffers[id(root)] = root.nbytes
        return buffers

    @staticmethod
    def _name(entries, i):
        return (entries[i][0] if i < len(entries) else None) or "an op outside the op table"

    def _listing(self, mark=None):
        if not self.debug:
            return " (pass debug=True to see the op sequences of both runs)."
        forward, recomputed = self.forward_ops or [], self.recomputed_ops or []
        width = max([len(s) for s in forward] + [len("forward")]) + 2
        lines = [".", "", "You are seeing this error because you passed `debug=True` to checkpoint.",
                 "", "Ops recorded (forward | recomputation):",
                 f"     {'forward':<{width}}| recomputation"]
        for k in range(max(len(forward), len(recomputed))):
            f = forward[k] if k < len(forward) else ""
            r = recomputed[k] if k < len(recomputed) else ""
            flag = "  <-- differs" if f != r else ""
            lines.append(f"{k:>4} {f:<{width}}| {r}{flag}")
        saved_f = [f"#{i} {e[0]} {list(e[1])} {e[2]}" for i, e in enumerate(self.forward_saved)]
        saved_r = [f"#{i} {e[0]} {list(e[1])} {e[2]}" for i, e in enumerate(self.recomputed_saved or [])]
        lines.append("")
        lines.append("Tensors saved for backward (forward | recomputation):")
        for k in range(max(len(saved_f), len(saved_r))):
            f = saved_f[k] if k < len(saved_f) else ""
            r = saved_r[k] if k < len(saved_r) else ""
            lines.append(f"     {f:<{width}}| {r}{'  <-- first difference' if k == mark else ''}")
        return "\n".join(lines)

