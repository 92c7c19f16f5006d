"""``checkpoint(..., use_reentrant=True)``: torch's older checkpoint, a custom Function.

Its forward runs the segment under ``no_grad`` and keeps the inputs; its backward runs the
segment again under ``enable_grad`` (ckpt's RNG replayed) and calls ``backward`` on what it
recomputed, inside the backward pass that reached it: the gradients of the segment's
parameters land in their ``.grad``, those of its inputs go back to the outer pass. Hence
torch's limits, kept here: only ``backward()`` without ``inputs=`` may run through it, and an
input that does not require grad gets no gradient (nor do parameters, if no input requires
grad).
"""
import warnings

from ..autograd import grad_mode
from ..autograd.engine import backward, current_pass
from ..autograd.function import Function
from ..autograd.random import get_rng_state, set_rng_state
from ..autograd.tensor import Tensor

__all__ = ["reentrant_checkpoint"]

_SAVED = object()   # in ``ctx.args``: the place of a tensor, kept by ``save_for_backward``


def reentrant_checkpoint(function, args, preserve_rng_state):
    """``function(*args)`` through torch's reentrant checkpoint (see the module doc).

    >>> import ckpt
    >>> from ckpt.runtime.reentrant import reentrant_checkpoint
    >>> x = ckpt.tensor([1.0, 2.0], requires_grad=True)
    >>> y = reentrant_checkpoint(lambda t: t.exp() * 2, (x,), True)
    >>> y.grad_fn.name()
    'ReentrantCheckpointBackward'
    >>> y.sum().backward(); [round(g, 3) for g in x.grad.tolist()]
    [5.437, 14.778]
    """
    return ReentrantCheckpoint.apply(function, preserve_rng_state, *args)


class ReentrantCheckpoint(Function):
    """The node a reentrant checkpoint leaves in the graph (torch's ``CheckpointFunction``)."""

    @staticmethod
    def forward(ctx, function, preserve_rng_state, *args):
        if not any(isinstance(a, Tensor) and a.requires_grad for a in args):
            warnings.warn("None of the inputs have requires_grad=True. Gradients will be None",
                          UserWarning, stacklevel=4)
        ctx.function = function
        ctx.rng_state = get_rng_state() if preserve_rng_state else None
        ctx.args = [_SAVED if isinstance(a, Tensor) else a for a in args]
        ctx.save_for_backward(*[a for a in args if isinstance(a, Tensor)])
        return function(*args)

    @staticmethod
    def backward(ctx, *grads):
        running = current_pass()
        if running is None or running.to_run is not None:
            raise RuntimeError(
                "When use_reentrant=True, checkpoint works only with .backward() without "
                "`inputs`, as in torch, where torch.utils.checkpoint is incompatible with .grad() "
                "or passing an `inputs` parameter to .backward(). To resolve this error, you can "
                "either set use_reentrant=False, or call .backward() without passing the `inputs` "
                "argument.")
        tensors = iter(ctx.saved_tensors)
        inputs = [_detached(next(tensors)) if a is _SAVED else a for a in ctx.args]
        outputs = _rerun(ctx.function, inputs, ctx.rng_state)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        pairs = [(o, g) for o, g in zip(outputs, grads) if isinstance(o, Tensor) and o.requires_grad]
        if not pairs:
            raise RuntimeError("none of output has requires_grad=True, this checkpoint() is not "
                               "necessary")
        backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None) + tuple(a.grad if isinstance(a, Tensor) else None for a in inputs)


def _detached(t):
    """``t`` cut from the graph, asking for a gradient if ``t`` did."""
    detached = t.detach()
    detached.requires_grad = t.requires_grad
    return detached


def _rerun(function, inputs, rng_state):
    """``function(*inputs)`` recording a graph, with the forward's RNG state when kept; the
    RNG state of the caller is restored after."""
    rng_now = get_rng_state()
    if rng_state is not None:
        set_rng_state(rng_state)
    try:
        with grad_mode.enable_grad():
            return function(*inputs)
    finally:
        set_rng_state(rng_now)
