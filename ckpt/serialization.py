"""``ckpt.save`` / ``ckpt.load``: tensors, state dicts and nested containers of them, in a
format that holds no pickled objects.

A file is a numpy ``.npz`` archive: one array per distinct tensor or array, plus a JSON
header (``__header__``) that describes the saved object's structure and points at the
arrays. Loading reads it with ``allow_pickle=False``, so a file can't run code (torch's
pickle-based format needs ``weights_only=True`` for that). Differences from torch: only
tensors, numpy arrays, numbers, strings, None, and lists, tuples and dicts (including
``OrderedDict``) of them are stored; anything else is refused when saving, with its type
named. A tensor saved twice is loaded as one tensor, as in torch; views of one storage
are loaded as separate tensors.
"""
import collections
import json

import numpy as np

from .autograd.factory import device
from .autograd.tensor import Tensor
from .nn.parameter import is_parameter, mark_parameter

_HEADER = "__header__"


class _Writer:
    def __init__(self):
        self.arrays, self.index_of = {}, {}

    def array_key(self, obj, data):
        key = self.index_of.get(id(obj))
        if key is None:
            key = self.index_of[id(obj)] = f"a{len(self.arrays)}"
            self.arrays[key] = data
        return key

    def encode(self, obj):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, Tensor):
            kind = "parameter" if is_parameter(obj) else "tensor"
            return {kind: self.array_key(obj, obj.data), "requires_grad": obj.requires_grad}
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError("ckpt.save can't store a numpy array of Python objects")
            return {"ndarray": self.array_key(obj, obj)}
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return obj.item()
        if isinstance(obj, (list, tuple)):
            return {type(obj).__name__: [self.encode(v) for v in obj]}
        if isinstance(obj, dict):
            kind = "ordered_dict" if isinstance(obj, collections.OrderedDict) else "dict"
            return {kind: [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        raise TypeError(
            f"ckpt.save can't store an object of type {type(obj).__module__}."
            f"{type(obj).__qualname__}: it stores tensors, numpy arrays, numbers, strings, None, "
            f"and lists, tuples and dicts of them (no pickled objects)")


def save(obj, f):
    """Write ``obj`` (a tensor, a state dict, nested lists/tuples/dicts of tensors, numbers
    and strings) to ``f``, a path or a binary file object.

    >>> import io, ckpt
    >>> buffer = io.BytesIO()
    >>> ckpt.save({"w": ckpt.ones(2), "step": 3}, buffer); _ = buffer.seek(0)
    >>> ckpt.load(buffer)
    {'w': tensor([1., 1.]), 'step': 3}
    """
    writer = _Writer()
    header = json.dumps(writer.encode(obj))
    arrays = dict(writer.arrays)
    arrays[_HEADER] = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)
    if isinstance(f, str) or hasattr(f, "__fspath__"):
        with open(f, "wb") as file:
            np.savez(file, **arrays)
    else:
        np.savez(f, **arrays)


def _decode(value, arrays, loaded):
    if isinstance(value, list):  # a dict's [key, value] pair list is decoded by its owner
        return [_decode(v, arrays, loaded) for v in value]
    if not isinstance(value, dict):
        return value
    ((kind, content), *rest) = value.items()
    if kind in ("tensor", "parameter"):
        if content not in loaded:
            t = Tensor(arrays[content].copy(), requires_grad=dict(rest)["requires_grad"])
            loaded[content] = mark_parameter(t) if kind == "parameter" else t
        return loaded[content]
    if kind == "ndarray":
        return arrays[content].copy()
    items = _decode(content, arrays, loaded)
    if kind == "tuple":
        return tuple(items)
    if kind == "list":
        return items
    return (collections.OrderedDict if kind == "ordered_dict" else dict)(items)


def load(f, map_location=None, weights_only=True, **kwargs):
    """Read what ``save`` wrote (``f``: a path or a binary file object). ``map_location``
    may name the CPU only; ``weights_only`` is accepted (a ckpt file never holds code).

    >>> import io, ckpt
    >>> buffer = io.BytesIO(); ckpt.save([ckpt.tensor([1, 2]), "a"], buffer); _ = buffer.seek(0)
    >>> ckpt.load(buffer)
    [tensor([1, 2]), 'a']
    """
    if isinstance(map_location, (str, device)) and device(map_location).type != "cpu":
        raise RuntimeError(f"ckpt.load: map_location {str(map_location)!r} is not available: "
                           f"ckpt keeps tensors in CPU memory (map_location='cpu')")
    with np.load(f, allow_pickle=False) as archive:
        if _HEADER not in archive.files:
            raise RuntimeError("ckpt.load: this file was not written by ckpt.save (it has no "
                               "header); torch's pickle files are not read")
        header = json.loads(bytes(archive[_HEADER]).decode("utf-8"))
        arrays = {name: archive[name] for name in archive.files if name != _HEADER}
    return _decode(header, arrays, {})
