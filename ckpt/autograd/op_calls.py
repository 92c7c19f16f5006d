"""Who is told when a ckpt op is entered and left: ``observing_calls(observer)``, with no op
wrapped or replaced.

Which functions are ckpt's ops: the public functions of the public modules of
``ckpt.autograd.ops`` and of the factories (``op_modules()``; Tensor's methods and operators
call them), and the backward rules, the ``vjp`` of every node class. Inside ``with
observing_calls(observer):``, and only then, a profile function set with ``sys.setprofile``
(a public hook of the interpreter) looks the code object of each Python call up in a table
of the ops' and rules' code objects, and tells the observer ``op_entered(call)`` and
``op_exited(call, result)`` around every op call: nested ones too, however the op was
reached (an operator, a method, a reference taken before the block). Outside such a block
nothing runs and the op dispatch checks nothing: observing costs nothing when off.

A profile function set before the block is passed every event and set again after it; a C
profiler (``cProfile``), which cannot be chained from Python, is switched off for the block
and on again after it. Calls are seen on the thread that entered the block. Observers must
not raise: an exception from a profile function makes the interpreter unset it.

>>> import ckpt
>>> from ckpt.autograd import op_calls
>>> class Log(op_calls.CallObserver):
...     def __init__(self): self.seen = []
...     def op_entered(self, call): self.seen.append((call.kind, call.name))
>>> x, exp = ckpt.ones(2, requires_grad=True), ckpt.exp     # a reference taken before
>>> with op_calls.observing_calls(Log()) as log:
...     exp(x).sum(0, keepdim=True).backward()
>>> log.seen   # doctest: +NORMALIZE_WHITESPACE
[('op', 'exp'), ('op', 'sum'), ('backward', 'SumBackward1'),
 ('op', 'expand'), ('backward', 'ExpBackward0')]
"""
import functools
import importlib
import inspect
import pkgutil
import sys
import types
from typing import NamedTuple

from . import factory, ops
from .node import AccumulateGrad, Node

__all__ = ["Call", "CallObserver", "observing_calls", "op_modules"]

# public names of the op modules that are helpers of ops, or return no tensor
_NOT_OPS = {"take_tangent", "rebase_views", "check_inplace", "bump_version", "index_into_zeros",
            "is_tensor", "as_tensor_arg", "check_no_overlap", "mark_view_creation", "writable",
            "write_into", "take_history", "write_result"}


class Call(NamedTuple):
    """One op call: ``name`` (the op's; a rule's node class's), ``kind`` ("op"; "in_place"
    for the functions of ``ops.inplace``, behind Tensor's in-place methods; "backward" for
    a rule), the ``function`` called (the op, or the rule) and its arguments as called:
    ``args`` (a rule's without its node) and ``kwargs``."""
    name: str
    kind: str
    function: object
    args: tuple
    kwargs: dict


_new = tuple.__new__


class CallObserver:
    """The two methods ``observing_calls`` calls; each does nothing here. ``result`` is what
    the op returned (None when it raised).

    >>> CallObserver().op_exited(None, None) is None
    True
    """

    def op_entered(self, call):
        pass

    def op_exited(self, call, result):
        pass


@functools.lru_cache(maxsize=None)
def op_modules():
    """The modules whose public functions are ckpt's ops: every public module of
    ``ckpt.autograd.ops`` (found by walking the package), and the factories.

    >>> [m.__name__ for m in op_modules()][:2]
    ['ckpt.autograd.ops.elementwise', 'ckpt.autograd.ops.inplace']
    """
    found = [importlib.import_module(info.name) for info in
             pkgutil.walk_packages(ops.__path__, ops.__name__ + ".")
             if not any(part.startswith("_") for part in info.name.split("."))]
    return tuple(sorted(found, key=lambda m: m.__name__)) + (factory,)


class _Entry:
    """What the table knows of one code object: the ``kind``, the ``functions`` that run it
    (ops made by one factory share it; told apart by the free variable ``tell_by``, whose
    value's id maps to the function in ``by_value``), the parameter layout of ``code``, and
    for a rule, whether it is a ``method`` (named by its node's class) or ``node_name``."""
    __slots__ = ("kind", "functions", "tell_by", "by_value", "positional", "star", "keywords",
                 "star_star", "method", "node_name")

    def __init__(self, kind, code, functions, method=False, node_name=None):
        self.kind, self.functions, self.method, self.node_name = kind, functions, method, node_name
        n_pos, n_kw = code.co_argcount, code.co_kwonlyargcount
        names = code.co_varnames
        self.positional, self.keywords = names[:n_pos], names[n_pos:n_pos + n_kw]
        rest = iter(names[n_pos + n_kw:])
        self.star = next(rest) if code.co_flags & inspect.CO_VARARGS else None
        self.star_star = next(rest) if code.co_flags & inspect.CO_VARKEYWORDS else None
        self.tell_by, self.by_value = None, None
        for i, var in enumerate(code.co_freevars):
            values = {id(fn.__closure__[i].cell_contents): fn for fn in functions}
            if len(values) == len(functions):
                self.tell_by, self.by_value = var, values
                break

    def call(self, local):
        """The ``Call`` of a frame with these locals (just entered); map: no comprehension frame."""
        args = tuple(map(local.__getitem__, self.positional))
        if self.star is not None:
            args += tuple(local[self.star])
        kwargs = dict(zip(self.keywords, map(local.__getitem__, self.keywords)))
        if self.star_star is not None:
            kwargs.update(local[self.star_star])
        fn = (self.functions[0] if self.tell_by is None
              else self.by_value[id(local[self.tell_by])])
        if self.method:   # a rule's node: named by its class (tuple.__new__: no Python __new__)
            return _new(Call, (type(args[0]).__name__, "backward", fn, args[1:], kwargs))
        return _new(Call, (self.node_name or fn.__name__, self.kind, fn, args, kwargs))


