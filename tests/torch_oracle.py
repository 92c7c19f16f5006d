"""Torch as the oracle: run the same program with ``lib`` = torch and ``lib`` = ckpt and
compare what comes out (values, or the error's type and the words of its message)."""
import re
from collections import namedtuple

import torch

import ckpt

from conftest import to_numpy

Raised = namedtuple("Raised", ["type", "words"])

# words that name a library or its dtypes in messages: not what a message says
_LIBRARY_WORDS = {"torch", "ckpt", "aten", "float", "long", "double", "float32", "float64",
                  "int64", "doubletensor"}


def outcome(program, lib):
    """What ``program(lib)`` returns (tensors as ("tensor", values, dtype), sequences as
    lists), or ``Raised(type name, words of the message)``."""
    try:
        result = program(lib)
    except Exception as e:  # noqa: BLE001 -- the error is the outcome compared
        words = set(re.findall(r"[a-z_]+", str(e).split(" Hint:")[0].lower()))
        return Raised(type(e).__name__, words - _LIBRARY_WORDS)
    return plain(result)


def plain(value):
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, (torch.Tensor, ckpt.Tensor)):
        array = to_numpy(value)
        return "tensor", array.tolist(), str(array.dtype)
    return value


def assert_same_as_torch(program):
    """Equal outcomes; for an error, the same type with every word of torch's message in ckpt's."""
    ours, theirs = outcome(program, ckpt), outcome(program, torch)
    if isinstance(theirs, Raised):
        assert isinstance(ours, Raised) and ours.type == theirs.type, (ours, theirs)
        assert theirs.words <= ours.words, f"ckpt's message lacks {theirs.words - ours.words}"
    else:
        assert ours == theirs
