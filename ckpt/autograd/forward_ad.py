"""Forward-mode AD (torch.autograd.forward_ad's names).

Inside ``dual_level()``, a tensor made with ``make_dual(primal, tangent)`` carries a tangent,
and every op on it computes its output's tangent with the op's JVP rule (stated beside its
VJP, in the op's module). Forward mode records no graph: with no input requiring grad
nothing is saved for backward. Tangents are dropped when the level exits. One level at a
time (nested levels raise, as torch's "Nested forward mode AD is not supported").

>>> import ckpt
>>> import ckpt.autograd.forward_ad as fwAD
>>> with fwAD.dual_level():
...     x = fwAD.make_dual(ckpt.tensor([3.0]), ckpt.tensor([1.0]))
...     y = x * x * x.sin()                   # f(x) = x^2 sin x
...     round(fwAD.unpack_dual(y).tangent.item(), 3)   # f'(3) = 9 cos 3 + 6 sin 3
-8.063
"""
import weakref
from collections import namedtuple

import numpy as np

from .batch import Batch
from .node import Extensions, Node, record
from .tensor import Tensor, _wrap

UnpackedDualTensor = namedtuple("UnpackedDualTensor", ["primal", "tangent"])


_current_level = -1  # torch's module attribute, read by code that asks whether a level is open


class _Level:
    duals = None  # weak references to every tensor given a tangent at the current level


def _enter(batch_size=None):
    global _current_level
    if Extensions.forward_ad:
        raise RuntimeError("Nested forward mode AD is not supported at the moment: exit the "
                           "current dual_level() before entering another")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"dual_level: batch_size must be a positive int, got {batch_size!r}")
    _Level.duals = []
    Batch.level_size = batch_size
    Extensions.forward_ad = True
    Extensions.refresh()
    _current_level = 0
    return 0


def _exit():
    global _current_level
    _current_level = -1
    for ref in _Level.duals or ():
        t = ref()
        if t is not None:
            t._fw = None
    _Level.duals = None
    Batch.level_size = None
    Extensions.forward_ad = False
    Extensions.refresh()


class dual_level:
    """Context manager for one level of forward AD; tangents are dropped on exit.

    ckpt extension: with ``batch_size=B`` every tangent carries a leading dim of size B, so
    one forward pass pushes B tangents (the columns of a Jacobian, say) at once.

    >>> import ckpt, ckpt.autograd.forward_ad as fwAD
    >>> with fwAD.dual_level():
    ...     x = fwAD.make_dual(ckpt.ones(2), ckpt.tensor([1.0, 2.0]))
    >>> fwAD.unpack_dual(x).tangent is None
    True
    """

    def __init__(self, batch_size=None):
        self.batch_size = batch_size

    def __enter__(self):
        return _enter(self.batch_size)

    def __exit__(self, *exc):
        _exit()
        return False


def enter_dual_level():
    """Enter a level by hand (prefer ``with dual_level()``); returns its index.

    >>> import ckpt.autograd.forward_ad as fwAD
    >>> fwAD.enter_dual_level(); fwAD.exit_dual_level()
    0
    """
    return _enter()


def exit_dual_level(*, level=None):
    """Exit the level entered with ``enter_dual_level`` (see its example)."""
    _exit()


class AliasBackward0(Node):
    def vjp(self, g):
        return g

    def jvp(self, tangents, primals, out):
        return tangents[0]


def _alias(t):
    """A tensor sharing ``t``'s data, version counter and autograd history."""
    alias = record(AliasBackward0, t.data, (t,)) if not Extensions.forward_ad else _alias_no_fw(t)
    alias._vc = t._vc
    return alias


def _alias_no_fw(t):
    Extensions.forward_ad = False
    Extensions.refresh()
    try:
        return record(AliasBackward0, t.data, (t,))
    finally:
        Extensions.forward_ad = True
        Extensions.refresh()


def _remember(t, tangent):
    t._fw = tangent
    _Level.duals.append(weakref.ref(t))


def make_dual(tensor, tangent, *, level=None):
    """``tensor`` (as an alias sharing its data and history) carrying ``tangent`` at the
    current level; must be called inside ``dual_level()``.

    >>> import ckpt, ckpt.autograd.forward_ad as fwAD
    >>> with fwAD.dual_level():
    ...     x = fwAD.make_dual(ckpt.ones(2), ckpt.tensor([1.0, 2.0]))
    ...     [round(v, 4) for v in fwAD.unpack_dual(x.exp()).tangent.tolist()]
    [2.7183, 5.4366]
    """
    if not Extensions.forward_ad:
        raise RuntimeError("Trying to create a dual Tensor for forward AD but no level exists, "
                           "make sure to enter_dual_level() first (use `with "
                           "ckpt.autograd.forward_ad.dual_level():`).")
    if not isinstance(tensor, Tensor) or not isinstance(tangent, Tensor):
        raise TypeError(f"make_dual expects two Tensors, got {type(tensor).__name__} and "
                        f"{type(tangent).__name__}")
    if tensor.data.dtype.kind not in "fc":
        raise ValueError(f"make_dual: the primal must be floating point to carry a tangent, got "
                         f"{tensor.data.dtype}")
    if tangent.data.dtype.kind not in "fc":
        raise ValueError(f"Expected tangent to be floating point or complex, but got: "
                         f"ckpt.{tangent.data.dtype}")
    if tangent._fw is not None:
        raise RuntimeError("Setting a forward grad that itself has a forward gradient at the "
                           "same level 0 is not supported.")
    expected = (() if Batch.level_size is None else (Batch.level_size,)) + tensor.data.shape
    if tangent.data.shape != expected:
        raise RuntimeError(
            "Trying to set a forward gradient that has a different size than that of the "
            f"original Tensor, this is not supported. Tensor is of size {list(tensor.data.shape)} "
            f"while the given forward gradient is of size {list(tangent.data.shape)}"
            + (f" (with batch_size={Batch.level_size} it must be {list(expected)})."
               if Batch.level_size else "."))
    if tangent.data.dtype != tensor.data.dtype:
        tangent = tangent.to(tensor.data.dtype)
    if Batch.level_size is None and not _same_layout(tangent, tensor):
        tangent = _laid_out_as(tensor, tangent)
    dual = _alias(tensor)
    _remember(dual, tangent)
    return dual


