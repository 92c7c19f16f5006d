"""Small runnable torch models for ckpt.torch's examples, tests, benchmarks and CLI: each
factory returns ``(model, sample, loss_fn)``, what ``ckpt --torch MODULE:FACTORY`` takes.

- ``mlp``: an ``nn.Sequential`` of Linear-GELU-Dropout blocks (stages: its children);
- ``gpt``: a GPT-like decoder whose blocks are an ``nn.ModuleList`` and take the causal mask
  as a keyword (``stages="auto"``: embeddings, 4 blocks, final norm and head);
- ``resnet``: a ResNet-like net with BatchNorm and in-place ReLU (auto: stem, blocks, head);
- ``gpt2``: HuggingFace transformers' ``GPT2LMHeadModel`` from a small ``GPT2Config`` (random
  weights, nothing downloaded; needs ``transformers``).

>>> model, x, loss_fn = gpt()
>>> loss_fn(model(x)).shape
torch.Size([])
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["mlp", "gpt", "resnet", "gpt2", "GPT", "ResNet"]


class Block(nn.Module):
    """A pre-norm transformer block: causal self-attention (``mask`` is True where a query
    may not look) and a GELU MLP, each with dropout and a residual."""

    def __init__(self, d, h, p):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.drop, self.h = nn.Dropout(p), h

    def forward(self, x, mask=None):
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D // self.h)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class GPT(nn.Module):
    """A GPT-like decoder: token and position embeddings, ``n`` ``Block``s in a ModuleList
    (each given the causal mask as a keyword), a final LayerNorm and a linear head giving
    ``vocab`` logits per position.

    >>> model = GPT(vocab=16, d=8, h=2, n=2, T=4)
    >>> tuple(model(torch.zeros(3, 4, dtype=torch.long)).shape)
    (3, 4, 16)
    """

    def __init__(self, vocab=64, d=32, h=4, n=4, T=16, p=0.1):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(T, d)
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(Block(d, h, p) for _ in range(n))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).triu(1))

    def forward(self, idx):
        T = idx.shape[1]
        x = self.drop(self.wte(idx) + self.wpe.weight[:T])
        for b in self.blocks:
            x = b(x, mask=self.causal[:T, :T])
        return self.head(self.ln(x))


class Res(nn.Module):
    """A residual block of two 3x3 convolutions with BatchNorm and in-place ReLU."""

    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        y = F.relu(self.b1(self.c1(x)), inplace=True)
        return F.relu(x + self.b2(self.c2(y)), inplace=True)


class ResNet(nn.Module):
    """A ResNet-like net: a conv-BatchNorm-ReLU stem to ``c`` channels, ``n`` ``Res``
    blocks in an ``nn.Sequential``, global average pooling and a linear classifier.

    >>> model = ResNet(c=4, n=2, classes=3)
    >>> tuple(model(torch.zeros(2, 3, 8, 8)).shape)
    (2, 3)
    """

    def __init__(self, c=8, n=4, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*[Res(c) for _ in range(n)])
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def mlp(batch=64, width=256, depth=8, p=0.1, seed=0):
    """An MLP of ``depth`` Linear-GELU-Dropout blocks in an ``nn.Sequential``, its input and
    a mean-squared loss.

    >>> model, x, loss_fn = mlp(batch=4, width=8, depth=2); len(model), tuple(x.shape)
    (2, (4, 8))
    """
    torch.manual_seed(seed)
    model = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Dropout(p))
                            for _ in range(depth)])
    return model, torch.randn(batch, width), lambda out: out.pow(2).mean()


def gpt(batch=4, seq=16, vocab=64, width=32, heads=4, layers=4, p=0.1, seed=0):
    """The GPT-like model, token ids and a next-token-style loss (log-sum-exp of the logits).

    >>> model, x, loss_fn = gpt(layers=2); len(model.blocks), x.dtype
    (2, torch.int64)
    """
    torch.manual_seed(seed)
    model = GPT(vocab, width, heads, layers, seq, p)
    return model, torch.randint(0, vocab, (batch, seq)), lambda out: out.logsumexp(-1).mean()


def resnet(batch=4, channels=8, size=16, blocks=4, seed=0):
    """The ResNet-like net, images and a mean-squared loss.

    >>> model, x, loss_fn = resnet(blocks=2); tuple(model(x).shape)
    (4, 10)
    """
    torch.manual_seed(seed)
    model = ResNet(channels, blocks)
    return model, torch.randn(batch, 3, size, size), lambda out: out.pow(2).mean()


def gpt2(batch=2, seq=32, layers=4, width=64, heads=4, vocab=256, seed=0):
    """HuggingFace's ``GPT2LMHeadModel`` built from a small config (random weights), token
    ids and the mean of the logits' log-sum-exp (``attn_implementation="eager"``, dropout on).

    >>> model, x, loss_fn = gpt2(layers=2); type(model).__name__
    'GPT2LMHeadModel'
    """
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=heads, vocab_size=vocab,
                        n_positions=seq, bos_token_id=0, eos_token_id=0,
                        attn_implementation="eager", use_cache=False)
    model = GPT2LMHeadModel(config)
    model.train()
    return (model, torch.randint(0, vocab, (batch, seq)),
            lambda out: out.logits.logsumexp(-1).mean())
