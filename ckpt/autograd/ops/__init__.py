"""Every op ckpt can differentiate, and the Tensor methods and operators that call them.

One module per family; within a module each op is its numpy forward followed by its node
(the VJP, written with differentiable ops).
"""
from ..tensor import Tensor
from .elementwise import (abs, add, bitwise_not, clamp, cos, div, eq, erf, exp, ge, gelu, gt, le,
                          log, logical_not, lt, maximum, minimum, mul, ne, neg, pow, relu, sigmoid,
                          sign, sin, sqrt, sub, tanh, where)
from .linalg import linear, matmul
from .reduce import all, any, amax, argmax, argmin, logsumexp, max, mean, min, std, sum, var
from .shape import (cat, chunk, clone, expand, flatten, getitem, index_into_zeros, permute,
                    reshape, setitem, split, squeeze, stack, sum_to, to, transpose, unbind,
                    unsqueeze, view)
from .inplace import inplace_method
from . import nn_functional


def _reflected(fn):
    def reflected(self, other):
        return fn(other, self)
    return reflected


def _matrix_transpose(x):
    if x.data.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. "
                           f"Got {x.data.ndim}-D tensor.")
    return transpose(x, -2, -1)


def _bind_methods():
    T = Tensor
    T.__add__, T.__radd__ = add, lambda self, other: add(self, other)
    T.__sub__, T.__rsub__ = sub, _reflected(sub)
    T.__mul__, T.__rmul__ = mul, lambda self, other: mul(self, other)
    T.__truediv__, T.__rtruediv__ = div, _reflected(div)
    T.__pow__ = pow
    T.__rpow__ = lambda self, other: pow(other, self)
    T.__matmul__ = matmul
    T.__neg__ = neg
    T.__abs__ = abs
    T.__invert__ = bitwise_not
    T.logical_not, T.bitwise_not = logical_not, bitwise_not
    T.where = lambda self, condition, other: where(condition, self, other)
    T.__eq__, T.__ne__, T.__lt__, T.__le__, T.__gt__, T.__ge__ = eq, ne, lt, le, gt, ge
    T.__getitem__ = getitem
    T.__setitem__ = setitem
    for fn in (abs, add, clamp, cos, div, exp, gelu, log, maximum, minimum, mul, neg, pow, relu,
               sigmoid, sin, sqrt, sub, tanh, erf, sign, matmul, all, any, amax, argmax, argmin, logsumexp,
               max, mean, min, std, sum, var, chunk, expand, flatten, permute, split, squeeze,
               unbind, unsqueeze, transpose, to, sum_to):
        setattr(T, fn.__name__, fn)
    T.eq, T.ne, T.lt, T.le, T.gt, T.ge = eq, ne, lt, le, gt, ge
    T.clip = clamp
    T.reshape = reshape
    T.view = view
    T.sum_to_size = lambda self, *shape: sum_to(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
    T.expand_as = lambda self, other: expand(self, other.shape)
    T.view_as = lambda self, other: view(self, other.shape)
    T.reshape_as = lambda self, other: reshape(self, other.shape)
    T.t = lambda self: transpose(self, 0, 1) if self.data.ndim == 2 else self
    T.T = property(lambda self: permute(self, *reversed(range(self.data.ndim))))
    T.mT = property(_matrix_transpose)
    T.softmax = nn_functional.softmax
    T.log_softmax = nn_functional.log_softmax
    T.masked_fill = lambda self, mask, value: where(mask, value, self)
    for name in ("add_", "sub_", "mul_", "div_", "pow_", "clamp_", "relu_", "zero_", "fill_",
                 "copy_", "exp_", "tanh_", "sigmoid_", "neg_"):
        setattr(T, name, inplace_method(name))
    T.__iadd__ = inplace_method("add_")
    T.__isub__ = inplace_method("sub_")
    T.__imul__ = inplace_method("mul_")
    T.__itruediv__ = inplace_method("div_")


_bind_methods()
