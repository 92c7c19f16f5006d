"""What several families of nn ops share: which inputs need a gradient, index arrays from
targets and indices, and scatter-add / gather on flat positions (each the other's VJP)."""
import numpy as np

from ...node import record
from ...tensor import Tensor
from .._util import data_of
from ..shape import _SameOpOnTangent


def _needs(node, i):
    """Does input ``i`` of ``node`` need a gradient?"""
    return node.next_functions[i][0] is not None


def _as_index_array(t, op):
    d = t.data if isinstance(t, Tensor) else np.asarray(t)
    if d.dtype.kind not in "iu":
        raise RuntimeError(f"{op}: expected an integer tensor of indices, got dtype {d.dtype} "
                           f"(shape {list(d.shape)})")
    return d


class ScatterAddBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return _gather_flat(g, self.index)

    def tangent_op(self, t, out):
        return _scatter_add_flat(t, self.index, out.shape)


def _scatter_add_flat(values, index, shape):
    """Zeros of ``shape`` with ``values`` added at flat positions ``index`` (same shape as
    ``values``; repeated positions add up). Linear; its adjoint is ``_gather_flat``."""
    v = data_of(values)
    out = np.zeros(int(np.prod(shape)), dtype=v.dtype)
    np.add.at(out, index.reshape(-1), v.reshape(-1))
    if values.__class__ is not Tensor:  # arrays in, arrays out (array rules)
        return out.reshape(shape)
    return record(ScatterAddBackward0, out.reshape(shape), (values,), index=index)


class GatherBackward0(_SameOpOnTangent):
    def vjp(self, g):
        return _scatter_add_flat(g, self.index, self.in_shape)

    def tangent_op(self, t, out):
        return _gather_flat(t, self.index)


def _gather_flat(x, index):
    """``x.flatten()[index]`` (output shaped like ``index``); the adjoint of ``_scatter_add_flat``."""
    if x.__class__ is not Tensor:
        return np.take(x.reshape(-1), index)
    return record(GatherBackward0, np.take(x.data.reshape(-1), index), (x,),
                  index=index, in_shape=x.data.shape)
