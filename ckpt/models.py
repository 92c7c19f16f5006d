"""Built-in runnable models: small ``ckpt.nn.Sequential`` networks, one stage per child, that
the ``ckpt`` command line profiles (``ckpt profile resnet-run``), draws (``ckpt graph``) and
runs (``ckpt demo``). Their chains are measured, not computed from formulas; the planner
zoo (``ckpt.planner.zoo``) has formula chains of real-size models.

Each builder takes ``batch`` (None: its default) and returns ``(model, example_input)``,
seeded, so the same call always gives the same weights and input.

>>> sorted(NAMES)
['mlp-run', 'resnet-run', 'transformer-run']
>>> model, x = build("resnet-run", batch=2)
>>> len(model), x.shape
(6, (2, 3, 32, 32))
"""
from . import nn
from .autograd.factory import randn
from .autograd.random import manual_seed

__all__ = ["mlp_run", "resnet_run", "transformer_run", "build", "NAMES"]


def mlp_run(batch=None):
    """16 blocks of Linear(256, 256) + ReLU + Dropout(0.1) on a batch of 512 (float32,
    ~25 MiB of activations).

    >>> model, x = mlp_run(batch=4); len(model), x.shape
    (16, (4, 256))
    """
    manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.1)) for _ in range(16)]
    return nn.Sequential(*blocks), randn(512 if batch is None else batch, 256)


def resnet_run(batch=None):
    """A residual conv net on 32x32 RGB images, batch 8. A stem (3x3 conv to 16 channels,
    BatchNorm, ReLU), four ResidualBlock(16), then average pooling and a linear classifier
    (float32, 512 KiB per activation).

    >>> model, x = resnet_run(batch=1); model(x).shape
    (1, 10)
    """
    manual_seed(0)
    stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16),
                         nn.ReLU())
    head = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(16 * 8 * 8, 10))
    model = nn.Sequential(stem, *[nn.ResidualBlock(16) for _ in range(4)], head)
    return model, randn(8 if batch is None else batch, 3, 32, 32)


def transformer_run(batch=None):
    """Four pre-norm TransformerEncoderLayer(128, 4 heads, feed-forward 256, dropout 0.1) on
    sequences of 64 tokens, batch 8 (float32; attention weights 512 KiB per layer).

    >>> model, x = transformer_run(batch=1); model(x).shape
    (1, 64, 128)
    """
    manual_seed(0)
    layers = [nn.TransformerEncoderLayer(128, 4, dim_feedforward=256, dropout=0.1,
                                         batch_first=True, norm_first=True) for _ in range(4)]
    return nn.Sequential(*layers), randn(8 if batch is None else batch, 64, 128)


NAMES = {"mlp-run": mlp_run, "resnet-run": resnet_run, "transformer-run": transformer_run}


def build(name, batch=None):
    """``(model, example_input)`` of the built-in runnable model ``name``.

    >>> model, x = build("mlp-run", batch=3); x.shape
    (3, 256)
    """
    if name not in NAMES:
        raise ValueError(f"unknown built-in model {name!r}; choose one of {sorted(NAMES)}")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int)
                              or batch <= 0):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    return NAMES[name](batch)
