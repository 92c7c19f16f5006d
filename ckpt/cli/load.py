"""A user's own model on the command line: ``path/to/file.py:FACTORY`` or
``package.module:FACTORY``, where ``FACTORY()`` returns ``(model, sample, loss_fn)`` (for
``--torch``, optionally ``(model, sample, loss_fn, stages)``).

The file is imported with ``importlib`` (``spec_from_file_location``): that runs the user's
own code, which is the point, as ``python file.py`` would. Nothing else is ever evaluated
or unpickled. Every mistake (no such file, no such function, the factory raising, a wrong
return value) is a ``UsageError`` of one line.

>>> import os, tempfile
>>> d = tempfile.mkdtemp(); path = os.path.join(d, "net.py")
>>> _ = open(path, "w").write('''
... import ckpt
... def make():
...     model = ckpt.nn.Sequential(ckpt.nn.Linear(8, 8), ckpt.nn.ReLU())
...     return model, ckpt.randn(4, 8), None
... ''')
>>> user = load_ckpt_model(path + ":make")
>>> len(user.model), user.sample.shape, user.loss_fn
(2, (4, 8), None)
"""
import contextlib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from typing import Any, NamedTuple

from .inputs import UsageError, check_regular_file

__all__ = ["split_spec", "is_spec", "UserModel", "call_factory", "load_ckpt_model",
           "load_torch_model", "import_torch", "describe_exception"]

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = re.compile(rf"^{_NAME}(?:\.{_NAME})*$")
RETURNS = "(model, sample, loss_fn)"
TORCH_RETURNS = "(model, sample, loss_fn) or (model, sample, loss_fn, stages)"


def split_spec(spec):
    """``(where, factory)`` of ``FILE.py:FACTORY`` or ``MODULE:FACTORY``; None when ``spec``
    is not of that form (a model name, a chain file).

    >>> split_spec("models/net.py:make"), split_spec("pkg.nets:build")
    (('models/net.py', 'make'), ('pkg.nets', 'build'))
    >>> split_spec("resnet"), split_spec("chain.json"), split_spec("C:\\\\chain.json")
    (None, None, None)
    """
    where, sep, attr = str(spec).rpartition(":")
    if not sep or not where or not _DOTTED.match(attr):
        return None
    if where.endswith(".py") or os.sep in where or "/" in where or _DOTTED.match(where):
        return where, attr
    return None


def is_spec(spec):
    """Whether ``spec`` names a factory (``FILE.py:FACTORY`` or ``MODULE:FACTORY``).

    >>> is_spec("net.py:make"), is_spec("mlp-run")
    (True, False)
    """
    return split_spec(spec) is not None


def describe_exception(e):
    """``"TypeName: message"`` on one line.

    >>> describe_exception(ValueError("bad\\nshape"))
    'ValueError: bad shape'
    """
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@contextlib.contextmanager
def _on_path(directory):
    """``directory`` first on ``sys.path`` while the user's code runs (as ``python
    file.py`` would put it), so the file can import its neighbours."""
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        try:
            sys.path.remove(directory)
        except ValueError:
            pass


def _import_file(path, spec):
    check_regular_file(path, f"a Python file defining the factory of {spec!r}")
    if not path.endswith(".py"):
        raise UsageError(f"{path!r} is not a .py file; give FILE.py:FACTORY or "
                         "MODULE:FACTORY")
    full = os.path.abspath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    name = f"_ckpt_user_{stem}_{hashlib.sha1(full.encode()).hexdigest()[:8]}"
    module_spec = importlib.util.spec_from_file_location(name, full)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    with _on_path(os.path.dirname(full)):
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:
            sys.modules.pop(name, None)
            raise UsageError(f"{path}: importing it raised {describe_exception(e)}") from None
    return module, os.path.dirname(full)


def _import_module(where, spec):
    with _on_path(os.getcwd()):
        try:
            return importlib.import_module(where), os.getcwd()
        except ModuleNotFoundError as e:
            if e.name and (where == e.name or where.startswith(e.name + ".")):
                raise UsageError(f"no module named {where!r} (in {spec!r}); give a module on "
                                 f"the Python path or a file, like path/to/{where}.py:"
                                 f"{spec.rpartition(':')[2]}") from None
            raise UsageError(f"importing {where} raised {describe_exception(e)}") from None
        except (Exception, SystemExit) as e:
            raise UsageError(f"importing {where} raised {describe_exception(e)}") from None


def _load_factory(spec):
    where, attr = split_spec(spec)
    if where.endswith(".py") or "/" in where or os.sep in where or os.path.isfile(where):
        module, directory = _import_file(where, spec)
    else:
        module, directory = _import_module(where, spec)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            found = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            has = (f"it defines {', '.join(found)}" if found else "it defines no functions")
            raise UsageError(f"{where} has no {attr!r} ({has}); FACTORY must be a function "
                             f"returning {RETURNS}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{spec}: {attr} is a {type(obj).__name__}, not a function; FACTORY "
                         f"must be a function returning {RETURNS}")
    return obj, directory


