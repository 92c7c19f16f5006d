"""``checkpoint_sequential``: checkpoint a chain of modules in balanced segments."""
import warnings

from ..autograd.tensor import Tensor
from ..memory.foreign import reject_torch
from .checkpoint import checkpoint

__all__ = ["checkpoint_sequential", "segment_sizes"]


def segment_sizes(n, segments):
    """Split ``n`` functions into ``segments`` runs whose sizes differ by at most one, the
    longer ones first (torch gives the remainder to the last segment: 1,1,1,1,5 for 9 in 5).

    >>> segment_sizes(9, 5)
    [2, 2, 2, 2, 1]
    >>> segment_sizes(10, 2)
    [5, 5]
    """
    if isinstance(segments, bool) or not isinstance(segments, int):
        raise TypeError(f"segments must be an int, got {type(segments).__name__}")
    if not 1 <= segments <= n:
        raise ValueError(f"segments must be between 1 and the number of functions ({n}), "
                         f"got {segments}")
    base, extra = divmod(n, segments)
    return [base + 1] * extra + [base] * (segments - extra)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Run ``functions`` (a ``Sequential`` or a list of callables) one after another on
    ``input``, in ``segments`` balanced segments (``segment_sizes``); every segment but the
    last runs under ``checkpoint`` (the last one's activations would be recomputed right
    away, so it is kept, as torch does). ``kwargs`` go to ``checkpoint``
    (``preserve_rng_state``, ``determinism_check``, ``debug``).

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0)
    >>> net = ckpt.nn.Sequential(*[ckpt.nn.Linear(16, 16) for _ in range(4)])
    >>> x = ckpt.randn(2, 16)
    >>> y = ckpt.checkpoint_sequential(net, 2, x, use_reentrant=False)
    >>> bool((y == net(x)).all())
    True
    >>> y.sum().backward(); net[0].weight.grad.shape
    (16, 16)

    ``functions`` must be a sequence of callables and ``input`` one Tensor (as in torch):

    >>> ckpt.checkpoint_sequential(lambda t: t * 2, 1, x)
    Traceback (most recent call last):
    ...
    TypeError: checkpoint_sequential takes a ckpt.nn.Sequential or a list of modules/callables as functions, got a function; to checkpoint one function use ckpt.checkpoint(function, input)
    """
    reject_torch("ckpt.checkpoint_sequential", [functions, input],
                 "ckpt's checkpoint_sequential runs ckpt models on ckpt tensors",
                 "torch.utils.checkpoint.checkpoint_sequential or ckpt.torch.plan")
    if not hasattr(functions, "__iter__") or isinstance(functions, (str, bytes, dict)):
        kind = type(functions).__name__
        hint = ("; to checkpoint one function use ckpt.checkpoint(function, input)"
                if callable(functions) else "")
        raise TypeError("checkpoint_sequential takes a ckpt.nn.Sequential or a list of "
                        f"modules/callables as functions, got a {kind}{hint}")
    if not isinstance(input, Tensor):
        raise TypeError("checkpoint_sequential passes one input Tensor through the "
                        f"functions, got a {type(input).__name__}"
                        + ("; pass the tensor itself, not a list of tensors"
                           if isinstance(input, (list, tuple)) else ""))
    functions = list(functions)  # a Sequential iterates over its modules in order
    for i, f in enumerate(functions):
        if not callable(f):
            raise TypeError(f"checkpoint_sequential: functions[{i}] is a {type(f).__name__}, "
                            "expected a callable (a module or a function)")
    if not functions:
        raise ValueError("checkpoint_sequential needs at least one function")
    if use_reentrant is None:
        warnings.warn("ckpt.checkpoint_sequential: the use_reentrant parameter should be passed "
                      "explicitly (as torch's checkpoint_sequential asks); left out, ckpt runs "
                      "the non-reentrant checkpoint: pass use_reentrant=False", UserWarning,
                      stacklevel=2)
        use_reentrant = False
    sizes = segment_sizes(len(functions), segments)
    start = 0
    for size in sizes[:-1]:
        input = checkpoint(_Segment(functions[start:start + size]), input,
                           use_reentrant=use_reentrant, **kwargs)
        start += size
    return _Segment(functions[start:])(input)


class _Segment:
    """Calls a run of functions in order (what one checkpoint recomputes)."""
    __slots__ = ("functions",)

    def __init__(self, functions):
        self.functions = functions

    def __call__(self, x):
        for f in self.functions:
            x = f(x)
        return x
