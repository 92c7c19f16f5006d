"""Reading and combining by an index tensor: ``gather``, ``scatter_add``, ``scatter_reduce``
and ``index_reduce``.

An ``index`` along ``dim`` names, for each of its elements, the position along ``dim`` of
the element of ``self`` it reads (``gather``) or writes into (the scatters); along the other
dims an element stays at its own coordinates. The backward formulas follow torch's
``scatter_reduce_backward`` (PyTorch's ``FunctionsManual.cpp``): ties of ``amax``/``amin``
share the gradient evenly; ``prod`` divides the result by each factor, with exclusive
products where a factor is zero.
"""
import numpy as np

from ..node import OUTPUT, Node, record
from ..tensor import Tensor, _wrap
from ._util import data_of
from .elementwise import where
from .shape import getitem, index_into_zeros

_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def _positions(index, dim):
    """The numpy index of the elements of ``self`` that ``index`` points at."""
    coords = list(np.indices(index.shape, sparse=True))
    coords[dim] = index
    return tuple(coords)


def _index_array(index, op_name):
    index = np.asarray(data_of(index))
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"{op_name}(): Expected dtype int64 for index")
    return index


class GatherBackward0(Node):
    _array_rule = False

    def vjp(self, g):
        return index_into_zeros(g, self.positions, self.in_shape)

    def jvp(self, tangents, primals, out):
        return getitem(tangents[0], self.positions)


def gather(x, dim, index):
    """``out[i][j] = x[index[i][j]][j]`` for ``dim=0`` (and likewise for other dims).

    >>> import ckpt
    >>> x = ckpt.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> ckpt.gather(x, 1, ckpt.tensor([[1, 1], [0, 1]])).tolist()
    [[2.0, 2.0], [3.0, 4.0]]
    """
    dim = dim % max(x.data.ndim, 1)
    positions = _positions(_index_array(index, "gather"), dim)
    return record(GatherBackward0, x.data[positions], (x,), positions=positions,
                  in_shape=x.data.shape)


def scatter_add(x, dim, index, src):
    """``x`` with ``src[i][j]`` added at ``[index[i][j]][j]`` for ``dim=0`` (repeats add up);
    recorded as the indexing and addition it is made of.

    >>> import ckpt
    >>> ckpt.scatter_add(ckpt.zeros(3), 0, ckpt.tensor([0, 0, 2]), ckpt.ones(3)).tolist()
    [2.0, 0.0, 1.0]
    """
    index = _index_array(index, "scatter_add")
    return x + index_into_zeros(_index_region(src, index), _positions(index, dim % x.data.ndim),
                                x.data.shape)


def _index_region(src, index):
    """The part of ``src`` that ``index`` covers (its leading elements along every dim)."""
    if data_of(src).shape == index.shape:
        return src
    return getitem(src, tuple(slice(0, n) for n in index.shape))


def _counts(shape, positions, dtype):
    counts = np.zeros(shape, dtype=dtype)
    np.add.at(counts, positions, 1)
    return counts


class DelayedError(Node):
    """Passes a first derivative on; a second one through it raises (torch's ``Error``)."""

    def name(self):
        return "Error"

    def vjp(self, g):
        raise RuntimeError(self.message)


class ScatterReduceBackward0(Node):
    _array_rule = False
    op_name, src_name = "scatter_reduce", "src"

    def vjp(self, g, x, src, out):
        reduce, positions, include = self.reduce, self.positions, self.include_self
        part = _index_region(src, self.index)
        if reduce == "sum":
            g_self, g_src = g, getitem(g, positions)
        elif reduce == "mean":
            g_self = g / self._counts(x.data.dtype)
            g_src = getitem(g_self, positions)
        elif reduce == "prod":
            g_self, g_src = self._prod_grads(g, x, part, out)
        else:
            self_is, src_is, ties = self._ties(x.data, part.data, out.data)
            shared = g / ties
            g_self, g_src = shared * self_is, getitem(shared, positions) * src_is
        if not include:
            g_self = g_self * (_counts(x.data.shape, positions, x.data.dtype) == 0)
        if part is not src:
            g_src = index_into_zeros(g_src, tuple(slice(0, n) for n in self.index.shape),
                                     src.data.shape, basic=True)
        return g_self, None, g_src

    def _counts(self, dtype):
        counts = _counts(self.in_shape, self.positions, dtype) + (1 if self.include_self else 0)
        return np.maximum(counts, 1)

    def _prod_grads(self, g, x, part, out):
        """torch's exclusive products: a zero factor gets the product of the others."""
        args = (self.dim, self.index, self.include_self, self.op_name)
        self_zero = x.data == 0
        masked_self = where(self_zero, 1.0, x)
        g_self = g * _scatter_reduce(masked_self, part, "prod", *args) / masked_self
        src_zero = part.data == 0
        zeros_at = index_into_zeros(src_zero.astype(x.data.dtype), self.positions, x.data.shape)
        zeros_of_mine = zeros_at[self.positions]
        single = src_zero & (zeros_of_mine == 1)
        others = _scatter_reduce(x, where(single, 1.0, part), "prod", *args)
        g_src = where(single, getitem(g * others, self.positions),
                      getitem(g * out, self.positions) / where(src_zero, 1.0, part))
        if np.any(zeros_of_mine > 1):
            g_src = record(DelayedError, g_src.data, (g_src,), message=(
                f"{self.op_name}(): Double backward is unsupported for {self.src_name} when >1 "
                f"zeros in {self.src_name} are scattered to the same position in self"))
        return g_self, g_src

    def jvp(self, tangents, primals, out):
        """Linear in the values for sum and mean; the selected values' tangents (ties share)
        for amax/amin."""
        t_self, t_src = (_wrap(np.zeros_like(data_of(p))) if t is None else t
                         for t, p in zip(tangents[::2], primals[::2]))
        if self.reduce in ("sum", "mean"):
            keep = (_counts(self.in_shape, self.positions, t_self.data.dtype) == 0) | self.include_self
            total = t_self * keep + index_into_zeros(_index_region(t_src, self.index),
                                                     self.positions, self.in_shape)
            return total if self.reduce == "sum" else total / self._counts(t_self.data.dtype)
        if self.reduce == "prod":
            raise NotImplementedError("forward-mode scatter_reduce(reduce='prod') is not supported")
        self_is, src_is, ties = self._ties(data_of(primals[0]),
                                           data_of(_index_region(primals[2], self.index)), out.data)
        return (t_self * self_is + index_into_zeros(_index_region(t_src, self.index) * src_is,
                                                    self.positions, self.in_shape)) / ties

    def _ties(self, x, part, out):
        """For amax/amin: 1 where an element of ``x`` (kept) or of ``src`` is its position's
        result, and how many share each position's result."""
        kept = (_counts(x.shape, self.positions, x.dtype) == 0) | self.include_self
        self_is = ((x == out) & kept).astype(x.dtype)
        src_is = (part == out[self.positions]).astype(x.dtype)
        return self_is, src_is, self_is + index_into_zeros(src_is, self.positions, x.shape)


