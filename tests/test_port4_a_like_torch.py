"""Custom Functions in forward mode, gradcheck's forward-AD and undefined-gradient checks, and
the functional API's batched checks, found by the port of torch's autograd tests: the same
program in torch and in ckpt gives the same result or error."""
import importlib

import pytest

from torch_oracle import assert_same_as_torch


def forward_ad(lib):
    return importlib.import_module(lib.__name__ + ".autograd.forward_ad")


def jvp_of(lib, forward, jvp, *args, tangent=None):
    """The tangents of ``Function(forward, jvp).apply(*args)`` with the first argument dual."""
    fwAD = forward_ad(lib)
    function = type("Fn", (lib.autograd.Function,), {"forward": staticmethod(forward),
                                                     "jvp": staticmethod(jvp)})
    with fwAD.dual_level():
        x = fwAD.make_dual(args[0], lib.ones(2) if tangent is None else tangent)
        outs = function.apply(x, *args[1:])
        outs = outs if isinstance(outs, tuple) else (outs,)
        return [fwAD.unpack_dual(o).tangent if isinstance(o, lib.Tensor) else None for o in outs]


def tangent_for_a_non_differentiable_output(lib):
    def forward(ctx, x):
        out = x.clone()
        ctx.mark_non_differentiable(out)
        return x * 2, out
    return jvp_of(lib, forward, lambda ctx, t: (t * 2, t.clone()), lib.ones(2))


def none_for_non_tensor_and_integer_outputs(lib):
    return jvp_of(lib, lambda ctx, x: (x * 2, "label", x.long()),
                  lambda ctx, t: (t * 2, None, None), lib.ones(2))


def dirty_input(modify_in_place, return_it):
    def program(lib):
        def forward(ctx, x):
            ctx.mark_dirty(x)
            return x.mul_(2)

        def jvp(ctx, t):
            changed = t.mul_(2) if modify_in_place else t * 2
            return changed if return_it else changed.clone()
        tangent = lib.ones(2)
        (out,) = jvp_of(lib, forward, jvp, lib.ones(2), tangent=tangent)
        return out is tangent, out
    return program


def view_output(make_tangent, input_is_a_view=False):
    def program(lib):
        def forward(ctx, x):
            return x.narrow(0, 0, 1)
        fwAD = forward_ad(lib)
        function = type("Fn", (lib.autograd.Function,), {
            "forward": staticmethod(forward),
            "jvp": staticmethod(lambda ctx, t: make_tangent(t.narrow(0, 0, 1)))})
        with fwAD.dual_level():
            x = fwAD.make_dual(lib.ones(2), lib.ones(2))
            out = function.apply(x.view_as(x) if input_is_a_view else x)
            return fwAD.unpack_dual(out).tangent
    return program


def input_returned_as_is(jvp):
    def program(lib):
        fwAD = forward_ad(lib)
        function = type("Fn", (lib.autograd.Function,), {
            "forward": staticmethod(lambda ctx, x: x), "jvp": staticmethod(jvp)})
        tangent = lib.ones(2)
        with fwAD.dual_level():
            out = function.apply(fwAD.make_dual(lib.ones(2), tangent))
            return fwAD.unpack_dual(out).tangent._base is tangent
    return program


@pytest.mark.parametrize("program", [
    tangent_for_a_non_differentiable_output, none_for_non_tensor_and_integer_outputs,
    dirty_input(True, True), dirty_input(False, True), dirty_input(True, False),
    view_output(lambda t: t), view_output(lambda t: t.clone()),
    view_output(lambda t: t.clone().view_as(t)), view_output(lambda t: t.clone().view_as(t), True),
    view_output(lambda t: t, True),
    input_returned_as_is(lambda ctx, t: t.view_as(t)), input_returned_as_is(lambda ctx, t: t),
    input_returned_as_is(lambda ctx, t: t * 2)])
def test_what_a_custom_functions_jvp_returns_is_checked_as_torch(program):
    assert_same_as_torch(program)


def save_for_forward_only(save_for_forward):
    def program(lib):
        def forward(ctx, x, y):
            ctx.save_for_backward(x, y)
            if save_for_forward:
                ctx.save_for_forward(y)
            return x * y

        def jvp(ctx, tx, ty):
            return tx * len(ctx.saved_tensors)
        return jvp_of(lib, forward, jvp, lib.ones(2), lib.ones(2))
    return program


@pytest.mark.parametrize("saves", [True, False])
def test_jvp_reads_only_what_save_for_forward_kept_as_torch(saves):
    assert_same_as_torch(save_for_forward_only(saves))


def batched_second_derivative(lib, through):
    """Batched gradients (``is_grads_batched``) of a first derivative taken through
    ``through``, whose rank differs from its input's: the batch dims must stay in front."""
    x = lib.tensor([1.0, 2.0, 3.0, 4.0], dtype=lib.float64, requires_grad=True)
    y = through(x)
    w = lib.ones(y.shape, dtype=lib.float64, requires_grad=True)
    (gx,) = lib.autograd.grad(y, x, w, create_graph=True)
    batched = lib.arange(3 * 4, dtype=lib.float64).reshape(3, 4)
    first = lib.autograd.grad(y, x, lib.stack([w.detach()] * 3) * 2, retain_graph=True,
                              is_grads_batched=True)
    return first + lib.autograd.grad(gx, w, batched, is_grads_batched=True)


