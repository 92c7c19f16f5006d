"""Check analytical gradients against central differences (torch.autograd.gradcheck)."""
import numpy as np

from .engine import grad
from .tensor import Tensor, _wrap


class GradcheckError(RuntimeError):
    """Raised by gradcheck/gradgradcheck when a derivative disagrees with finite differences."""


def _as_tuple(x):
    return x if isinstance(x, tuple) else tuple(x) if isinstance(x, list) else (x,)


def _numerical_jacobians(func, inputs, outputs, eps):
    """One matrix per (output, input): rows index input elements, columns output elements."""
    jac = [[np.zeros((t.data.size, o.data.size)) for t in inputs] for o in outputs]
    for j, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        data = t.data  # perturbed in place, element by element (any memory layout)
        for k, idx in enumerate(np.ndindex(data.shape)):
            orig = data[idx]
            data[idx] = orig + eps
            plus = [o.data.copy() for o in _as_tuple(func(*inputs))]
            data[idx] = orig - eps
            minus = [o.data.copy() for o in _as_tuple(func(*inputs))]
            data[idx] = orig
            for i in range(len(outputs)):
                jac[i][j][k] = ((plus[i] - minus[i]) / (2 * eps)).reshape(-1)
    return jac


def _analytical_jacobians(outputs, inputs):
    diff_inputs = [t for t in inputs if isinstance(t, Tensor) and t.requires_grad]
    jac = [[np.zeros((t.data.size, o.data.size)) for t in inputs] for o in outputs]
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            continue
        for k in range(out.data.size):
            onehot = np.zeros(out.data.size, dtype=out.data.dtype)
            onehot[k] = 1
            grads = grad(out, diff_inputs, _wrap(onehot.reshape(out.data.shape)),
                         retain_graph=True, allow_unused=True)
            pos = 0
            for j, t in enumerate(inputs):
                if isinstance(t, Tensor) and t.requires_grad:
                    if grads[pos] is not None:
                        jac[i][j][:, k] = grads[pos].data.reshape(-1)
                    pos += 1
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True):
    """True when the gradients of ``func`` at ``inputs`` match central differences.

    Use float64 inputs; every input with ``requires_grad`` is checked against every output.

    >>> import ckpt
    >>> x = ckpt.randn(3, dtype=ckpt.float64, requires_grad=True)
    >>> ckpt.autograd.gradcheck(ckpt.tanh, (x,))
    True
    """
    inputs = _as_tuple(inputs)
    for t in inputs:
        if isinstance(t, Tensor) and t.requires_grad and t.data.dtype != np.float64:
            raise GradcheckError(f"gradcheck expects float64 inputs for accurate differences, got "
                                 f"{t.data.dtype}; pass tensors with dtype=ckpt.float64")
    outputs = tuple(o for o in _as_tuple(func(*inputs)) if isinstance(o, Tensor))
    numerical = _numerical_jacobians(func, inputs, outputs, eps)
    analytical = _analytical_jacobians(outputs, inputs)
    for i in range(len(outputs)):
        for j in range(len(inputs)):
            a, n = analytical[i][j], numerical[i][j]
            if not np.allclose(a, n, rtol=rtol, atol=atol):
                if raise_exception:
                    raise GradcheckError(
                        f"Jacobian mismatch for output {i} with respect to input {j},\n"
                        f"numerical:{n}\nanalytical:{a}\n")
                return False
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=True, seed=0):
    """gradcheck of the gradient: checks second derivatives (``create_graph=True`` rules).

    >>> import ckpt
    >>> x = ckpt.randn(3, dtype=ckpt.float64, requires_grad=True)
    >>> ckpt.autograd.gradgradcheck(ckpt.sin, (x,))
    True
    """
    inputs = _as_tuple(inputs)
    outputs = tuple(o for o in _as_tuple(func(*inputs)) if isinstance(o, Tensor))
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = tuple(Tensor(rng.standard_normal(o.data.shape), requires_grad=True)
                             for o in outputs)
    grad_outputs = _as_tuple(grad_outputs)
    n_in = len(inputs)
    diff_positions = [j for j, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]

    def first_derivative(*args):
        ins, gos = args[:n_in], args[n_in:]
        outs = tuple(o for o in _as_tuple(func(*ins)) if isinstance(o, Tensor))
        diff_outs = [(o, g) for o, g in zip(outs, gos) if o.requires_grad]
        grads = grad([o for o, _ in diff_outs], [ins[j] for j in diff_positions],
                     [g for _, g in diff_outs], create_graph=True, allow_unused=True)
        return tuple(g if g is not None else _wrap(np.zeros_like(ins[j].data))
                     for g, j in zip(grads, diff_positions))

    return gradcheck(first_derivative, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
