"""Check analytical gradients against central differences (torch.autograd.gradcheck).

Reverse mode (``check_backward_ad``) compares vector-Jacobian products, forward mode
(``check_forward_ad``) Jacobian-vector products, with the differences; ``fast_mode``
compares one random projection ``v^T J u`` instead of whole Jacobians. Beside the values,
as torch does: a backward rerun must give the same result (within ``nondet_tol``), a zero
gradient must give zero input gradients, batched gradients must match one by one
(``check_batched_grad``).
"""
import warnings

import numpy as np

from . import forward_ad
from .engine import grad
from .node import Node, record
from .tensor import Tensor, _wrap


class GradcheckError(RuntimeError):
    """Raised by gradcheck/gradgradcheck when a derivative disagrees with finite differences."""


def _as_tuple(x):
    return x if isinstance(x, tuple) else tuple(x) if isinstance(x, list) else (x,)


def _tensor_outputs(func, inputs):
    return tuple(o for o in _as_tuple(func(*inputs)) if isinstance(o, Tensor))


def _numel(t):
    """Elements of input ``t``: none for a non-Tensor (gradcheck passes those through)."""
    return t.data.size if isinstance(t, Tensor) else 0


def _differentiable(inputs):
    return [j for j, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]


# ---- finite differences -------------------------------------------------------------------

def _numerical_jacobians(func, inputs, outputs, eps):
    """One matrix per (output, input): rows index input elements, columns output elements."""
    jac = [[np.zeros((_numel(t), o.data.size)) for t in inputs] for o in outputs]
    for j in _differentiable(inputs):
        data = inputs[j].data  # perturbed in place, element by element (any memory layout)
        for k, idx in enumerate(np.ndindex(data.shape)):
            orig = data[idx]
            data[idx] = orig + eps
            plus = [o.data.copy() for o in _tensor_outputs(func, inputs)]
            data[idx] = orig - eps
            minus = [o.data.copy() for o in _tensor_outputs(func, inputs)]
            data[idx] = orig
            _check_same_dtype_and_shape(plus, minus, eps, f"on index {idx} ")
            for i in range(len(outputs)):
                jac[i][j][k] = ((plus[i] - minus[i]) / (2 * eps)).reshape(-1)
    return jac


def _check_same_dtype_and_shape(plus, minus, eps, on_index=""):
    """torch's AssertionError when perturbing an input changes an output's shape or dtype."""
    for a, b in zip(plus, minus):
        for what, x, y in (("shape", a.shape, b.shape), ("dtype", a.dtype, b.dtype)):
            if x != y:
                raise AssertionError(f"Expected `func` to return outputs with the same {what} "
                                     f"when inputs are perturbed {on_index}by {eps}, but got: "
                                     f"{what}s "
                                     f"{x} and {y}.")


def _numerical_directions(func, inputs, outputs, eps, directions):
    """Per (output, input j): the derivative of the output along ``directions[j]``, flat."""
    result = [[np.zeros(o.data.size) for _ in inputs] for o in outputs]
    for j in _differentiable(inputs):
        data = inputs[j].data
        orig = data.copy()
        step = (eps * directions[j]).astype(data.dtype)
        np.copyto(data, orig + step)
        plus = [o.data.copy() for o in _tensor_outputs(func, inputs)]
        np.copyto(data, orig - step)
        minus = [o.data.copy() for o in _tensor_outputs(func, inputs)]
        np.copyto(data, orig)
        _check_same_dtype_and_shape(plus, minus, eps)
        for i in range(len(outputs)):
            result[i][j] = ((plus[i] - minus[i]) / (2 * eps)).reshape(-1)
    return result


# ---- reverse mode -------------------------------------------------------------------------

def _vjp(out, inputs, cotangent):
    """Flat gradients of ``<cotangent, out>`` for every input (zeros where none flows)."""
    positions = _differentiable(inputs)
    grads = grad(out, [inputs[j] for j in positions], _wrap(cotangent.reshape(out.data.shape)),
                 retain_graph=True, allow_unused=True)
    flat = [np.zeros(t.data.size) if isinstance(t, Tensor) else np.zeros(0) for t in inputs]
    for j, g in zip(positions, grads):
        if g is not None:
            flat[j] = g.data.reshape(-1)
    return flat