def _what(value):
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if value is None:
        return "None"
    module = type(value).__module__
    if module.startswith("_ckpt_user_"):       # a class of the user's file (_import_file)
        return f"a {type(value).__qualname__}"
    return f"a {module}.{type(value).__qualname__}"


def call_factory(spec, sizes=(3,), returns=RETURNS):
    """Import the factory ``spec`` names, call it with no arguments and return its result as
    a tuple of one of the lengths ``sizes``; anything else is a ``UsageError``.

    >>> call_factory("ckpt.models:mlp_run")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: ckpt.models:mlp_run returned a tuple of 2 items; expected (model, sample, loss_fn)
    """
    factory, directory = _load_factory(spec)
    with _on_path(directory):
        try:
            result = factory()
        except (Exception, SystemExit) as e:
            raise UsageError(f"{spec} raised {describe_exception(e)} (it is called with no "
                             f"arguments and returns {returns})") from None
    if not isinstance(result, (tuple, list)) or len(result) not in sizes:
        raise UsageError(f"{spec} returned {_what(result)}; expected {returns}")
    return tuple(result)


class UserModel(NamedTuple):
    """What a factory gave: the model, its sample input, its loss function (None: the sum
    of the output), the torch stages ("auto" for ckpt models) and the spec it came from."""
    model: Any
    sample: Any
    loss_fn: Any
    stages: Any
    spec: str

    @property
    def name(self):
        """The chain name: the spec without its directories (``net.py:make``)."""
        where, attr = split_spec(self.spec)
        return f"{os.path.basename(where)}:{attr}"


def _check_loss(spec, loss_fn):
    if loss_fn is not None and not callable(loss_fn):
        raise UsageError(f"{spec} returned loss_fn {_what(loss_fn)}; expected a function of the "
                         "model's output giving a scalar loss, or None (the sum of the output)")


def _is_function(obj):
    return callable(obj) and not isinstance(obj, type)


def load_ckpt_model(spec, graph=False):
    """The ``ckpt.nn.Sequential`` (with ``graph``: any ckpt model, a ``ckpt.nn.Module`` or
    a function of the sample), sample ``ckpt.Tensor`` and loss function the factory
    ``spec`` returns, checked.

    >>> load_ckpt_model("ckpt.models:NAMES")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: ckpt.models:NAMES: NAMES is a dict, not a function; FACTORY must be a function returning (model, sample, loss_fn)
    """
    from ..autograd.tensor import Tensor
    from ..nn import Module, Sequential
    n = call_factory(spec, (3, 4))
    if len(n) == 4:
        raise UsageError(f"{spec} returned 4 items; a ckpt model takes {RETURNS} (its stages "
                         "are the Sequential's children; a 4th item, stages, is for --torch)")
    model, sample, loss_fn = n
    torch_hint = (f"; for a PyTorch model use --torch {spec}"
                  if type(model).__module__.startswith("torch") else "")
    if graph and (torch_hint or not (isinstance(model, Module) or _is_function(model))):
        raise UsageError(f"{spec} returned model {_what(model)}; expected a ckpt.nn.Module "
                         f"or a function of the sample{torch_hint}")
    if not graph and not isinstance(model, Sequential):
        other = ("; a model of another shape is planned as a graph of ops: add --graph"
                 if isinstance(model, Module) or _is_function(model) else "")
        raise UsageError(f"{spec} returned model {_what(model)}; expected a ckpt.nn.Sequential "
                         f"(each child a stage){torch_hint or other}")
    if not isinstance(sample, Tensor):
        raise UsageError(f"{spec} returned sample {_what(sample)}; expected a ckpt.Tensor "
                         "(the model's input)")
    _check_loss(spec, loss_fn)
    return UserModel(model, sample, loss_fn, "auto", spec)


def import_torch():
    """``ckpt.torch``, imported on first use; without PyTorch a ``UsageError`` saying what
    to install."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError('--torch needs PyTorch: pip install "ckpt[torch]"') from None
    import ckpt.torch
    return ckpt.torch


def load_torch_model(spec):
    """The ``torch.nn.Module``, sample, loss function and stages the factory ``spec``
    returns, checked (``stages`` defaults to "auto")."""
    import_torch()
    import torch
    n = call_factory(spec, (3, 4), TORCH_RETURNS)
    model, sample, loss_fn = n[:3]
    stages = n[3] if len(n) == 4 and n[3] is not None else "auto"
    if not isinstance(model, torch.nn.Module):
        hint = ("; for a ckpt model drop --torch and give it as the model"
                if type(model).__module__.startswith("ckpt") else "")
        raise UsageError(f"--torch {spec} returned model {_what(model)}; expected a "
                         f"torch.nn.Module{hint}")
    if not isinstance(sample, (torch.Tensor, tuple, list, dict)):
        raise UsageError(f"--torch {spec} returned sample {_what(sample)}; expected a "
                         "torch.Tensor (or a tuple of arguments, or a dict of keyword "
                         "arguments)")
    _check_loss(spec, loss_fn)
    if not (stages == "auto" or isinstance(stages, (list, tuple))):
        raise UsageError(f"--torch {spec} returned stages {_what(stages)}; expected \"auto\" "
                         "or a list of modules or callables")
    return UserModel(model, sample, loss_fn, stages, spec)
