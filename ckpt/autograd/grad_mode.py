"""Grad-mode switches: ``no_grad``, ``enable_grad``, ``set_grad_enabled``, ``inference_mode``.

Each works as a context manager and as a decorator, as in torch. A decorated generator
function runs every step of its body (each ``next``/``send``/``throw``/``close``) in the mode,
and its caller's mode is back in force at each ``yield``, as torch's decorators do. A decorated
``async def`` gets the same treatment at each resumption; torch does not wrap coroutines (its
decorated coroutine runs in whatever mode its awaiting code is in). The mode is process-wide
(torch keeps it per thread; ckpt runs on one thread).
"""
import functools
import inspect
import warnings


class _Switches:
    """The one mutable switch every op reads on its hot path (``enabled``), and whether an
    ``inference_mode`` block is in force (read by ``is_inference_mode_enabled`` only)."""

    def __init__(self):
        self.enabled = True
        self.inference = False


_State = _Switches()   # (an instance: ops read its attributes faster than a class's)


def is_grad_enabled():
    """True when ops record a graph.

    >>> import ckpt
    >>> with ckpt.no_grad():
    ...     ckpt.is_grad_enabled()
    False
    """
    return _State.enabled


class _GradModeContext:
    _target = True
    _bare_decorator = True  # ``@no_grad`` without parentheses works, as in torch

    def __new__(cls, *args, **kwargs):
        fn = (args[0] if len(args) == 1 and not kwargs else
              kwargs.get("mode") if not args and len(kwargs) == 1 else None)
        if cls._bare_decorator and callable(fn):
            return cls()(fn)
        return super().__new__(cls)

    def __enter__(self):
        self._prev = _State.enabled
        _State.enabled = self._target

    def __exit__(self, *exc):
        _State.enabled = self._prev
        return False

    def _fresh(self):
        """A new context with this one's mode: each call (or generator step) enters its own."""
        return self.__class__()

    def __call__(self, fn):
        return _decorate(fn, self._fresh)


def _decorate(fn, fresh):
    """``fn`` run inside ``fresh()``; a generator's or coroutine's every step inside its own;
    a class's ``__init__`` (deprecated, as in torch)."""
    if inspect.isclass(fn):
        warnings.warn("Decorating classes is deprecated and will be disabled in future versions. "
                      "You should only decorate functions or methods. To preserve the current "
                      "behavior of class decoration, you can directly decorate the `__init__` "
                      "method and nothing else.", FutureWarning, stacklevel=3)
        fn.__init__ = _decorate(fn.__init__, fresh)
        return fn
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def wrapped_generator(*args, **kwargs):
            with fresh():
                steps = fn(*args, **kwargs)
            return (yield from _stepwise(steps, fresh))
        return wrapped_generator
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def wrapped_coroutine(*args, **kwargs):
            return await _Awaiting(_stepwise(fn(*args, **kwargs), fresh))
        return wrapped_coroutine

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with fresh():
            return fn(*args, **kwargs)
    return wrapped


def _stepwise(steps, fresh):
    """Drive the generator or coroutine ``steps``, each resumption inside ``fresh()``; what it
    yields goes out and what is sent or thrown in goes to it, as if it were iterated directly."""
    resume, value = steps.send, None
    while True:
        try:
            with fresh():
                out = resume(value)
        except StopIteration as done:
            return done.value
        try:
            resume, value = steps.send, (yield out)
        except GeneratorExit:
            with fresh():
                steps.close()
            raise
        except BaseException as thrown:  # noqa: BLE001 -- everything thrown in is passed on
            resume, value = steps.throw, thrown


class _Awaiting:
    """Makes a generator that drives a coroutine awaitable."""

    def __init__(self, steps):
        self._steps = steps

    def __await__(self):
        return self._steps


class no_grad(_GradModeContext):
    """Disable graph recording inside the block (or the decorated function).

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> with ckpt.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """
    _target = False


class enable_grad(_GradModeContext):
    """Re-enable graph recording inside a ``no_grad`` block.

    >>> import ckpt
    >>> x = ckpt.ones(2, requires_grad=True)
    >>> with ckpt.no_grad():
    ...     with ckpt.enable_grad():
    ...         y = x * 2
    >>> y.requires_grad
    True
    """
    _target = True


class inference_mode(_GradModeContext):
    """``no_grad`` whose new tensors are inference tensors, as in torch: they can't be saved
    for backward or changed in place outside inference mode, and their views are inference
    tensors too; ``inference_mode(False)`` enables grad mode, as torch's does.

    >>> import ckpt
    >>> with ckpt.inference_mode():
    ...     y = ckpt.ones(2, requires_grad=True) * 2
    >>> y.requires_grad, ckpt.is_inference(y)
    (False, True)
    """

    def __init__(self, mode=True):
        self._target = not mode

    def __enter__(self):
        self._prev_inference = _State.inference
        _set_inference(not self._target)
        super().__enter__()

    def __exit__(self, *exc):
        _set_inference(self._prev_inference)
        return super().__exit__(*exc)

    def _fresh(self):
        return inference_mode(not self._target)


def _set_inference(on):
    if on != _State.inference:
        from .tensor import set_inference_creation
        set_inference_creation(on)
        _State.inference = on


def is_inference(tensor):
    """True when ``tensor`` is an inference tensor (torch's ``torch.is_inference``).

    >>> import ckpt
    >>> ckpt.is_inference(ckpt.ones(1))
    False
    """
    return tensor.is_inference()


def is_inference_mode_enabled():
    """True inside ``inference_mode()`` (and not inside an ``inference_mode(False)`` in it).

    >>> import ckpt
    >>> with ckpt.inference_mode():
    ...     ckpt.is_inference_mode_enabled(), ckpt.is_grad_enabled()
    (True, False)
    >>> ckpt.is_inference_mode_enabled()
    False
    """
    return _State.inference


class set_grad_enabled(_GradModeContext):
    """Set grad mode to ``mode``; takes effect immediately and is undone on exiting a ``with``.

    >>> import ckpt
    >>> with ckpt.set_grad_enabled(False):
    ...     ckpt.is_grad_enabled()
    False
    >>> ckpt.is_grad_enabled()
    True
    """
    _bare_decorator = False

    def __init__(self, mode):
        if not isinstance(mode, bool):
            raise TypeError(f"set_grad_enabled(mode) expects a bool, got {type(mode).__name__}")
        self._prev = _State.enabled
        self._target = mode
        _State.enabled = mode

    def __enter__(self):
        pass

    def _fresh(self):
        return set_grad_enabled(self._target)

    def __call__(self, fn):
        _State.enabled = self._prev  # as a decorator it sets nothing until ``fn`` runs
        return super().__call__(fn)


class _Recompute:
    """The recomputation switch. ``ckpt.checkpoint`` sets ``active`` while it recomputes a
    segment during backward; forward side effects that must happen once per training step
    read it and skip themselves then (BatchNorm's running statistics and batch count). Only
    those side effects read it: nothing on the autograd hot path does."""
    active = False


def is_recomputing():
    """True while ``ckpt.checkpoint`` recomputes a segment during backward.

    >>> import ckpt
    >>> ckpt.autograd.grad_mode.is_recomputing()
    False
    """
    return _Recompute.active
