"""Shape and indexing ops: views (sharing the input's version counter), concatenation,
indexing and the in-place ``__setitem__``.

Views and in-place writes follow torch: a view that carries a graph remembers its root base
and the view ops that rebuild it from the base (``_base``, ``_view_fn``); a non-leaf base
keeps weak references to its views (``_views``). After an in-place write through a view the
base's history is rebased onto the written view (``CopySlices``), and after any write into a
base or one of its views the other live views are re-derived from the new base, so every
alias differentiates through the write.
"""
import re
import weakref

import numpy as np

from .. import grad_mode
from ..node import Extensions, Node, record, share_node
from ..tensor import INFERENCE, Tensor, _wrap
from ._util import Batch, data_of, for_jvp, lead, normalize_dims, saved_tensor, total as _total

_replaying = [False]  # re-deriving views: the intermediate views are not registered


def _share_version_if_view(out, x, op=None, args=()):
    if np.may_share_memory(out.data, x.data):
        out._vc = x._vc
        meta = x._creation_meta
        if meta is INFERENCE or out._creation_meta is INFERENCE:
            return _inference_view(out, x)  # inference mode's new tensors are inference tensors
        if not grad_mode._State.enabled:
            out._creation_meta = ("no_grad", x.requires_grad or (
                meta is not None and meta[0] in _WHY_FORBIDDEN and meta[1]), x._vc[0])
        elif meta is not None and meta[0] in _WHY_FORBIDDEN:
            out._creation_meta = meta  # a view of a marked view is marked the same (torch)
        # a graph-less view is remembered only in grad mode, where a write through it can
        # give its base history (a view made under no_grad can't: torch refuses that write),
        # or in forward mode, where it can give the base a tangent
        if op is not None and not _replaying[0] and (
                out.grad_fn is not None or out._fw is not None or grad_mode._State.enabled
                or Extensions.forward_ad):
            _register_view(out, x, (op, args))
    return out


def _inference_view(out, x):
    """A view made in inference mode or of an inference tensor, as torch makes it: a view of an
    inference tensor is an inference tensor (and no view); a view of a normal tensor is a normal
    leaf view that requires grad as its base does, which can't be written in grad mode."""
    if x._creation_meta is INFERENCE:
        out._creation_meta = INFERENCE
        out.requires_grad, out.grad_fn = False, None
    else:
        out._creation_meta = ("inference_mode", x.requires_grad, x._vc[0])
        out.requires_grad = x.requires_grad
    return out


def _register_view(out, x, step):
    base = getattr(x, "_base", None)
    if base is None:
        base, steps = x, (step,)
    else:
        steps = x._view_fn + (step,)
    out._base, out._view_fn = base, steps
    # track the views of every base but a leaf requiring grad (never written in grad mode): a
    # write through one must reach the base and its other views, even one that gives a
    # graph-less base its first history (torch's CopySlices)
    if not base.requires_grad or base.grad_fn is not None or base._fw is not None:
        try:
            views = base._views
        except AttributeError:
            views = base._views = set()
        views.add(weakref.ref(out, views.discard))  # a dead view's ref leaves the set


def _replay(base, steps):
    """Apply a view's ops to ``base`` (a Tensor), recording as usual."""
    previous, _replaying[0] = _replaying[0], True
    try:
        for op, args in steps:
            base = op(base, *args)
    finally:
        _replaying[0] = previous
    return base


class _ViewCopySlices(Node):
    """The base's node after an in-place write through one of its views: the view's
    elements take their gradient from the written view, the rest from the old base."""

    def name(self):
        return "CopySlices"

    def vjp(self, g):
        if not data_of(g).flags.c_contiguous and any(op.__name__ == "as_strided"
                                                     for op, _ in self.steps):
            # as_strided reads storage: replay it on a C-ordered gradient (the base's own
            # layout when the base owns its memory, the usual case)
            g = g.contiguous() if g.__class__ is Tensor else np.ascontiguousarray(g)
        return g * _region_keep(self.base_shape, g.dtype, self.steps), _replay(g, self.steps)

    def jvp(self, tangents, primals, out):
        """The old base's tangent outside the view, the written view's tangent inside it."""
        t_base, t_view = tangents
        inside = None
        if t_view is not None:
            positions = _view_positions(self.base_shape, self.steps).reshape(-1)
            inside = index_into_zeros(t_view.reshape(-1), positions, (out.data.size,))
        return _total(None if t_base is None else
                      t_base * _region_keep(self.base_shape, out.data.dtype, self.steps),
                      None if inside is None else inside.reshape(out.shape))


def _view_positions(shape, steps):
    """The flat positions in a base of ``shape`` of the elements the view ``steps`` selects."""
    positions = _wrap(np.arange(int(np.prod(shape))).reshape(shape))
    with grad_mode.no_grad():
        return _replay(positions, steps).data


def _region_keep(shape, dtype, steps):
    """1 where a base of ``shape``'s elements lie outside the view ``steps`` selects, else 0
    (made when needed, from shapes: the node keeps no base-sized mask)."""
    keep = np.ones(int(np.prod(shape)), dtype=dtype)
    keep[_view_positions(shape, steps).ravel()] = 0
    return keep.reshape(shape)


