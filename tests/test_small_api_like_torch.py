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
