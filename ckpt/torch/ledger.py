"""The logical memory ledger of a torch step: every storage an op creates or a graph saves,
each counted once, from its creation until its last tensor dies.

A ``TorchDispatchMode`` sees every aten op's outputs (below autograd, so the ops of the
backward pass too); each output tensor is registered with a ``weakref.finalize``, and a
storage is alive while any registered tensor on it is. Saved tensors go through
``saved_tensors_hooks``: the pack hook registers a detached alias of each saved
tensor, which the graph keeps alive until backward (or the graph's death) frees it. So the count is "saved tensors + live
activations + gradients in flight + whatever the caller registered (parameters, gradients,
inputs)", each storage once, views included — the quantity the planner's cost model adds
up. Temporaries a kernel allocates inside one aten op are not seen (the allocator peak,
measured beside it, does see them).

>>> import torch
>>> ledger = Ledger()
>>> with ledger:
...     a = torch.zeros(256)                 # 1 KiB
...     b = a.view(16, 16)                   # a view: the same storage
...     ledger.current
1024
>>> del a, b
>>> ledger.current, ledger.peak
(0, 1024)
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["Ledger", "storage_key", "storage_bytes"]


def storage_key(t):
    """What identifies the storage under tensor ``t``: its device and base address.

    >>> import torch
    >>> a = torch.zeros(4); storage_key(a[1:]) == storage_key(a)
    True
    """
    s = t.untyped_storage()
    return (str(t.device), s.data_ptr())


def storage_bytes(tensors):
    """Bytes of the distinct storages under ``tensors`` (each storage once).

    >>> import torch
    >>> a = torch.zeros(4)
    >>> storage_bytes([a, a[2:], torch.zeros(2)])
    24
    """
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and not t.is_meta:
            seen[storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


class Ledger(TorchDispatchMode):
    """Counts live storages (see the module doc): ``current`` and ``peak`` bytes; ``mark()``
    starts a new window and returns the peak of the one it closes.

    ``register(*tensors)`` adds tensors that existed before (parameters, their gradients,
    the input); use the ledger as a context manager around the step, and ``hooks()`` around
    the code whose saved tensors should count.
    """

    def __init__(self):
        super().__init__()
        self._refs = {}          # storage key -> [bytes, live registered tensors]
        self._finalizers = {}    # id(tensor) -> its weakref.finalize objects
        self.current = 0
        self.peak = 0
        self.window_peak = 0

    def register(self, *tensors):
        """Count ``tensors``' storages while they live (each storage once).

        >>> import torch
        >>> ledger = Ledger(); w = torch.zeros(8)
        >>> ledger.register(w, w[:4]); ledger.current
        32
        """
        for t in tensors:
            if isinstance(t, torch.Tensor) and not t.is_meta and t.layout == torch.strided:
                self._add(t)

    def _add(self, t):
        key = storage_key(t)
        entry = self._refs.get(key)
        if entry is None:
            nbytes = t.untyped_storage().nbytes()
            entry = self._refs[key] = [nbytes, 0]
            self.current += nbytes
            if self.current > self.peak:
                self.peak = self.current
            if self.current > self.window_peak:
                self.window_peak = self.current
        entry[1] += 1
        self._finalizers.setdefault(id(t), []).append(
            weakref.finalize(t, self._release, key, id(t)))

    def forget(self, t):
        """Stop counting tensor ``t`` (its storage still counts while other tensors hold
        it): for a tensor about to be pointed elsewhere with ``set_()``.

        >>> import torch
        >>> ledger = Ledger(); a = torch.zeros(4); ledger.register(a)
        >>> ledger.forget(a); ledger.current
        0
        """
        for f in self._finalizers.pop(id(t), []):
            f()

    def _release(self, key, tid=None):
        self._finalizers.pop(tid, None)
        entry = self._refs.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._refs[key]
            self.current -= entry[0]

    def mark(self):
        """Close the current window: return its peak and start a new one at ``current``.

        >>> import torch
        >>> ledger = Ledger()
        >>> with ledger:
        ...     t = torch.zeros(100); del t
        >>> ledger.mark(), ledger.window_peak
        (400, 0)
        """
        peak, self.window_peak = self.window_peak, self.current
        return peak

    def hooks(self):
        """Saved-tensor hooks that register what autograd saves (the graph holds it).

        >>> import torch
        >>> ledger = Ledger(); w = torch.ones(4, requires_grad=True)
        >>> with ledger, ledger.hooks():
        ...     y = (w * 2).exp()          # exp saves its 16-byte output
        >>> del y; ledger.current
        0
        """
        def pack(t):
            # a detached alias: autograd may hand over the op's own output, and keeping that
            # tensor (its grad_fn holds this saved value) would make a cycle gc cannot see
            alias = t.detach()
            self._add(alias)
            return alias
        return torch.autograd.graph.saved_tensors_hooks(pack, _unpack)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.layout == torch.strided:
                self._add(t)
        return out


def _unpack(t):
    return t
