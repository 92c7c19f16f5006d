"""``MultiheadSelfAttention``: torch.nn.MultiheadAttention's math and parameter layout, for
the self-attention case (query = key = value = the input)."""
import math

import numpy as np

from ..autograd.ops import linear, where
from ..autograd.tensor import Tensor
from . import functional as F
from . import init
from .linear import Linear, _empty_parameter
from .module import Module


def _as_array(mask):
    return mask.data if isinstance(mask, Tensor) else np.asarray(mask)


class MultiheadSelfAttention(Module):
    """Multi-head scaled dot-product self-attention of an ``(N, L, E)`` input (``(L, N, E)``
    if ``batch_first=False``; ``(L, E)`` unbatched), returning the output only.

    Parameters are laid out as in ``torch.nn.MultiheadAttention`` (``in_proj_weight``
    ``(3E, E)`` stacking the q, k, v projections, ``in_proj_bias`` ``(3E,)``, ``out_proj`` a
    Linear), so a state_dict loads into ``torch.nn.MultiheadAttention(E, H, batch_first=True)``
    and ``block(x)`` equals torch's ``mha(x, x, x, need_weights=False)[0]``. Initialization
    as torch: xavier-uniform ``in_proj_weight``, zero biases.

    ``forward(x, attn_mask=None, is_causal=False, key_padding_mask=None)``: a boolean
    ``attn_mask`` (``(L, L)`` or ``(N * num_heads, L, L)``) marks with True the pairs that may
    *not* attend, a float one is added to the scores; ``is_causal=True`` hides future
    positions (ckpt builds the mask; torch requires it to be passed); a boolean
    ``key_padding_mask`` ``(N, L)`` hides padded keys. Dropout applies to the attention
    weights in training.

    >>> import ckpt
    >>> attn = ckpt.nn.MultiheadSelfAttention(8, 2)
    >>> [name for name, _ in attn.named_parameters()]
    ['in_proj_weight', 'in_proj_bias', 'out_proj.weight', 'out_proj.bias']
    >>> attn(ckpt.randn(3, 5, 8), is_causal=True).shape
    (3, 5, 8)
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, batch_first=True,
                 dtype=None):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got "
                             f"embed_dim={embed_dim} and num_heads={num_heads} instead")
        if embed_dim % num_heads != 0:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.in_proj_weight = _empty_parameter((3 * embed_dim, embed_dim), dtype)
        if bias:
            self.in_proj_bias = _empty_parameter((3 * embed_dim,), dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self):
        """Xavier-uniform ``in_proj_weight``, zero biases (``out_proj.weight`` keeps its
        Linear init), as torch."""
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, x, attn_mask=None, is_causal=False, key_padding_mask=None):
        unbatched = x.ndim == 2
        if unbatched:
            x = x.unsqueeze(0 if self.batch_first else 1)
        if x.ndim != 3 or x.shape[-1] != self.embed_dim:
            raise RuntimeError(f"MultiheadSelfAttention: expected input of shape (N, L, "
                               f"{self.embed_dim}) or (L, {self.embed_dim}), got {list(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        N, L, E = x.shape
        H, D = self.num_heads, self.head_dim
        q, k, v = linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, -1)
        q, k, v = (t.reshape(N, L, H, D).transpose(1, 2) for t in (q, k, v))  # (N, H, L, D)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))          # (N, H, L, L)
        scores = self._mask(scores, attn_mask, is_causal, key_padding_mask, N, L)
        weights = F.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, self.dropout)
        out = (weights @ v).transpose(1, 2).reshape(N, L, E)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out.squeeze(0 if self.batch_first else 1) if unbatched else out

    def _mask(self, scores, attn_mask, is_causal, key_padding_mask, N, L):
        hidden = None
        if is_causal:
            hidden = np.triu(np.ones((L, L), dtype=bool), k=1)
        if attn_mask is not None:
            m = _as_array(attn_mask)
            if m.shape not in ((L, L), (N * self.num_heads, L, L)):
                raise RuntimeError(f"The shape of attn_mask should be {(L, L)} or "
                                   f"{(N * self.num_heads, L, L)}, but got {m.shape}")
            m = m.reshape(N, self.num_heads, L, L) if m.ndim == 3 else m
            if m.dtype == np.bool_:
                hidden = m if hidden is None else hidden | m
            else:
                scores = scores + Tensor(m.astype(scores.dtype))
        if key_padding_mask is not None:
            m = _as_array(key_padding_mask)
            if m.shape != (N, L):
                raise RuntimeError(f"expected key_padding_mask of shape {(N, L)}, got {m.shape}")
            m = m.reshape(N, 1, 1, L)
            if m.dtype == np.bool_:
                hidden = m if hidden is None else hidden | m
            else:
                scores = scores + Tensor(m.astype(scores.dtype))
        if hidden is not None:
            scores = where(Tensor(np.asarray(hidden)), -math.inf, scores)
        return scores

    def extra_repr(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")
