"""Composable function transforms (torch.func's names): grad, grad_and_value, vjp, jvp,
jacrev, jacfwd, hessian.

Each transform takes a function and returns a function, so they nest:
``grad(grad(f))``, ``jacfwd(jacrev(f))`` (= ``hessian(f)``, forward over reverse),
``jacrev(jacfwd(f))``. Arguments selected by ``argnums`` may be Tensors or (nested)
tuples/lists/dicts of Tensors; results mirror that structure.

Where ckpt differs from torch.func: transforms are built on the tape (``autograd.grad``)
and on forward-AD levels, not on functorch's interpreter levels, so two forward transforms
cannot nest (``jacfwd(jacfwd(f))`` raises: one dual level at a time), and a gradient is
differentiable by an outer transform through the arguments passed to it (not through tensors
a closure captures). ``jacrev`` and ``jacfwd`` are vectorized: all rows (columns) of a
Jacobian go through one batched backward (forward) pass; ``chunk_size`` splits that batch.

>>> import ckpt
>>> from ckpt.func import grad
>>> x = ckpt.tensor(3.0)
>>> grad(grad(lambda x: x ** 3))(x).item()   # d2/dx2 x^3 = 6x
18.0
"""
import functools

import numpy as np

from .autograd import forward_ad as fwAD
from .autograd import grad_mode
from .autograd.engine import grad as _autograd_grad
from .autograd.jacobian import basis, forward_blocks, reverse_blocks
from .autograd.tensor import Tensor, _wrap

__all__ = ["grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian"]


class _Depth:
    """How many transforms are running: inside one, results stay differentiable (the outer
    transform may differentiate them)."""
    value = 0


# ---- pytrees: Tensors in (nested) tuples, lists and dicts ------------------------------------

def _flatten(tree):
    """``(leaves, rebuild)`` with ``rebuild(new_leaves)`` giving the same structure back."""
    if isinstance(tree, (tuple, list)):
        parts = [_flatten(t) for t in tree]
        kind = type(tree)

        def rebuild(leaves):
            out, i = [], 0
            for sub, (sub_leaves, sub_rebuild) in zip(tree, parts):
                out.append(sub_rebuild(leaves[i:i + len(sub_leaves)]))
                i += len(sub_leaves)
            return kind(out) if kind in (tuple, list) else kind(*out)
        return [leaf for sub_leaves, _ in parts for leaf in sub_leaves], rebuild
    if isinstance(tree, dict):
        keys = list(tree)
        leaves, rebuild_values = _flatten([tree[k] for k in keys])
        return leaves, lambda new: dict(zip(keys, rebuild_values(new)))
    return [tree], lambda new: new[0]


def _check_leaves(leaves, what, api):
    for leaf in leaves:
        if not isinstance(leaf, Tensor):
            raise TypeError(f"{api}: expected {what} to be Tensors (or tuples/lists/dicts of "
                            f"Tensors), got {type(leaf).__name__}")
        if leaf.dtype.kind not in "fc":
            raise TypeError(f"{api}: can only differentiate with respect to floating-point "
                            f"Tensors, got one of dtype {leaf.dtype}")


# ---- argument checks (torch.func's messages) -------------------------------------------------

def _check_callable(func, api):
    if not callable(func):
        raise TypeError(f"{api}: expected a callable as the function to transform, got "
                        f"{type(func).__name__}")


def _check_argnums(argnums, api):
    if isinstance(argnums, bool) or not isinstance(argnums, (int, tuple)):
        raise TypeError(f"{api}: argnums must be int or Tuple[int, ...], got: {type(argnums)}")
    if isinstance(argnums, tuple):
        if not argnums:
            raise ValueError(f"{api}: argnums must be non-empty")
        for a in argnums:
            if isinstance(a, bool) or not isinstance(a, int):
                raise TypeError(f"{api}: argnums must be int or Tuple[int, ...], got a tuple "
                                f"holding {type(a)}")


def _wrap_argnums(argnums, num_args, api):
    """``argnums`` as a tuple of non-negative positions, validated against ``num_args``."""
    items = argnums if isinstance(argnums, tuple) else (argnums,)
    out = []
    for a in items:
        if not -num_args <= a < num_args:
            raise ValueError(f"{api}: Got argnums={argnums}, but only {num_args} positional "
                             f"inputs")
        out.append(a % num_args)
    if len(set(out)) != len(out):
        raise ValueError(f"{api}: argnums elements must be unique, got {argnums}")
    return tuple(out)


