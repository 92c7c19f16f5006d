"""Gradients of a convolution with respect to its input and its weight, as
``torch.nn.grad``: the ops ``conv2d``'s backward is made of, differentiable to any order.

>>> import ckpt
>>> from ckpt.nn.grad import conv2d_input, conv2d_weight
>>> x, w = ckpt.ones(1, 1, 3, 3, requires_grad=True), ckpt.ones(1, 1, 2, 2, requires_grad=True)
>>> y = ckpt.nn.functional.conv2d(x, w)
>>> g = ckpt.ones(*y.shape)
>>> dx, dw = ckpt.autograd.grad(y, [x, w], g)
>>> bool((conv2d_input(x.shape, w, g) == dx).all())
True
>>> bool((conv2d_weight(x, w.shape, g) == dw).all())
True
"""
from ..autograd.ops.nn.conv import conv2d_input, conv2d_weight

__all__ = ["conv2d_input", "conv2d_weight"]
