"""``dropout``: a mask from ckpt's generator, so a recomputation replays it."""
import numpy as np

from ... import random as _random
from ...node import Node, record
from ...tensor import _wrap
from .._util import CHUNKS, MIN_CHUNK, data_of, for_jvp


class NativeDropoutBackward0(Node):
    def vjp(self, g, mask):
        factor = data_of(mask) * np.asarray(self.scale, dtype=g.dtype)  # 0 or 1/(1-p)
        if g.__class__ is not np.ndarray or factor.shape != g.shape:
            return g * factor
        return np.multiply(factor, g, out=factor)   # the product in place: no temporary

    def jvp(self, tangents, primals, out):  # diagonal: the same product with the tangent
        return self.vjp(tangents[0], self.mask)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    The mask comes from ckpt's generator, so restoring ``ckpt.get_rng_state()`` replays it.
    With ``training=False`` or ``p=0`` the input is returned unchanged.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn.dropout import dropout
    >>> state = ckpt.get_rng_state(); a = dropout(ckpt.ones(6), 0.5)
    >>> ckpt.set_rng_state(state); bool((dropout(ckpt.ones(6), 0.5) == a).all())
    True
    >>> set(a.tolist()) <= {0.0, 2.0}
    True
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if inplace:
        raise NotImplementedError("dropout: inplace=True is not supported; ckpt's dropout is "
                                  "out-of-place")
    if not training or p == 0:
        return input
    d = input.data
    if p == 1:
        mask, scale = np.zeros(d.shape, dtype=bool), 0.0
    else:
        mask, scale = _keep_mask(d.shape, p), 1.0 / (1.0 - p)
    out = mask * np.asarray(scale, dtype=d.dtype)    # d * (mask * scale), made in place
    np.multiply(out, d, out=out)
    mask = _wrap(mask)
    return record(NativeDropoutBackward0, out, (input,), (mask,), scale=scale,
                  **for_jvp(mask=mask))


def _keep_mask(shape, p):
    """``uniform(shape) >= p`` from ckpt's generator, drawn a piece at a time: the same
    numbers in the same order as one draw of the whole shape (the float64 draw of a
    float32 activation would be twice its size)."""
    mask = np.empty(shape, dtype=bool)
    flat = mask.reshape(-1)
    step = max(MIN_CHUNK, -(-flat.size // (2 * CHUNKS)))  # float64 draws: half-length pieces
    for i in range(0, flat.size, step):
        flat[i:i + step] = _random.default_generator.numpy.random(len(flat[i:i + step])) >= p
    return mask