def _split_aux(output, has_aux, api):
    if not has_aux:
        return output, None
    if not (isinstance(output, tuple) and len(output) == 2):
        raise RuntimeError(f"{api}(f, ...)(*args): output of function f should be a tuple: "
                           f"(output, aux) if has_aux is True")
    return output


def _tensors_in(args):
    return [t for a in args for t in _flatten(a)[0] if isinstance(t, Tensor)]


def _tracked(leaves):
    """Should results stay differentiable? Inside another transform, or when an argument
    is tracked by an outer reverse pass."""
    return _Depth.value > 0 or any(t.requires_grad for t in leaves)


def _for_reverse(t):
    """A fresh tensor for ``t`` whose gradient a backward pass can capture, keeping ``t``'s
    history (an outer reverse transform) and its tangent (an outer forward transform)."""
    if t.requires_grad:
        return t.view_as(t)
    fresh = t.detach().requires_grad_()
    tangent = fwAD.unpack_dual(t).tangent
    return fresh if tangent is None else fwAD.make_dual(fresh, tangent)


def _detach_tree(tree, keep):
    if keep:
        return tree
    leaves, rebuild = _flatten(tree)
    return rebuild([t.detach() if isinstance(t, Tensor) else t for t in leaves])


class _Transform:
    """Counts a running transform (see ``_Depth``)."""

    def __enter__(self):
        _Depth.value += 1

    def __exit__(self, *exc):
        _Depth.value -= 1


def _prepare(args, argnums, api):
    """Replace the arguments at ``argnums`` by fresh tensors for a backward pass; returns the
    new args, the differentiated leaves (per argnum) and their rebuild functions."""
    positions = _wrap_argnums(argnums, len(args), api)
    args = list(args)
    leaves_per, rebuilds = [], []
    for p in positions:
        leaves, rebuild = _flatten(args[p])
        _check_leaves(leaves, "the inputs selected by argnums", api)
        fresh = [_for_reverse(t) for t in leaves]
        args[p] = rebuild(fresh)
        leaves_per.append(fresh)
        rebuilds.append(rebuild)
    return args, leaves_per, rebuilds


def _zeros_like(t):
    return _wrap(np.zeros(t.shape, t.dtype))


# ---- grad ------------------------------------------------------------------------------------

def grad_and_value(func, argnums=0, has_aux=False):
    """A function returning ``(gradient, value)`` of ``func`` (which must return a 0-d
    Tensor) with respect to the arguments at ``argnums``; with ``has_aux``,
    ``func`` returns ``(value, aux)`` and the result is ``(gradient, (value, aux))``.

    >>> import ckpt
    >>> from ckpt.func import grad_and_value
    >>> g, v = grad_and_value(lambda x: (x * x).sum())(ckpt.tensor([1.0, 2.0]))
    >>> g.tolist(), v.item()
    ([2.0, 4.0], 5.0)
    """
    _check_callable(func, "grad_and_value")
    _check_argnums(argnums, "grad_and_value")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        if not args:
            raise ValueError("grad_and_value(f)(*args): f must be called with at least one "
                             "positional argument to differentiate")
        keep = _tracked(_tensors_in(args))
        with _Transform(), grad_mode.enable_grad():
            new_args, leaves_per, rebuilds = _prepare(args, argnums, "grad_and_value")
            flat = [t for leaves in leaves_per for t in leaves]
            output, aux = _split_aux(func(*new_args, **kwargs), has_aux, "grad_and_value")
            if not isinstance(output, Tensor):
                raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a "
                                   f"Tensor, got {type(output)}")
            if output.dim() != 0:
                raise RuntimeError(f"grad_and_value(f)(*args): Expected f(*args) to return a "
                                   f"scalar Tensor, got tensor with {output.dim()} dims (shape "
                                   f"{list(output.shape)}). Maybe you wanted to use the vjp or "
                                   f"jacrev APIs instead?")
            if output.requires_grad:
                grads = _autograd_grad(output, flat, create_graph=keep, allow_unused=True)
            else:
                grads = (None,) * len(flat)
            grads = [g if g is not None else _zeros_like(t) for g, t in zip(grads, flat)]
        per_arg, i = [], 0
        for leaves, rebuild in zip(leaves_per, rebuilds):
            per_arg.append(rebuild(grads[i:i + len(leaves)]))
            i += len(leaves)
        result = tuple(per_arg) if isinstance(argnums, tuple) else per_arg[0]
        value = (output, aux) if has_aux else output
        return _detach_tree(result, keep), _detach_tree(value, keep)

    return wrapper


