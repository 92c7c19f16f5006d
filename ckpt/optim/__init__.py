"""Optimizers with torch.optim's names, hyperparameters and update formulas.

>>> import ckpt
>>> model = ckpt.nn.Linear(2, 1)
>>> opt = ckpt.optim.SGD(model.parameters(), lr=0.1)
>>> loss = model(ckpt.ones(4, 2)).pow(2).mean(); loss.backward(); opt.step(); opt.zero_grad()
"""
from .adam import Adam, AdamW
from .optimizer import Optimizer, required
from .sgd import SGD

__all__ = ["Adam", "AdamW", "Optimizer", "SGD", "required"]
