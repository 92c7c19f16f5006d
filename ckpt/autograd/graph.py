"""Saved-tensor hooks and graph inspection (torch.autograd.graph's names)."""
from .node import AccumulateGrad, Node, SavedTensor, root_buffer, saved_tensors_hooks
from .offload import save_on_disk


def grad_accumulator(leaf):
    """The ``AccumulateGrad`` node of ``leaf`` if a recorded op made one (None otherwise).

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> grad_accumulator(x) is None
    True
    >>> y = x * 2
    >>> grad_accumulator(x) is y.grad_fn.next_functions[0][0]
    True
    """
    return leaf._acc


def walk(roots):
    """Every node reachable from ``roots`` (tensors or nodes), each once, parents first.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> [n.name() for n in ckpt.autograd.graph.walk((x * 2).sum())]
    ['SumBackward0', 'MulBackward0', 'AccumulateGrad']
    """
    from .tensor import Tensor
    roots = roots if isinstance(roots, (list, tuple)) else [roots]
    stack = []
    for r in roots:
        node = r.grad_fn if isinstance(r, Tensor) else r
        if node is not None:
            stack.append(node)
    seen, order = set(), []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        order.append(node)
        stack.extend(n for n, _ in reversed(node.next_functions) if n is not None and n not in seen)
    return order


def saved_bytes(roots):
    """Bytes the graph behind ``roots`` keeps for backward, each numpy buffer counted once.

    >>> import ckpt
    >>> x = ckpt.ones(4, requires_grad=True)
    >>> ckpt.autograd.graph.saved_bytes((x * x).exp().sum())
    32
    """
    buffers = {}
    for node in walk(roots):
        buffers.update(node.saved_buffers())
    return sum(buffers.values())


__all__ = ["saved_tensors_hooks", "save_on_disk", "walk", "saved_bytes", "Node", "AccumulateGrad",
           "SavedTensor", "root_buffer", "grad_accumulator"]

