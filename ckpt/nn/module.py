"""``Module``: the base class of every layer (torch.nn.Module's API, minus devices).

A Module keeps three ordered registries filled automatically by attribute assignment:
``_parameters`` (tensors created by ``Parameter``), ``_buffers`` (``register_buffer``) and
``_modules`` (sub-Modules). Everything else (traversal, ``state_dict``, ``train``/``eval``,
dtype conversion) walks these.

Parameters are plain ``ckpt.Tensor`` objects, not instances of a subclass: the autograd hot
path tests ``x.__class__ is Tensor`` and would not see a subclass. ``Parameter(data)``
returns a leaf Tensor with ``requires_grad=True`` and records it in a weak registry
(``ckpt.nn.parameter``); ``__setattr__`` files a tensor under ``_parameters`` exactly when
it is in that registry, and ``isinstance(t, Parameter)`` asks the registry too.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from ..autograd import grad_mode
from ..autograd.ops.shape import bump_version
from ..autograd.tensor import Tensor
from .backward_hooks import call_with_backward_hooks
from .parameter import Parameter, is_parameter, mark_parameter

__all__ = ["Module", "Parameter"]


class _IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    def __repr__(self):
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


def _type_name(t):
    return {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
            "int64": "LongTensor", "int32": "IntTensor", "bool": "BoolTensor"}.get(
                str(t.data.dtype), "Tensor")


def _describe(value):
    if isinstance(value, Tensor):
        return "ckpt." + _type_name(value)
    return type(value).__name__


def _addindent(text, spaces):
    lines = text.split("\n")
    if len(lines) == 1:
        return text
    return lines[0] + "\n" + "\n".join(" " * spaces + line for line in lines[1:])


class Module:
    """Base class for layers: subclasses set attributes in ``__init__`` and define ``forward``.

    >>> import ckpt
    >>> class Affine(ckpt.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.scale = ckpt.nn.Parameter(ckpt.ones(2))
    ...         self.register_buffer("offset", ckpt.zeros(2))
    ...     def forward(self, x):
    ...         return x * self.scale + self.offset
    >>> m = Affine()
    >>> [name for name, _ in m.named_parameters()], list(m.state_dict())
    (['scale'], ['scale', 'offset'])
    >>> m(ckpt.tensor([1.0, 2.0])).tolist()
    [1.0, 2.0]
    """

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_backward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_backward_hooks", OrderedDict())

    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function')

    def __call__(self, *args, **kwargs):
        if not (self._forward_pre_hooks or self._forward_hooks or self._backward_hooks
                or self._backward_pre_hooks):
            return self.forward(*args, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        if (self._backward_hooks or self._backward_pre_hooks) and grad_mode.is_grad_enabled():
            out = call_with_backward_hooks(self, list(self._backward_pre_hooks.values()),
                                           list(self._backward_hooks.values()), self.forward,
                                           args, kwargs)
        else:
            out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    # ---- hooks ------------------------------------------------------------------------
    def register_forward_pre_hook(self, hook):
        """Run ``hook(module, args)`` before ``forward``; a returned value replaces ``args``.

        >>> import ckpt
        >>> m = ckpt.nn.Identity()
        >>> h = m.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
        >>> m(ckpt.ones(1)).tolist()
        [2.0]
        >>> h.remove(); m(ckpt.ones(1)).tolist()
        [1.0]
        """
        return _HookHandle(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """Run ``hook(module, args, output)`` after ``forward``; a returned value replaces
        the output.

        >>> import ckpt
        >>> m = ckpt.nn.Identity(); seen = []
        >>> h = m.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
        >>> _ = m(ckpt.ones(3)); seen
        [(3,)]
        """
        return _HookHandle(self._forward_hooks, hook)

    def register_full_backward_pre_hook(self, hook):
        """Run ``hook(module, grad_output)`` when the gradients with respect to this module's
        outputs are computed; a returned tuple replaces ``grad_output``.

        >>> import ckpt
        >>> m = ckpt.nn.Identity(); x = ckpt.ones(2, requires_grad=True)
        >>> h = m.register_full_backward_pre_hook(lambda mod, go: (go[0] * 3,))
        >>> m(x).sum().backward(); x.grad.tolist()
        [3.0, 3.0]
        """
        return _HookHandle(self._backward_pre_hooks, hook)

    def register_full_backward_hook(self, hook):
        """Run ``hook(module, grad_input, grad_output)`` when the gradients with respect to
        this module's tensor inputs are computed (None for inputs that don't require grad);
        a returned tuple replaces ``grad_input``. In-place changes of the module's outputs
        are then refused, as in torch.

        >>> import ckpt
        >>> m = ckpt.nn.Identity(); x = ckpt.ones(2, requires_grad=True)
        >>> h = m.register_full_backward_hook(lambda mod, gi, go: (gi[0] + 1,))
        >>> m(x).sum().backward(); x.grad.tolist()
        [2.0, 2.0]
        """
        return _HookHandle(self._backward_hooks, hook)

    # ---- registration -----------------------------------------------------------------
    def __setattr__(self, name, value):
        d = self.__dict__
        if "_parameters" not in d:
            if is_parameter(value) or isinstance(value, Module):
                raise AttributeError(
                    f"cannot assign {'parameters' if is_parameter(value) else 'module'} "
                    "before Module.__init__() call")
            object.__setattr__(self, name, value)
            return
        params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
        if is_parameter(value):
            self._forget(name, keep=params)
            params[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=modules)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign '{_describe(value)}' as parameter '{name}' "
                                "(ckpt.nn.Parameter or None expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign '{_describe(value)}' as child module '{name}' "
                                "(ckpt.nn.Module or None expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"cannot assign '{_describe(value)}' as buffer '{name}' "
                                "(ckpt.Tensor or None expected)")
            buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        """Remove ``name`` from the instance dict and every registry but ``keep`` (so a
        re-assignment keeps its place in order)."""
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            if registry is not keep:
                registry.pop(name, None)
        if keep is not self._buffers:
            self._non_persistent_buffers.discard(name)

    def __getattr__(self, name):
        d = self.__dict__
        for registry in ("_parameters", "_buffers", "_modules"):
            if registry in d and name in d[registry]:
                return d[registry][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._parameters) | set(self._buffers)
                      | set(self._modules))

    def __setstate__(self, state):
        # copy.deepcopy / pickle make new tensors: flag the copies of parameters again.
        # Also drop copied gradient accumulators: a deep-copied ``_acc`` still points at the
        # original tensor (see the report on Tensor deepcopy), so the copy would send its
        # gradients there.
        self.__dict__.update(state)
        for p in self._parameters.values():
            if p is not None:
                mark_parameter(p)
                p._acc = None

    def _check_name(self, name, kind):
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {type(name).__name__}")
        if "." in name:
            raise KeyError(f'{kind} name can\'t contain "."')
        if name == "":
            raise KeyError(f'{kind} name can\'t be empty string ""')
        if hasattr(self, name) and not any(name in r for r in (
                self._parameters, self._buffers, self._modules)):
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name, param):
        """Add ``param`` (a ``Parameter`` or None) under ``name``.

        >>> import ckpt
        >>> m = ckpt.nn.Module(); m.register_parameter("w", ckpt.nn.Parameter(ckpt.ones(1)))
        >>> [n for n, _ in m.named_parameters()]
        ['w']
        """
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign parameter before Module.__init__() call")
        self._check_name(name, "parameter")
        if param is not None and not is_parameter(param):
            raise TypeError(f"cannot assign '{_describe(param)}' object to parameter '{name}' "
                            "(ckpt.nn.Parameter or None required)")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Add a non-learnable tensor (e.g. running statistics); ``persistent=False`` keeps it
        out of ``state_dict``.

        >>> import ckpt
        >>> m = ckpt.nn.Module(); m.register_buffer("count", ckpt.zeros(1))
        >>> m.count.tolist(), list(m.state_dict())
        ([0.0], ['count'])
        """
        if "_buffers" not in self.__dict__:
            raise AttributeError("cannot assign buffer before Module.__init__() call")
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"cannot assign '{_describe(tensor)}' object to buffer '{name}' "
                            "(ckpt.Tensor or None required)")
        self._forget(name, keep=self._buffers)
        self._buffers[name] = tensor
        self._non_persistent_buffers.discard(name)
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name, module):
        """Add a child module under ``name`` (same as attribute assignment).

        >>> import ckpt
        >>> m = ckpt.nn.Module(); m.add_module("fc", ckpt.nn.Linear(2, 2))
        >>> [n for n, _ in m.named_children()]
        ['fc']
        """
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{_describe(module)} is not a Module subclass")
        self._check_name(name, "module")
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    register_module = add_module

    def get_submodule(self, target):
        """The submodule at dotted path ``target`` ('' is the module itself).

        >>> import ckpt
        >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(2, 2))
        >>> type(net.get_submodule("0")).__name__
        'Linear'
        """
        mod = self
        for item in target.split(".") if target else ():
            if item not in mod._modules:
                raise AttributeError(f"{type(mod).__name__} has no attribute `{item}`")
            mod = mod._modules[item]
        return mod

    # ---- traversal --------------------------------------------------------------------
    def named_modules(self, memo=None, prefix="", remove_duplicate=True):
        """``(dotted_name, module)`` for this module and all below it, depth first.

        >>> import ckpt
        >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(2, 3), ckpt.nn.ReLU())
        >>> [name for name, _ in net.named_modules()]
        ['', '0', '1']
        """
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self):
        """This module and all below it (each once).

        >>> import ckpt
        >>> len(list(ckpt.nn.Sequential(ckpt.nn.ReLU(), ckpt.nn.Tanh()).modules()))
        3
        """
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        """``(name, module)`` for the direct children (each once).

        >>> import ckpt
        >>> [n for n, _ in ckpt.nn.Sequential(ckpt.nn.ReLU()).named_children()]
        ['0']
        """
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        """The direct child modules.

        >>> import ckpt
        >>> [type(m).__name__ for m in ckpt.nn.Sequential(ckpt.nn.ReLU()).children()]
        ['ReLU']
        """
        for _, module in self.named_children():
            yield module

    def _named_members(self, registry, prefix, recurse, remove_duplicate=True):
        seen = set()
        modules = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate) \
            if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or (remove_duplicate and id(value) in seen):
                    continue
                seen.add(id(value))
                yield module_prefix + ("." if module_prefix else "") + name, value

    def named_parameters(self, prefix="", recurse=True, remove_duplicate=True):
        """``(dotted_name, parameter)`` pairs; shared parameters are listed once.

        >>> import ckpt
        >>> [n for n, _ in ckpt.nn.Linear(2, 3).named_parameters()]
        ['weight', 'bias']
        """
        return self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse=True):
        """The parameters of this module (and, with ``recurse``, of all below it).

        >>> import ckpt
        >>> sum(p.numel() for p in ckpt.nn.Linear(2, 3).parameters())
        9
        """
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True, remove_duplicate=True):
        """``(dotted_name, buffer)`` pairs.

        >>> import ckpt
        >>> [n for n, _ in ckpt.nn.BatchNorm1d(3).named_buffers()]
        ['running_mean', 'running_var', 'num_batches_tracked']
        """
        return self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse=True):
        """The buffers of this module (and, with ``recurse``, of all below it).

        >>> import ckpt
        >>> len(list(ckpt.nn.BatchNorm1d(3).buffers()))
        3
        """
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    # ---- modes and gradients ----------------------------------------------------------
    def train(self, mode=True):
        """Set training mode on this module and all below it; returns ``self``.

        >>> import ckpt
        >>> net = ckpt.nn.Sequential(ckpt.nn.Dropout(0.5)).train(False)
        >>> net.training, net[0].training
        (False, False)
        """
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        """Evaluation mode (``train(False)``).

        >>> import ckpt
        >>> ckpt.nn.Dropout().eval().training
        False
        """
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` on every parameter; returns ``self``.

        >>> import ckpt
        >>> m = ckpt.nn.Linear(2, 2).requires_grad_(False)
        >>> any(p.requires_grad for p in m.parameters())
        False
        """
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all parameters (to None, or to zeros in place).

        >>> import ckpt
        >>> m = ckpt.nn.Linear(2, 1); m(ckpt.ones(1, 2)).sum().backward()
        >>> m.zero_grad(); m.weight.grad is None
        True
        """
        for p in self.parameters():
            _zero_grad(p, set_to_none)

    def apply(self, fn):
        """Call ``fn`` on every submodule (children first) and then on ``self``.

        >>> import ckpt
        >>> names = []
        >>> _ = ckpt.nn.Sequential(ckpt.nn.ReLU()).apply(lambda m: names.append(type(m).__name__))
        >>> names
        ['ReLU', 'Sequential']
        """
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ---- dtype conversion -------------------------------------------------------------
    def _apply_dtype(self, dtype):
        dtype = np.dtype(dtype)
        for module in self.modules():
            for registry in (module._parameters, module._buffers):
                for t in registry.values():
                    if t is not None and t.data.dtype.kind == "f" and t.data.dtype != dtype:
                        t.data = t.data.astype(dtype)
                        if t.grad is not None:
                            t.grad = Tensor(t.grad.data.astype(dtype))
        return self

    def to(self, dtype=None, *args, **kwargs):
        """Cast floating parameters and buffers to ``dtype`` in place (the tensor objects stay
        the same, so optimizers keep working); device arguments are ignored.

        >>> import ckpt
        >>> ckpt.nn.Linear(2, 2).to(ckpt.float64).weight.dtype
        dtype('float64')
        """
        dtype = kwargs.get("dtype", dtype)
        if dtype is None or isinstance(dtype, str):
            return self
        return self._apply_dtype(dtype)

    def double(self):
        """Cast floating parameters and buffers to float64.

        >>> import ckpt
        >>> ckpt.nn.Linear(2, 2).double().bias.dtype
        dtype('float64')
        """
        return self._apply_dtype(np.float64)

    def float(self):
        """Cast floating parameters and buffers to float32.

        >>> import ckpt
        >>> ckpt.nn.Linear(2, 2).double().float().bias.dtype
        dtype('float32')
        """
        return self._apply_dtype(np.float32)

    # ---- state_dict -------------------------------------------------------------------
    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """An ordered ``{dotted_name: tensor}`` of parameters and persistent buffers; the
        tensors share memory with the module's (detached unless ``keep_vars``).

        >>> import ckpt
        >>> list(ckpt.nn.Linear(2, 3).state_dict())
        ['weight', 'bias']
        """
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b if keep_vars else b.detach()
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True):
        """Copy values from ``state_dict`` into the parameters and buffers (in place).

        Returns ``(missing_keys, unexpected_keys)``. With ``strict`` (the default), missing or
        unexpected keys raise; a shape mismatch always raises. Errors name every bad key.

        >>> import ckpt
        >>> a, b = ckpt.nn.Linear(2, 2), ckpt.nn.Linear(2, 2)
        >>> b.load_state_dict(a.state_dict())
        <All keys matched successfully>
        >>> bool((a.weight == b.weight).all())
        True
        """
        if not hasattr(state_dict, "items"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict).__name__}.")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        errors = []
        if strict:
            if missing:
                errors.append("Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
            if unexpected:
                errors.append("Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
        copies = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            source = value.data if isinstance(value, Tensor) else np.asarray(value)
            if source.shape != target.data.shape:
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {list(source.shape)} "
                    f"from checkpoint, the shape in current model is {list(target.data.shape)}.")
                continue
            copies.append((target, source))
        if errors:
            raise RuntimeError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                               + "\n\t".join(errors))
        with grad_mode.no_grad():
            for target, source in copies:
                if target.data is not source:
                    np.copyto(target.data, source, casting="unsafe")
                    bump_version(target)
        return _IncompatibleKeys(missing, unexpected)

    # ---- printing ---------------------------------------------------------------------
    def extra_repr(self):
        """The text inside this module's parentheses in ``repr`` (override in layers)."""
        return ""

    def _get_name(self):
        return type(self).__name__

    def __repr__(self):
        lines = []
        extra = self.extra_repr()
        if extra:
            lines = extra.split("\n")
        for name, module in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(module), 2))
        main = self._get_name() + "("
        if lines:
            if len(lines) == 1 and not self._modules:
                main += lines[0]
            else:
                main += "\n  " + "\n  ".join(lines) + "\n"
        return main + ")"


def _zero_grad(p, set_to_none):
    g = p.grad
    if g is None:
        return
    if set_to_none:
        p.grad = None
    elif g.grad_fn is None and g.data.flags.writeable:
        g.requires_grad = False
        g.data[...] = 0
    else:
        p.grad = Tensor(np.zeros_like(g.data))


class _HookHandle:
    """Removes a forward hook from its module again."""
    _next_id = 0

    def __init__(self, hooks, hook):
        self._hooks = hooks
        self.id = _HookHandle._next_id
        _HookHandle._next_id += 1
        hooks[self.id] = hook

    def remove(self):
        self._hooks.pop(self.id, None)
