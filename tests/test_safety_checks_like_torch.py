"""Issue 14, point 12: the safety checks torch makes, ckpt makes too -- the same program
raises the same error type with torch's words, or runs to the same result -- and
grad_fn._saved_<name> / _raw_saved_<name>.register_hooks."""
import pytest
import torch

import ckpt

from torch_oracle import assert_same_as_torch


def test_a_pack_hook_modifying_its_input_is_refused_as_torch():
    def program(lib):
        a = lib.ones(3, requires_grad=True)

        def pack(x):
            x.add_(1)
            return x
        with lib.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            b = a.clone()
            return b * b
    assert_same_as_torch(program)


def test_detach_in_place_of_a_view_or_of_a_saved_tensor_as_torch():
    def of_a_view(lib):
        return (lib.ones(3, requires_grad=True) * 2)[1:].detach_()

    def of_a_saved_input(lib):
        a = lib.tensor(1.0, requires_grad=True).clone()
        b = a.sin()
        a.detach_()
        b.backward()

    def of_a_saved_output_still_used(lib):
        a = lib.tensor(1.0, dtype=lib.float64, requires_grad=True)
        b = a.exp()
        c = b * 1
        b.detach_()
        c.backward()
        return a.grad, b.requires_grad, b.grad_fn is None
    for program in (of_a_view, of_a_saved_input, of_a_saved_output_still_used):
        assert_same_as_torch(program)


@pytest.mark.parametrize("pieces", [lambda x: x.unbind(), lambda x: x.split(1),
                                    lambda x: x.chunk(2), lambda x: x.split([1, 2])])
def test_in_place_on_outputs_of_multi_view_functions_as_torch(pieces):
    def program(lib):
        x = lib.ones(3, 2, requires_grad=True) * 1
        out = pieces(x)
        log = [len(out)]
        with lib.no_grad():
            out[-1].mul_(2)            # allowed without grad mode
        out_plain = pieces(lib.ones(3, 2))
        out_plain[0].mul_(2)       # and on tensors that don't require grad
        log.append(out_plain[0])
        out[-1].mul_(2)
        return log
    assert_same_as_torch(program)


class Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g


