"""Saved-tensor hooks, graph inspection and hooks over several tensors (torch.autograd.graph's
names)."""
from .engine import current_pass
from .node import (AccumulateGrad, GradientEdge, Node, RemovableHandle, SavedTensor, _HookStack,
                   root_buffer, saved_tensors_hooks)
from .offload import save_on_disk
from .saved_copies import allow_mutation_on_saved_tensors, save_on_cpu
from .tensor import Tensor


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


class disable_saved_tensors_hooks:
    """Within the block, entering ``saved_tensors_hooks`` (or ``checkpoint``, ``save_on_disk``,
    which use them) raises ``RuntimeError(error_message)``; entering the block while such
    hooks are in effect raises it too, as torch's does. ckpt's own memory tracking is not
    affected.

    >>> import ckpt
    >>> from ckpt.autograd import graph
    >>> with graph.disable_saved_tensors_hooks("this layer keeps its own buffers"):
    ...     with graph.saved_tensors_hooks(lambda t: t, lambda t: t):
    ...         pass
    Traceback (most recent call last):
    ...
    RuntimeError: this layer keeps its own buffers
    """

    def __init__(self, error_message):
        if not isinstance(error_message, str):
            raise TypeError("disable_saved_tensors_hooks(error_message) expects a str, got "
                            f"{type(error_message).__name__}")
        self.error_message = error_message

    def __enter__(self):
        if _HookStack.entered_by_user:
            raise RuntimeError(self.error_message)
        _HookStack.refusals.append(self.error_message)
        return self

    def __exit__(self, *exc):
        _HookStack.refusals.pop()
        return False

    def __call__(self, function):
        def disabled(*args, **kwargs):
            with disable_saved_tensors_hooks(self.error_message):
                return function(*args, **kwargs)
        return disabled


def increment_version(tensor):
    """Bump the version counter of ``tensor`` (or of each tensor of a list) as an in-place
    write would: a graph that saved it then refuses to run backward, as in torch.

    >>> import ckpt
    >>> t = ckpt.ones(2)
    >>> ckpt.autograd.graph.increment_version(t); t._version
    1
    """
    for t in (tensor if isinstance(tensor, (list, tuple)) else (tensor,)):
        if not isinstance(t, Tensor):
            raise TypeError(f"increment_version expects a Tensor or a list of Tensors, got a "
                            f"{type(t).__name__}")
        t._vc[0] += 1


def get_gradient_edge(tensor):
    """The ``GradientEdge`` (node, output_nr) where ``tensor``'s gradient enters the graph: its
    ``grad_fn``, or a leaf's ``AccumulateGrad``. ``autograd.grad`` takes one as an input,
    giving the gradient there even once the tensor itself is gone.

    >>> import ckpt
    >>> from ckpt.autograd import graph
    >>> p = ckpt.ones(2, requires_grad=True)
    >>> q = p * 3
    >>> edge = graph.get_gradient_edge(q)
    >>> edge.node.name(), edge.output_nr
    ('MulBackward0', 0)
    >>> ckpt.autograd.grad((q * q).sum(), edge)[0].tolist()
    [6.0, 6.0]
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"get_gradient_edge expects a Tensor, got a {type(tensor).__name__}")
    if not tensor.requires_grad:
        raise RuntimeError("It is not possible to get the gradient edge for a Tensor that does "
                           "not require gradients")
    if tensor.grad_fn is not None:
        return GradientEdge(tensor.grad_fn, tensor._output_nr)
    return GradientEdge(tensor._get_accumulator(), 0)


_MODES = ("all", "any")


def register_multi_grad_hook(tensors, fn, *, mode="all"):
    """Call ``fn`` once per backward pass over ``tensors``: with ``mode="all"``, once every
    gradient the pass computes for them is there, with the list of them (None for a tensor
    the pass does not reach); with ``mode="any"``, with the first one computed. Returns a
    handle whose ``remove()`` removes the hook. As torch's.

    >>> import ckpt
    >>> a, b, c = (ckpt.ones(2, requires_grad=True) for _ in range(3))
    >>> seen = []
    >>> handle = ckpt.autograd.graph.register_multi_grad_hook(
    ...     (a, b, c), lambda grads: seen.append([g if g is None else g.tolist() for g in grads]))
    >>> (a * 2 + b * 3).sum().backward()
    >>> seen
    [[[2.0, 2.0], [3.0, 3.0], None]]
    """
    if mode not in _MODES:
        raise ValueError(f"Expects mode to be one of {_MODES} but got {mode}")
    tensors = tuple(tensors)
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"register_multi_grad_hook: tensors[{i}] must be a Tensor that "
                               "requires grad")
    if not callable(fn):
        raise TypeError(f"register_multi_grad_hook: fn must be callable, got {type(fn).__name__}")
    state = _MultiGradState(tensors, fn, mode)
    return _MultiHandle([t.register_hook(state.hook(i)) for i, t in enumerate(tensors)])


class _MultiGradState:
    """What one multi-grad hook has seen in the pass running now."""

    def __init__(self, tensors, fn, mode):
        self.edges = [get_gradient_edge(t).node for t in tensors]
        self.fn, self.mode = fn, mode
        self.pass_ = None
        self.grads = self.expected = None

    def hook(self, i):
        def seen(grad):
            running = current_pass()
            if running is not self.pass_:
                self.pass_ = running
                self.grads = [None] * len(self.edges)
                self.expected = sum(1 for node in self.edges if running.reaches(node))
                if self.mode == "any":
                    self.fn(grad)
            if self.mode == "all":
                self.grads[i] = grad
                self.expected -= 1
                if self.expected == 0:
                    self.fn(list(self.grads))
        return seen


class _MultiHandle:
    """Removes every tensor hook of one ``register_multi_grad_hook``."""

    def __init__(self, handles):
        self.handles = handles

    def remove(self):
        for handle in self.handles:
            handle.remove()


__all__ = ["saved_tensors_hooks", "save_on_disk", "walk", "saved_bytes", "Node", "AccumulateGrad",
           "SavedTensor", "root_buffer", "grad_accumulator", "disable_saved_tensors_hooks",
           "increment_version", "get_gradient_edge", "GradientEdge", "register_multi_grad_hook"]

