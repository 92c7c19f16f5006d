"""The graph edge's one window into autograd: a trace of the ops a program calls (each call
replayable), and where a tensor's memory lives.

``trace(program)`` runs ``program()`` once and records every *top-level* op call — a call
of one of ckpt's op functions (``ckpt.autograd.ops``, the factories) that is not made from
inside another op — with its arguments, the grad mode and, when the op draws random numbers,
ckpt's RNG state before it. Calls are seen through ``ckpt.autograd.op_calls`` (a
``sys.setprofile`` hook, set only while tracing), so no op is wrapped or patched. Arguments
that are outputs of earlier recorded ops become ``ValueRef``s; every other tensor (the
sample, parameters, captured constants) stays in the recorded call as itself.
``OpCall.replay(resolve)`` calls the op again with each ``ValueRef`` replaced by
``resolve(ref)``.

An in-place op such as ``x.relu_()`` or ``x.add_(y)`` runs its out-of-place op inside
(``relu``, ``add``) and copies the result into ``x``: the trace records that op and from
then on maps ``x`` to its output, so later reads of ``x`` read the new value and earlier
ones the old (the executor replays ops, and an op that writes into memory it does not own
is not a function of its inputs). Refused, naming the op: writes into a view or a tensor
that shares its buffer with another value, into the sample, a parameter or a constant,
and writes that run no out-of-place op (``zero_``, ``fill_``, ``copy_``, ``x[i] = v``).

>>> import ckpt
>>> w = ckpt.randn(3, 3, requires_grad=True)
>>> t = trace(lambda: (ckpt.ones(2, 3) @ w).relu().sum())
>>> [c.name for c in t.calls], t.calls[2].args
(['ones', 'matmul', 'relu', 'sum'], (ValueRef(op=1, out=0),))
>>> t = trace(lambda: (ckpt.ones(2, 3) @ w).relu_().sum())
>>> [c.name for c in t.calls], t.calls[3].inputs     # sum reads relu's output
(['ones', 'matmul', 'relu', 'sum'], (2,))
"""
from typing import NamedTuple

import numpy as np

from ..autograd import grad_mode
from ..autograd.ops import shape
from ..autograd.graph import AccumulateGrad, root_buffer, saved_tensors_hooks
from ..autograd.op_calls import CallObserver, observing_calls
from ..autograd.random import get_rng_state
from ..autograd.tensor import Tensor
from .errors import PlannerError

__all__ = ["trace", "Trace", "OpCall", "ValueRef", "TraceError", "tensors_in",
           "replace_tensors"]


class TraceError(PlannerError):
    """The program cannot be traced into replayable ops (an in-place write that is no
    out-of-place op's, a tensor that reaches an op from another op's output outside ckpt's
    ops, no scalar loss)."""


class ValueRef(NamedTuple):
    """Output ``out`` of recorded op number ``op``."""
    op: int
    out: int


def tensors_in(obj):
    """The tensors in ``obj`` (a tensor, or tuples, lists and dict values of them), in order.

    >>> import ckpt
    >>> x = ckpt.ones(1)
    >>> len(tensors_in([x, (1, x), {"k": x}]))
    3
    """
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in tensors_in(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in tensors_in(o)]
    return []


def replace_tensors(obj, fn, kind=Tensor):
    """``obj`` with every ``kind`` instance ``x`` in it (inside tuples, lists, dicts)
    replaced by ``fn(x)``.

    >>> replace_tensors((1, [2, "a"]), lambda v: v * 10, kind=int)
    (10, [20, 'a'])
    """
    if isinstance(obj, kind):
        return fn(obj)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(replace_tensors(o, fn, kind) for o in obj)
    if isinstance(obj, list):
        return [replace_tensors(o, fn, kind) for o in obj]
    if isinstance(obj, dict):
        return {k: replace_tensors(v, fn, kind) for k, v in obj.items()}
    return obj