def grad(func, argnums=0, has_aux=False):
    """A function returning the gradient of ``func`` (which must return a 0-d Tensor) with
    respect to the arguments at ``argnums`` (an int, or a tuple giving a tuple
    of gradients); with ``has_aux``, ``func`` returns ``(value, aux)`` and the result is
    ``(gradient, aux)``. Composable: ``grad(grad(f))`` is the second derivative.

    >>> import ckpt
    >>> from ckpt.func import grad
    >>> gx, gy = grad(lambda x, y: (x * y).sum(), argnums=(0, 1))(ckpt.tensor([1.0, 2.0]),
    ...                                                           ckpt.tensor([3.0, 4.0]))
    >>> gx.tolist(), gy.tolist()
    ([3.0, 4.0], [1.0, 2.0])
    """
    _check_callable(func, "grad")
    _check_argnums(argnums, "grad")
    inner = grad_and_value(func, argnums, has_aux)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        g, value = inner(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapper


# ---- vjp / jvp -------------------------------------------------------------------------------

def vjp(func, *primals, has_aux=False):
    """``(func(*primals), vjp_fn)``: ``vjp_fn(cotangents)`` returns ``cotangents^T J`` as a
    tuple with one entry per primal (cotangents mirror the output). ``vjp_fn`` may be called
    several times. With ``has_aux``: ``(output, vjp_fn, aux)``.

    >>> import ckpt
    >>> from ckpt.func import vjp
    >>> out, vjp_fn = vjp(lambda x: x ** 2, ckpt.tensor([1.0, 2.0]))
    >>> vjp_fn(ckpt.tensor([1.0, 1.0]))[0].tolist()
    [2.0, 4.0]
    """
    _check_callable(func, "vjp")
    if not primals:
        raise ValueError("vjp(f, *primals): expected at least one primal")
    keep = _tracked(_tensors_in(primals))
    with _Transform(), grad_mode.enable_grad():
        new_args, leaves_per, rebuilds = _prepare(primals, tuple(range(len(primals))), "vjp")
        flat_in = [t for leaves in leaves_per for t in leaves]
        output, aux = _split_aux(func(*new_args), has_aux, "vjp")
    out_leaves, _ = _flatten(output)
    _check_leaves(out_leaves, "the outputs of f", "vjp")

    def vjp_fn(cotangents):
        ct_leaves, _ = _flatten(cotangents)
        if len(ct_leaves) != len(out_leaves):
            raise RuntimeError(f"vjp_fn: expected cotangents with the structure of the output "
                               f"({len(out_leaves)} Tensors), got {len(ct_leaves)}")
        for i, (c, o) in enumerate(zip(ct_leaves, out_leaves)):
            if not isinstance(c, Tensor) or c.shape != o.shape:
                got = list(c.shape) if isinstance(c, Tensor) else type(c).__name__
                raise RuntimeError(f"vjp_fn: cotangent {i} must be a Tensor of the output's shape "
                                   f"{list(o.shape)}, got {got}")
        pairs = [(o, c) for o, c in zip(out_leaves, ct_leaves) if o.requires_grad]
        keep_grads = keep or _tracked(ct_leaves)
        with _Transform(), grad_mode.enable_grad():
            grads = (_autograd_grad([o for o, _ in pairs], flat_in, [c for _, c in pairs],
                                    retain_graph=True, create_graph=keep_grads,
                                    allow_unused=True) if pairs else (None,) * len(flat_in))
        grads = [g if g is not None else _zeros_like(t) for g, t in zip(grads, flat_in)]
        per_arg, i = [], 0
        for leaves, rebuild in zip(leaves_per, rebuilds):
            per_arg.append(rebuild(grads[i:i + len(leaves)]))
            i += len(leaves)
        return _detach_tree(tuple(per_arg), keep_grads)

    result = (_detach_tree(output, keep), vjp_fn)
    return result + (_detach_tree(aux, keep),) if has_aux else result


def jvp(func, primals, tangents, has_aux=False):
    """``(func(*primals), J tangents)`` by forward mode: ``primals`` and ``tangents`` are
    tuples of the same structure. With ``has_aux``: ``(output, jvp_out, aux)``.

    >>> import ckpt
    >>> from ckpt.func import jvp
    >>> out, t = jvp(lambda x: x.sin(), (ckpt.tensor([0.0]),), (ckpt.tensor([2.0]),))
    >>> t.tolist()
    [2.0]
    """
    _check_callable(func, "jvp")
    if not isinstance(primals, tuple):
        raise TypeError("jvp(f, primals, tangents): Expected primals to be a tuple. E.g. it "
                        "should be valid to call f(*primals).")
    if not isinstance(tangents, tuple):
        raise TypeError("jvp(f, primals, tangents): Expected tangents to be a tuple, like primals")
    p_leaves, rebuild = _flatten(primals)
    t_leaves, _ = _flatten(tangents)
    if len(p_leaves) != len(t_leaves) or len(primals) != len(tangents):
        raise RuntimeError("jvp(f, primals, tangents): Expected primals and tangents to have the "
                           "same python structure.")
    _check_leaves(p_leaves, "primals", "jvp")
    _check_leaves(t_leaves, "tangents", "jvp")
    for p, t in zip(p_leaves, t_leaves):
        if p.shape != t.shape:
            raise RuntimeError(f"jvp(f, primals, tangents): Expected primals and tangents to have "
                               f"the same shape, got {list(p.shape)} and {list(t.shape)}")
    keep = _tracked(p_leaves + t_leaves)
    with _Transform(), fwAD.dual_level():
        output, aux = _split_aux(func(*rebuild([fwAD.make_dual(p, t)
                                                for p, t in zip(p_leaves, t_leaves)])),
                                 has_aux, "jvp")
        out_leaves, out_rebuild = _flatten(output)
        _check_leaves(out_leaves, "the outputs of f", "jvp")
        unpacked = [fwAD.unpack_dual(o) for o in out_leaves]
    primals_out = out_rebuild([u.primal for u in unpacked])
    tangents_out = out_rebuild([u.tangent if u.tangent is not None else _zeros_like(u.primal)
                                for u in unpacked])
    result = (_detach_tree(primals_out, keep), _detach_tree(tangents_out, keep))
    return result + (_detach_tree(aux, keep),) if has_aux else result


# ---- Jacobians and the Hessian ---------------------------------------------------------------

def _check_chunk_size(chunk_size, api):
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"{api}: chunk_size should be a positive int or None, got {chunk_size!r}")