def custom_view_function(lib, returns):
    class View(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return returns(x)

        @staticmethod
        def backward(ctx, g):
            return g
    return View


@pytest.mark.parametrize("returns", [lambda x: x.view_as(x), lambda x: x, lambda x: x[1:]])
def test_in_place_on_a_custom_function_view_as_torch(returns):
    def program(lib):
        out = custom_view_function(lib, returns).apply(lib.ones(3, requires_grad=True) * 1)
        out.mul_(2)
    assert_same_as_torch(program)


def test_a_custom_function_copy_may_be_written_as_torch():
    def program(lib):
        x = lib.ones(3, requires_grad=True)
        out = custom_view_function(lib, lambda x: x * 1).apply(x)
        out.mul_(2)
        out.sum().backward()
        return x.grad
    assert_same_as_torch(program)


def test_in_place_with_grad_on_a_view_made_under_no_grad_as_torch():
    def program(lib):
        b = lib.ones(3, requires_grad=True) * 2
        with lib.no_grad():
            v = b[1:]
            v.mul_(2)   # fine inside no_grad
        log = [b.tolist()]
        with lib.no_grad():
            w = lib.ones(3)[1:]
        w.mul_(2)       # fine: the base doesn't require grad
        log.append(w)
        v.mul_(2)
        return log
    assert_same_as_torch(program)


@pytest.mark.parametrize("grad", [lambda lib: 3, lambda lib: [1.0, 1.0, 1.0],
                                  lambda lib: lib.ones(2), lambda lib: lib.ones(3, 1),
                                  lambda lib: lib.ones(3, dtype=lib.float64),
                                  lambda lib: lib.ones(3, dtype=lib.int64),
                                  lambda lib: lib.full((3,), 2.0), lambda lib: None])
def test_grad_assignments_are_checked_as_torch(grad):
    def program(lib):
        x = lib.ones(3, requires_grad=True)
        x.grad = grad(lib)
        return x.grad
    assert_same_as_torch(program)


@pytest.mark.parametrize("tangent", [lambda lib, fw: lib.ones(3, dtype=lib.int64),
                                     lambda lib, fw: fw.make_dual(lib.ones(3), lib.ones(3))])
def test_make_dual_refuses_integer_and_dual_tangents_as_torch(tangent):
    def program(lib):
        fw = lib.autograd.forward_ad
        with fw.dual_level():
            fw.make_dual(lib.ones(3), tangent(lib, fw))
    assert_same_as_torch(program)


def test_saved_values_by_name_and_after_the_graph_is_freed_as_torch():
    def program(lib):
        a = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        e, s, m = a.exp(), a.sin(), a * lib.tensor([3.0, 4.0], dtype=lib.float64)
        log = [e.grad_fn._saved_result, e.grad_fn._saved_result.grad_fn is e.grad_fn,
               s.grad_fn._saved_self is a, m.grad_fn._saved_self, m.grad_fn._saved_other,
               (a @ a).grad_fn.name(), a.sigmoid().grad_fn._saved_result,
               (a / a.detach()).grad_fn._saved_other]
        e.sum().backward()
        try:
            e.grad_fn._saved_result
        except RuntimeError as error:
            log.append(str(error))
        return log
    assert_same_as_torch(program)


def test_raw_saved_register_hooks_as_torch():
    def program(lib):
        a = lib.ones(3, dtype=lib.float64, requires_grad=True)
        c = a.exp()
        raw = c.grad_fn._raw_saved_result
        raw.register_hooks(lambda x: x * 2, lambda x: x)
        log = [c.grad_fn._saved_result]
        try:
            raw.register_hooks(lambda x: x, lambda x: x)
        except RuntimeError as error:
            log.append(str(error).split(" Hint")[0])
        c.sum().backward()
        log.append(a.grad)
        try:
            raw.register_hooks(lambda x: x, lambda x: x)
        except RuntimeError as error:
            log.append(str(error))
        return log
    assert_same_as_torch(program)


def test_gradcheck_detects_a_nondeterministic_backward_as_torch():
    def program(lib):
        calls = [0]

        class Drifting(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x * 1

            @staticmethod
            def backward(ctx, g):
                calls[0] += 1
                return g * (1 + 1e-3 * calls[0])
        x = lib.ones(3, dtype=lib.float64, requires_grad=True)
        try:
            lib.autograd.gradcheck(Drifting.apply, (x,), eps=1e-6, atol=1e-2, rtol=1e-2)
        except Exception as error:  # noqa: BLE001 -- torch's message goes on with advice
            return type(error).__name__, str(error).split(",")[0]
    assert_same_as_torch(program)


def test_forward_ad_in_place_on_views_and_duals_as_torch():
    """Point 11: ``view.add_(dual)`` gives the base (and its other views) a tangent; ``dual *= 2``
    updates the tangent in place, where whoever holds it sees the change; a copy's doesn't."""
    def program(lib):
        fw = lib.autograd.forward_ad
        f64 = lib.float64
        with fw.dual_level():
            base = lib.zeros(4, dtype=f64)
            view, other = base[1:3], base[2:]
            view.add_(fw.make_dual(lib.ones(2, dtype=f64), lib.tensor([1.0, 2.0], dtype=f64)))
            log = [fw.unpack_dual(base).tangent, fw.unpack_dual(other).tangent]
            given = lib.tensor([1.0, 2.0], dtype=f64)
            dual = fw.make_dual(lib.ones(2, dtype=f64), given)
            held = fw.unpack_dual(dual).tangent
            copy = dual.clone()
            dual *= 2
            copy.mul_(3)
            log += [held, given, fw.unpack_dual(dual).tangent, fw.unpack_dual(copy).tangent]
            grid = lib.zeros(4, dtype=f64)
            grid.view(2, 2)[0].copy_(dual)
            log.append(fw.unpack_dual(grid).tangent)
            expanded = fw.make_dual(lib.ones(3, dtype=f64), lib.ones(1, dtype=f64).expand(3))
            expanded *= 2
            log.append(fw.unpack_dual(expanded).tangent)
        return log
    assert_same_as_torch(program)
