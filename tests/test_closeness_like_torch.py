"""``isclose`` / ``allclose`` (functions and methods) answer and refuse as torch's do."""
import pytest

from torch_oracle import assert_same_as_torch

PROGRAMS = {
    "close within rtol": lambda lib: lib.allclose(lib.tensor([1.0, 2.0]),
                                                  lib.tensor([1.0 + 1e-7, 2.0])),
    "far apart": lambda lib: lib.allclose(lib.tensor([1.0]), lib.tensor([1.1])),
    "atol decides": lambda lib: lib.allclose(lib.tensor([0.0]), lib.tensor([1e-3]), atol=1e-2),
    "rtol decides": lambda lib: lib.tensor([100.0]).allclose(lib.tensor([101.0]), rtol=0.02),
    "broadcast": lambda lib: lib.isclose(lib.ones(2, 3), lib.ones(3)),
    "nan unequal": lambda lib: lib.isclose(lib.tensor([float("nan"), 1.0]),
                                           lib.tensor([float("nan"), 1.0])),
    "nan equal": lambda lib: lib.tensor([float("nan")]).isclose(lib.tensor([float("nan")]),
                                                                equal_nan=True),
    "integers": lambda lib: lib.isclose(lib.tensor([1, 2]), lib.tensor([1, 3])),
    "bools": lambda lib: lib.allclose(lib.tensor([True]), lib.tensor([True])),
    "infinities": lambda lib: lib.isclose(lib.tensor([float("inf"), 1.0]),
                                          lib.tensor([float("inf"), float("-inf")])),
    "with grad": lambda lib: lib.allclose(lib.ones(2, requires_grad=True) * 2, lib.full((2,), 2.0)),
    "dtypes differ": lambda lib: lib.allclose(lib.ones(2), lib.ones(2, dtype=lib.float64)),
    "shapes clash": lambda lib: lib.isclose(lib.ones(2, 2), lib.ones(3)),
    "a number": lambda lib: lib.allclose(lib.ones(2), 1.0),
    "first a number": lambda lib: lib.isclose(1.0, lib.ones(2)),
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_closeness_as_in_torch(name):
    assert_same_as_torch(PROGRAMS[name])