def _analytical_jacobians(outputs, inputs, repeat=1):
    """``repeat`` computations of every (output, input) Jacobian, laid out as the numerical
    ones; a deterministic backward gives ``repeat`` equal copies."""
    runs = []
    for _ in range(repeat):
        jac = [[np.zeros((t.data.size, o.data.size)) if isinstance(t, Tensor) else np.zeros((0, 0))
                for t in inputs] for o in outputs]
        for i, out in enumerate(outputs):
            if not out.requires_grad:
                continue
            for k in range(out.data.size):
                onehot = np.zeros(out.data.size, dtype=out.data.dtype)
                onehot[k] = 1
                for j, g in enumerate(_vjp(out, inputs, onehot)):
                    if g.size:
                        jac[i][j][:, k] = g
        runs.append(jac)
    return runs


def _analytical_projections(outputs, inputs, directions, cotangents, repeat=1):
    """``repeat`` computations of ``v_i^T J_ij u_j`` for every (output i, input j)."""
    runs = []
    for _ in range(repeat):
        proj = [[np.zeros(()) for _ in inputs] for _ in outputs]
        for i, out in enumerate(outputs):
            if out.requires_grad:
                for j, g in enumerate(_vjp(out, inputs, cotangents[i])):
                    if g.size:
                        proj[i][j] = np.dot(g, directions[j].reshape(-1))
        runs.append(proj)
    return runs


# ---- forward mode -------------------------------------------------------------------------

def _duals(inputs, j, tangent):
    """``inputs`` detached (forward mode needs no graph, as torch's check), input ``j``
    carrying ``tangent``; inside a dual level."""
    duals = [t.detach() if isinstance(t, Tensor) else t for t in inputs]
    duals[j] = forward_ad.make_dual(duals[j], _wrap(tangent))
    return duals


def _jvp(func, inputs, j, tangent):
    """Flat tangents of every output when input ``j`` alone carries ``tangent``."""
    with forward_ad.dual_level():
        outs = _tensor_outputs(func, _duals(inputs, j, tangent.reshape(inputs[j].data.shape)))
        tangents = [forward_ad.unpack_dual(o).tangent for o in outs]
        return [np.zeros(o.data.size) if t is None else t.data.reshape(-1).copy()
                for o, t in zip(outs, tangents)]


def _forward_jacobians(func, inputs, outputs):
    jac = [[np.zeros((_numel(t), o.data.size)) for t in inputs] for o in outputs]
    for j in _differentiable(inputs):
        data = inputs[j].data
        for k in range(data.size):
            onehot = np.zeros(data.size, dtype=data.dtype)
            onehot[k] = 1
            for i, column in enumerate(_jvp(func, inputs, j, onehot)):
                jac[i][j][k] = column
    return jac


def _forward_directions(func, inputs, outputs, directions):
    result = [[np.zeros(o.data.size) for _ in inputs] for o in outputs]
    for j in _differentiable(inputs):
        for i, column in enumerate(_jvp(func, inputs, j, directions[j])):
            result[i][j] = column
    return result


# ---- the checks ---------------------------------------------------------------------------

class _Failure(Exception):
    """One failed check, with its message (raised or turned into False at the end)."""


_FAST_NOTE = ("\nin fast mode these are v^T J u for random vectors u (over the input) and v "
              "(over the output), not whole Jacobians")


def _compare(analytical, numerical, outputs, inputs, rtol, atol, fast_mode, mode=""):
    for i in range(len(outputs)):
        for j in _differentiable(inputs):
            a, n = analytical[i][j], numerical[i][j]
            if not np.allclose(a, n, rtol=rtol, atol=atol):
                raise _Failure(f"Jacobian {mode}mismatch for output {i} with respect to input {j},\n"
                               f"numerical:{n}\nanalytical:{a}\n" + (_FAST_NOTE if fast_mode else ""))


