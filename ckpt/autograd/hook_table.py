"""``Tensor._backward_hooks``: torch's dict of a tensor's gradient hooks, read and set.

ckpt keeps a tensor's hooks in a list (a leaf's own, or its ``grad_fn``'s for its output
number); a dict set through ``_backward_hooks`` becomes that list's storage, so later
changes to the dict count, as in torch.
"""
from collections import OrderedDict


class HookTable(list):
    """A hook list kept in a user's dict: the engine and ``RemovableHandle`` use it as the
    list, the dict's values are the hooks."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def __iter__(self):
        return iter(list(self.table.values()))

    def __len__(self):
        return len(self.table)

    def __contains__(self, hook):
        return any(h is hook for h in self.table.values())

    def append(self, hook):
        self.table[id(hook)] = hook

    def remove(self, hook):
        del self.table[next(k for k, h in self.table.items() if h is hook)]


def backward_hooks(t):
    """The hooks ``register_hook`` gave ``t``, in order, as torch's dict; None when none.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> print(x._backward_hooks)
    None
    >>> _ = x.register_hook(abs); dict(x._backward_hooks)
    {0: <built-in function abs>}
    """
    hooks = _hook_list(t)
    if hooks.__class__ is HookTable:
        return hooks.table
    return None if hooks is None else OrderedDict(enumerate(hooks))


def set_backward_hooks(t, table):
    """``t._backward_hooks = table``: the values of the dict ``table`` (None: no hooks) are
    ``t``'s hooks from now on, as the dict changes.

    >>> import ckpt
    >>> from collections import OrderedDict
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> x._backward_hooks = OrderedDict(); x._backward_hooks["double"] = lambda g: g * 2
    >>> x.sum().backward(); x.grad.tolist()
    [2.0, 2.0]
    """
    hooks = None if table is None else HookTable(table)
    node = t.grad_fn
    if node is None:
        t._hooks = hooks
        if t._acc is not None and hooks is not None:
            t._acc._plain = False
    elif hooks is None:
        (node._tensor_hooks or {}).pop(t._output_nr, None)
    else:
        if node._tensor_hooks is None:
            node._tensor_hooks = {}
        node._tensor_hooks[t._output_nr] = hooks
        node._plain = False


def refuse_deletion(t):
    """``del t._backward_hooks`` fails, as in torch."""
    raise RuntimeError("Deletion of _backwards_hooks not allowed!")


def _hook_list(t):
    node = t.grad_fn
    return t._hooks if node is None else (node._tensor_hooks or {}).get(t._output_nr)
