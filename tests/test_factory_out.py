"""``out=`` on the factories torch gives it: the same program in torch and in ckpt leaves
``out`` (and what shares its memory) holding the same values, or raises the same error."""
import pytest

import ckpt

from torch_oracle import assert_same_as_torch, outcome


WRITES = {
    "zeros": lambda lib, out: lib.zeros(3, out=out),
    "ones": lambda lib, out: lib.ones(3, out=out),
    "full": lambda lib, out: lib.full((3,), 2.0, out=out),
    "arange": lambda lib, out: lib.arange(3, out=out),
    "linspace": lambda lib, out: lib.linspace(0, 1, 3, out=out),
    "eye": lambda lib, out: lib.eye(3, out=out),
    "empty": lambda lib, out: lib.empty(3, out=out).zero_(),
}


@pytest.mark.filterwarnings("ignore:The number of elements in the out tensor")  # torch's arange
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("out_size", [3, 2, 0])
@pytest.mark.parametrize("name", WRITES)
def test_out_is_written_resized_and_returned_as_in_torch(name, out_size, dtype):
    def program(lib):
        out = lib.zeros(out_size, dtype=getattr(lib, dtype)) + 7
        before = out._version
        result = WRITES[name](lib, out)
        return [result is out, out, list(out.shape), str(out.dtype).split(".")[-1],
                out._version > before]

    assert_same_as_torch(program)


@pytest.mark.parametrize("name", ["randn", "rand", "randint"])
def test_random_factories_write_into_out_as_in_torch(name):
    def program(lib):
        out = lib.zeros(2, 3, dtype=lib.int64 if name == "randint" else lib.float64)
        make = {"randn": lambda: lib.randn(2, 3, out=out), "rand": lambda: lib.rand(2, 3, out=out),
                "randint": lambda: lib.randint(0, 5, (2, 3), out=out)}[name]
        result = make()
        return [result is out, list(out.shape), str(out.dtype).split(".")[-1]]

    assert_same_as_torch(program)


def into_a_view(lib):
    base = lib.ones(4)
    lib.zeros(2, out=base[:2])
    return [base]


def a_list(lib):
    return [lib.zeros(3, out=[1.0])]


def dtype_mismatch(lib):
    return [lib.zeros(3, out=lib.zeros(3, dtype=lib.int64), dtype=lib.float32)]


def requires_grad(lib):
    return [lib.zeros(3, out=lib.zeros(3, requires_grad=True))]


@pytest.mark.parametrize("program", [into_a_view, a_list, dtype_mismatch, requires_grad])
def test_out_checks_and_views_as_in_torch(program):
    assert_same_as_torch(program)


def test_the_error_outcomes_are_errors():
    assert outcome(dtype_mismatch, ckpt).type == "RuntimeError"
    assert outcome(a_list, ckpt).type == "TypeError"
    assert outcome(into_a_view, ckpt) == [("tensor", [0.0, 0.0, 1.0, 1.0], "float32")]


def test_out_under_no_grad_keeps_requires_grad():
    """A documented difference: torch's factories drop ``out``'s requires_grad here (or refuse,
    depending on the factory); ckpt writes the values and leaves the flag alone."""
    out = ckpt.ones(3, requires_grad=True)
    with ckpt.no_grad():
        ckpt.zeros(3, out=out)
    assert out.tolist() == [0.0, 0.0, 0.0] and out.requires_grad