def take_tangent(t, source):
    """Forward mode: ``t``, written in place, takes the tangent of ``source`` (the recorded
    result of the write), to be dropped when the dual level exits."""
    new = source._fw
    if new is not None:
        old = t._fw
        # in place, as torch: who holds the tangent sees it (but a tangent in a graph, for
        # reverse over forward, is replaced: a copy would not be recorded)
        if (old is not None and old.data.shape == new.data.shape and old.data.flags.writeable
                and old.data.dtype == new.data.dtype and not old.requires_grad
                and not new.requires_grad):
            np.copyto(old.data, new.data)
            return
        from ..forward_ad import _remember
        _remember(t, new)


def take_history(t, grad_fn, output_nr=0, written=True):
    """``t``, written in place (or, not ``written``, re-derived from its written base),
    becomes output ``output_nr`` of ``grad_fn``. A retained grad moves with it to the new
    version; tensor hooks stay with the old one, which for a written view never runs: torch's
    CopySlices sends the gradient past a view's old node to its base."""
    retains = t._retains_grad
    if retains:
        t.grad_fn._retain_hooks.pop(t._output_nr, None)
        t._retains_grad = False
    old = t.grad_fn
    if written and t._base is not None and old is not None and old._tensor_hooks:
        old._tensor_hooks.pop(t._output_nr, None)
    t.grad_fn, t._output_nr, t.requires_grad = grad_fn, output_nr, True
    if retains:
        t.retain_grad()


def rebase_views(t):
    """After a recorded in-place write into ``t`` (whose history already points at the
    write): rebase ``t``'s base if ``t`` is a view, then re-derive every live view from the
    base (``t`` too, as torch regenerates a written view's ``grad_fn`` from its base)."""
    base = getattr(t, "_base", None)
    root = t if base is None else base
    if base is not None:
        tracked = record(_ViewCopySlices, base.data, (base, t), base_shape=base.data.shape,
                         steps=t._view_fn)
        take_tangent(base, tracked)
        if tracked.grad_fn is not None:
            take_history(base, tracked.grad_fn)
    views = getattr(root, "_views", None)
    if views:
        for ref in list(views):
            v = ref()
            if v is None or (v is t and root.grad_fn is None):
                continue
            fresh = _replay(root, v._view_fn)
            take_tangent(v, fresh)
            if fresh.grad_fn is not None:
                take_history(v, fresh.grad_fn, fresh._output_nr, written=False)


def _zeros_for(tangent, primal):
    """``tangent``, or zeros shaped like ``primal`` where the input had no tangent."""
    return tangent if tangent is not None else _wrap(np.zeros_like(data_of(primal)))


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(int(s) for s in shape)


class _SameOpOnTangent(Node):
    """A linear op (views, sums of slices, ...): its JVP applies the op itself to the tangent,
    via ``self.tangent_op(t, out)``."""

    def jvp(self, tangents, primals, out):
        return self.tangent_op(tangents[0], out)


class ViewBackward0(_SameOpOnTangent):
    _batched_rule = True

    def vjp(self, g):
        return g.reshape(lead(g) + tuple(self.in_shape))

    def tangent_op(self, t, out):
        return t.reshape(lead(t) + out.shape)


def reshape(x, *shape):
    """The same elements in a new shape (a view when possible; one dim may be -1).

    >>> import ckpt
    >>> ckpt.arange(6).reshape(2, 3).shape
    (2, 3)
    """
    shape = _shape_arg(shape)
    d = data_of(x)
    try:
        out = d.reshape(shape)
    except ValueError:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {d.size}") from None
    if x.__class__ is not Tensor:  # arrays in, arrays out (array rules)
        return out
    return _share_version_if_view(record(ViewBackward0, out, (x,), in_shape=x.data.shape), x,
                                  reshape, (shape,))