class OpCall:
    """One recorded op call: ``fn`` and its ``args``/``kwargs`` (``ValueRef`` for outputs of
    recorded ops), ``grad_enabled``, ``rng`` (the RNG state before it, or None when the op
    drew no random numbers), ``inputs`` (the recorded ops it reads, in first-read order),
    ``n_outputs`` and ``saved``: the arrays of the tensors its graph saved for backward
    while it ran (as traced).

    >>> import ckpt
    >>> c = trace(lambda: ckpt.ones(2).exp().sum()).calls[1]
    >>> c.name, c.inputs, c.replay(lambda ref: ckpt.zeros(2)).tolist()
    ('exp', (0,), [1.0, 1.0])
    """

    def __init__(self, index, fn, args, kwargs, grad_enabled, rng, n_outputs, saved=()):
        self.index, self.fn, self.args, self.kwargs = index, fn, args, kwargs
        self.name = fn.__name__
        self.grad_enabled, self.rng, self.n_outputs = grad_enabled, rng, n_outputs
        self.saved = list(saved)
        self.inputs = tuple(dict.fromkeys(r.op for r in self.refs()))

    def refs(self):
        """The ``ValueRef``s among the arguments, in order (with repeats).

        >>> import ckpt
        >>> trace(lambda: (lambda a: a * a)(ckpt.ones(2))).calls[1].refs()
        [ValueRef(op=0, out=0), ValueRef(op=0, out=0)]
        """
        found = []
        replace_tensors((self.args, self.kwargs), found.append, kind=ValueRef)
        return found

    def constants(self):
        """The tensors among the arguments that are no recorded op's output.

        >>> import ckpt
        >>> w = ckpt.ones(2)
        >>> trace(lambda: ckpt.zeros(2) + w).calls[1].constants()[0] is w
        True
        """
        return tensors_in((self.args, self.kwargs))

    def replay(self, resolve):
        """Call the op again, each ``ValueRef`` ``r`` in the arguments replaced by
        ``resolve(r)``; returns what the op returns.

        >>> import ckpt
        >>> call = trace(lambda: ckpt.ones(2) * 3).calls[1]
        >>> call.replay(lambda ref: ckpt.ones(2) * 2).tolist()
        [6.0, 6.0]
        """
        args = replace_tensors(self.args, resolve, kind=ValueRef)
        kwargs = replace_tensors(self.kwargs, resolve, kind=ValueRef)
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"OpCall({self.index}, {self.name}, inputs={list(self.inputs)})"


class Trace(NamedTuple):
    """What ``trace`` returns: the ``calls`` (``OpCall``), the ``outputs`` of each call as
    traced (tensors, kept alive), the program's ``result``, ``where``: ``id(tensor) ->
    ValueRef`` of every recorded output, and ``owner``: graph node -> the number of the call
    that created it (leaf accumulators excluded)."""
    calls: list
    outputs: list
    result: object
    where: dict
    owner: dict

    def ref_of(self, t):
        """The ``ValueRef`` of tensor ``t`` if a recorded op returned it, else None.

        >>> import ckpt
        >>> t = trace(lambda: ckpt.ones(2).exp())
        >>> t.ref_of(t.result), t.ref_of(ckpt.ones(2))
        (ValueRef(op=1, out=0), None)
        """
        return self.where.get(id(t))


def trace(program):
    """Run ``program()`` once and record its top-level op calls (see the module doc).

    >>> import ckpt
    >>> x = ckpt.ones(3)
    >>> trace(lambda: x.add_(1))
    Traceback (most recent call last):
    ...
    ckpt.planner.op_trace.TraceError: the program writes in place (add_) into a tensor no op of it made (the sample, a parameter or a constant): the graph executor replays ops, so each must be a function of its inputs; write it out of place (x = x.add(y) instead of x.add_(y), ckpt.cat instead of slice assignment)
    """
    calls, outputs, where, owner = [], [], {}, {}
    writes = _InPlaceWrites(where, outputs)
    tracer = _Tracer(writes)

    def pack(t):
        if tracer.depth:
            tracer.saved_now.append(t.data)
        return t

    def record(call, enabled, rng, result):
        outs = tensors_in(result)
        if not outs:
            return
        index = len(calls)
        if writes.open:
            writes.runs(call.function, call.args, index)
        seen_as = {}    # root of each tensor it got -> the array of the value it stands for
        for t in tensors_in((call.args, call.kwargs)):
            ref = where.get(id(t))
            if ref is not None:
                seen_as[id(root_buffer(t.data))] = outputs[ref.op][ref.out].data
        saved = [seen_as.get(id(root_buffer(a)), a) for a in tracer.saved_now]
        args = replace_tensors(call.args, lambda t: where.get(id(t), t))
        kwargs = replace_tensors(call.kwargs, lambda t: where.get(id(t), t))
        drew = rng if _rng_changed(rng) else None
        calls.append(OpCall(index, call.function, args, kwargs, enabled, drew, len(outs), saved))
        for j, t in enumerate(outs):
            where.setdefault(id(t), ValueRef(index, j))
        outputs.append(outs)
        _claim_nodes(outs, index, owner)

    tracer.record = record
    with saved_tensors_hooks(pack, lambda t: t), observing_calls(tracer):
        try:
            result = program()
        finally:
            writes.forget()
    error = tracer.errors
    if error:
        msg = error[0]
        if msg.startswith("the program writes in place"):
            msg += (": the graph executor replays ops, so each must be a function of its "
                    "inputs; write it out of place (x = x.add(y) instead of x.add_(y), "
                    "ckpt.cat instead of slice assignment)")
        raise TraceError(msg)
    return Trace(calls, outputs, result, where, owner)


