"""``Dropout``."""
from . import functional as F
from .module import Module


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the rest by
    ``1 / (1 - p)``; in eval, the identity. The mask is drawn from ckpt's generator.

    >>> import ckpt
    >>> drop = ckpt.nn.Dropout(0.5)
    >>> sorted(set(drop(ckpt.ones(100)).tolist()))
    [0.0, 2.0]
    >>> drop.eval()(ckpt.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p
        self.inplace = inplace

    def forward(self, input):
        return F.dropout(input, self.p, self.training, self.inplace)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"
