"""Refusing PyTorch objects at ckpt's entry points, without importing torch.

ckpt's ``checkpoint``, ``memory.track`` and the planner's ``profile``/``execute``/``apply``
run ckpt models on ckpt tensors. Given a torch module or tensor they would fail deep inside
(or, for ``checkpoint``, silently do nothing), so they call ``reject_torch`` first: a
``TypeError`` that names what was passed and the ``ckpt.torch`` (or torch) tool that does
the job. ``import ckpt`` never imports torch, so detection reads only the object's class
hierarchy (a class whose module is ``torch`` or ``torch.*``).

>>> is_torch(3), is_torch([1.0])
(False, False)
"""
__all__ = ["is_torch", "reject_torch"]


def _torch_class(obj):
    """The first torch class in ``type(obj)``'s MRO (None if there is none)."""
    for cls in type(obj).__mro__:
        mod = getattr(cls, "__module__", None) or ""
        if mod == "torch" or mod.startswith("torch."):
            return cls
    return None


def is_torch(obj):
    """True when ``obj`` is an instance of a PyTorch class (a module, tensor, optimizer...),
    found without importing torch.

    >>> import ckpt
    >>> is_torch(ckpt.ones(2)), is_torch(ckpt.nn.Linear(2, 2))
    (False, False)
    """
    return _torch_class(obj) is not None


def _describe(obj):
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__}
    if "torch.nn.modules.module.Module" in names:
        kind = "torch.nn.Module"
    elif "torch.Tensor" in names or "torch._tensor.Tensor" in names:
        kind = "torch.Tensor"
    elif "torch.optim.optimizer.Optimizer" in names:
        kind = "torch.optim.Optimizer"
    else:
        cls = _torch_class(obj)
        kind = f"{cls.__module__}.{cls.__qualname__}"
    own = type(obj).__name__
    return kind if kind.endswith("." + own) else f"{kind} ({own})"


def reject_torch(api, objects, does, instead):
    """Raise ``TypeError`` if any of ``objects`` (lists, tuples and dict values searched
    one level deep) is a PyTorch object: "``api`` got a <kind>; ``does`` — for PyTorch
    models use ``instead``".

    >>> class Module:            # stands in for torch.nn.Module (its module says torch)
    ...     pass
    >>> Module.__module__ = "torch.nn.modules.module"
    >>> reject_torch("ckpt.checkpoint", [Module()], "it runs ckpt models",
    ...              "torch.utils.checkpoint or ckpt.torch.plan")
    Traceback (most recent call last):
    ...
    TypeError: ckpt.checkpoint got a torch.nn.Module; it runs ckpt models — for PyTorch models use torch.utils.checkpoint or ckpt.torch.plan
    """
    for obj in objects:
        items = (list(obj.values()) if isinstance(obj, dict)
                 else list(obj) if isinstance(obj, (list, tuple)) else [obj])
        for item in items:
            if _torch_class(item) is not None:
                raise TypeError(f"{api} got a {_describe(item)}; {does} — for PyTorch models "
                                f"use {instead}")
