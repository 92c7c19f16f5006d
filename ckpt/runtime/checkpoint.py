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
"""

from ..autograd import grad_mode
from ..autograd.events import (Observer, SavedValue, observing, recomputing,
                               reporting_saves)
from ..autograd.graph import root_buffer, saved_tensors_hooks
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor
from ..memory.foreign import reject_torch

__all__ = ["CheckpointError", "checkpoint"]

_CHECKS = ("default", "none")


class CheckpointError(RuntimeError):
    """Backward's recomputation of a checkpointed segment did not reproduce its forward.

    Raised when the recomputation saves tensors with another shape or dtype, or another
    number of them, than the forward did (the segment is not a pure function of its inputs:
    data-dependent shapes, state changed between the calls), or when a saved tensor is
    needed while the segment itself still runs.

    >>> import ckpt
    >>> issubclass(ckpt.CheckpointError, RuntimeError)
    True
    """


def checkpoint(function, *args, use_reentrant=None, preserve_rng_state=True,
               determinism_check="default", debug=False, **kwargs):
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
    that error. Under ``no_grad`` the function just runs. ckpt implements only the
    non-reentrant form: ``use_reentrant=True`` is refused.

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0)
    >>> layer = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.Tanh(), ckpt.nn.Dropout(0.5))
    >>> x = ckpt.randn(4, 8)
    >>> y = ckpt.checkpoint(layer, x)
    >>> ckpt.autograd.graph.saved_bytes(y) <= x.nbytes + 8 * 8 * 4   # just the input (and W)
    True
    >>> y.sum().backward()
    >>> layer[0].weight.grad.shape
    (8, 8)
    """
    if use_reentrant:
        raise ValueError("ckpt.checkpoint implements only the non-reentrant checkpoint "
                         "(torch's use_reentrant=False); pass use_reentrant=False or leave it out")
    if determinism_check not in _CHECKS:
        raise ValueError(f"determinism_check should be one of {', '.join(map(repr, _CHECKS))}, "
                         f"got {determinism_check!r}")
    reject_torch("ckpt.checkpoint", [function, args, kwargs],
                 "ckpt's checkpoint runs ckpt models on ckpt tensors",
                 "torch.utils.checkpoint or ckpt.torch.plan")
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got a {type(function).__name__}")
    if not grad_mode.is_grad_enabled():
        return function(*args, **kwargs)
    frame = _Frame(function, args, kwargs, preserve_rng_state, determinism_check, debug)
    return frame.forward()


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


class _Frame(Observer):
    """One checkpointed call: inputs, RNG state, what the forward saved (metadata only) and,
    during backward, the recomputed saved tensors waiting to be unpacked."""

    def __init__(self, function, args, kwargs, preserve_rng_state, check, debug):
        self.function = function
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
        self.storage = {}         # index -> recomputed array (or SavedBuffer), until unpacked
        self.forward_ops = [] if debug else None
        self.recomputed_ops = None
        self.phase = None         # "forward" or "recompute" while the segment runs

    # ---- forward --------------------------------------------------------------------------
    def forward(self):
        self.phase = "forward"
        try:
            with observing(self), saved_tensors_hooks(self.pack, self.unpack):
                return self.function(*self.args, **self.kwargs)
        finally:
            self.phase = None

    def pack(self, t):
        self.forward_saved.append([None, t.data.shape, t.data.dtype])
        return _Handle(self, len(self.forward_saved) - 1)

    def unpack(self, handle):
        value = self.storage.pop(handle.index, None)
        if value is None:
            if self.phase is not None:
                raise CheckpointError(
                    "checkpoint: a tensor saved inside the checkpointed function was needed for "
                    "backward while that function was still running (autograd.grad or backward "
                    "inside the segment); call them outside checkpoint(), or don't checkpoint "
                    "this function")
            self.recompute()
            value = self.storage.pop(handle.index, None)
            if value is None:
                raise CheckpointError(
                    f"checkpoint: the recomputation saved {len(self.recomputed_saved)} tensors but "
                    f"the forward saved {len(self.forward_saved)}; saved tensor "
                    f"#{handle.index} (saved by {self._name(self.forward_saved, handle.index)}) "
                    "has no recomputed value" + self._listing())
        return Tensor(value.data if value.__class__ is SavedValue else value)

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
        name = node.name()
        for packed in event.saved:
            if packed.__class__ is _Handle and packed.frame is self:
                entries = self.recomputed_saved if again else self.forward_saved
                entries[packed.index][0] = name
                if again:
                    value = self.storage.get(packed.index)
                    if value.__class__ is SavedValue:
                        value.label = "recomputed " + name

    # ---- backward -------------------------------------------------------------------------
    def recompute(self):
        """Run the segment again and keep what its ops save, in order, in ``storage``."""
        for i, a, version in self.versions:
            if a._version != version:
                raise RuntimeError(
                    f"checkpoint: input {i} of the checkpointed function was modified by an inplace "
                    f"operation after the forward (version {version}, now {a._version}); "
                    "recomputation would see the new values. Clone the input before modifying it.")
        self.recomputed_saved = []
        self.storage = {}
        self.recomputed_ops = [] if self.debug else None
        args = tuple(a.detach().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a
                     for a in self.args)
        rng_now = None
        if self.rng_state is not None:
            rng_now = get_rng_state()
            set_rng_state(self.rng_state)
        self.phase = "recompute"
        try:
            with recomputing(), observing(self), grad_mode.enable_grad(), saved_tensors_hooks(
                    self.recompute_pack, self.recompute_unpack):
                self.function(*args, **self.kwargs)
        except BaseException:
            self.storage = {}
            raise
        finally:
            self.phase = None
            if rng_now is not None:
                set_rng_state(rng_now)
        self.compare()

    def recompute_pack(self, t):
        entries = self.recomputed_saved
        index = len(entries)
        entries.append([None, t.data.shape, t.data.dtype])
        self.storage[index] = (SavedValue(t.data, "recomputed tensor") if reporting_saves()
                               else t.data)
        return _Handle(self, index)

    def recompute_unpack(self, handle):  # only when the segment itself runs backward inside
        value = self.storage.get(handle.index)
        if value is None:
            raise CheckpointError("checkpoint: a recomputed tensor was unpacked after backward "
                                  "had already used it")
        return Tensor(value.data if value.__class__ is SavedValue else value)

    def compare(self):
        forward, recomputed = self.forward_saved, self.recomputed_saved
        if self.check == "none":
            return
        for i, (f, r) in enumerate(zip(forward, recomputed)):
            if f[1] != r[1] or f[2] != r[2]:
                self.storage = {}
                raise CheckpointError(
                    f"checkpoint: recomputed values for saved tensor #{i} have different metadata "
                    f"than during the forward pass: the forward saved shape {list(f[1])} dtype {f[2]} "
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
                f"checkpoint: the forward saved {len(forward)} tensors for backward but the "
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
        for value in self.storage.values():
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
        lines = [".", "", "Ops recorded (forward | recomputation):",
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

