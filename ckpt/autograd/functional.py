"""Derivatives of Python functions: vjp, jvp, hvp, vhp, jacobian, hessian.

torch.autograd.functional's names, arguments, errors and output nesting: ``inputs`` is a
Tensor or a tuple of Tensors and so is what ``func`` returns; a result indexed by outputs and
inputs is a tuple over outputs of tuples over inputs, each level unpacked when that side was
a single Tensor. Without ``create_graph`` the results are detached.

Where ckpt differs from torch (each says so in its docstring): ``jvp`` and ``hvp`` use true
forward mode (``forward_ad``) instead of the double-backward trick; ``jacobian``'s
``strategy="forward-mode"`` also works looped (``vectorize=False``), with ``strict=True`` and
with ``create_graph=True``.

``vectorize=True`` computes all rows (reverse mode) or all columns (forward mode) of a
Jacobian in one batched pass: the basis cotangents of each output go through one backward pass
(``autograd.grad(..., is_grads_batched=True)``), the basis tangents through one forward pass
(``forward_ad.dual_level(batch_size=B)``). ``vectorize=False`` loops over basis vectors. The
kernels are ``ckpt.autograd.jacobian``'s, which ``ckpt.func``'s jacrev and jacfwd use too.

>>> import ckpt
>>> from ckpt.autograd.functional import jacobian
>>> jacobian(lambda x: x ** 2, ckpt.tensor([1.0, 2.0])).tolist()
[[2.0, 0.0], [0.0, 4.0]]
"""
import numpy as np

from . import forward_ad as fwAD
from . import grad_mode
from .engine import grad as _engine_grad
from .jacobian import basis, forward_block, forward_blocks, reverse_blocks
from .tensor import Tensor, _wrap

__all__ = ["vjp", "jvp", "hvp", "vhp", "jacobian", "hessian"]

_STRATEGIES = ("forward-mode", "reverse-mode")


# ---- argument handling (torch's helpers, same messages) -----------------------------------

def _as_tuple(inp, arg_name, fn_name):
    """``(was_a_tuple, tuple_of_tensors)``; anything but a Tensor or a tuple of Tensors is a
    TypeError."""
    is_tuple = isinstance(inp, tuple)
    items = inp if is_tuple else (inp,)
    for i, el in enumerate(items):
        if not isinstance(el, Tensor):
            where = f"value at index {i}" if is_tuple else f"given {arg_name}"
            raise TypeError(f"The {arg_name} given to {fn_name} must be either a Tensor or a tuple "
                            f"of Tensors but the {where} has type {type(el)}.")
    return is_tuple, items


def _tuple_postprocess(res, to_unpack):
    """Unpack the levels of ``res`` whose side was a single Tensor (``to_unpack`` is one flag,
    or ``(outer_was_tuple, inner_was_tuple)``)."""
    if isinstance(to_unpack, tuple):
        if not to_unpack[1]:
            res = tuple(el[0] for el in res)
        if not to_unpack[0]:
            res = res[0]
    elif not to_unpack:
        res = res[0]
    return res


def _grad_preprocess(inputs, create_graph, need_graph):
    """Fresh tensors for the inputs: a differentiable alias when building a graph through
    an input that already requires grad, else a detached copy requiring grad iff ``need_graph``."""
    out = []
    for inp in inputs:
        if create_graph and inp.requires_grad:
            out.append(inp.view_as(inp))
        else:
            out.append(inp.detach().requires_grad_(need_graph))
    return tuple(out)


def _grad_postprocess(items, create_graph):
    """Detach every tensor of a (nested) tuple unless ``create_graph``."""
    if items and isinstance(items[0], Tensor):
        return items if create_graph else tuple(t.detach() for t in items)
    return tuple(_grad_postprocess(t, create_graph) for t in items)


def _size(shape):
    return f"ckpt.Size({list(shape)})"


def _validate_v(v, other, is_other_tuple):
    if len(other) != len(v):
        if is_other_tuple:
            raise RuntimeError(f"v is a tuple of invalid length: should be {len(other)} but got "
                               f"{len(v)}.")
        raise RuntimeError("The given v should contain a single Tensor.")
    for idx, (el_v, el_other) in enumerate(zip(v, other)):
        if el_v.shape != el_other.shape:
            prefix = f"Entry {idx} in " if is_other_tuple else ""
            raise RuntimeError(f"{prefix}v has invalid size: should be {_size(el_other.shape)} "
                               f"but got {_size(el_v.shape)}.")


