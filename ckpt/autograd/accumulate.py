"""A backward pass's gradient added into a leaf's ``.grad``, as torch's AccumulateGrad adds
it: the first one becomes a ``.grad`` of the leaf's own (in the leaf's layout), later ones
are added into that buffer in place when nothing else holds it."""
import sys

import numpy as np

from .layout import laid_out_like
from .tensor import _wrap


def accumulate_array(t, g, shared):
    """``t.grad += g`` for a gradient array ``g`` of ``t``'s shape from a pass that builds
    no graph; ``shared``: something besides the engine holds ``g`` (one rule gave it to two
    inputs, or the caller passed it in), so a first ``.grad`` gets a copy.

    >>> import numpy as np, ckpt
    >>> x = ckpt.zeros(2, requires_grad=True)
    >>> accumulate_array(x, np.ones(2, np.float32), shared=False)
    >>> accumulate_array(x, np.ones(2, np.float32), shared=True); x.grad
    tensor([2., 2.])
    """
    grad = t._grad
    if grad is None:   # (unchecked, as in torch: the engine gave it the graph's shape and dtype)
        t._grad = _wrap(_in_layout_of(t, g.copy() if shared or not g.flags.writeable else g))
    else:
        _add_into(grad, g)


def accumulate_into(t, g, create_graph, in_place=True):
    """``t.grad += g`` for a Tensor ``g``, the way torch does: detached unless
    ``create_graph``, never aliasing a read-only broadcast view; without ``create_graph`` the
    sum lands in the same ``.grad`` Tensor (a held reference sees it, its version goes up;
    also when that ``.grad`` came from a ``create_graph`` pass), written into its buffer when
    no other array or Tensor holds that buffer, else into a new one. ``in_place=False`` (the
    ``.grad`` of a non-leaf: ``retain_grad``, ``backward(inputs=...)``) makes a new Tensor
    each time, the first a copy, as torch's retain-grad hook does.

    >>> import ckpt
    >>> x = ckpt.zeros(2, requires_grad=True)
    >>> accumulate_into(x, ckpt.ones(2), create_graph=False); x.grad
    tensor([1., 1.])
    """
    if not create_graph:
        g = g.detach() if g.grad_fn is not None or g.requires_grad else g
    grad = t._grad
    if grad is None:
        # a copy of the leaf's own, as torch clones a gradient it can't prove no one else
        # holds: a hook may keep the Tensor, a Tensor pass may give one to two leaves, and a
        # Tensor's holders don't show in its array's reference count
        # (unchecked, as in torch: the engine gave it the graph's shape and dtype, which an
        # ``x.data = `` of another dtype since does not change)
        if create_graph and g.requires_grad:
            t._grad = g.clone()
        elif in_place:
            t._grad = _wrap(_in_layout_of(t, g.data.copy()))
        else:
            t._grad = _wrap(g.data.copy())
    elif create_graph or not in_place:
        t._grad = grad + g
    else:
        _add_into(grad, g.data)


def _in_layout_of(t, data):
    """``data`` (an array no one else holds) in ``t``'s memory layout, as torch lays out a
    leaf's first gradient."""
    return data if data.strides == t._data.strides else laid_out_like(data, t._data)


def _add_into(grad, new):
    """Add the array ``new`` into the ``.grad`` Tensor ``grad``: into its buffer when only
    it holds that buffer (a view, say of a product's transpose, whose base nothing else
    holds, counts), else into a new one; its version goes up."""
    held = grad._data
    base = held.base
    if ((base is None or base.__class__ is np.ndarray and sys.getrefcount(base) <= _BASE_OF_ONE_VIEW)
            and held.flags.writeable and held.shape == new.shape
            and held.dtype == np.result_type(held, new)
            and sys.getrefcount(held) <= _HELD_BY_GRAD_ONLY):
        np.add(held, new, out=held)
    else:   # (in .grad's dtype, as torch adds into it)
        grad.data = (held + new).astype(held.dtype, copy=False)
    grad._vc[0] += 1


class _Holder:
    __slots__ = ("_data",)


def _count_held_by_grad_only():
    """sys.getrefcount of a ``.grad`` buffer only its Tensor holds, and of the base of a view
    no other array shares, as ``_add_into`` counts them on this interpreter (its statements,
    on a stand-in for the Tensor): 3 and 3 on CPython 3.11."""
    holder = _Holder()
    holder._data = np.empty(2)[:1]
    held = holder._data
    base = held.base
    counts = sys.getrefcount(held), sys.getrefcount(base)
    return counts


_HELD_BY_GRAD_ONLY, _BASE_OF_ONE_VIEW = _count_held_by_grad_only()