class IndexReduceBackward0(ScatterReduceBackward0):
    op_name, src_name = "index_reduce", "source"


_EMPTY = {"sum": 0, "prod": 1, "mean": 0, "amax": -np.inf, "amin": np.inf}
_AT = {"sum": np.add.at, "prod": np.multiply.at, "mean": np.add.at, "amax": np.maximum.at,
       "amin": np.minimum.at}


def _scatter_reduce(x, src, reduce, dim, index, include_self, op_name):
    positions = _positions(index, dim)
    out = np.array(x.data)
    if not include_self:
        out[positions] = _EMPTY[reduce]
    _AT[reduce](out, positions, data_of(_index_region(src, index)))
    if reduce == "mean":
        counts = _counts(out.shape, positions, out.dtype) + (1 if include_self else 0)
        out = (out / np.maximum(counts, 1)).astype(out.dtype)
    node = IndexReduceBackward0 if op_name == "index_reduce" else ScatterReduceBackward0
    return record(node, out, (x, None, src), (x, src, OUTPUT), dim=dim, index=index,
                  positions=positions, reduce=reduce, include_self=include_self,
                  in_shape=out.shape)




def scatter_reduce(x, dim, index, src, reduce, *, include_self=True):
    """``x`` with each ``src[i][j]`` combined by ``reduce`` (``"sum"``, ``"prod"``,
    ``"mean"``, ``"amax"``, ``"amin"``) into ``[index[i][j]][j]`` for ``dim=0``; with
    ``include_self=False`` the written positions forget ``x``'s values.

    >>> import ckpt
    >>> x = ckpt.tensor([1.0, 2.0, 3.0])
    >>> x.scatter_reduce(0, ckpt.tensor([0, 0, 2]), ckpt.tensor([5.0, 7.0, 1.0]), "amax").tolist()
    [7.0, 2.0, 3.0]
    """
    reduce = {"max": "amax", "min": "amin"}.get(reduce, reduce)  # (torch's aliases)
    if reduce not in _REDUCTIONS:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got "
                           f"{reduce}")
    index = _index_array(index, "scatter_reduce")
    return _scatter_reduce(x, src, reduce, dim % max(x.data.ndim, 1), index, include_self,
                           "scatter_reduce")


def index_reduce(x, dim, index, source, reduce, *, include_self=True):
    """``x`` with slice ``i`` of ``source`` along ``dim`` combined by ``reduce``
    (``"prod"``, ``"mean"``, ``"amax"``, ``"amin"``) into slice ``index[i]``.

    >>> import ckpt
    >>> x = ckpt.ones(3, 2)
    >>> x.index_reduce(0, ckpt.tensor([2, 0]), ckpt.full((2, 2), 3.0), "prod").tolist()
    [[3.0, 3.0], [1.0, 1.0], [3.0, 3.0]]
    """
    if reduce not in _REDUCTIONS[1:]:
        raise RuntimeError(f"index_reduce(): Expected reduce to be one of prod, mean, amax or "
                           f"amin but got {reduce}.")
    dim = dim % max(x.data.ndim, 1)
    index = _index_array(index, "index_reduce").reshape(
        [-1 if d == dim else 1 for d in range(data_of(source).ndim)])
    return _scatter_reduce(x, source, reduce, dim, np.broadcast_to(index, data_of(source).shape),
                           include_self, "index_reduce")
