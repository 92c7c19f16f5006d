"""Tensor methods and functions issue 14 lists as missing (narrow, select, repeat, prod, mm,
all, var_mean, median, the in-place unary ops and initialisers, output_nr, _base,
is_inference, is_floating_point): the same program in torch and in ckpt gives the same
values, gradients and errors."""
import numpy as np
import pytest
import torch

import ckpt

from torch_oracle import assert_same_as_torch

X = [[2.0, -1.0, 0.5], [3.0, 4.0, -2.0]]
VAR_MEAN = {"torc": torch.var_mean, "ckpt": ckpt.var_mean}
WITH_ZERO = [[2.0, 0.0, 0.5], [3.0, 4.0, -2.0]]


def value_and_grad(op, data=X):
    """The program: ``op`` on a float64 leaf, its value, and the gradient of a weighted sum."""
    def program(lib):
        x = lib.tensor(data, dtype=lib.float64, requires_grad=True)
        out = op(x)
        out = out[0] if isinstance(out, tuple) else out
        weights = lib.arange(out.numel(), dtype=lib.float64).reshape(out.shape) + 1
        (out * weights).sum().backward()
        return out, x.grad
    return program


@pytest.mark.parametrize("op", [
    lambda x: x.narrow(1, 1, 2), lambda x: x.narrow(0, -1, 1), lambda x: x.narrow(1, 3, 0),
    lambda x: x.select(1, -1), lambda x: x.select(0, 1), lambda x: x.repeat(2, 1, 3),
    lambda x: x.repeat(1, 2), lambda x: x.prod(), lambda x: x.prod(1), lambda x: x.prod(0, True),
    lambda x: x.mm(x.T), lambda x: VAR_MEAN[type(x).__module__[:4]](x, 1),
    lambda x: x.median(), lambda x: x.median(1), lambda x: x.median(0, keepdim=True),
])
def test_op_value_and_gradient_as_torch(op):
    assert_same_as_torch(value_and_grad(op))


@pytest.mark.parametrize("op", [lambda x: x.prod(), lambda x: x.prod(1), lambda x: x.prod(0)])
def test_prod_gradient_with_zeros_as_torch(op):
    assert_same_as_torch(value_and_grad(op, WITH_ZERO))
    assert_same_as_torch(value_and_grad(op, [[0.0, 0.0, 1.0], [0.0, 2.0, 3.0]]))


def test_median_shares_the_gradient_among_ties_as_torch():
    assert_same_as_torch(value_and_grad(lambda x: x.median(), [[2.0, 1.0, 2.0], [3.0, 2.0, 5.0]]))


def test_functions_and_dtypes_as_torch():
    assert_same_as_torch(lambda lib: [lib.prod(lib.arange(1, 5)), lib.tensor([True, True]).prod(),
                                      lib.all(lib.tensor([1, 0])), lib.any(lib.tensor([1, 0])),
                                      lib.narrow(lib.arange(4), 0, 1, 2), lib.select(lib.eye(2), 0, 1),
                                      lib.median(lib.tensor([[1, 5, 3]]), 1),
                                      lib.var_mean(lib.tensor([1.0, 3.0])),
                                      lib.mm(lib.ones(2, 3), lib.ones(3, 1))])


@pytest.mark.parametrize("program", [
    lambda lib: lib.ones(3).narrow(0, 2, 2), lambda lib: lib.ones(3).narrow(0, 5, 1),
    lambda lib: lib.ones(3).narrow(0, -4, 1),
    lambda lib: lib.ones(3).select(0, 3), lambda lib: lib.ones(3).select(1, 0),
    lambda lib: lib.ones(2, 3).repeat(2), lambda lib: lib.ones(2, 3).mm(lib.ones(2, 3)),
    lambda lib: lib.ones(3).mm(lib.ones(3, 2)), lambda lib: lib.ones(2, 3).mm(lib.ones(3)),
])
def test_errors_as_torch(program):
    assert_same_as_torch(program)


def test_narrow_and_select_are_views_as_torch():
    def program(lib):
        x = lib.zeros(2, 3)
        x.narrow(1, 1, 2).fill_(1.0)
        x.select(0, 0).add_(2.0)
        y = lib.ones(3, requires_grad=True)
        return x, x._version, y.narrow(0, 1, 1).grad_fn.name(), y.select(0, 1).grad_fn.name(), \
            y.repeat(2).grad_fn.name(), y.prod().grad_fn.name(), y.median().grad_fn.name()
    assert_same_as_torch(program)


@pytest.mark.parametrize("name", ["sin_", "cos_", "log_", "sqrt_", "abs_", "erf_", "exp_",
                                  "neg_", "sigmoid_"])
def test_inplace_unary_ops_as_torch(name):
    def program(lib):
        x = lib.tensor([0.5, 1.5, 2.0], dtype=lib.float64, requires_grad=True)
        y = x * 1
        view = y[1:]
        returned = getattr(y, name)()
        (y * lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64)).sum().backward()
        return y, returned is y, y._version, view, x.grad
    assert_same_as_torch(program)


def test_inplace_unary_op_on_a_leaf_is_refused_as_torch():
    assert_same_as_torch(lambda lib: lib.ones(2, requires_grad=True).sin_())


INITIALISERS = [("uniform_", (-2.0, 3.0)), ("normal_", (1.0, 0.5)), ("bernoulli_", (0.3,)),
                ("exponential_", (2.0,)), ("geometric_", (0.2,)), ("log_normal_", (0.0, 0.25)),
                ("cauchy_", ()), ("random_", (3, 8)), ("random_", (5,))]


@pytest.mark.parametrize("name, args", INITIALISERS)
def test_initialisers_draw_what_torch_draws(name, args):
    """Different generators, so compare what the draws are: their dtype, range and typical value."""
    def summary(lib):
        lib.manual_seed(0)
        x = lib.empty(20000, dtype=lib.float64)
        out = getattr(x, name)(*args)
        d = np.asarray(out.tolist())
        return out is x, x._version, str(x.dtype)[-7:], np.median(d), d.min() >= 0, np.all(d == np.round(d))
    ours, theirs = summary(ckpt), summary(torch)
    assert ours[:3] == theirs[:3] and ours[4:] == theirs[4:]
    assert ours[3] == pytest.approx(theirs[3], rel=0.05, abs=0.05)


@pytest.mark.parametrize("name, args", INITIALISERS[:3])
def test_initialisers_on_leaves_and_in_the_graph_as_torch(name, args):
    def program(lib):
        w = lib.ones(3, requires_grad=True)
        log = []
        try:
            getattr(w, name)(*args)
        except RuntimeError as error:
            log.append(str(error))
        with lib.no_grad():
            getattr(w, name)(*args)
        log.append((w.requires_grad, w.is_leaf, w._version))
        y = w * 2
        getattr(y, name)(*args)
        (y * 3).sum().backward()
        log.append(w.grad)
        return log
    assert_same_as_torch(program)


def test_metadata_as_torch():
    def program(lib):
        x = lib.ones(2, 2, requires_grad=True)
        y = x * 2
        return [x._base is None, y._base is None, y[0]._base is y, y.output_nr,
                [t.output_nr for t in lib.max(y, 1)], x.is_inference(), x.is_floating_point(),
                lib.arange(2).is_floating_point()]
    assert_same_as_torch(program)
