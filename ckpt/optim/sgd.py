"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
import numpy as np

from ..autograd.tensor import Tensor
from .optimizer import Optimizer, _bump

__all__ = ["SGD"]


class SGD(Optimizer):
    """torch.optim.SGD's algorithm, step for step (``g`` the gradient, ``b`` the momentum
    buffer, ``mu`` the momentum, ``tau`` the dampening)::

        g = -g if maximize;  g = g + weight_decay * p
        b = g (first step)  or  b = mu * b + (1 - tau) * g
        g = g + mu * b (nesterov)  or  g = b
        p = p - lr * g

    >>> import ckpt
    >>> w = ckpt.nn.Parameter(ckpt.tensor([1.0, 2.0]))
    >>> opt = ckpt.optim.SGD([w], lr=0.1, momentum=0.9)
    >>> (w ** 2).sum().backward(); opt.step()
    >>> w.tolist()
    [0.800000011920929, 1.600000023841858]
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns ``closure()``'s loss if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            weight_decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data
                if group["maximize"]:
                    g = -g
                if weight_decay != 0:
                    g = g + weight_decay * p.data
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = Tensor(np.array(g, copy=True))
                    else:
                        b = buf.data
                        b *= momentum
                        if dampening == 0:
                            b += g
                        else:
                            b += (1 - dampening) * g
                    g = g + momentum * buf.data if nesterov else buf.data
                p.data -= lr * g
                _bump(p)
        return loss