def view(x, *shape):
    """``reshape`` that never copies: a shape the tensor's strides can't give as a view
    raises torch's error instead (``x.T.view(-1)``, say).

    >>> import ckpt
    >>> ckpt.arange(6).view(2, 3).shape
    (2, 3)
    """
    out = reshape(x, *shape)
    if x.data.size and not np.may_share_memory(out.data, x.data):  # reshape had to copy
        raise RuntimeError(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
    return out


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims ``start_dim..end_dim`` into one.

    >>> import ckpt
    >>> ckpt.ones(2, 3, 4).flatten(1).shape
    (2, 12)
    """
    shape = x.data.shape
    if not shape:
        return reshape(x, 1)
    (start,), (end,) = (normalize_dims(d, len(shape), "flatten") for d in (start_dim, end_dim))
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    return reshape(x, shape[:start] + (-1,) + shape[end + 1:])


def _batch_dims(dims):
    """A permutation of a primal's dims, extended to keep the batch dims in front."""
    nb = Batch.dims
    return tuple(range(nb)) + tuple(int(d) % len(dims) + nb for d in dims)


def _batch_dim(d):
    return d + Batch.dims if d >= 0 else d


class PermuteBackward0(_SameOpOnTangent):
    _batched_rule = True

    def vjp(self, g):
        return permute(g, *_batch_dims(np.argsort([d % len(self.dims) for d in self.dims])))

    def tangent_op(self, t, out):
        return permute(t, *_batch_dims(self.dims))


def permute(x, *dims):
    """Reorder the dimensions (a view).

    >>> import ckpt
    >>> ckpt.ones(2, 3, 4).permute(2, 0, 1).shape
    (4, 2, 3)
    """
    dims = _shape_arg(dims)
    if x.__class__ is not Tensor:
        return np.transpose(x, dims)
    if len(dims) != x.data.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not "
                           f"match the length of the desired ordering of dimensions i.e. input.dim() = "
                           f"{x.data.ndim} is not equal to len(dims) = {len(dims)}")
    if len(normalize_dims(dims, x.data.ndim, "permute")) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    out = np.transpose(x.data, dims)
    return _share_version_if_view(record(PermuteBackward0, out, (x,), dims=dims), x, permute, dims)


class TransposeBackward0(_SameOpOnTangent):
    _batched_rule = True

    def vjp(self, g):
        if g.__class__ is np.ndarray and g.ndim and not Batch.dims:   # (a weight's ``w.mT``:
            return g.swapaxes(self.dim0, self.dim1)   # the op's checks cost 0.7 µs a call)
        return self.tangent_op(g, None)

    def tangent_op(self, t, out):
        if self.dim0 == self.dim1:   # (a 0-d tensor's, whose gradient may carry batch dims)
            return t
        return transpose(t, _batch_dim(self.dim0), _batch_dim(self.dim1))


def transpose(x, dim0, dim1):
    """Swap two dimensions (a view).

    >>> import ckpt
    >>> ckpt.ones(2, 3).transpose(0, 1).shape
    (3, 2)
    """
    return _swapped(x, dim0, dim1, TransposeBackward0, transpose, (dim0, dim1))


class TBackward0(TransposeBackward0):
    """``x.t()``: a matrix transposed; a vector or a number as it is."""


def t(x):
    """``x.t()``: the transpose of a matrix, a vector or a number as it is (each a view, as
    torch's ``t``); more dims are refused.

    >>> import ckpt
    >>> ckpt.ones(2, 3).t().shape, ckpt.ones(3).t().shape
    ((3, 2), (3,))
    """
    ndim = data_of(x).ndim
    if ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {ndim}D")
    return _swapped(x, 0, 1 if ndim == 2 else 0, TBackward0, t, ())


def _swapped(x, dim0, dim1, node_cls, op, args):
    """``x`` with ``dim0`` and ``dim1`` swapped (a view), recorded as a ``node_cls`` and
    remembered as ``op(view's base, *args)`` for replaying the view."""
    d = data_of(x)
    try:
        out = d.swapaxes(dim0, dim1)
    except np.exceptions.AxisError:
        for dim in (dim0, dim1):
            normalize_dims(dim, d.ndim, "transpose")  # raises torch's IndexError
        if d.ndim:
            raise
        out = d[...]  # a 0-d tensor is its own transpose (dims 0 and -1 name its one place)
        dim0 = dim1 = 0
    if x.__class__ is not Tensor:
        return out
    return _share_version_if_view(record(node_cls, out, (x,), dim0=dim0, dim1=dim1), x, op, args)


class ExpandBackward0(_SameOpOnTangent):
    _batched_rule = True

    def vjp(self, g):
        return _beside_batch(sum_to, g, tuple(self.in_shape))

    def tangent_op(self, t, out):
        return _beside_batch(expand, t, out.shape)


def _beside_batch(to, x, shape):
    """``to(x, shape)`` (``expand`` or ``sum_to``) for a gradient or tangent ``x`` that may
    carry batch dims, kept in front: the dims the two shapes don't share are the first of
    the primal's, next to the batch dims (numpy would align them with the batch dims)."""
    batch, dims = lead(x), x.shape[Batch.dims:]
    missing = len(shape) - len(dims)
    if not batch or not missing:
        return to(x, batch + shape)
    if missing > 0:
        return to(x.reshape(batch + (1,) * missing + dims), batch + shape)
    return to(x, batch + (1,) * -missing + shape).reshape(batch + shape)


