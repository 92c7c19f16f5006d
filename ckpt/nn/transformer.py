"""``TransformerEncoderLayer``: self-attention and a feed-forward network, each in a residual
branch with layer normalization (Vaswani et al. 2017; the pre-norm variant of Xiong et al.
2020 with ``norm_first=True``)."""
from .activation import GELU, ReLU
from .attention import MultiheadSelfAttention
from .dropout import Dropout
from .linear import Linear
from .module import Module
from .normalization import LayerNorm

_ACTIVATIONS = {"relu": ReLU, "gelu": GELU}


class TransformerEncoderLayer(Module):
    """One encoder layer with torch.nn.TransformerEncoderLayer's arguments, submodule names
    and math, so a state_dict loads into torch's layer with the same arguments.

    Post-norm (default): ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``; with
    ``norm_first=True``: ``x = x + sa(norm1(x)); x = x + ff(norm2(x))``, where ``sa`` is
    self-attention followed by dropout and ``ff`` is
    ``dropout(linear2(dropout(activation(linear1(x)))))``. ``activation`` is ``"relu"``,
    ``"gelu"`` or a callable. ``forward(src, src_mask=None, src_key_padding_mask=None,
    is_causal=False)`` takes the masks of ``MultiheadSelfAttention``; ``is_causal=True``
    alone builds the causal mask (torch asks for ``src_mask`` as well).

    >>> import ckpt
    >>> _ = ckpt.manual_seed(0)
    >>> layer = ckpt.nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, batch_first=True)
    >>> layer(ckpt.randn(2, 5, 16)).shape
    (2, 5, 16)
    >>> [name for name, _ in layer.named_children()][:3]
    ['self_attn', 'linear1', 'dropout']
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True,
                 dtype=None):
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise RuntimeError(f"activation should be relu/gelu, not {activation}")
            activation = _ACTIVATIONS[activation]()
        elif not callable(activation):
            raise TypeError(f"activation must be 'relu', 'gelu' or a callable, got "
                            f"{activation!r}")
        self.self_attn = MultiheadSelfAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                batch_first=batch_first, dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = activation

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        def attend(x):
            return self.dropout1(self.self_attn(x, attn_mask=src_mask, is_causal=is_causal,
                                                key_padding_mask=src_key_padding_mask))

        def feed_forward(x):
            return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

        x = src
        if self.norm_first:
            x = x + attend(self.norm1(x))
            return x + feed_forward(self.norm2(x))
        x = self.norm1(x + attend(x))
        return self.norm2(x + feed_forward(x))