def _check_reentrant(first, second, nondet_tol):
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            if np.size(x) and np.max(np.abs(np.asarray(x) - np.asarray(y))) > nondet_tol:
                raise _Failure(
                    "Backward is not reentrant, i.e., running backward with same input and "
                    "grad_output multiple times gives different values, although analytical "
                    "gradient matches numerical gradient. The tolerance for nondeterminism was "
                    f"{nondet_tol}.")


def _zero_input_grads(outs, inputs):
    """The non-zero input gradients when ``outs`` get zero gradients (the other outputs none)."""
    positions = _differentiable(inputs)
    grads = grad(list(outs), [inputs[j] for j in positions],
                 [_wrap(np.zeros_like(o.data)) for o in outs], retain_graph=True,
                 allow_unused=True)
    return [g for g in grads if g is not None and np.any(g.data != 0)]


def _check_zero_gradients(func, outputs, inputs, check_undefined_grad):
    differentiable = [o for o in outputs if o.requires_grad]
    if not differentiable:
        return
    if _zero_input_grads(differentiable, inputs):
        raise _Failure("backward not multiplied by grad_output")
    if check_undefined_grad:
        _check_undefined_gradients(func, inputs, len(differentiable))


class UndefinedGrad(Node):
    """torch's node of the same name: passes on no gradient, as if none reached its input.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> ckpt.autograd.grad(record(UndefinedGrad, x.data, (x,)).sum(), x, allow_unused=True)
    (None,)
    """

    def vjp(self, grad):
        return None


def _check_undefined_gradients(func, inputs, n_outputs):
    """torch's check: backward with every output's gradient undefined, then (several
    outputs) one undefined at a time, the others zero, gives no input gradient but zeros."""
    for undefined in [None] + (list(range(n_outputs)) if n_outputs > 1 else []):
        outs = [record(UndefinedGrad, o.data, (o,)) if undefined in (None, k) else o
                for k, o in enumerate(o for o in _tensor_outputs(func, inputs) if o.requires_grad)]
        try:
            nonzero = _zero_input_grads(outs, inputs)
        except RuntimeError as error:
            _warn_undefined_check()
            raise _Failure("Expected backward function to handle undefined output grads. Please "
                           "look at \"Notes about undefined output gradients\" in "
                           "\"tools/autograd/derivatives.yaml\"") from error
        if nonzero:
            _warn_undefined_check()
            raise _Failure("Expected all input grads to be undefined or zero when all output grads "
                           "are undefined or zero. Please look at \"Notes about undefined output "
                           "gradients\" in \"tools/autograd/derivatives.yaml\"")


def _warn_undefined_check():
    warnings.warn("Backwards compatibility: New undefined gradient support checking feature is "
                  "enabled by default, but it may break existing callers of this function. If "
                  "this is true for you, you can call this function with "
                  "\"check_undefined_grad=False\" to disable the feature", UserWarning, stacklevel=5)


def _check_batched(outputs, inputs, rng, batch=3):
    positions = _differentiable(inputs)
    for i, out in enumerate(outputs):
        if not out.requires_grad:
            continue
        cotangents = rng.standard_normal((batch,) + out.data.shape).astype(out.data.dtype)
        try:
            batched = grad(out, [inputs[j] for j in positions], _wrap(cotangents),
                           retain_graph=True, allow_unused=True, is_grads_batched=True)
        except Exception as e:  # noqa: BLE001 -- reported as this check's failure
            raise _Failure(f"While computing batched gradients, got: {type(e).__name__}: {e}") from e
        for b in range(batch):
            single = _vjp(out, inputs, cotangents[b].reshape(-1))
            for j, g in zip(positions, batched):
                got = np.zeros(inputs[j].data.size) if g is None else g.data[b].reshape(-1)
                if not np.allclose(got, single[j], rtol=1e-7, atol=1e-10):
                    raise _Failure(f"For output {i} and input {j}: batched gradient {b} "
                                   f"mismatch:\nbatched:{got}\none by one:{single[j]}\n")