@pytest.mark.parametrize("through", [lambda x: x.expand(3, 4), lambda x: x.expand(2, 1, 4),
                                     lambda x: x.sum(), lambda x: (x * x).sum()])
def test_batched_gradients_through_a_change_of_rank_as_torch(through):
    assert_same_as_torch(lambda lib: batched_second_derivative(lib, through))


@pytest.mark.parametrize("through", [lambda x: x.expand(3, 4), lambda x: x.sum(),
                                     lambda x: x.expand(2, 1, 4).sum(0)])
def test_batched_tangents_through_a_change_of_rank_are_torchs_vmap_of_jvp(through):
    import numpy as np
    import torch
    import ckpt
    import ckpt.autograd.forward_ad as fwAD
    tangents = np.arange(3 * 4, dtype=np.float64).reshape(3, 4)
    primal = np.array([1.0, 2.0, 3.0, 4.0])
    with fwAD.dual_level(batch_size=3):
        out = through(fwAD.make_dual(ckpt.tensor(primal), ckpt.tensor(tangents)))
        ours = fwAD.unpack_dual(out).tangent.data
    theirs = torch.func.vmap(lambda t: torch.func.jvp(through, (torch.tensor(primal),), (t,))[1])(
        torch.tensor(tangents))
    np.testing.assert_allclose(ours, theirs.numpy())


def standard_basis(lib):
    functional = importlib.import_module(lib.__name__ + ".autograd.functional")
    tensors = (lib.ones(2, 3), lib.ones((), dtype=lib.float64), lib.ones(3, 1))
    blocks = functional._construct_standard_basis_for(tensors, tuple(t.numel() for t in tensors))
    return [[b, str(b.dtype).split(".")[-1]] for b in blocks]


def test_torchs_standard_basis_helper_as_torch():
    assert_same_as_torch(standard_basis)


def strict_and_vectorized(lib, function):
    x = lib.tensor([1.0, 2.0], dtype=lib.float64)
    return function(lib.autograd.functional)(lambda x: (x ** 3).sum(), x, strict=True,
                                               vectorize=True)


@pytest.mark.parametrize("function", [lambda F: F.jacobian, lambda F: F.hessian])
def test_strict_refuses_vectorize_as_torch(function):
    assert_same_as_torch(lambda lib: strict_and_vectorized(lib, function))