def _assemble(blocks_per_out, out_leaves, out_rebuild, in_leaves_per, in_rebuilds, argnums):
    """Nest the Jacobian blocks: the output's structure outside, argnums' inside."""
    per_out = []
    for o, blocks in zip(out_leaves, blocks_per_out):
        per_arg, i = [], 0
        for leaves, rebuild in zip(in_leaves_per, in_rebuilds):
            per_arg.append(rebuild(blocks[i:i + len(leaves)]))
            i += len(leaves)
        per_out.append(tuple(per_arg) if isinstance(argnums, tuple) else per_arg[0])
    return out_rebuild(per_out)


def jacrev(func, argnums=0, *, has_aux=False, chunk_size=None):
    """A function returning the Jacobian of ``func`` with respect to the arguments at
    ``argnums``, by reverse mode: block ``[output][argnum]`` has shape
    ``output.shape + input.shape``. All rows go through one batched backward pass
    (``chunk_size`` rows at a time if given; ``chunk_size=1`` is a loop).

    >>> import ckpt
    >>> from ckpt.func import jacrev
    >>> jacrev(lambda x: x ** 2)(ckpt.tensor([1.0, 3.0])).tolist()
    [[2.0, 0.0], [0.0, 6.0]]
    """
    _check_callable(func, "jacrev")
    _check_argnums(argnums, "jacrev")
    _check_chunk_size(chunk_size, "jacrev")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        keep = _tracked(_tensors_in(args))
        with _Transform(), grad_mode.enable_grad():
            new_args, leaves_per, rebuilds = _prepare(args, argnums, "jacrev")
            flat_in = [t for leaves in leaves_per for t in leaves]
            output, aux = _split_aux(func(*new_args, **kwargs), has_aux, "jacrev")
            out_leaves, out_rebuild = _flatten(output)
            _check_leaves(out_leaves, "the outputs of f", "jacrev")
            blocks = [[b if b is not None else
                       _wrap(np.zeros(tuple(o.shape) + tuple(t.shape), t.dtype))
                       for b, t in zip(reverse_blocks(o, flat_in, chunk_size, keep), flat_in)]
                      for o in out_leaves]
        jac = _assemble(blocks, out_leaves, out_rebuild, leaves_per, rebuilds, argnums)
        jac = _detach_tree(jac, keep)
        return (jac, _detach_tree(aux, keep)) if has_aux else jac

    return wrapper


