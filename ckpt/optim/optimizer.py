"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and (de)serialization.

Subclasses implement ``step``. Updates are written into each parameter's numpy ``.data``
in place, outside the graph, and bump the parameter's version counter (as torch's in-place
updates do, so a graph that saved the old value refuses to backward through it).
"""
import weakref
from collections import defaultdict
from itertools import chain

import numpy as np

from ..autograd import grad_mode
from ..autograd.ops.shape import bump_version
from ..autograd.tensor import Tensor
from ..nn.module import _type_name, _zero_grad

__all__ = ["Optimizer", "required", "live_optimizers", "optimizers_created"]

# every Optimizer alive, weakly held: ``ckpt.memory.track`` finds the optimizers of the
# parameters it watches here (their state is memory the model's training holds)
_LIVE = weakref.WeakSet()
_CREATED = [0]          # optimizers created so far: tells a tracker when to look again


def live_optimizers():
    """The optimizers alive now (held weakly: an optimizer nobody refers to drops out).

    >>> import ckpt
    >>> w = ckpt.nn.Parameter(ckpt.ones(2))
    >>> opt = ckpt.optim.SGD([w], lr=0.1)
    >>> opt in live_optimizers()
    True
    """
    return list(_LIVE)


def optimizers_created():
    """How many optimizers this process has created (a tracker looks for new ones when it
    changes).

    >>> import ckpt
    >>> n = optimizers_created()
    >>> _ = ckpt.optim.SGD([ckpt.nn.Parameter(ckpt.ones(2))], lr=0.1)
    >>> optimizers_created() - n
    1
    """
    return _CREATED[0]


class _RequiredParameter:
    """Marks a hyperparameter without a default (e.g. a required ``lr``)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _typename(obj):
    return "ckpt." + _type_name(obj) if isinstance(obj, Tensor) else type(obj).__name__


def _copy_value(value, like=None):
    """A private copy of a state value (tensors get their own memory, cast like ``like``)."""
    if isinstance(value, Tensor):
        data = value.data
        if like is not None and data.dtype.kind == "f" and like.data.dtype.kind == "f":
            data = data.astype(like.data.dtype)
        return Tensor(np.array(data, copy=True))
    if isinstance(value, dict):
        return {k: _copy_value(v, None if k == "step" else like) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_value(v, like) for v in value)
    return value


class Optimizer:
    """Base class: holds ``param_groups`` (dicts with ``'params'`` and hyperparameters) and
    ``state`` (a dict per parameter).

    >>> import ckpt
    >>> w = ckpt.nn.Parameter(ckpt.ones(2)); b = ckpt.nn.Parameter(ckpt.zeros(1))
    >>> opt = ckpt.optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.5}], lr=0.1)
    >>> [g["lr"] for g in opt.param_groups]
    [0.1, 0.5]
    """

    def __init__(self, params, defaults):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            "Tensors or dicts, but got " + _typename(params))
        self.state = defaultdict(dict)
        self.param_groups = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)
        _LIVE.add(self)
        _CREATED[0] += 1

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group):
        """Add a group of parameters with its own hyperparameters (missing ones take the
        optimizer's defaults).

        >>> import ckpt
        >>> opt = ckpt.optim.SGD([ckpt.nn.Parameter(ckpt.ones(1))], lr=0.1, momentum=0.9)
        >>> opt.add_param_group({"params": [ckpt.nn.Parameter(ckpt.ones(1))], "lr": 0.01})
        >>> opt.param_groups[1]["lr"], opt.param_groups[1]["momentum"]
        (0.01, 0.9)
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of tensors in sets will change between runs. Please use "
                            "a list instead.")
        else:
            params = list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                + _typename(p))
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        group = dict(param_group)
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all optimized parameters (to None, or zeros in place).

        >>> import ckpt
        >>> w = ckpt.nn.Parameter(ckpt.ones(2)); (w * 3).sum().backward()
        >>> opt = ckpt.optim.SGD([w], lr=0.1); opt.zero_grad(set_to_none=False); w.grad.tolist()
        [0.0, 0.0]
        """
        for group in self.param_groups:
            for p in group["params"]:
                _zero_grad(p, set_to_none)

    def step(self, closure=None):
        """Update the parameters once (implemented by subclasses)."""
        raise NotImplementedError

    def _closure_loss(self, closure):
        if closure is None:
            return None
        with grad_mode.enable_grad():
            return closure()

    def state_dict(self):
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}``;
        parameters are referred to by their position across groups, as in torch.

        >>> import ckpt
        >>> w = ckpt.nn.Parameter(ckpt.ones(2))
        >>> sd = ckpt.optim.SGD([w], lr=0.1).state_dict()
        >>> sd["param_groups"][0]["params"], sd["state"]
        ([0], {})
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and state saved by ``state_dict`` (state tensors are copied
        and cast to their parameter's dtype).

        >>> import ckpt
        >>> w = ckpt.nn.Parameter(ckpt.ones(2)); (w * 3).sum().backward()
        >>> a = ckpt.optim.SGD([w], lr=0.1, momentum=0.9); a.step()
        >>> b = ckpt.optim.SGD([w], lr=0.5, momentum=0.9); b.load_state_dict(a.state_dict())
        >>> b.param_groups[0]["lr"], b.state[w]["momentum_buffer"].tolist()
        (0.1, [3.0, 3.0])
        """
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match "
                             "the size of optimizer's group")
        id_map = dict(zip(chain.from_iterable(s["params"] for s in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        state = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = _copy_value(value, param)
            else:
                state[key] = _copy_value(value)
        new_groups = []
        for group, saved in zip(groups, saved_groups):
            new = {k: _copy_value(v) for k, v in saved.items() if k != "params"}
            new["params"] = group["params"]
            new_groups.append(new)
        self.state = state
        self.param_groups = new_groups


def _bump(p):
    bump_version(p)