def expand(x, *sizes):
    """Broadcast to ``sizes`` without copying (-1 keeps a dim).

    >>> import ckpt
    >>> ckpt.ones(3, 1).expand(3, 4).shape
    (3, 4)
    """
    sizes = _shape_arg(sizes)
    if x.__class__ is not Tensor:
        return np.broadcast_to(x, sizes)
    lead = len(sizes) - x.data.ndim
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or "
                           f"equal to the number of dimensions in the tensor ({x.data.ndim})")
    target = tuple(x.data.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    if target == x.data.shape:
        if not x.requires_grad:
            return x
        return _share_version_if_view(record(ExpandBackward0, x.data, (x,), in_shape=x.data.shape), x,
                                      expand, (target,))
    out = _broadcast(x.data, target)
    return _share_version_if_view(record(ExpandBackward0, out, (x,), in_shape=x.data.shape), x,
                                  expand, (target,))


def _broadcast(d, target):
    """``d`` broadcast to ``target``: a view that is read-only (the engine copies such a
    gradient before accumulating into it) until an in-place write makes it writable
    (``writable``): a write reaches every element sharing the memory, as in torch."""
    lead = len(target) - d.ndim
    if any(n != 1 and n != t for n, t in zip(d.shape, target[lead:])):
        raise RuntimeError(f"expand: the expanded size {list(target)} is not compatible with the "
                           f"existing size {list(d.shape)}")
    strides = (0,) * lead + tuple(0 if n == 1 else s for n, s in zip(d.shape, d.strides))
    if d.flags.c_contiguous and d.size:
        out = np.ndarray(target, d.dtype, d, 0, strides)
    else:
        out = np.lib.stride_tricks.as_strided(d, target, strides)
    out.flags.writeable = False
    return out


def writable(d):
    """``d``, made writable if it is a read-only view of writable memory (an expanded tensor);
    an array that can't be (a read-only buffer) stays as it is, for numpy's error."""
    if not d.flags.writeable:
        try:
            d.flags.writeable = True
        except ValueError:
            pass
    return d


class SumToBackward0(_SameOpOnTangent):
    _batched_rule = True

    def vjp(self, g):
        return _beside_batch(expand, g, tuple(self.in_shape))

    def tangent_op(self, t, out):
        return _beside_batch(sum_to, t, out.shape)


def sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (the reverse of broadcasting).

    >>> import ckpt
    >>> ckpt.sum_to(ckpt.ones(2, 3), (1, 3)).tolist()
    [[2.0, 2.0, 2.0]]
    """
    shape = tuple(shape)
    d = x.data if x.__class__ is Tensor else x
    if d.shape == shape:
        return x
    lead = d.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and d.shape[i + lead] != 1)
    out = d.sum(axis=axes, keepdims=True) if axes else d
    if lead:
        out = out.reshape(shape)
    if x.__class__ is not Tensor:
        return out
    return record(SumToBackward0, out, (x,), in_shape=d.shape)


class SqueezeBackward0(ViewBackward0):
    pass


def squeeze(x, dim=None):
    """Drop size-1 dims (all, or just ``dim`` if it has size 1).

    >>> import ckpt
    >>> ckpt.ones(1, 3, 1).squeeze().shape
    (3,)
    """
    d = data_of(x)
    if dim is None:
        out = np.squeeze(d)
    else:
        axes = tuple(a for a in normalize_dims(dim, d.ndim, "squeeze") if d.shape[a] == 1)
        out = np.squeeze(d, axis=axes) if axes else d
    if x.__class__ is not Tensor:
        return out
    return _share_version_if_view(record(SqueezeBackward0 if dim is None else SqueezeBackward1, out,
                                         (x,), in_shape=x.data.shape), x, squeeze, (dim,))


class SqueezeBackward1(SqueezeBackward0):
    """``squeeze(x, dim)``."""


def unsqueeze(x, dim):
    """Insert a size-1 dim at ``dim``.

    >>> import ckpt
    >>> ckpt.ones(3).unsqueeze(0).shape
    (1, 3)
    """
    d = data_of(x)
    ndim = d.ndim + 1
    if not -ndim <= dim < ndim:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-ndim}, {ndim - 1}], "
                         f"but got {dim})")
    out = np.expand_dims(d, dim % ndim)
    if x.__class__ is not Tensor:
        return out
    return _share_version_if_view(record(UnsqueezeBackward0, out, (x,), in_shape=x.data.shape), x,
                                  unsqueeze, (dim,))


class UnsqueezeBackward0(SqueezeBackward0):
    pass


# ---- indexing -------------------------------------------------------------------------

def _index_arg(index):
    """Tensors inside an index become their arrays; lists become arrays (advanced indexing)."""
    if isinstance(index, tuple):
        return tuple(_index_arg(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _legacy_tuple(index):
    """A list index holding a list, slice, Tensor, None or Ellipsis means the tuple of its
    items, as in torch (and old numpy): ``x[[slice(None), [1, 3]]]`` is ``x[:, [1, 3]]``.

    >>> _legacy_tuple([slice(None), [1, 3]]), _legacy_tuple([0, 2])
    ((slice(None, None, None), [1, 3]), [0, 2])
    """
    if len(index) < 32 and any(i is None or i is Ellipsis or isinstance(i, (list, tuple, slice, Tensor))
                               for i in index):
        return tuple(index)
    return index


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice)) for i in items)


class _SavedPart:
    """In a node's index: the place of the ``k``-th array, which the node saves (see
    ``_split_index``)."""
    __slots__ = ("k",)

    def __init__(self, k):
        self.k = k


def _split_index(raw):
    """``(template, saved)`` for a node that needs an index in backward: ``saved`` holds the
    index's arrays as Tensors (the caller's own index Tensors, so an in-place change before
    backward is caught; arrays and lists in Tensors of their own), ``template`` the index
    with a ``_SavedPart`` in place of each. Basic indices have no arrays.

    >>> import ckpt
    >>> i = ckpt.tensor([0, 2])
    >>> template, saved = _split_index((slice(None), i))
    >>> saved[0] is i, _join_index(template, [i.data])[1].tolist()
    (True, [0, 2])
    """
    items = raw if isinstance(raw, tuple) else (raw,)
    template, saved = [], []
    for item in items:
        if isinstance(item, (Tensor, np.ndarray, list)):
            template.append(_SavedPart(len(saved)))
            saved.append(saved_tensor(item))
        else:
            template.append(item)
    return (tuple(template) if isinstance(raw, tuple) else template[0]), tuple(saved)


def _join_index(template, arrays):
    """The index ``_split_index`` took apart, with ``arrays`` (unpacked) put back."""
    if isinstance(template, tuple):
        return tuple(np.asarray(data_of(arrays[i.k])) if i.__class__ is _SavedPart else i
                     for i in template)
    return np.asarray(data_of(arrays[template.k])) if template.__class__ is _SavedPart else template


class IndexBackward0(_SameOpOnTangent):
    def vjp(self, g, *index_arrays):
        return index_into_zeros(g, _join_index(self.index_template, index_arrays), self.in_shape,
                                self.basic)

    def tangent_op(self, t, out):
        return getitem(t, self.index)


class SelectBackward0(IndexBackward0):
    """Basic indexing whose last step picks one position (``x[0]``, ``x[1:, 2]``)."""


class SliceBackward0(IndexBackward0):
    """Basic indexing whose last step slices (``x[1:]``, ``x[0, ::2]``)."""


class AliasBackward0(IndexBackward0):
    """Basic indexing that selects everything (``x[..., :]``)."""


class _UnsqueezeByIndex(IndexBackward0):
    """Basic indexing whose last step inserts a dim (``x[0, None]``)."""

    def name(self):
        return "UnsqueezeBackward0"


def _basic_index_node(index):
    """The node class torch would name for a basic index: after its last step that does
    something (torch applies them one by one)."""
    if isinstance(index, slice):
        return SliceBackward0
    for item in reversed(index if isinstance(index, tuple) else (index,)):
        if item is None:
            return _UnsqueezeByIndex
        if isinstance(item, (int, np.integer)):
            return SelectBackward0
        if isinstance(item, slice) and item != slice(None):
            return SliceBackward0
    return AliasBackward0


def getitem(x, index):
    """``x[index]``: basic indexing gives a view, advanced indexing a copy.

    >>> import ckpt
    >>> ckpt.arange(6).reshape(2, 3)[1, ::2].tolist()
    [3, 5]
    """
    if index.__class__ is list:
        index = _legacy_tuple(index)
    raw, index = index, _index_arg(index)
    if x.__class__ is not Tensor:
        return x[index]
    try:
        out = x.data[index]
    except IndexError as e:  # numpy's words, in torch's terms
        raise IndexError(str(e).replace("for axis", "for dimension")) from None
    basic = _is_basic(index)
    if not isinstance(out, np.ndarray):  # numpy returns a scalar copy; torch gives a 0-d view
        out = x.data[(index if isinstance(index, tuple) else (index,)) + (Ellipsis,)]
    template, saved = _split_index(raw) if not basic else (index, ())
    t = record(_basic_index_node(index) if basic else IndexBackward0, out, (x,), saved,
               index_template=template, in_shape=x.data.shape, basic=basic, **for_jvp(index=index))
    return _share_version_if_view(t, x, getitem, (index,)) if basic else t


class IndexIntoZerosBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return getitem(g, self.index)

    def tangent_op(self, t, out):
        return index_into_zeros(t, self.index, out.shape)


def index_into_zeros(values, index, shape, basic=False):
    """A zero tensor of ``shape`` with ``values`` added at ``index`` (repeated indices add up):
    the adjoint of indexing."""
    d = values.data if isinstance(values, Tensor) else np.asarray(values)
    out = np.zeros(shape, dtype=d.dtype)
    if basic:
        out[index] = d
    else:
        np.add.at(out, index, d)
    if values.__class__ is not Tensor:
        return out
    return record(IndexIntoZerosBackward0, out, (values,), index=index)


class CopySlices(Node):
    """The node of ``x[index] = value``: no gradient flows to the overwritten elements."""

    def vjp(self, g, *index_arrays):
        index = _join_index(self.index_template, index_arrays)
        return g * self._keep(g.dtype, index), getitem(g, index)

    def jvp(self, tangents, primals, out):
        """The old tangent outside the written region, the value's tangent inside it."""
        t_x, t_value = tangents
        region = data_of(out)[self.index].shape
        return _total(None if t_x is None else t_x * self._keep(out.dtype, self.index),
                      None if t_value is None else
                      index_into_zeros(expand(t_value, region), self.index, self.shape))

    def _keep(self, dtype, index):
        keep = np.ones(self.shape, dtype=dtype)
        keep[index] = 0
        return keep


