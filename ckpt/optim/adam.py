"""Adam (with AMSGrad) and AdamW."""
import numpy as np

from ..autograd.tensor import Tensor
from .optimizer import Optimizer, _bump

__all__ = ["Adam", "AdamW"]


class Adam(Optimizer):
    """torch.optim.Adam's algorithm, step for step (``t`` counts steps per parameter)::

        g = -g if maximize;  g = g + weight_decay * p   (AdamW: p = p * (1 - lr * weight_decay))
        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        vmax = max(vmax, v) (amsgrad, then used instead of v)
        p = p - (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    State per parameter: ``step`` (a float32 scalar tensor), ``exp_avg``, ``exp_avg_sq``
    and, with ``amsgrad``, ``max_exp_avg_sq``.

    >>> import ckpt
    >>> w = ckpt.nn.Parameter(ckpt.tensor([1.0, -1.0]))
    >>> opt = ckpt.optim.Adam([w], lr=0.1)
    >>> (w ** 2).sum().backward(); opt.step()
    >>> [round(v, 4) for v in w.tolist()]
    [0.9, -0.9]
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns ``closure()``'s loss if given."""
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            weight_decay, amsgrad = group["weight_decay"], group["amsgrad"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                self._update(p, p.grad.data, lr, beta1, beta2, eps, weight_decay, amsgrad,
                             group["maximize"], group["decoupled_weight_decay"])
        return loss

    def _update(self, p, g, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled):
        state = self.state[p]
        if not state:
            state["step"] = Tensor(np.zeros((), np.float32))
            state["exp_avg"] = Tensor(np.zeros_like(p.data))
            state["exp_avg_sq"] = Tensor(np.zeros_like(p.data))
            if amsgrad:
                state["max_exp_avg_sq"] = Tensor(np.zeros_like(p.data))
        if maximize:
            g = -g
        step_t = state["step"].data
        step_t += 1
        if weight_decay != 0:
            if decoupled:
                p.data *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p.data
        m, v = state["exp_avg"].data, state["exp_avg_sq"].data
        scalar = p.data.dtype.type
        weight = scalar(1 - beta1)
        if weight < 0.5:            # torch's two-branch lerp(m, g, weight)
            m += weight * (g - m)
        else:
            m[...] = g - (g - m) * (scalar(1) - weight)
        v *= beta2
        v += (scalar(1 - beta2) * g) * g
        step = float(step_t)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2 ** 0.5
        if amsgrad:
            vmax = state["max_exp_avg_sq"].data
            np.maximum(vmax, v, out=vmax)
            v = vmax
        denom = np.sqrt(v) / bias_correction2_sqrt
        denom += eps
        p.data += (scalar(-step_size) * m) / denom
        _bump(p)


class AdamW(Adam):
    """Adam with decoupled weight decay (``p = p * (1 - lr * weight_decay)`` before the
    update), default ``weight_decay=1e-2`` as in torch.

    >>> import ckpt
    >>> w = ckpt.nn.Parameter(ckpt.ones(1)); w.grad = ckpt.zeros(1)
    >>> opt = ckpt.optim.AdamW([w], lr=0.1, weight_decay=0.5); opt.step(); w.tolist()
    [0.949999988079071]
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