def gradcheck_meets_a_hook_refusing_undefined_gradients(lib, raise_exception):
    import warnings

    def refuse_none(grad):
        if grad is None:
            raise RuntimeError("x is undefined")

    def function(x):
        y = x.clone()
        y.register_hook(refuse_none)
        return y
    x = lib.ones(1, dtype=lib.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = lib.autograd.gradcheck(function, (x,), raise_exception=raise_exception)
        except RuntimeError as error:
            result = str(error).split(".")[0]
    return result, [str(w.message).split(":")[0] for w in caught]


@pytest.mark.parametrize("raise_exception", [True, False])
def test_gradcheck_passes_undefined_gradients_as_torch(raise_exception):
    assert_same_as_torch(lambda lib: gradcheck_meets_a_hook_refusing_undefined_gradients(
        lib, raise_exception))


def backward_of_an_unreached_pair(lib, materialize):
    """A two-output Function none of whose outputs gets a gradient: its backward still runs."""
    calls = []

    class Pair(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(materialize)
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            calls.append([g1, g2])
            return None

    class Cut(lib.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, g):
            return None, None
    x = lib.ones(2, requires_grad=True)
    grads = lib.autograd.grad(Cut.apply(*Pair.apply(x)).sum(), x, allow_unused=True)
    return list(grads) + calls


@pytest.mark.parametrize("materialize", [True, False])
def test_a_functions_backward_runs_without_gradients_as_torch(materialize):
    assert_same_as_torch(lambda lib: backward_of_an_unreached_pair(lib, materialize))


def forward_checks_see_inputs_without_graph(lib):
    """gradcheck's forward-mode checks pass the inputs detached, inside an open level."""
    fwAD = forward_ad(lib)
    seen = []

    class Copy(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            if fwAD._current_level >= 0:
                seen.append([x.requires_grad, y.requires_grad])
            return x.clone(), y.clone()

        @staticmethod
        def jvp(ctx, tx, ty):
            return tx, ty
    x = lib.rand(2, dtype=lib.float64, requires_grad=True)
    y = lib.rand(2, dtype=lib.float64, requires_grad=True)
    ok = lib.autograd.gradcheck(Copy.apply, (x, y), check_forward_ad=True, check_backward_ad=False,
                                check_undefined_grad=False)
    return ok, fwAD._current_level, sorted(set(map(tuple, seen)))


def test_forward_ad_checks_run_without_requires_grad_as_torch():
    assert_same_as_torch(forward_checks_see_inputs_without_graph)


def dual_tensors_printed_and_detached(lib):
    fwAD = forward_ad(lib)
    with fwAD.dual_level():
        plain = lib.ones(2)
        dual = fwAD.make_dual(plain, lib.ones(2) * 2)
        primal, tangent = fwAD.unpack_dual(dual)
        printed = ["tangent=" in str(t) for t in (plain, dual, primal, tangent)]
        copy = dual.clone()
        copy.detach_()
        return printed + [fwAD.unpack_dual(copy).tangent, fwAD.unpack_dual(copy * 2).tangent]


def test_a_dual_tensor_prints_its_tangent_and_detach__drops_it_as_torch():
    assert_same_as_torch(dual_tensors_printed_and_detached)


def storages(lib):
    import warnings
    base = lib.zeros(5)
    view = base[1:4]
    fwAD = forward_ad(lib)
    with warnings.catch_warnings(), fwAD.dual_level():
        warnings.simplefilter("ignore")  # torch: TypedStorage is deprecated
        dual = fwAD.make_dual(base, lib.ones(5))
        return [len(view.storage()), len(base.clone().storage()),
                view.storage().data_ptr() == base.storage().data_ptr(),
                dual.storage().data_ptr() == base.storage().data_ptr(),
                base.clone().storage().data_ptr() == base.storage().data_ptr()]


def test_a_tensor_and_its_views_share_a_storage_as_torch():
    assert_same_as_torch(storages)


def strided(program):
    def run(lib):
        base = lib.arange(6, dtype=lib.float64)
        x = (base * 1).requires_grad_()
        y = program(lib, x)
        (g,) = lib.autograd.grad((y * lib.arange(y.numel(), dtype=lib.float64).reshape(y.shape)).sum(), x)
        return [y, g, y.stride()] + ([y.storage_offset()] if y.numel() else [])  # (see README)
    return run


@pytest.mark.parametrize("program", [
    lambda lib, x: x.as_strided((2, 2), (3, 1), 1),
    lambda lib, x: x.as_strided((3, 2), (1, 1)),                       # overlapping view
    lambda lib, x: x[1:].as_strided((2,), (2,)),                        # from a view's offset
    lambda lib, x: x.expand(2, 6).as_strided((2, 2), (1, 2), 0),       # overlapping input
    lambda lib, x: x.as_strided((0,), (1,), 9),
    lambda lib, x: x.as_strided((7,), (1,), 0),
    lambda lib, x: x.as_strided((2,), (-1,), 0),
    lambda lib, x: x.as_strided((2, 2), (1,), 0)])
def test_as_strided_and_its_gradient_as_torch(program):
    assert_same_as_torch(strided(program))


def dual_of_a_view_into_a_larger_storage(lib):
    fwAD = forward_ad(lib)
    primal = lib.arange(5, dtype=lib.float64)[:4]
    tangent = lib.ones(4, dtype=lib.float64)
    same_layout = lib.ones(4, dtype=lib.float64)
    with fwAD.dual_level():
        dual = fwAD.make_dual(primal, tangent)
        fwAD.unpack_dual(dual).tangent.mul_(2)   # a copy: the tangent given stays as it was
        whole = fwAD.unpack_dual(dual.as_strided((5,), (1,), 0)).tangent
        kept = fwAD.unpack_dual(fwAD.make_dual(lib.zeros(4, dtype=lib.float64), same_layout))
        return [tangent, whole, kept.tangent is same_layout]


def test_make_dual_lays_a_tangent_out_as_its_primal_as_torch():
    assert_same_as_torch(dual_of_a_view_into_a_larger_storage)


@pytest.mark.parametrize("geometry", [((2, 2), (3, 1), 1), ((3, 2), (1, 1), 0), ((4,), (0,), 2)])
def test_as_strided_derivatives_match_finite_differences(geometry):
    import ckpt
    x = ckpt.rand(6, dtype=ckpt.float64, requires_grad=True)
    f = lambda t: t.expand(2, 6).as_strided(*geometry) ** 2  # noqa: E731 -- overlapping input too
    assert ckpt.autograd.gradcheck(f, (x,), check_forward_ad=True, check_batched_grad=True)
    assert ckpt.autograd.gradgradcheck(f, (x,))


def random_op_in_a_batched_jvp(lib):
    class Twice(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def vjp(ctx, g):
            return g * 2

        @staticmethod
        def jvp(ctx, t):
            lib.randn_like(t)
            return t * 2
    x = lib.rand(2, dtype=lib.float64, requires_grad=True)
    try:
        lib.autograd.gradcheck(Twice.apply, (x,), check_forward_ad=True,
                               check_batched_forward_grad=True)
    except RuntimeError as error:
        return "vmap: We do not yet support calling random operations inside of vmap" in str(error)


def test_a_random_op_in_a_batched_forward_check_is_refused_as_torch():
    assert_same_as_torch(random_op_in_a_batched_jvp)
    assert random_op_in_a_batched_jvp(__import__("ckpt")) is True
