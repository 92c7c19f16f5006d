"""Saved-tensor hooks that keep copies: ``save_on_cpu`` and ``allow_mutation_on_saved_tensors``
(torch.autograd.graph's names)."""
import weakref
from contextlib import contextmanager

from .node import root_buffer, saved_tensors_hooks
from .ops.shape import write_watchers
from .tensor import _wrap


def _copy(t):
    return _wrap(t.data.copy())


class save_on_cpu(saved_tensors_hooks):
    """Within this context, tensors saved for backward are kept as copies in CPU memory.

    torch moves GPU tensors to (optionally pinned) host memory this way. ckpt's tensors are
    in CPU memory already, so here each saved tensor is *copied*: the same gradients, and
    more memory, not less (``pin_memory`` and ``device_type`` are accepted and change
    nothing). To move saved tensors out of RAM, see ``save_on_disk``.

    >>> import ckpt
    >>> x = ckpt.ones(3, requires_grad=True)
    >>> with ckpt.autograd.graph.save_on_cpu(pin_memory=True):
    ...     y = (x * x).sum()
    >>> y.backward(); x.grad.tolist()
    [2.0, 2.0, 2.0]
    """

    def __init__(self, pin_memory=False, device_type="cuda"):
        super().__init__(_copy, lambda copy: copy)


class _Handle:
    """What ``allow_mutation_on_saved_tensors``' pack hook stores: one per tensor and version
    saved, alive as long as a graph saves it; ``version`` is the tensor's then."""
    __slots__ = ("version", "context", "__weakref__")

    def __init__(self, version, context):
        self.version, self.context = version, context

    def resident_buffers(self):
        """``{buffer_id: nbytes}`` of what the graph keeps for it: the clone once made."""
        kept = self.context.cloned.get(self, self.context.original.get(self))
        if kept is None:
            return {}
        root = root_buffer(kept.data)
        return {id(root): root.nbytes}


_OUTSIDE = ("Trying to backward outside of the 'allow_mutation_on_saved_tensors' context in "
            "which the graph was originally recorded.")


class _AllowMutationOnSavedContext:
    """What ``allow_mutation_on_saved_tensors`` yields, with torch's bookkeeping and names:
    ``original`` and ``cloned`` map each handle to the tensor saved and, once it is written in
    place, to the clone made just before; ``tid_to_weakhandle`` maps (tensor id, buffer id,
    version) to its handle; ``sid_to_tid`` a buffer id to the tids saved from it. Entries
    go with their handle, when the graph that saves it is freed, and all of them at the
    context's exit."""

    def __init__(self):
        self.open = True
        self.original, self.cloned = weakref.WeakKeyDictionary(), weakref.WeakKeyDictionary()
        self.tid_to_weakhandle = weakref.WeakValueDictionary()
        self.sid_to_tid = {}

    def pack(self, t):
        sid = id(root_buffer(t.data))
        tid = (id(t), sid, t._version)
        self.sid_to_tid.setdefault(sid, set()).add(tid)
        handle = self.tid_to_weakhandle.get(tid)
        if handle is None:
            handle = self.tid_to_weakhandle[tid] = _Handle(t._version, self)
            self.original[handle] = t
        return handle

    pack.checks_versions = True  # (read by SavedTensor) unpack checks them, on the handle

    def unpack(self, handle):
        if not self.open or not (handle in self.cloned or handle in self.original):
            raise AssertionError(_OUTSIDE)
        if handle in self.cloned:
            return self.cloned[handle]
        t = self.original[handle]
        if t._version != handle.version:  # a write not made by an op (an optimizer's step)
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation that allow_mutation_on_saved_tensors did not see: it is at "
                f"version {t._version}; expected version {handle.version} instead.")
        return t

    def clone_saved(self, written):
        """Before an in-place write into ``written``: clone each saved tensor that shares its
        buffer, unless it was cloned already."""
        sid = id(root_buffer(written.data))
        live = {tid for tid in self.sid_to_tid.pop(sid, ()) if tid in self.tid_to_weakhandle}
        for tid in live:
            handle = self.tid_to_weakhandle[tid]
            if handle not in self.cloned:
                self.cloned[handle] = _copy(self.original.pop(handle))
        if live:
            self.sid_to_tid[sid] = live

    def clear(self):
        self.open = False
        for table in (self.original, self.cloned, self.tid_to_weakhandle, self.sid_to_tid):
            table.clear()


_open = []  # the allow_mutation_on_saved_tensors context open (they can't be nested)


@contextmanager
def allow_mutation_on_saved_tensors():
    """Within this context a tensor saved for backward may be changed in place afterwards:
    backward uses the value it had when saved, as in torch. Just before an op writes into a
    tensor, each saved tensor sharing its memory is cloned (once per version saved); a clone
    is freed with the graph that saves it. Backward must run inside the context. Writes that
    do not go through an op (an optimizer's step, ``nn.init``) are not seen: backward then
    raises the version error.

    >>> import ckpt
    >>> x = ckpt.ones(3, requires_grad=True)
    >>> with ckpt.autograd.graph.allow_mutation_on_saved_tensors() as ctx:
    ...     y = x * 1
    ...     s = y.sin()
    ...     _ = y.mul_(2)            # without the context: an error in backward
    ...     len(ctx.cloned)          # y's value before the write, for sin's backward
    ...     s.sum().backward()
    ...     len(ctx.cloned)          # freed with the graph
    1
    0
    >>> [round(v, 4) for v in x.grad.tolist()]
    [0.5403, 0.5403, 0.5403]
    """
    if _open:
        raise RuntimeError("allow_mutation_on_saved_tensors contexts cannot be nested")
    ctx = _AllowMutationOnSavedContext()
    _open.append(ctx)
    write_watchers.append(ctx.clone_saved)
    try:
        with saved_tensors_hooks(ctx.pack, ctx.unpack):
            yield ctx
    finally:
        write_watchers.remove(ctx.clone_saved)
        _open.clear()
        ctx.clear()