def _check_batched_forward(func, inputs, outputs, rng, batch=3):
    for j in _differentiable(inputs):
        data = inputs[j].data
        tangents = rng.standard_normal((batch,) + data.shape).astype(data.dtype)
        try:
            with forward_ad.dual_level(batch_size=batch):
                batched = [forward_ad.unpack_dual(o).tangent
                           for o in _tensor_outputs(func, _duals(inputs, j, tangents))]
                batched = [None if t is None else t.data.reshape(batch, -1).copy() for t in batched]
        except Exception as e:  # noqa: BLE001 -- reported as this check's failure
            raise _Failure(f"While computing batched forward gradients, got: "
                           f"{type(e).__name__}: {e}") from e
        for b in range(batch):
            for i, single in enumerate(_jvp(func, inputs, j, tangents[b].reshape(-1))):
                got = np.zeros(outputs[i].data.size) if batched[i] is None else batched[i][b]
                if not np.allclose(got, single, rtol=1e-7, atol=1e-10):
                    raise _Failure(f"For output {i} and input {j}: batched forward gradient {b} "
                                   f"mismatch:\nbatched:{got}\none by one:{single}\n")


def _check_dtypes(outputs, inputs):
    positions = _differentiable(inputs)
    for out in outputs:
        if out.requires_grad:
            grads = grad(out, [inputs[j] for j in positions], _wrap(np.ones_like(out.data)),
                         retain_graph=True, allow_unused=True)
            for j, g in zip(positions, grads):
                if g is not None and g.data.dtype != inputs[j].data.dtype:
                    raise _Failure(f"Gradient has dtype mismatch: input {j} is "
                                   f"{inputs[j].data.dtype}, its gradient {g.data.dtype}")


def _check_inputs(inputs, check_forward_ad, check_backward_ad, check_batched_forward_grad):
    if not (check_forward_ad or check_backward_ad):
        raise AssertionError("Expected at least one of check_forward_ad or check_backward_ad "
                             "to be True")
    if check_batched_forward_grad and not check_forward_ad:
        raise AssertionError("Setting check_batched_forward_grad=True requires check_forward_ad "
                             "to be True")
    positions = _differentiable(inputs)
    if not positions:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but "
                         "none of them have requires_grad=True.")
    for j in positions:
        if inputs[j].data.dtype != np.float64:
            warnings.warn(f"Input #{j} requires gradient and is not a double precision floating "
                          f"point (it is {inputs[j].data.dtype}): this check will likely fail; "
                          f"pass float64 inputs", UserWarning, stacklevel=3)


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
              check_batched_grad=False, check_batched_forward_grad=False, check_forward_ad=False,
              check_backward_ad=True, fast_mode=False, masked=None, seed=0):
    """True when the derivatives of ``func`` at ``inputs`` match central differences; else
    a ``GradcheckError`` (or False with ``raise_exception=False``). torch's keywords
    (``masked`` has no effect: ckpt has no sparse tensors); ``seed`` (ckpt's) seeds the random
    vectors of ``fast_mode`` and of the batched checks.

    Use float64 inputs (others warn, as in torch); every input with ``requires_grad`` is
    checked against every output.

    >>> import ckpt
    >>> x = ckpt.randn(3, dtype=ckpt.float64, requires_grad=True)
    >>> ckpt.autograd.gradcheck(ckpt.tanh, (x,), check_forward_ad=True, check_batched_grad=True)
    True
    >>> ckpt.autograd.gradcheck(ckpt.tanh, (x,), fast_mode=True)
    True
    """
    inputs = _as_tuple(inputs)
    _check_inputs(inputs, check_forward_ad, check_backward_ad, check_batched_forward_grad)
    try:
        _run_checks(func, inputs, eps, atol, rtol, nondet_tol, check_undefined_grad,
                    check_grad_dtypes, check_batched_grad, check_batched_forward_grad,
                    check_forward_ad, check_backward_ad, fast_mode, np.random.default_rng(seed))
    except _Failure as failure:
        if raise_exception:
            raise GradcheckError(str(failure)) from None
        return False
    return True


