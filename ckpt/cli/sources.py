"""Where a chain comes from on the command line, and how a plan is measured on it.

A SOURCE is a built-in model name (``ckpt.models``' runnable networks, the planner zoo's
formula chains), a chain JSON file, a user's ckpt model (``FILE.py:FACTORY`` or
``MODULE:FACTORY``), or a PyTorch model (``--torch FILE.py:FACTORY``). ``resolve`` turns
any of them into a ``Source``: the chain, and for a runnable model a ``measure(plan)``.

>>> src = resolve("uniform")
>>> len(src.chain), src.measure is None
(8, True)
"""
import inspect
import os
from typing import Any, Callable, NamedTuple, Optional

from .. import models, planner
from ..planner import graph_zoo, zoo
from ..planner.errors import PlannerError
from . import load
from .inputs import UsageError, chain_from_file
from .output import printable

__all__ = ["model_names", "Source", "Measured", "resolve", "model_graph", "run_user_code"]

CHAIN_FILE = ("a chain JSON file, e.g. from 'ckpt profile MODEL -o chain.json'")


def model_names():
    """Names ``MODEL`` may take (``ckpt profile --list``): the runnable ``ckpt.models``
    (profiled by running them) and the planner zoo's chains (from layer formulas).

    >>> model_names()
    ['mlp', 'mlp-run', 'resnet', 'resnet-run', 'transformer', 'transformer-run', 'uniform', 'vgg16']
    """
    return sorted(set(zoo.NAMES) | set(models.NAMES))


def _check_batch(name, batch):
    if batch is not None and batch <= 0:
        raise UsageError(f"--batch must be a positive integer, got {batch}")
    if batch is not None and name in zoo.NAMES and \
            "batch" not in inspect.signature(zoo.NAMES[name]).parameters:
        takes = [n for n in model_names()
                 if n in models.NAMES or "batch" in inspect.signature(zoo.NAMES[n]).parameters]
        raise UsageError(f"model {name!r} has no batch size; --batch applies to "
                         f"{', '.join(takes)}")


def unknown_model(name):
    """The error for a name that is no model, no file and no factory."""
    graphs = ", ".join(sorted(set(graph_zoo.NAMES) - set(model_names())))
    return UsageError(f"unknown model {name!r}; built-in models: "
                      f"{', '.join(model_names())} (or a chain JSON file, or FILE.py:FACTORY); "
                      f"graph models: {graphs} (or a graph JSON file)")


class Measured(NamedTuple):
    """A plan run on its model: the measured logical peak, the allocator's peak (torch
    only), the step's seconds, and what ``ckpt.plot.memory_timeline`` overlays (or None)."""
    peak_bytes: int
    allocator_peak_bytes: Optional[int]
    seconds: Optional[float]
    overlay: Any


class Source(NamedTuple):
    """A chain and where it came from: ``name`` (printable), ``origin`` (a sentence for
    ``ckpt profile``), ``measure(plan) -> Measured`` for a runnable model, else None and
    ``why_not`` says why nothing can be measured."""
    name: str
    chain: Any
    origin: str
    measure: Optional[Callable]
    why_not: Optional[str] = None