def _check_requires_grad(items, input_type, strict):
    """In strict mode, reject outputs / gradients / Jacobians that do not depend on the inputs."""
    if not strict:
        return
    for i, t in enumerate(items):
        if t is None:
            raise RuntimeError(f"The output of the user-provided function is independent of input "
                               f"{i}. This is not allowed in strict mode.")
        if t.requires_grad:
            continue
        if input_type == "hessian":
            raise RuntimeError(
                f"The hessian of the user-provided function with respect to input {i} is "
                "independent of the input. This is not allowed in strict mode. You should ensure "
                "that your function is thrice differentiable and that the hessian depends on the "
                "inputs.")
        if input_type == "jacobian":
            raise RuntimeError(
                "While computing the hessian, found that the jacobian of the user-provided "
                f"function with respect to input {i} is independent of the input. This is not "
                "allowed in strict mode. You should ensure that your function is twice "
                "differentiable and that the jacobian depends on the inputs (this would be "
                "violated by a linear function for example).")
        raise RuntimeError(
            f"Output {i} of the user-provided function does not require gradients. The outputs "
            "must be computed in a differentiable manner from the input when running in strict "
            "mode.")


def _autograd_grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None):
    """``autograd.grad`` over the outputs that require grad (None per input if none does);
    unused inputs get None."""
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    kept = [(o, g) for o, g in zip(outputs, grad_outputs) if o is not None and o.requires_grad]
    if not kept:
        return (None,) * len(inputs)
    return _engine_grad([o for o, _ in kept], inputs, [g for _, g in kept],
                        retain_graph=retain_graph, create_graph=create_graph, allow_unused=True)


_INDEPENDENT = {
    "back": "The output of the user-provided function is independent of input {i}. This is not "
            "allowed in strict mode.",
    "double_back": "The jacobian of the user-provided function is independent of input {i}. "
                   "This is not allowed in strict mode.",
}


def _fill_in_zeros(grads, refs, strict, create_graph, stage):
    """Zeros (shaped like ``refs``) for missing gradients; in strict mode, an error instead."""
    out = []
    for i, g in enumerate(grads):
        if g is None:
            if strict:
                raise RuntimeError(_INDEPENDENT[stage].format(i=i))
            g = _wrap(np.zeros(refs[i].shape, refs[i].dtype))
        elif strict and create_graph and not g.requires_grad:
            what = "hessian" if stage == "double_back" else "jacobian"
            raise RuntimeError(f"The {what} of the user-provided function is independent of input "
                               f"{i}. This is not allowed in strict mode when create_graph=True.")
        out.append(g)
    return tuple(out)


def _default_v(v, refs, is_tuple, fn_name, what):
    """``v`` as a validated tuple; ``None`` only for a single one-element ``what``."""
    if v is not None:
        _, v = _as_tuple(v, "v", fn_name)
        _validate_v(v, refs, is_tuple)
        return v
    if len(refs) != 1 or refs[0].numel() != 1:
        raise RuntimeError(f"The vector v can only be None if the {what} is a single Tensor with "
                           "a single element.")
    return (_wrap(np.ones(refs[0].shape, refs[0].dtype)),)


def _inputs_and_v(inputs, v, create_graph, fn_name, need_graph):
    """The preamble of the input-side products (jvp, vhp, hvp): inputs and ``v`` as tuples,
    prepared for differentiation, ``v`` validated against the inputs."""
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", fn_name)
    inputs = _grad_preprocess(inputs, create_graph, need_graph=need_graph)
    if v is not None:
        _, v = _as_tuple(v, "v", fn_name)
        v = _grad_preprocess(v, create_graph, need_graph=False)
    v = _default_v(v, inputs, is_inputs_tuple, fn_name, "input to the user-provided function")
    return is_inputs_tuple, inputs, v


def _scalar_output(outputs, is_tuple, fn_name):
    if is_tuple or not isinstance(outputs[0], Tensor):
        raise RuntimeError(f"The function given to {fn_name} should return a single Tensor")
    if outputs[0].numel() != 1:
        raise RuntimeError(f"The Tensor returned by the function given to {fn_name} should "
                           f"contain a single element")


# ---- vector products ------------------------------------------------------------------------

