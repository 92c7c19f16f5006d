"""``embedding``: rows of a weight picked by indices."""
import numpy as np

from ...node import Node, record
from ...tensor import Tensor, _wrap
from .._util import data_of, for_jvp
from ._common import _as_index_array, _scatter_add_flat


class EmbeddingBackward0(Node):
    def vjp(self, g, indices):
        i = data_of(indices)
        V, D = self.weight_shape
        if self.padding_idx is not None or self.scale_grad_by_freq:
            factor = np.ones(i.shape, dtype=g.dtype)
            if self.scale_grad_by_freq:
                factor = factor / np.bincount(i.reshape(-1), minlength=V)[i]
            if self.padding_idx is not None:
                factor[i == self.padding_idx] = 0
            g = g * factor[..., None]
        flat = i[..., None] * D + np.arange(D)
        return _scatter_add_flat(g, flat, (V, D))

    def jvp(self, tangents, primals, out):  # linear in the weight: the rows of its tangent
        return embedding(self.indices, tangents[0])


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    """Rows of ``weight`` picked by the integer ``input``: shape ``input.shape + (D,)``.

    The gradient is scattered into the picked rows (repeated indices add up); the
    ``padding_idx`` row gets none. ``max_norm`` and ``sparse`` are not supported.

    >>> import ckpt
    >>> from ckpt.autograd.ops.nn.embedding import embedding
    >>> embedding(ckpt.tensor([2, 0]), ckpt.arange(6.0).reshape(3, 2)).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    if max_norm is not None:
        raise NotImplementedError("embedding: max_norm is not supported by ckpt")
    if sparse:
        raise NotImplementedError("embedding: sparse gradients are not supported by ckpt")
    i = _as_index_array(input, "embedding")
    w = weight.data
    if w.ndim != 2:
        raise RuntimeError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                           f"shape {list(w.shape)}")
    V = w.shape[0]
    if i.size and (i.min() < 0 or i.max() >= V):
        bad = i.min() if i.min() < 0 else i.max()
        raise IndexError(f"embedding: index {int(bad)} is out of range for a weight with {V} rows "
                         f"(weight shape {list(w.shape)})")
    if padding_idx is not None:
        if not -V <= padding_idx < V:
            raise ValueError(f"embedding: padding_idx must be within num_embeddings ({V}), got "
                             f"{padding_idx}")
        padding_idx %= V
    indices = input if isinstance(input, Tensor) else _wrap(i)
    return record(EmbeddingBackward0, np.take(w, i, axis=0), (weight,), (indices,),
                  weight_shape=w.shape, padding_idx=padding_idx,
                  scale_grad_by_freq=scale_grad_by_freq, **for_jvp(indices=indices))
