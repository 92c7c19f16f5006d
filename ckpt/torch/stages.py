"""Which parts of a torch model are the planner's stages.

- an ``nn.Sequential``: its children, in order ("sequence" staging: ckpt runs them);
- an explicit list of modules or callables: those, in order, applied to the sample (the
  model's own ``forward`` is not used; the list must compute what it computes);
- ``"auto"``: the model's longest ``nn.ModuleList``/``nn.Sequential`` of blocks (GPT-2's
  ``transformer.h``, a ResNet's layers) — each block a stage, the model's code before the
  first block one stage (the *prologue*) and its code after the last block another (the
  *epilogue*). The model's ``forward`` runs as written; ckpt intercepts the block calls.

>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> s = resolve(net, "auto"); s.kind, s.names
('sequence', ['0:Linear', '1:ReLU', '2:Linear'])
"""
from dataclasses import dataclass, field

from torch import nn

__all__ = ["Staging", "StageError", "resolve", "find_blocks", "refuse_sharded"]


class StageError(ValueError):
    """The model cannot be cut into stages as asked (what is wrong and what to do)."""


@dataclass
class Staging:
    """How a model is cut: ``kind`` "sequence" (``callables`` are the stages) or "auto"
    (``blocks`` is the container whose children are stages 2..L-1, ``where`` its name);
    ``names`` has one label per stage and ``params[i]`` the parameters stage i+1 uses
    (those its gradients go to)."""
    kind: str
    names: list
    params: list
    callables: list = field(default_factory=list)
    blocks: object = None
    where: str = ""

    def __len__(self):
        return len(self.names)


def find_blocks(model):
    """The longest ``ModuleList``/``Sequential`` inside ``model`` (ties: the first found),
    with its qualified name; None when there is none with at least two children.

    >>> import torch
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.embed = torch.nn.Linear(4, 8)
    ...         self.h = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(3))
    >>> name, blocks = find_blocks(Net()); name, len(blocks)
    ('h', 3)
    """
    best = None
    for name, m in model.named_modules():
        if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) >= 2:
            if best is None or len(m) > len(best[1]):
                best = (name, m)
    return best


def _trainable(params):
    seen, out = set(), []
    for p in params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def refuse_sharded(model, what):
    """Raise ``StageError`` when ``model`` has DTensor parameters (FSDP2's ``fully_shard``):
    ``what`` (``profile``, ``execute``) measures bytes with the ledger, which reads each
    tensor's storage, and a sharded parameter's storage is not readable there ("Attempted
    to access the data pointer on an invalid python storage", torch 2.13). ``PlannedModule``
    runs sharded models: profile the unsharded model and pass its plan."""
    sharded = [n for n, p in model.named_parameters() if type(p).__name__ == "DTensor"]
    if sharded:
        raise StageError(
            f"parameter {sharded[0]!r} is a DTensor (FSDP2's fully_shard): {what} measures "
            "memory with a ledger that cannot read sharded storages; profile the model "
            "before fully_shard and wrap the sharded model with PlannedModule(model, plan) "
            "(docs/torch.md)")


def resolve(model, stages="auto"):
    """The ``Staging`` of ``model`` for ``stages`` ("auto", or a list of modules/callables).

    >>> import torch
    >>> resolve(torch.nn.Linear(2, 2), "auto")
    Traceback (most recent call last):
    ...
    ckpt.torch.stages.StageError: stages='auto' found no nn.ModuleList or nn.Sequential of at least two blocks in Linear; pass stages=[...] (modules or callables applied in order) or make the model an nn.Sequential
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"ckpt.torch plans a torch.nn.Module, got {type(model).__name__}")
    if isinstance(stages, str):
        if stages != "auto":
            raise StageError(f"stages must be 'auto' or a list of modules/callables, got "
                             f"{stages!r}")
        if isinstance(model, nn.Sequential):
            return _sequence(list(model), model)
        found = find_blocks(model)
        if found is None:
            raise StageError(
                f"stages='auto' found no nn.ModuleList or nn.Sequential of at least two "
                f"blocks in {type(model).__name__}; pass stages=[...] (modules or callables "
                f"applied in order) or make the model an nn.Sequential")
        where, blocks = found
        inside = {id(p) for p in blocks.parameters()}
        outside = _trainable(p for p in model.parameters() if id(p) not in inside)
        names = (["prologue"] + [f"{where}.{i}:{type(b).__name__}" for i, b in
                                 enumerate(blocks)] + ["epilogue"])
        params = [outside] + [_trainable(b.parameters()) for b in blocks] + [outside]
        return Staging("auto", names, params, blocks=blocks, where=where)
    try:
        stages = list(stages)
    except TypeError:
        raise StageError(f"stages must be 'auto' or a list of modules/callables, got "
                         f"{type(stages).__name__}") from None
    if not stages:
        raise StageError("stages is an empty list; give at least one module or callable")
    for i, s in enumerate(stages, 1):
        if not callable(s):
            raise StageError(f"stage {i} is a {type(s).__name__}, not a module or callable")
    return _sequence(stages, model)


def _sequence(stages, model):
    everything = _trainable(model.parameters())
    names, params = [], []
    for i, s in enumerate(stages):
        label = type(s).__name__ if isinstance(s, nn.Module) else getattr(
            s, "__name__", type(s).__name__)
        names.append(f"{i}:{label}")
        # a plain callable may use any parameter of the model: its gradients are asked for
        # all of them (unused ones come back None)
        params.append(_trainable(s.parameters()) if isinstance(s, nn.Module) else everything)
    return Staging("sequence", names, params, callables=list(stages))

