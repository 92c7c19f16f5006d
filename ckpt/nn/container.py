"""Containers: ``Sequential``, ``ModuleList``, ``ModuleDict``."""
import operator
from collections import OrderedDict

from .module import Module


def _index(idx, size):
    idx = operator.index(idx)
    if not -size <= idx < size:
        raise IndexError(f"index {idx} is out of range")
    return idx % size


class Sequential(Module):
    """Runs its modules in order, each on the previous one's output.

    Built from modules (named ``'0'``, ``'1'``, ...) or one ``OrderedDict`` of named
    modules. Supports ``len``, iteration, indexing and slicing (a slice is a ``Sequential``
    sharing the same modules).

    >>> import ckpt
    >>> net = ckpt.nn.Sequential(ckpt.nn.Linear(2, 3), ckpt.nn.ReLU(), ckpt.nn.Linear(3, 1))
    >>> len(net), type(net[-1]).__name__, len(net[:2])
    (3, 'Linear', 2)
    >>> net(ckpt.ones(5, 2)).shape
    (5, 1)
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                self.add_module(str(i), module)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(OrderedDict(list(self._modules.items())[idx]))
        return list(self._modules.values())[_index(idx, len(self))]

    def __setitem__(self, idx, module):
        key = list(self._modules)[_index(idx, len(self))]
        setattr(self, key, module)

    def __delitem__(self, idx):
        keys = list(self._modules)
        for key in (keys[idx] if isinstance(idx, slice) else [keys[_index(idx, len(self))]]):
            del self._modules[key]
        if all(k.isdigit() for k in self._modules):  # keep the numbering contiguous
            self._modules = OrderedDict((str(i), m) for i, m in enumerate(self._modules.values()))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        """Add ``module`` at the end; returns ``self``.

        >>> import ckpt
        >>> len(ckpt.nn.Sequential().append(ckpt.nn.ReLU()))
        1
        """
        self.add_module(str(len(self)), module)
        return self

    def forward(self, input):
        for module in self._modules.values():
            input = module(input)
        return input


class ModuleList(Module):
    """A list of modules whose parameters the owner registers (no ``forward``).

    >>> import ckpt
    >>> layers = ckpt.nn.ModuleList([ckpt.nn.Linear(2, 2) for _ in range(3)])
    >>> len(layers), len(list(layers.parameters())), type(layers[1:]).__name__
    (3, 6, 'ModuleList')
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return type(self)(list(self._modules.values())[idx])
        return self._modules[str(_index(idx, len(self)))]

    def __setitem__(self, idx, module):
        setattr(self, str(_index(idx, len(self))), module)

    def __delitem__(self, idx):
        values = list(self._modules.values())
        del values[idx if isinstance(idx, slice) else _index(idx, len(self))]
        self._modules = OrderedDict((str(i), m) for i, m in enumerate(values))

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __iadd__(self, modules):
        return self.extend(modules)

    def append(self, module):
        """Add ``module`` at the end; returns ``self``.

        >>> import ckpt
        >>> len(ckpt.nn.ModuleList().append(ckpt.nn.ReLU()))
        1
        """
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        """Append every module of an iterable; returns ``self``.

        >>> import ckpt
        >>> len(ckpt.nn.ModuleList().extend([ckpt.nn.ReLU(), ckpt.nn.Tanh()]))
        2
        """
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        """Insert ``module`` before position ``index``.

        >>> import ckpt
        >>> ml = ckpt.nn.ModuleList([ckpt.nn.ReLU()]); ml.insert(0, ckpt.nn.Tanh())
        >>> type(ml[0]).__name__
        'Tanh'
        """
        values = list(self._modules.values())
        values.insert(index, module)
        self._modules = OrderedDict()
        self.extend(values)


class ModuleDict(Module):
    """An ordered dict of named modules, registered with the owner.

    >>> import ckpt
    >>> heads = ckpt.nn.ModuleDict({"a": ckpt.nn.Linear(2, 1), "b": ckpt.nn.Identity()})
    >>> list(heads.keys()), "a" in heads
    (['a', 'b'], True)
    """

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key):
        return self._modules[key]

    def __setitem__(self, key, module):
        self.add_module(key, module)

    def __delitem__(self, key):
        del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def __contains__(self, key):
        return key in self._modules

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules):
        """Add every ``(name, module)`` of a mapping or iterable of pairs."""
        items = modules.items() if hasattr(modules, "items") else modules
        for key, module in items:
            self[key] = module
