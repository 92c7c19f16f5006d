"""Every op ckpt can differentiate (the Tensor methods and operators, declared in
``ckpt/autograd/tensor.py``, call them through this package).

One module per family; within a module each op is its numpy forward followed by its node
(the VJP, written with differentiable ops).
"""
from .elementwise import (abs, add, bitwise_not, clamp, cos, div, eq, erf, exp, ge, gelu, gt,
                          isclose, isin, allclose, le, log, logical_not, lt, maximum, minimum, mul, ne, neg, pow, relu, sigmoid,
                          sign, signbit, sin, sqrt, sub, tanh, where)
from .linalg import linear, matmul, mm
from .reduce import all, any, amax, argmax, argmin, logsumexp, max, mean, min, std, sum, var
from .shape import (cat, chunk, clone, diagonal, expand, flatten, getitem, index_into_zeros, permute,
                    reshape, setitem, split, squeeze, stack, sum_to, t, to, transpose, unbind,
                    unsqueeze, view)
from .pieces import narrow, repeat, select
from .scatter import gather, index_reduce, scatter_add, scatter_reduce
from .statistics import median, nanmedian, prod, var_mean
from .strided import as_strided
from . import inplace, nn, random_fill, strided
from .nn.softmax import log_softmax, softmax