_WHY_FORBIDDEN = {
    "multi": "This view is the output of a function that returns multiple views. Such functions "
             "do not allow the output views to be modified inplace. You should replace the "
             "inplace operation by an out-of-place one.",
    "custom": "This view was created inside a custom Function (or because an input was returned "
              "as-is) and the autograd logic to handle view+inplace would override the custom "
              "backward associated with the custom Function, leading to incorrect gradients. "
              "This behavior is forbidden. You can fix this by cloning the output of the custom "
              "Function.",
    "no_grad": "Given that this use case is ambiguous and error-prone, it is forbidden. You can "
               "clarify your code by moving both the view and the inplace either both inside the "
               "no_grad block (if you don't want the inplace to be tracked) or both outside (if you "
               "want the inplace to be tracked).",
    "inference_mode": "Given that this use case is ambiguous and error-prone, it is forbidden. You "
                      "can clarify your code by moving both the view and the inplace either both "
                      "inside the inference_mode block (if you don't want the inplace to be "
                      "tracked) or both outside (if you want the inplace to be tracked).",
}
_INFERENCE_INPLACE = (
    "Inplace update to inference tensor outside InferenceMode is not allowed.You can make a "
    "clone to get a normal tensor before doing inplace update.See "
    "https://github.com/pytorch/rfcs/pull/17 for more details.")