def run_user_code(spec, what, call, *args, **kwargs):
    """``call(*args, **kwargs)`` on the user's model: its own exceptions become one line
    naming ``what`` was done and the ``spec``.

    >>> run_user_code("net.py:make", "profiling", int, "x")
    Traceback (most recent call last):
    ...
    ckpt.cli.inputs.UsageError: profiling net.py:make failed: ValueError: invalid literal for int() with base 10: 'x'
    """
    try:
        return call(*args, **kwargs)
    except (UsageError, PlannerError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise UsageError(f"{what} {printable(spec)} failed: "
                         f"{load.describe_exception(e)}") from None


def _ckpt_measure(model, x, loss_fn, spec=None):
    def measure(plan):
        r = run_user_code(spec, "running the plan on", planner.execute, model, plan, x,
                     loss_fn=loss_fn) if spec else planner.execute(model, plan, x,
                                                                   loss_fn=loss_fn)
        return Measured(r.peak_bytes, None, None, r)
    return measure


def _builtin(name, batch, repeats):
    _check_batch(name, batch)
    if name in models.NAMES:
        model, x = models.build(name, batch)
        chain = planner.profile(model, x, repeats=repeats, name=name)
        return Source(name, chain, f"measured by running the model (ckpt.planner.profile: "
                      f"median of {repeats} timed run{'s' * (repeats > 1)}, bytes through the "
                      "saved-tensor hooks)", _ckpt_measure(model, x, None))
    chain = zoo.NAMES[name]() if batch is None else zoo.NAMES[name](batch=batch)
    return Source(name, chain, "built-in model formulas (planner zoo), not a measurement",
                  None, f"model {name!r} is known only as a chain of formulas; measuring "
                  f"needs a runnable model ({', '.join(models.NAMES)}, FILE.py:FACTORY or "
                  "--torch)")


def _user_ckpt(spec, repeats):
    user = load.load_ckpt_model(spec)
    chain = run_user_code(spec, "profiling", planner.profile, user.model, user.sample,
                     loss_fn=user.loss_fn, repeats=repeats, name=user.name)
    return Source(user.name, chain, f"measured by running {user.name} (ckpt.planner.profile: "
                  f"median of {repeats} timed run{'s' * (repeats > 1)})",
                  _ckpt_measure(user.model, user.sample, user.loss_fn, spec))


def _user_torch(spec, repeats):
    user = load.load_torch_model(spec)
    ct = load.import_torch()
    chain = run_user_code(spec, "profiling", ct.profile, user.model, user.sample,
                     loss_fn=user.loss_fn, stages=user.stages, repeats=repeats,
                     name=user.name)

    def measure(plan):
        r = run_user_code(spec, "running the plan on", ct.execute, user.model, plan, user.sample,
                     loss_fn=user.loss_fn, stages=user.stages)
        return Measured(r.measured_peak_bytes, r.allocator_peak_bytes, r.step_seconds, None)
    return Source(user.name, chain, f"measured by running the PyTorch model {user.name} "
                  f"(ckpt.torch.profile: median of {repeats} timed run"
                  f"{'s' * (repeats > 1)}, bytes through torch's saved-tensor hooks)", measure)


def _looks_like_path(spec):
    return spec.endswith(".json") or os.sep in spec or "/" in spec


def resolve(spec=None, torch_spec=None, batch=None, repeats=3, chain_files=True):
    """The ``Source`` of a command's SOURCE argument or ``--torch`` option (exactly one of
    them). ``chain_files=False`` refuses chain JSON files (``ckpt profile`` makes them).

    >>> resolve("mlp", batch=2).chain.input_bytes
    6272
    >>> resolve("mlp-run", batch=2, repeats=1).chain.cost_unit
    's'
    """
    if torch_spec is not None:
        if spec is not None:
            raise UsageError(f"give either a model ({spec!r}) or --torch, not both")
        if batch is not None:
            raise UsageError("--batch applies to built-in models; a --torch factory builds "
                             "its own sample")
        if not load.is_spec(torch_spec):
            raise UsageError(f"--torch {torch_spec!r}: expected FILE.py:FACTORY or "
                             f"MODULE:FACTORY, where FACTORY() returns {load.TORCH_RETURNS}")
        return _user_torch(torch_spec, repeats)
    if spec is None:
        raise UsageError("give a model: a built-in name (see 'ckpt profile --list'), "
                         "FILE.py:FACTORY, or --torch FILE.py:FACTORY")
    if spec in model_names() and not os.path.isfile(spec):
        return _builtin(spec, batch, repeats)
    if load.is_spec(spec) and not (os.path.exists(spec) and spec.endswith(".json")):
        if batch is not None:
            raise UsageError("--batch applies to built-in models; a factory builds its own "
                             "sample")
        return _user_ckpt(spec, repeats)
    if spec.endswith(".py"):
        raise UsageError(f"{spec!r}: name the factory too, as {printable(spec)}:"
                         f"FACTORY (a function returning {load.RETURNS})")
    if os.path.exists(spec) or _looks_like_path(spec):
        if not chain_files:
            raise UsageError(f"{spec!r} is a file; profile takes a built-in model "
                             f"name ({', '.join(model_names())}), FILE.py:FACTORY or --torch "
                             "FILE.py:FACTORY")
        if batch is not None:
            raise UsageError("--batch applies to built-in models, not to chain files")
        chain = chain_from_file(spec, CHAIN_FILE + " or a built-in model: " +
                                ", ".join(model_names()))
        return Source(printable(spec), chain, f"the chain file {printable(spec)}", None,
                      f"{printable(spec)} is a chain, not a runnable model; measuring needs a "
                      "model (a built-in -run model, FILE.py:FACTORY or --torch)")
    raise unknown_model(spec)


def model_graph(spec, batch=None):
    """What ``ckpt graph`` draws: for a runnable model (built-in or a factory) the graph
    recorded by one forward pass and its loss (``output.sum()`` unless the factory gives a
    loss), with the model's parameters named; otherwise the chain.

    >>> root, params = model_graph("mlp-run", batch=1); root.grad_fn.name(), len(params)
    ('SumBackward0', 32)
    """
    if spec in models.NAMES and not os.path.isfile(spec):
        _check_batch(spec, batch)
        model, x = models.build(spec, batch)
        return model(x).sum(), dict(model.named_parameters())
    if load.is_spec(spec) and batch is None and not os.path.exists(spec):
        user = load.load_ckpt_model(spec)
        out = run_user_code(spec, "running", user.model, user.sample)
        loss = run_user_code(spec, "the loss of", user.loss_fn, out) if user.loss_fn else out.sum()
        return loss, dict(user.model.named_parameters())
    return resolve(spec, batch=batch).chain, None