def jacfwd(func, argnums=0, *, has_aux=False):
    """A function returning the Jacobian of ``func`` with respect to the arguments at
    ``argnums``, by forward mode: all columns go through one forward pass carrying a batch of
    basis tangents (``forward_ad.dual_level(batch_size=n)``). Block ``[output][argnum]``
    has shape ``output.shape + input.shape``.

    >>> import ckpt
    >>> from ckpt.func import jacfwd
    >>> jacfwd(lambda x: x.sum() * x)(ckpt.tensor([1.0, 2.0])).tolist()
    [[4.0, 1.0], [2.0, 5.0]]
    """
    _check_callable(func, "jacfwd")
    _check_argnums(argnums, "jacfwd")

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        positions = _wrap_argnums(argnums, len(args), "jacfwd")
        args = list(args)
        leaves_per, rebuilds = [], []
        for p in positions:
            leaves, rebuild = _flatten(args[p])
            _check_leaves(leaves, "the inputs selected by argnums", "jacfwd")
            leaves_per.append(leaves)
            rebuilds.append(rebuild)
        flat_in = [t for leaves in leaves_per for t in leaves]
        keep = _tracked(_tensors_in(args))
        total = sum(t.numel() for t in flat_in)
        if total == 0:
            raise ValueError("jacfwd: the inputs selected by argnums have no elements")
        with _Transform(), grad_mode.enable_grad(), fwAD.dual_level(batch_size=total):
            duals = [fwAD.make_dual(t, e) for t, e in zip(flat_in, basis(flat_in)[0])]
            i = 0
            for k, p in enumerate(positions):
                args[p] = rebuilds[k](duals[i:i + len(leaves_per[k])])
                i += len(leaves_per[k])
            output, aux = _split_aux(func(*args, **kwargs), has_aux, "jacfwd")
            out_leaves, out_rebuild = _flatten(output)
            _check_leaves(out_leaves, "the outputs of f", "jacfwd")
            unpacked = [fwAD.unpack_dual(o) for o in out_leaves]
        blocks = [forward_blocks(primal, tangent if tangent is not None else
                                 _wrap(np.zeros((total,) + tuple(primal.shape), primal.dtype)),
                                 flat_in)
                  for primal, tangent in unpacked]
        jac = _assemble(blocks, [u.primal for u in unpacked], out_rebuild, leaves_per, rebuilds,
                        argnums)
        jac = _detach_tree(jac, keep)
        return (jac, _detach_tree(aux, keep)) if has_aux else jac

    return wrapper


def hessian(func, argnums=0):
    """A function returning the Hessian of ``func`` (one-element output) with respect to the
    arguments at ``argnums``: ``jacfwd(jacrev(func, argnums), argnums)``, forward over
    reverse -- one backward pass whose gradient carries a batch of tangents.

    >>> import ckpt
    >>> from ckpt.func import hessian
    >>> hessian(lambda x: (x ** 3).sum())(ckpt.tensor([1.0, 2.0])).tolist()
    [[6.0, 0.0], [0.0, 12.0]]
    """
    _check_callable(func, "hessian")
    _check_argnums(argnums, "hessian")
    return jacfwd(jacrev(func, argnums), argnums)