def _same_layout(a, b):
    """Whether ``a`` sits in its storage as ``b`` in its own (torch's test before it takes a
    tangent as it is): storage size, shape, offset (if any element) and the strides of dims
    with several elements."""
    return (a.shape == b.shape and len(a.storage()) == len(b.storage())
            and (not b.numel() or a.storage_offset() == b.storage_offset())
            and all(s == t for n, s, t in zip(b.shape, a.stride(), b.stride()) if n > 1))


def _laid_out_as(primal, tangent):
    """A copy of ``tangent`` in a new storage laid out as ``primal``'s (zeros elsewhere)."""
    from .ops.strided import as_strided
    storage = _wrap(np.zeros(len(primal.storage()), tangent.data.dtype))
    copy = as_strided(storage, primal.shape, primal.stride(), primal.storage_offset())
    copy.data[...] = tangent.data
    return copy


def unpack_dual(tensor, *, level=None):
    """``(primal, tangent)`` of ``tensor``: the primal is an alias without tangent (sharing
    data and history), the tangent is None outside a level or for a tensor without one.

    >>> import ckpt, ckpt.autograd.forward_ad as fwAD
    >>> fwAD.unpack_dual(ckpt.ones(1)).tangent is None
    True
    """
    tangent = tensor._fw if Extensions.forward_ad else None
    if tangent is None:
        return UnpackedDualTensor(tensor, None)
    return UnpackedDualTensor(_alias(tensor), tangent)


def propagate(cls, out, inputs, attrs):
    """Give ``out`` the tangent of the op ``cls`` if an input has one (called by ``record``).

    The JVP rule runs with forward mode paused (its own ops carry no tangents) but in the
    current grad mode, so it is recorded for reverse-over-forward. A tangent of a broadcast
    input is expanded to the output's shape."""
    tangents = [x._fw if x.__class__ is Tensor else None for x in inputs]
    if all(t is None for t in tangents):
        return
    rule = getattr(cls, "jvp", None)
    if rule is None:
        raise NotImplementedError(
            f"Trying to use forward AD with {cls.__name__} that does not support it: the op has "
            f"no JVP rule")
    ctx = object.__new__(cls)
    if attrs:
        ctx.__dict__.update(attrs)
    Extensions.forward_ad = False
    Extensions.refresh()
    try:
        if Batch.level_size is None:
            tangent = rule(ctx, tangents, inputs, out)
        else:
            tangent = _batched_rule(cls, rule, ctx, tangents, inputs, out)
        if tangent is not None:
            tangent = _own_tangent(_to_output(tangent, out), tangents, out, inputs)
    finally:
        Extensions.forward_ad = True
        Extensions.refresh()
    if tangent is not None:
        _remember(out, tangent)


def _own_tangent(tangent, tangents, out, inputs):
    """``tangent``, copied if it shares memory with an input's tangent while ``out`` is no
    view of an input: an in-place write into ``out`` updates its tangent in place (as in
    torch), which must not reach the input's (``y = x.clone(); y *= 2``)."""
    if any(t is not None and np.may_share_memory(tangent.data, t.data) for t in tangents) and not any(
            x.__class__ is Tensor and np.may_share_memory(out.data, x.data) for x in inputs):
        from .ops.shape import clone
        return clone(tangent)
    return tangent


def _batched_rule(cls, rule, ctx, tangents, inputs, out):
    """Apply a JVP rule to tangents with a leading batch dim: once if the rule handles it
    (elementwise rules after padding each tangent to the output's rank), else per element."""
    from .ops.shape import stack
    batch = Batch.level_size
    if cls._batched_rule:
        if cls._elementwise:
            tangents = [t if t is None else t.reshape((batch,) + (1,) * (out.data.ndim - x.data.ndim)
                                                      + x.data.shape)
                        for t, x in zip(tangents, inputs)]
        Batch.dims = 1
        try:
            return rule(ctx, tangents, inputs, out)
        finally:
            Batch.dims = 0
    columns = [rule(ctx, [None if t is None else t[b] for t in tangents], inputs, out)
               for b in range(batch)]
    return stack([_to_output(c, out, batched=False) for c in columns])


def _to_output(tangent, out, batched=True):
    if not isinstance(tangent, Tensor):
        tangent = _wrap(np.asarray(tangent, dtype=out.data.dtype))
    batch = Batch.level_size
    shape = ((batch,) if batched and batch is not None else ()) + out.data.shape
    if tangent.data.shape != shape:
        tangent = tangent.expand(shape)
    if tangent.data.dtype != out.data.dtype:
        tangent = tangent.to(out.data.dtype)
    return tangent


Extensions.propagate_tangent = propagate