def mark_view_creation(view, kind, base_requires_grad):
    """Mark ``view`` as one whose recorded in-place change torch forbids: ``"multi"`` (an
    output of ``unbind``/``split``/``chunk``), ``"custom"`` (a custom Function's output that
    is a view of its input), ``"no_grad"``/``"inference_mode"`` (made in that mode). Views of
    ``view`` inherit the mark, as in torch."""
    view._creation_meta = (kind, base_requires_grad, view._vc[0])
    return view


def grad_fn_is_invalid(t):
    """Whether torch's ``t.grad_fn`` would raise: ``t`` is a marked view (made under no_grad,
    say) of a base that requires grad, written in place since without a graph.

    >>> import ckpt
    >>> a = ckpt.ones(1, requires_grad=True)
    >>> with ckpt.no_grad():
    ...     b = a[:]
    ...     b *= 2
    >>> b
    tensor([2.], grad_fn=<Invalid>)
    """
    meta = t._creation_meta
    return (t.grad_fn is None and meta is not None and meta[0] in _WHY_FORBIDDEN and meta[1]
            and meta[2] != t._vc[0])


def _forbidden_write(x, kind):
    """torch's message for a recorded in-place write into the marked view ``x``."""
    node = x.grad_fn
    name = node is not None and f"Output {x._output_nr} of {re.sub('Backward[0-9]*$', '', node.name())}"
    if kind in ("no_grad", "inference_mode") or not name:
        head = f"{name} is a view of a view which was created in" if name else "A view was created in"
        head += (" inference mode and is being modified inplace in normal mode."
                 if kind == "inference_mode" else
                 " no_grad mode and is being modified inplace with grad mode enabled.")
    else:
        head = f"{name} is a view and is being modified inplace."
    return RuntimeError(f"{head} {_WHY_FORBIDDEN[kind]}")


def _check_view_creation(x, meta, others):
    kind = meta[0]
    if kind == "inference":
        if not grad_mode._State.inference:
            raise RuntimeError(_INFERENCE_INPLACE)
        return
    if grad_mode._State.enabled and kind in _WHY_FORBIDDEN and (
            x.requires_grad or meta[1] or any(o.__class__ is Tensor and o.requires_grad
                                              for o in others)):
        raise _forbidden_write(x, kind)


# called with the tensor before each in-place write (allow_mutation_on_saved_tensors clones
# what a graph saved from it)
write_watchers = []


def check_inplace(x, others=()):
    """Refuse an in-place write into ``x`` (with the op's other arguments ``others``) where
    torch refuses it."""
    if write_watchers:
        write_watchers[-1](x)
    meta = x._creation_meta
    if meta is not None:
        _check_view_creation(x, meta, others)
    if grad_mode._State.enabled:
        if x.requires_grad and x.grad_fn is None:
            raise RuntimeError(
                "a leaf Variable that requires grad is being used in an in-place operation.")
        base = x._base  # a view made before its leaf base was set to require grad, too
        if base is not None and base.grad_fn is None and base.requires_grad:
            raise RuntimeError(
                "a view of a leaf Variable that requires grad is being used in an in-place operation.")


def check_no_overlap(region):
    """Refuse a write into ``region`` if several of its elements share one memory location
    (an expanded tensor), as torch does.

    >>> import ckpt
    >>> ckpt.zeros(1, 2).expand(3, 2).mul_(2)
    Traceback (most recent call last):
    RuntimeError: unsupported operation: more than one element of the written-to tensor refers to a single memory location. Please clone() the tensor before performing the operation.
    """
    if 0 in region.strides and any(s == 0 and n > 1 for s, n in zip(region.strides, region.shape)):
        raise RuntimeError("unsupported operation: more than one element of the written-to tensor "
                           "refers to a single memory location. Please clone() the tensor before "
                           "performing the operation.")


