"""``Embedding``."""
import numpy as np

from ..autograd.ops.shape import bump_version
from ..autograd.tensor import Tensor
from . import functional as F
from . import init
from .linear import _empty_parameter
from .module import Module
from .parameter import Parameter


class Embedding(Module):
    """A lookup table: integer indices ``(*)`` pick rows of ``weight (num_embeddings,
    embedding_dim)``, giving ``(*, embedding_dim)``. ``weight`` starts as N(0, 1) samples
    (from ckpt's generator); the ``padding_idx`` row starts at zero and gets no gradient.

    >>> import ckpt
    >>> emb = ckpt.nn.Embedding(10, 3, padding_idx=0)
    >>> emb
    Embedding(10, 3, padding_idx=0)
    >>> emb(ckpt.tensor([[0, 4], [9, 9]])).shape, emb.weight[0].tolist()
    ((2, 2, 3), [0.0, 0.0, 0.0])
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 _freeze=False, dtype=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError("Padding_idx must be within num_embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        if _weight is None:
            self.weight = _empty_parameter((num_embeddings, embedding_dim), dtype)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self):
        """Re-draw ``weight`` from N(0, 1) and zero the padding row."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0
            bump_version(self.weight)

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None, **kwargs):
        """An Embedding whose weight is ``embeddings`` (frozen unless ``freeze=False``).

        >>> import ckpt
        >>> emb = ckpt.nn.Embedding.from_pretrained(ckpt.eye(3))
        >>> emb(ckpt.tensor([1])).tolist(), emb.weight.requires_grad
        ([[0.0, 1.0, 0.0]], False)
        """
        if embeddings.ndim != 2:
            raise ValueError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = embeddings.shape
        weight = embeddings if isinstance(embeddings, Tensor) else Tensor(np.asarray(embeddings))
        return cls(rows, cols, padding_idx=padding_idx, _weight=weight, _freeze=freeze, **kwargs)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                           self.scale_grad_by_freq, self.sparse)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq:
            s += ", scale_grad_by_freq=True"
        if self.sparse:
            s += ", sparse=True"
        return s
