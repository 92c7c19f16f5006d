"""Small pieces of torch's API a ported program reaches for: ``grad_fn.metadata``, the
``Variable`` alias, ``randint``'s overloads, the dtype aliases, ``diagonal``, ``_is_view``."""
import pytest

from torch_oracle import assert_same_as_torch


def node_metadata(lib):
    y = lib.ones(2, requires_grad=True) * 2
    y.grad_fn.metadata["key"] = "kept"
    z = y.exp()
    return [y.grad_fn.metadata, z.grad_fn.metadata, type(y.grad_fn.metadata).__name__]


PROGRAMS = {"grad_fn.metadata": node_metadata}


@pytest.mark.parametrize("name", PROGRAMS)
def test_small_api_as_in_torch(name):
    assert_same_as_torch(PROGRAMS[name])


def variable_alias(lib):
    from_leaf = lib.autograd.Variable(lib.ones(2), requires_grad=True)
    graph = lib.ones(2, requires_grad=True) * 2
    from_graph = lib.autograd.Variable(graph)
    (from_leaf * 3).sum().backward()
    return [from_leaf.grad, from_graph.requires_grad, from_graph.grad_fn is None,
            isinstance(graph, lib.autograd.Variable), isinstance(2.0, lib.autograd.Variable),
            lib.autograd.Variable(), lib.autograd.Variable(graph, requires_grad=True).is_leaf]


def callbacks_at_the_end_of_backward(lib):
    """A callback queued from a custom Function's backward runs after the pass, one it queues
    runs too; one queued inside a nested (reentrant) backward runs when that one ends."""
    queue = lib.autograd.Variable._execution_engine.queue_callback
    log = []

    class Inner(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            queue(lambda: log.append("inner callback"))
            return g

    class Outer(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            queue(lambda: (log.append("outer callback"),
                           queue(lambda: log.append("queued by a callback"))))
            with lib.enable_grad():
                Inner.apply(lib.ones(1, requires_grad=True)).sum().backward()
            log.append("outer backward done")
            return g
    x = lib.ones(2, requires_grad=True)
    Outer.apply(x).sum().backward()
    return log


PROGRAMS.update({
    "Variable": variable_alias,
    "Variable of a list": lambda lib: lib.autograd.Variable([1.0]),
    "Variable of integers requiring grad": lambda lib: lib.autograd.Variable(
        lib.ones(2, dtype=lib.int64), requires_grad=True),
    "queue_callback": callbacks_at_the_end_of_backward,
    "queue_callback outside backward": lambda lib: (
        lib.autograd.Variable._execution_engine.queue_callback(lambda: None)),
})