def bump_version(x):
    x._vc[0] += 1


def setitem(x, index, value):
    """``x[index] = value`` in place: bumps ``x``'s version and records ``CopySlices``.

    >>> import ckpt
    >>> x = ckpt.zeros(3); x[1] = 5.0; x.tolist()
    [0.0, 5.0, 0.0]
    """
    if 0 in x.data.strides and _is_basic(_index_arg(index)):
        check_no_overlap(x.data[_index_arg(index)])
    write_into(x, index, value)


def write_into(x, index, value):
    """``setitem`` without the check for repeated elements (``fill_`` and ``zero_`` of an
    expanded tensor write each memory location once, as in torch)."""
    check_inplace(x, (value,))
    if index.__class__ is list:
        index = _legacy_tuple(index)
    raw, index = index, _index_arg(index)
    try:
        writable(x.data)[index] = data_of(value)
    except ValueError:
        raise RuntimeError(f"setitem: value of shape {list(np.shape(data_of(value)))} cannot be "
                           f"assigned to x[{index!r}] of shape {list(x.data[index].shape)}") from None
    bump_version(x)
    template, saved = _split_index(raw)
    tracked = record(CopySlices, x.data, (x, value), saved, index_template=template,
                     shape=x.data.shape, **for_jvp(index=index))
    take_tangent(x, tracked)  # forward mode: the written tensor takes the new tangent
    if tracked.grad_fn is not None:
        take_history(x, tracked.grad_fn)
    if tracked.grad_fn is not None or tracked._fw is not None:
        rebase_views(x)


class CatBackward0(Node):
    def jvp(self, tangents, primals, out):
        return cat([_zeros_for(t, p) for t, p in zip(tangents, primals)], self.dim)

    def vjp(self, g):
        grads, start = [], 0
        lead = (slice(None),) * self.dim
        for size in self.sizes:
            grads.append(getitem(g, lead + (slice(start, start + size),)))
            start += size
        return tuple(grads)


def _c_ordered_result(arrays, dim, count, new_dim):
    """A C-ordered buffer for concatenating (``new_dim``: stacking) ``arrays`` along ``dim``,
    as torch lays the result out (numpy would keep the inputs' order, e.g. Fortran for
    transposed inputs, and ``view`` of the result would then fail where torch's works);
    None when the shapes don't fit, so numpy raises its own error."""
    shape = list(arrays[0].shape)
    if new_dim:
        if any(a.shape != arrays[0].shape for a in arrays):
            return None
        shape.insert(dim, count)
    else:
        if any(a.ndim != len(shape) or a.shape[:dim] + a.shape[dim + 1:] != arrays[0].shape[:dim] +
               arrays[0].shape[dim + 1:] for a in arrays):
            return None
        shape[dim] = sum(a.shape[dim] for a in arrays)
    return np.empty(shape, dtype=np.result_type(*arrays))


def cat(tensors, dim=0):
    """Concatenate along an existing ``dim``.

    >>> import ckpt
    >>> ckpt.cat([ckpt.ones(2), ckpt.zeros(1)]).tolist()
    [1.0, 1.0, 0.0]
    """
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    arrays = [t.data for t in tensors]
    for i, a in enumerate(arrays):
        if a.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    (dim,) = normalize_dims(dim, arrays[0].ndim, "cat")
    try:
        out = np.concatenate(arrays, axis=dim, out=_c_ordered_result(arrays, dim, len(arrays), False))
    except ValueError:
        raise RuntimeError(f"cat: sizes of tensors must match except in dimension {dim}; got shapes "
                           f"{[list(a.shape) for a in arrays]}") from None
    return record(CatBackward0, out, tensors, dim=dim, sizes=[a.shape[dim] for a in arrays])


class StackBackward0(Node):
    def jvp(self, tangents, primals, out):
        return stack([_zeros_for(t, p) for t, p in zip(tangents, primals)], self.dim)

    def vjp(self, g):
        lead = (slice(None),) * self.dim
        return tuple(getitem(g, lead + (i,)) for i in range(self.count))


def stack(tensors, dim=0):
    """Join tensors of one shape along a new ``dim``.

    >>> import ckpt
    >>> ckpt.stack([ckpt.ones(2), ckpt.zeros(2)]).shape
    (2, 2)
    """
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    arrays = [t.data for t in tensors]
    (dim,) = normalize_dims(dim, arrays[0].ndim + 1, "stack")
    try:
        out = np.stack(arrays, axis=dim, out=_c_ordered_result(arrays, dim, len(arrays), True))
    except ValueError:
        raise RuntimeError(f"stack expects each tensor to be equal size, but got shapes "
                           f"{[list(a.shape) for a in arrays]}") from None
    return record(StackBackward0, out, tensors, dim=dim % out.ndim, count=len(tensors))


