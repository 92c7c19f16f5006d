"""The leading batch dims of a vectorized pass, read by the engine, forward mode and the
ops' rules."""


class Batch:
    """Leading batch dims carried by gradients (``grad(..., is_grads_batched=True)``) or
    tangents (``dual_level(batch_size=B)``) during a vectorized pass; 0 otherwise.

    Rules of nodes with ``_batched_rule = True`` handle those dims themselves (elementwise
    broadcasting, negative axes, ``lead(x)``); the others are looped over the batch."""
    dims = 0
    level_size = None  # B inside ``dual_level(batch_size=B)``: all of it is vectorized


def lead(x):
    """The leading batch dims of a gradient or tangent ``x`` (``()`` outside a vectorized pass)."""
    return x.shape[:Batch.dims]


def shift(axes):
    """Axes of a primal, moved past the batch dims of its gradient or tangent."""
    return tuple(a + Batch.dims for a in axes) if Batch.dims else axes
