"""Custom autograd.Function against torch.autograd.Function: gradients per output, the count
of returned gradients, ``mark_dirty``, ``set_materialize_grads``, the ``setup_context`` style,
``once_differentiable``; and ``autograd.grad(materialize_grads=True)`` under ``create_graph``.
Each test runs the same program with ``lib`` = torch and ``lib`` = ckpt."""
import pytest
import torch

import ckpt
import ckpt.autograd.function

from torch_oracle import assert_same_as_torch, outcome

def leaf(lib, values=(1.0, 2.0, 3.0), requires_grad=True):
    return lib.tensor(list(values), dtype=lib.float64, requires_grad=requires_grad)


# ---- one gradient per output ------------------------------------------------------------

def four_outputs(materialize, non_differentiable):
    def program(lib):
        seen = []

        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.set_materialize_grads(materialize)
                a, b = x * 2, x * 3
                if non_differentiable:
                    ctx.mark_non_differentiable(b)
                return a, 7, b, None

            @staticmethod
            def backward(ctx, ga, g_int, gb, g_none):
                seen.append((ga, g_int, gb, g_none))
                return ga * 2 + (gb * 3 if gb is not None else 0)

        x = leaf(lib)
        a, i, b, n = F.apply(x)
        nr = a.output_nr if lib is torch else a._output_nr
        b_nr = b.output_nr if lib is torch else b._output_nr
        a.sum().backward()
        return [nr, b_nr, b.requires_grad, i, n, x.grad, list(seen[0])]
    return program


@pytest.mark.parametrize("non_differentiable", [False, True])
@pytest.mark.parametrize("materialize", [True, False])
def test_backward_receives_one_gradient_per_output_as_in_torch(materialize, non_differentiable):
    assert_same_as_torch(four_outputs(materialize, non_differentiable))


