"""Saved-tensor hooks that keep copies: ``save_on_cpu`` and ``allow_mutation_on_saved_tensors``
(torch.autograd.graph's names)."""
from contextlib import contextmanager

from .node import saved_tensors_hooks
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


def _copy_kept_apart(t):
    return _copy(t)


_copy_kept_apart.keeps_copies = True  # (read by SavedTensor) the copy has no version to check


class _MutationContext:
    """What ``allow_mutation_on_saved_tensors`` yields; its graphs backpropagate only while
    it is open."""
    nested = False  # whether one is open (they can't be nested, as in torch)

    def __init__(self):
        self.open = True

    def unpack(self, copy):
        if not self.open:
            raise AssertionError("Trying to backward outside of the "
                                 "'allow_mutation_on_saved_tensors' context in which the graph "
                                 "was originally recorded.")
        return copy


@contextmanager
def allow_mutation_on_saved_tensors():
    """Within this context a tensor saved for backward may be changed in place afterwards:
    backward uses the value it had when saved, as in torch. Backward must run inside the
    context. ckpt copies every saved tensor when it is saved (torch copies only the tensors
    that are then changed, when they are), so this costs a copy of each saved tensor.

    >>> import ckpt
    >>> x = ckpt.ones(3, requires_grad=True)
    >>> with ckpt.autograd.graph.allow_mutation_on_saved_tensors():
    ...     y = x * 1
    ...     s = y.sin()
    ...     _ = y.mul_(2)            # without the context: an error in backward
    ...     s.sum().backward()
    >>> [round(v, 4) for v in x.grad.tolist()]
    [0.5403, 0.5403, 0.5403]
    """
    if _MutationContext.nested:
        raise RuntimeError("allow_mutation_on_saved_tensors contexts cannot be nested")
    ctx = _MutationContext()
    hooks = saved_tensors_hooks(_copy_kept_apart, ctx.unpack)
    _MutationContext.nested = True
    try:
        with hooks:
            yield ctx
    finally:
        ctx.open = _MutationContext.nested = False
