"""``x.data = other`` against torch: what is accepted, what ``x`` then holds, and the errors."""
import numpy as np
import pytest

import ckpt

from torch_oracle import assert_same_as_torch, outcome


def other_shape(lib):
    x = lib.ones(3, requires_grad=True)
    x.data = lib.zeros(5)
    return [x, list(x.shape), x.requires_grad, x.is_leaf, x._version]


def other_dtype(lib):
    x = lib.ones(3, requires_grad=True)
    x.data = lib.zeros(2, dtype=lib.float64)
    return [x, str(x.dtype).split(".")[-1], x.requires_grad]


def integer_into_requires_grad(lib):
    x = lib.ones(3, requires_grad=True)
    x.data = lib.zeros(2, dtype=lib.int64)
    return [x]


def integer_into_plain(lib):
    x = lib.ones(3)
    x.data = lib.zeros(2, dtype=lib.int64)
    return [x, str(x.dtype).split(".")[-1]]


def a_list(lib):
    x = lib.ones(3)
    x.data = [1.0, 2.0]
    return [x]


def from_a_non_leaf(lib):
    x = lib.ones(2, requires_grad=True)
    y = lib.ones(2, requires_grad=True) * 2
    x.data = y
    return [x, x.requires_grad, x.grad_fn is None]


def shares_memory_keeps_version(lib):
    x = lib.ones(3)
    z = lib.arange(3.0)
    x.data = z
    z.add_(1)
    return [x, x._version, z._version]


def into_a_non_leaf(lib):
    w = lib.ones(2, requires_grad=True)
    y = w * 1
    y.data = lib.zeros(2)
    return [y, y.grad_fn is not None]


def then_backward(lib):
    w = lib.ones(2, requires_grad=True)
    w.data = lib.zeros(3)
    (w * 2).sum().backward()
    return [w.grad]


def keeps_grad(lib):
    w = lib.ones(2, requires_grad=True)
    w.grad = lib.ones(2)
    w.data = lib.zeros(3)
    return [w.grad, w]


@pytest.mark.parametrize("program", [
    other_shape, other_dtype, integer_into_requires_grad, integer_into_plain, a_list,
    from_a_non_leaf, shares_memory_keeps_version, into_a_non_leaf, then_backward, keeps_grad])
def test_setting_data_as_in_torch(program):
    assert_same_as_torch(program)


def test_data_is_an_array_after_setting_a_tensor():
    x = ckpt.ones(2, requires_grad=True)
    other = ckpt.tensor([5.0, 6.0])
    x.data = other
    assert type(x.data) is np.ndarray and x.data is other.data
    assert (x * 2).tolist() == [10.0, 12.0] and repr(x) == "tensor([5., 6.], requires_grad=True)"


def test_a_numpy_array_is_accepted_too():
    """ckpt's ``.data`` is the numpy array, so an array may be assigned (torch wants a Tensor)."""
    x = ckpt.ones(2, requires_grad=True)
    x.data = np.array([3.0, 4.0], dtype=np.float32)
    assert x.tolist() == [3.0, 4.0]
    with pytest.raises(RuntimeError, match="must be floating point or complex dtype, got int64"):
        x.data = np.arange(2)


def saved_then_replaced(lib):
    """The saved leaf is read in backward with the data it holds then."""
    w = lib.ones(2, requires_grad=True)
    y = w * w
    w.data = lib.full((2,), 5.0)
    y.sum().backward()
    return [w.grad]


def test_backward_after_replacing_a_saved_leafs_data_as_in_torch():
    assert_same_as_torch(saved_then_replaced)
    assert outcome(saved_then_replaced, ckpt) == [("tensor", [10.0, 10.0], "float32")]