class _Tracer(CallObserver):
    """Tells ``record(call, grad_enabled, rng_state, result)`` of each top-level op call
    (``depth`` counts the op calls under way), and ``writes`` of the top-level in-place
    ones; ``saved_now``: the arrays saved since the top-level call began; ``errors``: what
    the writes found wrong."""

    def __init__(self, writes):
        self.writes, self.record = writes, None
        self.depth, self.pending, self.saved_now, self.errors = 0, None, [], []

    def op_entered(self, call):
        if call.kind == "backward":
            return
        writes = self.writes
        if ((call.kind == "in_place" or call.function is shape.setitem) and not self.depth
                and not writes.open):
            writes.begin(call)
        if call.kind == "op":
            if not self.depth:
                self.pending = (call, grad_mode.is_grad_enabled(), get_rng_state())
                self.saved_now.clear()
            self.depth += 1

    def op_exited(self, call, result):
        if call.kind == "op":
            self.depth -= 1
            if not self.depth:
                self.record(*self.pending, result)
        writes = self.writes
        if writes.open and writes.open[-1].call is call:
            problem = writes.end()
            if problem and not self.errors:
                self.errors.append(problem)


class _Write:
    """One in-place call being traced: its ``call``, ``name``, the ``target`` tensor, the
    target's ``ref``, the ``index`` of the out-of-place call it ran, and ``problem`` (None:
    none; a string, maybe empty, says why it cannot be rewritten)."""
    __slots__ = ("call", "name", "target", "ref", "index", "problem")


class _InPlaceWrites:
    """The in-place calls ``trace`` meets, each rewritten as the out-of-place op it runs (the
    module doc says when that is refused). ``where`` and ``outputs`` are the trace's."""

    def __init__(self, where, outputs):
        self.where, self.outputs = where, outputs
        self.open = []
        self.aliases = []         # snapshots mapped to a target's value: kept, so ids stay

    def begin(self, call):
        w = _Write()
        w.call, w.name, w.index, w.problem = call, call.name, None, None
        first = call.args[0] if call.args else None
        w.target = first if isinstance(first, Tensor) else None
        w.ref = None if w.target is None else self.where.get(id(w.target))
        if w.ref is None:
            w.problem = " into a tensor no op of it made (the sample, a parameter or a constant)"
        elif self._shared(w.target):
            w.problem = " into memory that another value shares (a view, or a viewed tensor)"
        self.open.append(w)

    def _shared(self, target):
        root = root_buffer(target.data)
        if root is not target.data:
            return True
        return any(t is not target and root_buffer(t.data) is root
                   for outs in self.outputs for t in outs)

    def runs(self, fn, args, index):
        """A top-level op ``fn(*args)`` recorded as call ``index`` inside the open write: when
        it is the write's out-of-place op, its first argument (the target or a copy of it)
        maps to the target's value."""
        w = self.open[-1]
        if w.problem is not None or w.index is not None or fn.__name__ + "_" != w.name or \
                not args or not isinstance(args[0], Tensor):
            w.problem = w.problem or ""
            return
        w.index = index
        source = args[0]
        if source is not w.target:
            self.where[id(source)] = w.ref
            self.aliases.append(source)

    def forget(self):
        """Drop the copies' entries from ``where`` (their ids may be reused once freed)."""
        for source in self.aliases:
            self.where.pop(id(source), None)
        self.aliases.clear()

    def end(self):
        """Close the innermost write: map its target to the out-of-place op's output, or
        say what is wrong with it."""
        w = self.open.pop()
        if w.problem is not None or w.index is None:
            return f"the program writes in place ({w.name}){w.problem or ''}"
        self.where[id(w.target)] = ValueRef(w.index, 0)
        return None


def _claim_nodes(outs, index, owner):
    """Give call ``index`` the graph nodes behind its outputs that no earlier call claimed:
    the nodes it created (an op's graph reaches earlier ops' only through their outputs)."""
    stack = [t.grad_fn for t in outs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in owner or isinstance(node, AccumulateGrad):
            continue
        owner[node] = index
        stack.extend(n for n, _ in node.next_functions if n is not None)


def _rng_changed(before):
    now = get_rng_state()
    return not _same_state(before, now)


def _same_state(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b