def split(x, split_size_or_sections, dim=0):
    """Split into chunks of ``split_size`` (or the given list of sizes) along ``dim``.

    >>> import ckpt
    >>> [t.shape for t in ckpt.arange(5).split(2)]
    [(2,), (2,), (1,)]
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "split")
    size = x.data.shape[dim]
    if isinstance(split_size_or_sections, int):
        step = split_size_or_sections
        sections, name = [min(step, size - s) for s in range(0, size, step)], "Split"
    else:
        sections, name = list(split_size_or_sections), "SplitWithSizes"
    lead = (slice(None),) * (dim % x.data.ndim)
    out, start = [], 0
    for nr, s in enumerate(sections):
        piece = getitem(x, lead + (slice(start, start + s),))
        out.append(mark_view_creation(piece, "multi", x.requires_grad) if grad_mode._State.enabled
                   else piece)
        start += s
    if out and out[0].grad_fn is not None:
        share_node(out, SplitBackward0 if name == "Split" else SplitWithSizesBackward0, (x,),
                   dim=dim % x.data.ndim)
    return tuple(out)


class SplitBackward0(Node):
    """One node for every piece of ``split``/``chunk``: their gradients side by side."""

    def vjp(self, grads):
        return cat(grads, self.dim)


class SplitWithSizesBackward0(SplitBackward0):
    pass


class UnbindBackward0(Node):
    def vjp(self, grads):
        return stack(grads, self.dim)


def chunk(x, chunks, dim=0):
    """Split into ``chunks`` nearly equal pieces along ``dim``.

    >>> import ckpt
    >>> len(ckpt.arange(6).chunk(3))
    3
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "chunk")
    return split(x, -(-x.data.shape[dim] // chunks), dim)


def unbind(x, dim=0):
    """The slices along ``dim``, as a tuple.

    >>> import ckpt
    >>> len(ckpt.ones(3, 2).unbind())
    3
    """
    (dim,) = normalize_dims(dim, x.data.ndim, "unbind")
    lead = (slice(None),) * dim
    pieces = tuple(getitem(x, lead + (i,)) for i in range(x.data.shape[dim]))
    if grad_mode._State.enabled:
        for piece in pieces:
            mark_view_creation(piece, "multi", x.requires_grad)
        if pieces and x.requires_grad:
            share_node(pieces, UnbindBackward0, (x,), dim=dim)
    return pieces


def diagonal(x, offset=0, dim1=0, dim2=1):
    """The elements ``x[..., i, i + offset]`` of the planes spanned by ``dim1`` and ``dim2``,
    along a new last dim (a copy, where torch gives a view).

    >>> import ckpt
    >>> ckpt.arange(9).reshape(3, 3).diagonal(1).tolist()
    [1, 5]
    """
    dim1, dim2 = (normalize_dims(d, x.data.ndim, "diagonal")[0] for d in (dim1, dim2))
    if dim1 == dim2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    rest = [d for d in range(x.data.ndim) if d not in (dim1, dim2)]
    rows, cols = x.data.shape[dim1], x.data.shape[dim2]
    start_row, start_col = max(-offset, 0), max(offset, 0)
    length = max(min(rows - start_row, cols - start_col), 0)
    steps = np.arange(length)
    return getitem(permute(x, *rest, dim1, dim2), (Ellipsis, steps + start_row, steps + start_col))


class ToCopyBackward0(_SameOpOnTangent):
    _batched_rule = True

    def vjp(self, g):
        return to(g, self.in_dtype)

    def tangent_op(self, t, out):
        return to(t, out.dtype)


def to(x, dtype=None, *args, **kwargs):
    """Cast to ``dtype`` (device arguments are accepted and ignored: ckpt is CPU-only).

    >>> import ckpt
    >>> ckpt.ones(2).to(ckpt.float64).dtype
    dtype('float64')
    """
    layout = kwargs.pop("memory_format", None)
    if layout is not None:
        from ..layout import in_memory_format
        return in_memory_format(to(x, dtype, *args, **kwargs), layout, ToCopyBackward0)
    if dtype is None or isinstance(dtype, str) and dtype in ("cpu",):
        dtype = kwargs.get("dtype")
        if dtype is None:
            return x
    dtype = np.dtype(dtype)
    if x.__class__ is not Tensor:
        return np.asarray(x).astype(dtype, copy=False)
    if dtype == x.data.dtype:
        return x
    if dtype.kind not in "fc":  # an integer/bool result carries no gradient, as in torch
        return _wrap(x.data.astype(dtype))
    return record(ToCopyBackward0, x.data.astype(dtype), (x,), in_dtype=x.data.dtype)


class CloneBackward0(Node):
    _batched_rule = True

    def vjp(self, g):
        return g

    def jvp(self, tangents, primals, out):
        return tangents[0]


def clone(x):
    """A copy with its own memory, still in the graph.

    >>> import ckpt
    >>> ckpt.ones(2).clone().tolist()
    [1.0, 1.0]
    """
    return record(CloneBackward0, x.data.copy(), (x,))
