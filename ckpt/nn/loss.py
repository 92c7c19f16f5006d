"""Loss layers: ``MSELoss``, ``CrossEntropyLoss``, ``NLLLoss``."""
from . import functional as F
from .module import Module

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{reduction} is not a valid value for reduction")
        self.reduction = reduction


class MSELoss(_Loss):
    """Mean squared error between input and target (``reduction`` 'mean', 'sum' or 'none').

    >>> import ckpt
    >>> ckpt.nn.MSELoss()(ckpt.tensor([1.0, 3.0]), ckpt.tensor([0.0, 0.0])).item()
    5.0
    """

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits ``(N, C, ...)`` against class indices ``(N, ...)`` or
    class probabilities; ``weight`` (per class) is kept as a buffer, as in torch.

    >>> import ckpt
    >>> loss = ckpt.nn.CrossEntropyLoss()(ckpt.zeros(2, 4), ckpt.tensor([0, 3]))
    >>> round(loss.item(), 4)
    1.3863
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities ``(N, C, ...)`` at class indices.

    >>> import ckpt
    >>> ckpt.nn.NLLLoss()(ckpt.tensor([[-1.0, -2.0]]), ckpt.tensor([1])).item()
    2.0
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)
