"""Inference tensors: the same program in torch and in ckpt gives the same result or error."""
import pytest

from torch_oracle import assert_same_as_torch


def made_inside(lib):
    with lib.inference_mode():
        c = lib.ones(2, 3, requires_grad=True)
        return [lib.is_inference(c), c.requires_grad, lib.is_inference(c * c),
                (c * c).requires_grad, lib.is_inference(c.view(-1)), c.view(-1).requires_grad,
                lib.is_inference_mode_enabled()]


def normal_tensor_inside(lib):
    a = lib.ones(2, 3, requires_grad=True).clone()
    with lib.inference_mode():
        a.add_(2)
        v = a.view(-1)
        flags = [a.is_inference(), a.requires_grad, v.is_inference(), v.requires_grad,
                 v._is_view(), v.is_leaf]
        v.add_(1)
    return flags + [a._version == v._version, a]


def inference_tensor_outside(lib, requires_grad):
    with lib.inference_mode():
        c = lib.ones(2, 3, requires_grad=requires_grad)
    v = c.view(-1)
    out = c * 2 if not requires_grad else c + lib.ones(2, 3)
    return [v.is_inference(), v.requires_grad, v._is_view(), v.is_leaf, out.is_inference(),
            out.requires_grad]


@pytest.mark.parametrize("program", [
    made_inside, normal_tensor_inside,
    lambda lib: inference_tensor_outside(lib, False),
    lambda lib: inference_tensor_outside(lib, True),
], ids=["made inside", "normal tensor inside", "inference outside", "inference rg outside"])
def test_inference_tensors_behave_as_torch(program):
    assert_same_as_torch(program)


def inference(lib, requires_grad=False):
    with lib.inference_mode():
        return lib.ones(2, 3, requires_grad=requires_grad)


def view_made_inside(lib):
    a = lib.ones(2, 3, requires_grad=True).clone()
    with lib.inference_mode():
        v = a.view(-1)
    return v


@pytest.mark.parametrize("program", [
    lambda lib: inference(lib)._version,
    lambda lib: inference(lib).add_(1),
    lambda lib: inference(lib).transpose_(0, 1),
    lambda lib: inference(lib, True) * lib.ones(2, 3, requires_grad=True),
    lambda lib: lib.ones(2, 3, requires_grad=True).clone().mul_(inference(lib)),
    lambda lib: view_made_inside(lib).add_(1),
    lambda lib: view_made_inside(lib).mul(2).requires_grad,
], ids=["version", "add_ outside", "transpose_ outside", "saved", "saved by mul_",
        "write view made inside", "view made inside requires grad"])
def test_inference_errors_as_torch(program):
    assert_same_as_torch(program)


def test_inference_mode_decorator_forms_as_torch():
    def program(lib):
        def square(x):
            return x * x, lib.is_inference_mode_enabled()
        x = lib.ones(2, requires_grad=True)
        outs = [lib.inference_mode(square)(x), lib.inference_mode(mode=square)(x),
                lib.inference_mode(False)(square)(x), lib.inference_mode(mode=True)(square)(x)]
        return [(lib.is_inference(y), y.requires_grad, enabled) for y, enabled in outs]
    assert_same_as_torch(program)


def test_transpose_in_place_as_torch():
    def program(lib):
        x = lib.arange(6.0).reshape(2, 3).requires_grad_()
        y = x.clone()
        y.transpose_(0, 1)
        (y * lib.arange(6.0).reshape(3, 2)).sum().backward()
        return [y, y.shape[0], x.grad]
    assert_same_as_torch(program)