def _node_classes():
    found, stack = [], [Node]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


@functools.lru_cache(maxsize=None)
def _op_entries():
    """``{id(code): _Entry}`` of every op (made once: the op modules' functions stay). Keyed
    by id: a code object's hash is not cached, and hashes its constants at every lookup."""
    functions = {}   # id(code) -> (kind, [function, ...]); the functions keep the code alive
    for module in op_modules():
        kind = "in_place" if module is ops.inplace else "op"
        for name, fn in vars(module).items():
            if (isinstance(fn, types.FunctionType) and fn.__module__ == module.__name__
                    and not name.startswith("_") and name not in _NOT_OPS):
                same = functions.setdefault(id(fn.__code__), (kind, []))[1]
                if fn not in same:
                    same.append(fn)
    return {key: _Entry(kind, fns[0].__code__, fns) for key, (kind, fns) in functions.items()}


def _table():
    """``{id(code): _Entry}`` of every op and rule (node classes made since found too)."""
    table = dict(_op_entries())
    for cls in _node_classes():
        if cls is AccumulateGrad:   # its rule stores a gradient; it computes none
            continue
        rule = cls.__dict__.get("vjp")
        if isinstance(rule, staticmethod):
            code = rule.__func__.__code__
            table.setdefault(id(code), _Entry("backward", code, [rule.__func__],
                                              node_name=cls.__name__))
        elif isinstance(rule, types.FunctionType):
            table[id(rule.__code__)] = _Entry("backward", rule.__code__, [rule], method=True)
    return table


class _State:
    observers = ()    # outermost first (a new tuple at each change)
    open_calls = []   # [(frame, call, observers told)], innermost last
    previous = None   # the profile function in effect before the first observer


def _hook(table, previous):
    """The profile function: ``previous`` first, then the observers of op calls. It runs at
    every call and return: a few tests, no closure inside (a new cell at every event)."""
    lookup, open_calls = table.get, _State.open_calls

    def profile(frame, event, arg):
        if previous is not None:
            previous(frame, event, arg)
        if event == "call":
            entry = lookup(id(frame.f_code))
            if entry is not None:
                _entered(frame, entry.call(frame.f_locals))
        elif event == "return" and open_calls and open_calls[-1][0] is frame:
            _exited(arg)
    return profile


def _entered(frame, call):
    told = _State.observers
    _State.open_calls.append((frame, call, told))
    for observer in told:
        observer.op_entered(call)


def _exited(result):
    _, call, told = _State.open_calls.pop()
    now = _State.observers
    for observer in told:
        if now is told or any(o is observer for o in now):
            observer.op_exited(call, result)


class observing_calls:
    """Tell ``observer`` (a ``CallObserver``) of every op call inside the block (see the
    module doc). Blocks nest: every observer in effect is told, outermost first.

    >>> import ckpt
    >>> class Shapes(CallObserver):
    ...     def __init__(self): self.seen = []
    ...     def op_exited(self, call, result): self.seen.append((call.name, result.shape))
    >>> with observing_calls(Shapes()) as shapes:
    ...     y = ckpt.ones(2, 3) @ ckpt.ones(3, 4)
    >>> shapes.seen
    [('ones', (2, 3)), ('ones', (3, 4)), ('matmul', (2, 4))]
    """

    def __init__(self, observer):
        missing = [m for m in ("op_entered", "op_exited")
                   if not callable(getattr(observer, m, None))]
        if missing:
            raise TypeError(f"observing_calls(observer): the observer ({type(observer).__name__})"
                            f" has no {', '.join(missing)}; subclass "
                            "ckpt.autograd.op_calls.CallObserver")
        self.observer = observer
        self._entered = False

    def __enter__(self):
        if self._entered:
            raise RuntimeError("this observing_calls() block is already in effect; make a new one")
        if not _State.observers:
            previous = sys.getprofile()
            _State.previous = previous
            chained = previous if callable(previous) else None
            sys.setprofile(_hook(_table(), chained))
        _State.observers += (self.observer,)
        self._entered = True
        return self.observer

    def __exit__(self, *exc):
        observers = _State.observers
        for i in range(len(observers) - 1, -1, -1):
            if observers[i] is self.observer:
                _State.observers = observers = observers[:i] + observers[i + 1:]
                break
        self._entered = False
        if not observers:
            _State.open_calls.clear()
            previous, _State.previous = _State.previous, None
            if previous is None or callable(previous):
                sys.setprofile(previous)
            else:   # a C profiler: sys.setprofile cannot take it, its enable() can
                sys.setprofile(None)
                previous.enable()
        return False