def test_backward_with_an_ignored_second_gradient():
    def program(lib):
        class WithCount(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.exp(), int(x.numel())

            @staticmethod
            def backward(ctx, g_out, _):
                return g_out * 2

        x = leaf(lib)
        y, n = WithCount.apply(x)
        (y * n).sum().backward()
        return x.grad

    assert_same_as_torch(program)


def returning(gradients, inputs):
    def program(lib):
        class F(lib.autograd.Function):
            @staticmethod
            def forward(ctx, *args):
                return args[0] * 2

            @staticmethod
            def backward(ctx, g):
                return gradients(g)

        x = leaf(lib)
        F.apply(*inputs(lib, x)).sum().backward()
        return x.grad
    return program


@pytest.mark.parametrize("gradients, inputs", [
    (lambda g: g, lambda lib, x: (x, x)),                       # too few
    (lambda g: (g, g), lambda lib, x: (x,)),                    # too many
    (lambda g: (g, None, None), lambda lib, x: (x,)),           # trailing Nones are dropped
    (lambda g: (g, g), lambda lib, x: (x, 2.0)),                # a gradient for a number
    (lambda g: (g, g), lambda lib, x: (x, leaf(lib, requires_grad=False))),  # dropped
], ids=["too-few", "too-many", "extra-nones", "non-tensor", "no-grad-input"])
def test_returned_gradient_count_is_checked_as_in_torch(gradients, inputs):
    assert_same_as_torch(returning(gradients, inputs))


@pytest.mark.parametrize("shape", [(3,), (1, 3), (2, 3), (3, 1), (1,), (4,)],
                         ids=lambda s: "x".join(map(str, s)))
def test_returned_gradient_shape_is_checked_or_summed_as_in_torch(shape):
    # a gradient the (3,) input expands to is summed down to it; any other is torch's
    # "invalid gradient" error
    assert_same_as_torch(returning(lambda g: g.new_ones(shape), lambda lib, x: (x,)))


def test_materialized_unused_gradients_require_grad_under_create_graph():
    def program(lib):
        x, y = leaf(lib), leaf(lib)
        gx, gy = lib.autograd.grad((x * x).sum(), (x, y), create_graph=True,
                                   materialize_grads=True)
        return [gx.requires_grad, gy.requires_grad, gy.is_leaf, gy.grad_fn is None, gy]

    assert_same_as_torch(program)
    assert outcome(program, ckpt)[:4] == [True, True, True, True]


# ---- mark_dirty --------------------------------------------------------------------------

def add_one(lib):
    class AddOne(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.add_(1)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2
    return AddOne


def dirty_non_leaf(lib):
    x = leaf(lib)
    b = x * 1
    before = b._version
    y = add_one(lib).apply(b)
    (y * y).sum().backward()
    return [y is b, b.is_leaf, b._version - before, b, x.grad]


def dirty_view(lib):
    x = leaf(lib)
    base = x * 1
    other = base[1:]
    y = add_one(lib).apply(base[:2])
    (base.sum() + 10 * other.sum()).backward()
    return [y.is_leaf, base.is_leaf, base, other, x.grad]


def dirty_input_without_grad(lib):
    c = lib.ones(2, dtype=lib.float64)
    before = c._version
    y = add_one(lib).apply(c)
    return [y is c, y.requires_grad, c._version - before, c]


def dirty_under_no_grad(lib):
    x = leaf(lib)
    before = x._version
    with lib.no_grad():
        y = add_one(lib).apply(x)
    return [y is x, y.requires_grad, x._version - before, x]


def dirty_written_by_another_input(lib):
    class AddTo(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            x.add_(w)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g, g * 3

    c, w = lib.zeros(2, dtype=lib.float64), leaf(lib, (1.0, 2.0))
    y = AddTo.apply(c, w)
    c.sum().backward()
    return [y is c, c.requires_grad, c.is_leaf, w.grad]


def dirty_leaf(lib):
    return add_one(lib).apply(leaf(lib))


def dirty_view_of_leaf(lib):
    return add_one(lib).apply(leaf(lib)[:2])


def dirty_not_returned(lib):
    class Bad(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.add_(1)
            ctx.mark_dirty(x)
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g

    return Bad.apply(leaf(lib) * 1)


def dirty_saved_then_modified(lib):
    class Double(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            x.mul_(2)
            ctx.mark_dirty(x)
            ctx.save_for_backward(x)
            return x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * x

    x = leaf(lib)
    y = Double.apply(x * 1)
    y.sum().backward(retain_graph=True)
    first = x.grad.clone()
    y.mul_(3)
    y.sum().backward()
    return first


@pytest.mark.parametrize("program", [
    dirty_non_leaf, dirty_view, dirty_input_without_grad, dirty_under_no_grad,
    dirty_written_by_another_input, dirty_leaf, dirty_view_of_leaf, dirty_not_returned,
    dirty_saved_then_modified])
def test_mark_dirty_as_in_torch(program):
    assert_same_as_torch(program)


def test_mark_dirty_returns_the_input_with_its_history_moved():
    """The facts the torch comparison rests on, stated for ckpt alone."""
    same, is_leaf, bumps, value, grad = outcome(dirty_non_leaf, ckpt)
    assert same and not is_leaf and bumps == 2  # add_ and mark_dirty each bump, as in torch
    assert value[1] == [2.0, 3.0, 4.0] and grad[1] == [8.0, 12.0, 16.0]  # 2 (x+1), backward's 2
    assert outcome(dirty_leaf, ckpt).type == "RuntimeError"


# ---- setup_context style -----------------------------------------------------------------

def scale_with_setup_context(lib):
    seen = []

    class Scale(lib.autograd.Function):
        @staticmethod
        def forward(x, k=2.0):
            return x * k, x + 1

        @staticmethod
        def setup_context(ctx, inputs, output):
            seen.append((len(inputs), inputs[1], type(output) is tuple, lib.is_grad_enabled(),
                         ctx.needs_input_grad))
            ctx.k = inputs[1]
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g_scaled, g_shifted):
            (x,) = ctx.saved_tensors
            return g_scaled * ctx.k * x + g_shifted, None

    x = leaf(lib)
    a, b = Scale.apply(x)
    (a + b).sum().backward()
    a, _ = Scale.apply(x, 3.0)
    return [a, x.grad, [list(s) for s in seen]]


def setup_context_with_ctx_in_forward(lib):
    class Both(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return g * 2

    return Both.apply(leaf(lib))


@pytest.mark.parametrize("program", [scale_with_setup_context, setup_context_with_ctx_in_forward])
def test_setup_context_style_as_in_torch(program):
    if program is setup_context_with_ctx_in_forward:  # Python's own words differ: type only
        assert outcome(program, ckpt).type == outcome(program, torch).type == "TypeError"
    else:
        assert_same_as_torch(program)


def test_setup_context_function_passes_gradcheck():
    class Cube(ckpt.autograd.Function):
        @staticmethod
        def forward(x):
            return x ** 3

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 3 * x ** 2 * g

    x = ckpt.tensor([0.5, -1.5], dtype=ckpt.float64, requires_grad=True)
    assert ckpt.autograd.gradcheck(Cube.apply, (x,)) and ckpt.autograd.gradgradcheck(Cube.apply, (x,))


# ---- once_differentiable -----------------------------------------------------------------

def square_once(lib):
    class Square(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 2

        @staticmethod
        @lib.autograd.function.once_differentiable
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            ctx.mode = lib.is_grad_enabled()
            return 2 * x * g
    return Square


def once_first_order(lib):
    x = leaf(lib)
    y = square_once(lib).apply(x)
    (g,) = lib.autograd.grad(y.sum(), x, create_graph=True)
    return [g, g.requires_grad, y.grad_fn.mode]


def once_second_order(lib):
    x, w = leaf(lib), leaf(lib)
    (g,) = lib.autograd.grad((square_once(lib).apply(x) * w).sum(), x, create_graph=True)
    names = [type(g.grad_fn).__name__, g.requires_grad]
    try:
        g.sum().backward()
    except RuntimeError as e:
        return names + [str(e)]
    return names


@pytest.mark.parametrize("program", [once_first_order, once_second_order])
def test_once_differentiable_as_in_torch(program):
    assert_same_as_torch(program)
    assert "once_differentiable" in outcome(once_second_order, ckpt)[-1]


# ---- vjp as backward's other name; an input returned as-is ----------------------------------

def defines_vjp(lib):
    class Scale(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def vjp(ctx, g):
            return g * 5

    x = leaf(lib)
    Scale.apply(x).sum().backward()
    return x.grad


def defines_neither(lib):
    class Forward(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

    Forward.apply(leaf(lib)).sum().backward()


def returns_its_input(lib):
    class Identity(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 2

    x = leaf(lib) * 1
    y = Identity.apply(x)
    x.add_(1)
    with lib.no_grad():
        z = Identity.apply(x)
    return [y is x, z is x, y._version, x._version, y]


@pytest.mark.parametrize("program", [defines_vjp, defines_neither, returns_its_input])
def test_vjp_and_returned_inputs_as_in_torch(program):
    assert_same_as_torch(program)
