"""Module backward hooks (``register_full_backward_hook``, ``register_full_backward_pre_hook``),
as torch runs them: the module's tensor inputs and outputs pass through an identity
``BackwardHookFunction``, whose nodes see the gradients with respect to the outputs (the
pre-hooks, then kept as ``grad_output``) and to the inputs (the full hooks, given both)."""
import warnings

import numpy as np

from ..autograd.function import Function
from ..autograd.tensor import Tensor


class BackwardHookFunction(Function):
    """The identity on several tensors: a node where a module's gradients can be seen."""

    @staticmethod
    def forward(ctx, *tensors):
        return tensors

    @staticmethod
    def backward(ctx, *grads):
        return grads


def _through_identity(values):
    """``values`` with the tensors that require grad passed through ``BackwardHookFunction``,
    and its node (None when no tensor requires grad)."""
    at = [i for i, v in enumerate(values) if isinstance(v, Tensor) and v.requires_grad]
    if not at:
        return values, None
    outs = BackwardHookFunction.apply(*(values[i] for i in at))
    outs = outs if isinstance(outs, tuple) else (outs,)
    values = list(values)
    for i, out in zip(at, outs):
        values[i] = out
    return values, outs[0].grad_fn


class BackwardHookCall:
    """One call of a module with backward hooks: wraps its inputs, then its outputs, and runs
    the hooks from the two identity nodes in backward: the pre-hooks before the outputs' node
    runs, the full hooks after the inputs' node did (a post-hook there, as torch)."""

    def __init__(self, module, pre_hooks, hooks):
        self.module, self.pre_hooks, self.hooks = module, pre_hooks, hooks
        self.n_inputs, self.grad_output, self.input_node = 0, None, None
        self.zeros = ()

    def wrap_inputs(self, args):
        tensors = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        self.n_inputs = len(tensors)
        wrapped, self.input_node = _through_identity([args[i] for i in tensors])
        if self.input_node is not None and self.hooks:
            at = [k for k, i in enumerate(tensors) if args[i].requires_grad]
            # torch's zeros for the others (its identity takes them all, as non-differentiable)
            self.zeros = [(k, args[i].shape, args[i].dtype) for k, i in enumerate(tensors)
                          if not args[i].requires_grad]
            self.input_node.register_hook(lambda grads, _: self._run_full_hooks(grads, at))
        args = list(args)
        for i, t in zip(tensors, wrapped):
            args[i] = t
        return tuple(args)

    def wrap_outputs(self, out):
        single = isinstance(out, Tensor)
        values = [out] if single else list(out) if isinstance(out, (tuple, list)) else None
        if values is None:
            return out
        wrapped, node = _through_identity(values)
        if node is not None:
            node.register_prehook(self._run_pre_hooks)
        if single:
            return wrapped[0]
        return type(out)(wrapped)

    def _run_pre_hooks(self, grad_output):
        grad_output = tuple(grad_output)
        for hook in self.pre_hooks:
            result = hook(self.module, grad_output)
            if result is not None:
                grad_output = tuple(result) if isinstance(result, (tuple, list)) else (result,)
        self.grad_output = grad_output
        if self.input_node is None and self.hooks:
            warnings.warn("Full backward hook is firing when gradients are computed with respect "
                          "to module outputs since no inputs require gradients. See "
                          "https://docs.pytorch.org/docs/main/generated/torch.nn.Module.html"
                          "#torch.nn.Module.register_full_backward_hook for more details.",
                          UserWarning, stacklevel=2)
            self._run_full_hooks((), ())
        return grad_output

    def _run_full_hooks(self, grads, at):
        """The full hooks, given the gradients of the inputs (``grads``, of the inputs ``at``;
        None for the others) and of the outputs; only when this pass went through the outputs
        (not, say, in a double backward reaching the inputs alone), as torch."""
        if self.grad_output is None:
            return None
        grad_input = [None] * self.n_inputs
        for k, shape, dtype in self.zeros if at else ():
            grad_input[k] = Tensor(np.zeros(shape, dtype))
        for k, g in zip(at, grads):
            grad_input[k] = g
        grad_input = tuple(grad_input)
        for hook in self.hooks:
            result = hook(self.module, grad_input, self.grad_output)
            if result is not None:
                result = tuple(result) if isinstance(result, (tuple, list)) else (result,)
                if len(result) != len(grad_input):
                    raise RuntimeError(f"Backward hook returned an invalid number of grad_input, "
                                       f"got {len(result)}, but expected {len(grad_input)}")
                grad_input = result
        self.grad_output = None
        return tuple(grad_input[k] for k in at)


def call_with_backward_hooks(module, pre_hooks, hooks, forward, args, kwargs):
    """``forward(*args, **kwargs)`` with ``module``'s backward hooks set up around it.

    >>> import ckpt
    >>> m = ckpt.nn.Linear(2, 1); seen = []
    >>> h = m.register_full_backward_hook(lambda mod, gi, go: seen.append(gi[0].shape))
    >>> m(ckpt.ones(3, 2, requires_grad=True)).sum().backward(); seen
    [(3, 2)]
    """
    call = BackwardHookCall(module, pre_hooks, hooks)
    return call.wrap_outputs(forward(*call.wrap_inputs(args), **kwargs))
