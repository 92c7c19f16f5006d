"""Small API found by the port of torch's autograd tests: the same program in torch and in
ckpt gives the same result or error."""
import warnings

import pytest

from torch_oracle import assert_same_as_torch


def edges_bound_backward(lib):
    from_edge = lib.autograd.graph.get_gradient_edge
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = lib.tensor([3.0, 4.0], requires_grad=True)
    x, y = a * 2, b * 3
    lib.autograd.backward((x * y).sum(), inputs=(from_edge(x), b))
    return [a.grad, b.grad]


def jacobians(lib):
    gc = lib.autograd.gradcheck
    a = lib.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=lib.float64, requires_grad=True)
    b = lib.tensor([[5.0, 6.0], [7.0, 8.0]], dtype=lib.float64, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        num = gc.get_numerical_jacobian(lambda xs: (xs[0] * xs[1], xs[0]), (a, b), eps=1e-6)
        num_b = gc.get_numerical_jacobian(lambda xs: xs[0] * xs[1], (a, b), target=b, eps=1e-6)
        ana, reentrant, sizes_ok, types_ok = gc.get_analytical_jacobian((a, b), a * b * b)
    rounded = [j.double().numpy().round(5).tolist() for j in num + num_b + ana]
    return rounded + [reentrant, sizes_ok, types_ok,
                      sorted({w.category.__name__ for w in caught})]


def grad_out_refused(lib):
    a = lib.ones(2, dtype=lib.float64, requires_grad=True)
    return lib.autograd.gradcheck.get_numerical_jacobian(lambda xs: xs[0], (a,), grad_out=2.0)


def delete_data(lib):
    x = lib.ones(2)
    del x.data


def new_tensors(lib):
    x = lib.ones(2, 3, dtype=lib.float64)
    return [x.new(2, 3).shape, x.new([1, 2]), x.new().shape, x.new(x[0].size()).fill_(7),
            x.new_zeros(2), x.new_zeros((1, 2), dtype=lib.int64), x.new_ones(3).dtype == x.dtype,
            x.new_empty(4).shape, x.new_full((2,), 3), x.new_ones(2, requires_grad=True).requires_grad]


def bernoulli_(lib):
    p = lib.tensor([0.0, 1.0, 1.0], requires_grad=True)
    out = p.bernoulli()
    out.sum().backward()
    return [out, out.requires_grad, lib.bernoulli(p.detach()), p.bernoulli(0.0), p.grad,
            lib.ones(2).bool(), lib.tensor([1.7]).int()]


@pytest.mark.parametrize("program", [edges_bound_backward, jacobians, grad_out_refused,
                                     delete_data, new_tensors, bernoulli_])
def test_small_api_as_torch(program):
    assert_same_as_torch(program)


def nested_mutation_contexts(lib):
    with lib.autograd.graph.allow_mutation_on_saved_tensors():
        with lib.autograd.graph.allow_mutation_on_saved_tensors():
            pass


def view_then_base_requires_grad(lib):
    a = lib.zeros(2, 3)
    b = a[:]
    a.requires_grad = True
    b.add_(5)


def nan_checked_when_backward_runs(lib):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with lib.autograd.detect_anomaly(check_nan=False):
            x = lib.tensor([-1.0], requires_grad=True)
            out = x.sqrt().sum()
            out.backward(retain_graph=True)
            with lib.autograd.detect_anomaly(check_nan=True):
                out.backward()


@pytest.mark.parametrize("program", [nested_mutation_contexts, view_then_base_requires_grad,
                                     nan_checked_when_backward_runs])
def test_refused_as_torch(program):
    assert_same_as_torch(program)


def test_saved_variables_warns_as_torch():
    def program(lib):
        class Twice(lib.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * 2

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_variables
                return g * 2 + x * 0

        x = lib.ones(2, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Twice.apply(x).sum().backward()
        return [x.grad, [(w.category.__name__, str(w.message)) for w in caught]]
    assert_same_as_torch(program)


def out_variants(lib):
    a, b = lib.tensor([1.0, 2.0]), lib.tensor([3.0, 4.0])
    x = lib.zeros(2)
    same = lib.mul(a, b, out=x) is x
    version = x._version
    lib.add(a, b, alpha=2, out=x)
    return [same, version, x, x._version]


def out_refused(lib, case):
    a = lib.tensor([1.0, 2.0], requires_grad=case == "input requires grad")
    x = lib.zeros(2, requires_grad=case == "out requires grad")
    if case == "inference out":
        with lib.inference_mode():
            x = lib.zeros(2)
    if case == "under no_grad":
        with lib.no_grad():
            return [lib.mul(a, a, out=x), x.requires_grad]
    return lib.mul(a, a, out=x)


@pytest.mark.parametrize("case", ["input requires grad", "out requires grad", "inference out",
                                  "under no_grad"])
def test_out_argument_as_torch(case):
    assert_same_as_torch(out_variants)
    assert_same_as_torch(lambda lib: out_refused(lib, case))


def resizes(lib):
    x = lib.tensor([1.0, 2.0, 3.0])
    versions = []
    for step in (lambda: x.resize_((1, 2)), lambda: x.resize_as_(lib.ones(2, 1)),
                 lambda: x.resize_(2, 1)):
        step()
        versions.append((x.shape[0], x._version))
    return [x, versions]


def edge_without_gradient_materialized(lib):
    x = lib.ones(2, requires_grad=True).clone()
    y = lib.ones(2, requires_grad=True).clone()
    edge_y = lib.autograd.graph.get_gradient_edge(y)
    return lib.autograd.grad(x.sum(), (x, edge_y), allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("program", [
    resizes, edge_without_gradient_materialized,
    lambda lib: lib.ones(1, requires_grad=True).resize_(2),
    lambda lib: lib.ones(3).data_ptr() != 0,
    lambda lib: (lambda x: x[1:].data_ptr() - x.data_ptr())(lib.ones(3, dtype=lib.float64)),
], ids=["resizes", "materialize edge", "resize requires grad", "data_ptr", "view data_ptr"])
def test_more_api_as_torch(program):
    assert_same_as_torch(program)


def custom_function_nan_in_anomaly_mode(lib):
    class NaNBackward(lib.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return lib.tensor(float("nan")).expand(2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with lib.autograd.detect_anomaly():
            NaNBackward.apply(lib.ones(2, requires_grad=True)).sum().backward()


def test_custom_function_checked_by_anomaly_mode_as_torch():
    assert_same_as_torch(custom_function_nan_in_anomaly_mode)


@pytest.mark.parametrize("how", ["unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk",
                                 "split_with_sizes"])
def test_split_pieces_written_as_torch(how):
    def program(lib):
        a = lib.arange(1.0, 7.0).reshape(3, 2).requires_grad_()
        b = a * 1
        arg = (1, 1, 1) if how.endswith("with_sizes") else 1 if "split" in how else 3
        s1, s2, s3 = getattr(b, how)(arg)
        s1.mul_(s2)
        (s1 * s3).sum().backward()
        return [s1, b._version, s1._version, a.grad]
    assert_same_as_torch(program)


@pytest.mark.parametrize("name", ["eq_", "ne_", "lt_", "le_", "gt_", "ge_"])
def test_comparison_in_place_as_torch(name):
    def program(lib):
        a = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        b = a * 2
        getattr(b, name)(lib.tensor([2.0, 3.0, 7.0]))
        (b * a).sum().backward()
        fw = lib.autograd.forward_ad
        with fw.dual_level():
            d = fw.make_dual(lib.tensor([1.0, 2.0]), lib.tensor([5.0, 5.0]))
            getattr(d, name)(2.0)
            tangent = fw.unpack_dual(d).tangent
        return [b, a.grad, d, tangent]
    assert_same_as_torch(program)