def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), v^T J)``: the vector-Jacobian product at ``inputs`` (reverse mode).

    ``v`` matches the outputs (it may be None for a single one-element output).

    >>> import ckpt
    >>> from ckpt.autograd.functional import vjp
    >>> out, g = vjp(lambda x: x ** 2, ckpt.tensor([1.0, 2.0]), ckpt.tensor([1.0, 10.0]))
    >>> out.tolist(), g.tolist()
    ([1.0, 4.0], [2.0, 40.0])
    """
    with grad_mode.enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "vjp")
        inputs = _grad_preprocess(inputs, create_graph, need_graph=True)
        outputs = func(*inputs)
        is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function",
                                              "vjp")
        _check_requires_grad(outputs, "outputs", strict)
        if v is not None:
            _, v = _as_tuple(v, "v", "vjp")
            v = _grad_preprocess(v, create_graph, need_graph=False)
            _validate_v(v, outputs, is_outputs_tuple)
        elif len(outputs) != 1 or outputs[0].numel() != 1:
            raise RuntimeError("The vector v can only be None if the user-provided function "
                               "returns a single Tensor with a single element.")
    return _pull_back(outputs, outputs, inputs, v, create_graph, strict, "back",
                      is_outputs_tuple, is_inputs_tuple)


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), J v)``: the Jacobian-vector product at ``inputs``.

    ckpt differs from torch: one forward pass in true forward mode (``v`` rides along as the
    tangent of ``inputs``), not the double-backward trick. ``v`` matches the inputs (None for a
    single one-element input). In strict mode an output that carries no tangent (does not
    depend on the inputs) raises.

    >>> import ckpt
    >>> from ckpt.autograd.functional import jvp
    >>> out, t = jvp(lambda x: x ** 3, ckpt.tensor([1.0, 2.0]), ckpt.tensor([1.0, 1.0]))
    >>> t.tolist()
    [3.0, 12.0]
    """
    with grad_mode.enable_grad():
        is_inputs_tuple, inputs, v = _inputs_and_v(inputs, v, create_graph, "jvp", False)
        with fwAD.dual_level():
            outputs = func(*(fwAD.make_dual(x, t) for x, t in zip(inputs, v)))
            is_outputs_tuple, outputs = _as_tuple(outputs, "outputs of the user-provided function",
                                                  "jvp")
            unpacked = [fwAD.unpack_dual(o) for o in outputs]
        primals = tuple(u.primal for u in unpacked)
        tangents = []
        for i, (out, (primal, tangent)) in enumerate(zip(outputs, unpacked)):
            if tangent is None:
                if strict and out.requires_grad:  # independent of every input, so of input 0
                    raise RuntimeError("The output of the user-provided function is independent "
                                       "of input 0. This is not allowed in strict mode.")
                if strict:
                    raise RuntimeError(
                        f"Output {i} of the user-provided function does not require gradients. "
                        "The outputs must be computed in a differentiable manner from the input "
                        "when running in strict mode.")  # torch's words: no tangent here
                tangent = _wrap(np.zeros(out.shape, out.dtype))
            elif strict and create_graph and not tangent.requires_grad:
                raise RuntimeError(f"The jacobian of the user-provided function is independent of "
                                   f"input {i}. This is not allowed in strict mode when "
                                   f"create_graph=True.")
            tangents.append(tangent)
    return (_tuple_postprocess(_grad_postprocess(primals, create_graph), is_outputs_tuple),
            _tuple_postprocess(_grad_postprocess(tuple(tangents), create_graph), is_outputs_tuple))


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), v^T H)`` for a function with a single one-element output: reverse
    over reverse (the gradient of ``<grad func, v>``), as torch.

    >>> import ckpt
    >>> from ckpt.autograd.functional import vhp
    >>> out, hv = vhp(lambda x: (x ** 3).sum(), ckpt.tensor([1.0, 2.0]), ckpt.tensor([1.0, 1.0]))
    >>> out.item(), hv.tolist()
    (9.0, [6.0, 12.0])
    """
    with grad_mode.enable_grad():
        is_inputs_tuple, inputs, v = _inputs_and_v(inputs, v, create_graph, "vhp", True)
        is_outputs_tuple, outputs = _scalar_outputs(func, inputs, strict, "vhp")
        jac = _autograd_grad(outputs, inputs, create_graph=True)
        _check_requires_grad(jac, "jacobian", strict)
    return _pull_back(outputs, jac, inputs, v, create_graph, strict, "double_back",
                      is_outputs_tuple, is_inputs_tuple)


def _scalar_outputs(func, args, strict, name):
    """``func(*args)`` as ``(is_tuple, outputs)``, checked to be one one-element Tensor
    (that requires grad, when ``strict``): what ``vhp`` and ``hvp`` differentiate twice."""
    is_tuple, outputs = _as_tuple(func(*args), "outputs of the user-provided function", name)
    _check_requires_grad(outputs, "outputs", strict)
    _scalar_output(outputs, is_tuple, name)
    return is_tuple, outputs


def _pull_back(outputs, through, inputs, v, create_graph, strict, stage, is_outputs_tuple,
               is_inputs_tuple):
    """``(outputs, v^T d(through)/d(inputs))`` post-processed as torch's functional API
    returns them (``vjp``: through = outputs; ``vhp``: through = the gradient)."""
    with grad_mode.set_grad_enabled(True if create_graph else grad_mode.is_grad_enabled()):
        grads = _autograd_grad(through, inputs, v, create_graph=create_graph)
        result = _fill_in_zeros(grads, inputs, strict, create_graph, stage)
    return (_tuple_postprocess(_grad_postprocess(outputs, create_graph), is_outputs_tuple),
            _tuple_postprocess(_grad_postprocess(result, create_graph), is_inputs_tuple))


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """``(func(inputs), H v)`` for a function with a single one-element output.

    ckpt differs from torch: forward over reverse -- one forward pass carrying ``v`` as the
    tangent of ``inputs`` and one backward pass whose gradient carries ``H v`` as its tangent
    (torch uses two extra backward passes, the double-backward trick).

    >>> import ckpt
    >>> from ckpt.autograd.functional import hvp
    >>> out, hv = hvp(lambda x: (x ** 3).sum(), ckpt.tensor([1.0, 2.0]), ckpt.tensor([1.0, 0.0]))
    >>> hv.tolist()
    [6.0, 0.0]
    """
    with grad_mode.enable_grad():
        is_inputs_tuple, inputs, v = _inputs_and_v(inputs, v, create_graph, "hvp", True)
        with fwAD.dual_level():
            duals = tuple(fwAD.make_dual(x, t) for x, t in zip(inputs, v))
            is_outputs_tuple, outputs = _scalar_outputs(func, duals, strict, "hvp")
            jac = _autograd_grad(outputs, duals, create_graph=create_graph)
            jac = _fill_in_zeros(jac, inputs, strict, create_graph, "back")
            hv = [fwAD.unpack_dual(g).tangent for g in jac]
            primal = fwAD.unpack_dual(outputs[0]).primal
        if strict:
            _check_requires_grad([_Flag(t is not None) for t in hv], "jacobian", strict)
        result = tuple(t if t is not None else _wrap(np.zeros(x.shape, x.dtype))
                       for t, x in zip(hv, inputs))
    return (_grad_postprocess((primal,), create_graph)[0],
            _tuple_postprocess(_grad_postprocess(result, create_graph), is_inputs_tuple))


class _Flag:
    """Stands in for a tensor in ``_check_requires_grad``: does it depend on the inputs?"""

    def __init__(self, requires_grad):
        self.requires_grad = requires_grad


# ---- Jacobian and Hessian -------------------------------------------------------------------

def _one_hot(ref, k):
    e = np.zeros(ref.numel(), dtype=ref.dtype)
    e[k] = 1
    return _wrap(e.reshape(ref.shape))


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False,
             strategy="reverse-mode"):
    """The Jacobian of ``func`` at ``inputs``: ``J[i][j]`` of shape
    ``outputs[i].shape + inputs[j].shape`` (levels unpacked for single Tensors, as torch).

    ``strategy="reverse-mode"`` builds it row by row (one backward pass per output element,
    or one batched backward with ``vectorize=True``); ``"forward-mode"`` column by column (one
    forward pass per input element, or one batched forward with ``vectorize=True``). Reverse
    wins when outputs are few, forward when inputs are few.

    ckpt differs from torch: forward mode also works looped, with ``strict=True`` and with
    ``create_graph=True``. In reverse mode ``strict=True`` refuses ``vectorize=True``, as torch.

    >>> import ckpt
    >>> from ckpt.autograd.functional import jacobian
    >>> A = ckpt.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> jacobian(lambda x: A @ x, ckpt.ones(2), strategy="forward-mode", vectorize=True).tolist()
    [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    >>> [j.shape for j in jacobian(lambda a, b: a * b, (ckpt.ones(2), ckpt.ones(2)))]
    [(2, 2), (2, 2)]
    """
    if strategy not in _STRATEGIES:
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode". Hint: '
                         'If your function has more outputs than inputs, "forward-mode" tends to '
                         f'be more performant. Otherwise, prefer to use "reverse-mode". Got '
                         f'{strategy!r}.')
    with grad_mode.enable_grad():
        is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "jacobian")
        forward = strategy == "forward-mode"
        inputs = _grad_preprocess(inputs, create_graph, need_graph=not forward)
        if forward:
            outputs, is_outputs_tuple, jac = (_jacfwd_vectorized if vectorize else _jacfwd_looped)(
                func, inputs, strict, create_graph)
        else:
            outputs = func(*inputs)
            is_outputs_tuple, outputs = _as_tuple(
                outputs, "outputs of the user-provided function", "jacobian")
            _check_requires_grad(outputs, "outputs", strict)
            if strict and vectorize:
                raise RuntimeError("torch.autograd.functional.jacobian: `strict=True` and "
                                   "`vectorized=True` are not supported together. Please either "
                                   "set `strict=False` or `vectorize=False`.")
            jac = _jacrev(outputs, inputs, strict, create_graph, None if vectorize else 1)
    return _tuple_postprocess(_grad_postprocess(jac, create_graph),
                              (is_outputs_tuple, is_inputs_tuple))


def _construct_standard_basis_for(tensors, tensor_numels):
    """torch's helper, kept under its name: the identity over all the elements of
    ``tensors``, split in column blocks of ``tensor_numels``, each of its tensor's dtype.

    >>> import ckpt
    >>> [b.tolist() for b in _construct_standard_basis_for((ckpt.ones(1), ckpt.ones(1)), (1, 1))]
    [[[1.0], [0.0]], [[0.0], [1.0]]]
    """
    blocks, sizes = basis(tensors)
    return tuple(b.reshape(sum(sizes), n) for b, n in zip(blocks, tensor_numels))


def _independent(i, j):
    return RuntimeError(f"Output {i} of the user-provided function is independent of input {j}. "
                        "This is not allowed in strict mode.")


def _check_block(g, i, j, strict, create_graph):
    if strict and create_graph and g is not None and not g.requires_grad:
        raise RuntimeError(f"The jacobian of the user-provided function is independent of input "
                           f"{i}. This is not allowed in strict mode when create_graph=True.")
    if strict and g is None:
        raise _independent(i, j)


def _jacrev(outputs, inputs, strict, create_graph, chunk_size):
    """Per output, its rows in backward passes of ``chunk_size`` rows (1: looped, None: all
    at once, which needs no separate strict check: each output has its own pass, so a block
    is None exactly where the output does not reach the input)."""
    jac = []
    for i, out in enumerate(outputs):
        row = []
        for j, (block, inp) in enumerate(zip(reverse_blocks(out, inputs, chunk_size,
                                                            create_graph), inputs)):
            _check_block(block, i, j, strict, create_graph)
            row.append(block if block is not None else
                       _wrap(np.zeros(tuple(out.shape) + tuple(inp.shape), inp.dtype)))
        jac.append(tuple(row))
    return tuple(jac)


def _stack(items, shape):
    from .ops.shape import stack
    return stack(items) if items else _wrap(np.zeros((0,) + tuple(shape)))


def _output_tangents(outputs, strict, batch=None, input_index=None):
    """Primals and tangents of the outputs of a forward pass (zeros where one has none; in
    strict mode an error, naming ``input_index`` if only that input carried tangents)."""
    primals, tangents = [], []
    for i, out in enumerate(outputs):
        primal, tangent = fwAD.unpack_dual(out)
        if tangent is None:
            if strict and input_index is not None:
                raise _independent(i, input_index)
            if strict:
                raise RuntimeError(
                    f"Output {i} of the user-provided function is independent of the inputs (it "
                    "carries no forward-mode tangent). This is not allowed in strict mode.")
            tangent = _wrap(np.zeros(((batch,) if batch else ()) + tuple(out.shape), out.dtype))
        primals.append(primal)
        tangents.append(tangent)
    return primals, tangents


def _jacfwd_looped(func, inputs, strict, create_graph):
    """One forward pass per input element (a column of the Jacobian)."""
    columns = [[] for _ in inputs]  # per input: the list of per-element output tangents
    outputs = is_outputs_tuple = None
    for j, inp in enumerate(inputs):
        for k in range(inp.numel()):
            with fwAD.dual_level():
                args = tuple(fwAD.make_dual(x, _one_hot(x, k)) if jj == j else x
                             for jj, x in enumerate(inputs))
                is_outputs_tuple, outs = _as_tuple(
                    func(*args), "outputs of the user-provided function", "jacobian")
                primals, tangents = _output_tangents(outs, strict, input_index=j)
            outputs = outputs or primals
            columns[j].append(tangents)
    if outputs is None:  # every input is empty: one plain call for the outputs' shapes
        is_outputs_tuple, outputs = _as_tuple(func(*inputs), "outputs of the user-provided "
                                              "function", "jacobian")
    jac = []
    for i, out in enumerate(outputs):
        row = []
        for j, inp in enumerate(inputs):
            cols = [c[i] for c in columns[j]]
            block = _stack(cols, out.shape)  # (n_j, *out_i.shape)
            row.append(forward_block(block, out, inp))
        jac.append(tuple(row))
    return outputs, is_outputs_tuple, tuple(jac)


def _jacfwd_vectorized(func, inputs, strict, create_graph):
    """All columns at once: the basis tangents as one batch through one forward pass."""
    tangents, sizes = basis(inputs)
    if not sum(sizes):
        return _jacfwd_looped(func, inputs, strict, create_graph)
    with fwAD.dual_level(batch_size=sum(sizes)):
        args = tuple(fwAD.make_dual(x, t) for x, t in zip(inputs, tangents))
        is_outputs_tuple, outs = _as_tuple(func(*args), "outputs of the user-provided function",
                                           "jacobian")
        outputs, out_tangents = _output_tangents(outs, strict, batch=sum(sizes))
    jac = tuple(tuple(forward_blocks(out, tangent, inputs))
                for out, tangent in zip(outputs, out_tangents))
    return outputs, is_outputs_tuple, jac


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False,
            outer_jacobian_strategy="reverse-mode"):
    """The Hessian of a function with a single one-element output: ``H[i][j]`` of shape
    ``inputs[i].shape + inputs[j].shape`` (levels unpacked for a single input, as torch).

    The Jacobian of the gradient: the gradient is one backward pass with ``create_graph``;
    its Jacobian is taken in ``outer_jacobian_strategy`` -- ``"reverse-mode"`` (reverse over
    reverse) or ``"forward-mode"`` (forward over reverse: the tangents flow through the
    backward pass) -- looped or, with ``vectorize=True``, batched.

    >>> import ckpt
    >>> from ckpt.autograd.functional import hessian
    >>> hessian(lambda x: (x ** 3).sum(), ckpt.tensor([1.0, 2.0])).tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    is_inputs_tuple, inputs = _as_tuple(inputs, "inputs", "hessian")
    if outer_jacobian_strategy not in _STRATEGIES:
        raise ValueError('Expected strategy to be either "forward-mode" or "reverse-mode", got '
                         f'outer_jacobian_strategy={outer_jacobian_strategy!r}.')

    def single_output(*inp):
        out = func(*inp)
        is_out_tuple, t_out = _as_tuple(out, "outputs of the user-provided function", "hessian")
        _check_requires_grad(t_out, "outputs", strict)
        _scalar_output(t_out, is_out_tuple, "hessian")
        return out.reshape(())

    def gradient(*inp):
        if outer_jacobian_strategy == "forward-mode":  # keep the duals: they carry the tangents
            inp = tuple(t if t.requires_grad else t.requires_grad_(True) for t in inp)
        jac = jacobian(single_output, inp, create_graph=True)
        _check_requires_grad(jac if isinstance(jac, tuple) else (jac,), "jacobian", strict)
        return jac

    res = jacobian(gradient, inputs, create_graph=create_graph, strict=strict,
                   vectorize=vectorize, strategy=outer_jacobian_strategy)
    return _tuple_postprocess(res, (is_inputs_tuple, is_inputs_tuple))