def _run_checks(func, inputs, eps, atol, rtol, nondet_tol, check_undefined_grad,
                check_grad_dtypes, check_batched_grad, check_batched_forward_grad,
                check_forward_ad, check_backward_ad, fast_mode, rng):
    outputs = _tensor_outputs(func, inputs)
    if fast_mode:
        directions = [rng.standard_normal(t.data.shape) if isinstance(t, Tensor) else None
                      for t in inputs]
        numerical = _numerical_directions(func, inputs, outputs, eps, directions)
    else:
        numerical = _numerical_jacobians(func, inputs, outputs, eps)
    if not any(o.requires_grad for o in outputs):  # as torch: then nothing may depend on inputs
        if any(np.any(n != 0) for row in numerical for n in row):
            raise _Failure("Numerical gradient for function expected to be zero")
        return
    if check_backward_ad:
        if fast_mode:
            cotangents = [rng.standard_normal(o.data.size).astype(o.data.dtype) for o in outputs]
            first, second = _analytical_projections(outputs, inputs, directions, cotangents, 2)
            projected = [[np.dot(cotangents[i], n) for n in row] for i, row in enumerate(numerical)]
            _compare(first, projected, outputs, inputs, rtol, atol, fast_mode)
        else:
            first, second = _analytical_jacobians(outputs, inputs, 2)
            _compare(first, numerical, outputs, inputs, rtol, atol, fast_mode)
        _check_reentrant(first, second, nondet_tol)
        _check_zero_gradients(func, outputs, inputs, check_undefined_grad)
        if check_grad_dtypes:
            _check_dtypes(outputs, inputs)
        if check_batched_grad:
            _check_batched(outputs, inputs, rng)
    if check_forward_ad:
        forward = (_forward_directions(func, inputs, outputs, directions) if fast_mode
                   else _forward_jacobians(func, inputs, outputs))
        _compare(forward, numerical, outputs, inputs, rtol, atol, fast_mode,
                 mode="computed with forward mode ")
        if check_batched_forward_grad:
            _check_batched_forward(func, inputs, outputs, rng)


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
                  check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False, masked=False,
                  seed=0):
    """gradcheck of the gradient: checks second derivatives (``create_graph=True`` rules).
    ``check_rev_over_rev`` checks them in reverse mode, ``check_fwd_over_rev`` in forward mode
    over the reverse-mode gradient; random ``grad_outputs`` come from ``seed``
    (non-contiguous with ``gen_non_contig_grad_outputs``).

    >>> import ckpt
    >>> x = ckpt.randn(3, dtype=ckpt.float64, requires_grad=True)
    >>> ckpt.autograd.gradgradcheck(ckpt.sin, (x,), check_fwd_over_rev=True)
    True
    """
    inputs = _as_tuple(inputs)
    outputs = _tensor_outputs(func, inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        grad_outputs = tuple(Tensor(_random_like(rng, o.data, gen_non_contig_grad_outputs),
                                    requires_grad=True) for o in outputs)
    grad_outputs = _as_tuple(grad_outputs)
    n_in = len(inputs)
    diff_positions = _differentiable(inputs)

    def first_derivative(*args):
        ins, gos = args[:n_in], args[n_in:]   # requires_grad back where forward mode took it
        ins = tuple(x.requires_grad_() if j in diff_positions else x for j, x in enumerate(ins))
        outs = _tensor_outputs(func, ins)
        diff_outs = [(o, g) for o, g in zip(outs, gos) if o.requires_grad]
        grads = grad([o for o, _ in diff_outs], [ins[j] for j in diff_positions],
                     [g for _, g in diff_outs], create_graph=True, allow_unused=True)
        return tuple(g if g is not None else _wrap(np.zeros_like(ins[j].data))
                     for g, j in zip(grads, diff_positions))

    return gradcheck(first_derivative, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, nondet_tol=nondet_tol,
                     check_undefined_grad=check_undefined_grad,
                     check_grad_dtypes=check_grad_dtypes, check_batched_grad=check_batched_grad,
                     check_forward_ad=check_fwd_over_rev, check_backward_ad=check_rev_over_rev,
                     fast_mode=fast_mode, seed=seed)


def _random_like(rng, array, non_contiguous):
    values = rng.standard_normal(array.shape).astype(array.dtype)
    if not non_contiguous or values.ndim == 0:
        return values
    wide = np.repeat(values, 2, axis=-1)  # every other element: a strided, non-contiguous view
    return wide[..., ::2]


# ---- torch's deprecated Jacobian helpers ---------------------------------------------------

def _deprecated(name):
    warnings.warn(f"`{name}` was part of PyTorch's private API and not meant to be exposed. We "
                  "are deprecating it and it will be removed in a future version of PyTorch. If "
                  "you have a specific use for this or feature request for this to be a stable "
                  "API, please file us an issue at https://github.com/pytorch/pytorch/issues/new",
                  FutureWarning, stacklevel=3)


def _check_grad_out(name, grad_out):
    if grad_out != 1.0:
        raise ValueError(f"Expected grad_out to be 1.0. {name} no longer supports values of "
                         "grad_out != 1.0.")


def get_numerical_jacobian(fn, inputs, target=None, eps=1e-3, grad_out=1.0):
    """Deprecated in torch (a FutureWarning): central-difference Jacobians of ``fn(inputs)``'s
    first output with respect to each tensor of ``target`` (default ``inputs``) that requires
    grad, each of shape (input elements, output elements).

    >>> import ckpt, warnings
    >>> x = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64, requires_grad=True)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     (j,) = get_numerical_jacobian(lambda xs: 3 * xs[0], (x,), eps=1e-6)
    >>> j.data.round(6).tolist()
    [[3.0, 0.0], [0.0, 3.0]]
    """
    _deprecated("get_numerical_jacobian")
    _check_grad_out("get_numerical_jacobian", grad_out)
    inputs = _as_tuple(inputs)
    targets = [t for t in _as_tuple(inputs if target is None else target)
               if isinstance(t, Tensor) and t.requires_grad]
    first = _as_tuple(fn(inputs))[0]
    # ``targets`` share memory with ``inputs``: perturbing one perturbs what ``fn`` reads
    jac = _numerical_jacobians(lambda *_: _as_tuple(fn(inputs))[:1], targets, [first], eps)
    return tuple(_wrap(m.astype(t.data.dtype)) for m, t in zip(jac[0], targets))


def get_analytical_jacobian(inputs, output, nondet_tol=0.0, grad_out=1.0):
    """Deprecated in torch (a FutureWarning): ``(jacobians, reentrant, sizes_ok, types_ok)``,
    the Jacobians of ``output`` with respect to each input that requires grad, computed twice
    by backward; ``reentrant`` says the two agree within ``nondet_tol``. ckpt's gradients
    always have their input's size and dtype, so the last two are True.

    >>> import ckpt, warnings
    >>> x = ckpt.tensor([1.0, 2.0], dtype=ckpt.float64, requires_grad=True)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     (j,), reentrant, _, _ = get_analytical_jacobian((x,), x * x)
    >>> j.tolist(), reentrant
    ([[2.0, 0.0], [0.0, 4.0]], True)
    """
    _deprecated("get_analytical_jacobian")
    _check_grad_out("get_analytical_jacobian", grad_out)
    diff = [t for t in _as_tuple(inputs) if isinstance(t, Tensor) and t.requires_grad]
    first, second = _analytical_jacobians([output], diff, repeat=2)
    reentrant = all(np.max(np.abs(a - b), initial=0.0) <= nondet_tol
                    for a, b in zip(first[0], second[0]))
    jacobians = tuple(_wrap(m.astype(t.data.dtype)) for m, t in zip(first[0], diff))
    return jacobians, reentrant, True, True
