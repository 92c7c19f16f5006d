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


def number_to_the_power_of_a_tensor(lib):
    grads = []
    for base in (0, 0.0, 2.0, -2.0):
        exponent = lib.tensor([-1.0, 0.0, 1.0, 2.5], requires_grad=True)
        lib.sum(base ** exponent).backward()
        grads.append([str(round(g, 5)) for g in exponent.grad.tolist()])   # nan != nan
    return grads


def diagonals(lib):
    x = lib.arange(24.0).reshape(2, 3, 4).requires_grad_()
    taken = [x.diagonal(), x.diagonal(1, 1, 2), x.diagonal(-1, -1, 0), x.diagonal(5, 1, 2),
             lib.ones(3, 3).diagonal()]
    sum(d.sum() * (k + 1) for k, d in enumerate(taken[:4])).backward()
    return [[d.shape for d in taken], [d.tolist() for d in taken], x.grad]


def legacy_list_indices(lib):
    results = []
    for shape, index in (((10,), [[0, 4, 2]]), ((5, 5), [[0, 4], [2, 2]]),
                         ((5, 5, 5), [slice(None), [2, 4], [1, 3]]), ((5, 5), [0, 2])):
        x = lib.ones(*shape, requires_grad=True)
        y = x + 2
        y[index] = 2
        y.backward(lib.ones(*shape))
        results.append([x.grad, (x * 1)[index].shape])
    return results


PROGRAMS.update({
    "number ** tensor": number_to_the_power_of_a_tensor,
    "diagonal": diagonals,
    "diagonal of one dim twice": lambda lib: lib.ones(2, 2).diagonal(0, 1, -1),
    "legacy list indices": legacy_list_indices,
    "randint(high, size)": lambda lib: [lib.randint(3, (2, 5)).shape,
                                        bool((lib.randint(1, [4]) == 0).all())],
    "dtype aliases": lambda lib: [str(lib.ones(1, dtype=d).dtype).split(".")[-1]
                                  for d in (lib.int, lib.short, lib.half, lib.int8, lib.uint8)],
    "math constants": lambda lib: [lib.inf, -lib.inf, str(lib.nan), lib.pi, lib.e],
    "_is_view": lambda lib: [t._is_view() for t in (
        lib.ones(2, 3), lib.ones(2, 3)[0], lib.ones(2, 3).view(6), lib.ones(2, 3) * 2,
        lib.ones(2, 3)[[0]], (lib.ones(2, 3, requires_grad=True) * 1)[:, 1])],
    "gradcheck passes non-tensors through": lambda lib: lib.autograd.gradcheck(
        lambda x, flag, k: x * k if flag else x,
        (lib.ones(2, dtype=lib.float64, requires_grad=True), True, 3.0)),
})


def inplace_function(lib):
    class AddInto(lib.autograd.function.InplaceFunction):
        @staticmethod
        def forward(ctx, a, b):
            ctx.mark_dirty(a)
            return a.add_(b), b + 2

        @staticmethod
        def backward(ctx, grad_a, grad_b):
            return grad_a, grad_a + grad_b
    x = lib.ones(2)
    y = lib.ones(2, requires_grad=True)
    q, _ = AddInto.apply(x, y)
    q.sum().backward()
    return [q is x, type(q.grad_fn) is AddInto._backward_cls, q.requires_grad, y.grad,
            AddInto(inplace=True).inplace, AddInto().inplace]


PROGRAMS["InplaceFunction"] = inplace_function


def pickled(lib):
    import pickle
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    y = lib.tensor([3, 4])
    copies = [pickle.loads(pickle.dumps([x, y], protocol=p)) for p in range(5)]
    return [[c.tolist(), c.requires_grad, c.is_leaf, c is not x] for pair in copies for c in pair]


def grad_fn_called(lib):
    x = lib.tensor([3.0], requires_grad=True)
    w = lib.tensor([2.0], requires_grad=True)
    return [(x ** 2).grad_fn(lib.ones(1)), list((x * w).grad_fn(lib.ones(1)))]


PROGRAMS.update({
    "pickle": pickled,
    "pickle a non-leaf": lambda lib: [(c.tolist(), c.requires_grad, c.is_leaf) for c in [
        __import__("pickle").loads(__import__("pickle").dumps(lib.ones(1, requires_grad=True) * 2))]],
    "grad_fn(grad)": grad_fn_called,
    "grad_fn() with too few": lambda lib: ((lib.ones(1, requires_grad=True)) ** 2).grad_fn(),
    "grad_fn() with too many": lambda lib: ((lib.ones(1, requires_grad=True)) ** 2).grad_fn(
        lib.ones(1), lib.ones(1)),
})
