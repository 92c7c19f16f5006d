"""``device=`` on every factory, as in torch: the CPU in any spelling gives the same tensor as
torch makes; any other device is a clear error naming it; ``ckpt.device`` parses as torch's."""
import numpy as np
import pytest
import torch

import ckpt

# name -> call(lib, **device keyword); deterministic factories compare values with torch
FACTORIES = {
    "tensor": lambda lib, **d: lib.tensor([[1.0, 2.0]], **d),
    "as_tensor": lambda lib, **d: lib.as_tensor([1, 2], **d),
    "zeros": lambda lib, **d: lib.zeros(2, 3, **d),
    "ones": lambda lib, **d: lib.ones((2,), **d),
    "empty": lambda lib, **d: lib.empty(2, **d).zero_(),
    "full": lambda lib, **d: lib.full((2,), 7.0, **d),
    "zeros_like": lambda lib, **d: lib.zeros_like(lib.ones(2), **d),
    "ones_like": lambda lib, **d: lib.ones_like(lib.zeros(2), **d),
    "full_like": lambda lib, **d: lib.full_like(lib.zeros(2), 3.0, **d),
    "arange": lambda lib, **d: lib.arange(0, 5, 2, **d),
    "linspace": lambda lib, **d: lib.linspace(0, 1, 3, **d),
    "eye": lambda lib, **d: lib.eye(2, **d),
}
RANDOM = {
    "randn": lambda lib, **d: lib.randn(2, 3, **d),
    "rand": lambda lib, **d: lib.rand(4, **d),
    "randint": lambda lib, **d: lib.randint(0, 3, (4,), **d),
    "randn_like": lambda lib, **d: lib.randn_like(lib.zeros(2), **d),
    "rand_like": lambda lib, **d: lib.rand_like(lib.zeros(2), **d),
}
CPU = ["cpu", "cpu:0", lambda lib: lib.device("cpu"), lambda lib: lib.device("cpu", 0), None]


def spelled(where, lib):
    return where(lib) if callable(where) else where


@pytest.mark.parametrize("where", CPU, ids=["cpu", "cpu:0", "device", "device-index", "None"])
@pytest.mark.parametrize("name", FACTORIES)
def test_cpu_device_gives_torchs_tensor(name, where):
    ours = FACTORIES[name](ckpt, device=spelled(where, ckpt))
    theirs = FACTORIES[name](torch, device=spelled(where, torch))
    assert ours.data.dtype == theirs.numpy().dtype
    np.testing.assert_array_equal(ours.data, theirs.numpy())


@pytest.mark.parametrize("name", list(FACTORIES) + list(RANDOM))
def test_a_torch_device_object_for_the_cpu_is_accepted(name):
    make = {**FACTORIES, **RANDOM}[name]
    ours, theirs = make(ckpt, device=torch.device("cpu")), make(torch, device="cpu")
    assert ours.shape == tuple(theirs.shape) and ours.data.dtype == theirs.numpy().dtype


@pytest.mark.parametrize("where", ["cuda", "cuda:1", "mps", "meta", torch.device("cuda"), 0])
@pytest.mark.parametrize("name", list(FACTORIES) + list(RANDOM))
def test_other_devices_are_refused_naming_the_device(name, where):
    make = {**FACTORIES, **RANDOM}[name]
    shown = "accelerator 0" if where == 0 else repr(str(where))
    with pytest.raises(RuntimeError, match=f"device {shown} is not available: ckpt keeps tensors "
                                           "as numpy arrays in CPU memory"):
        make(ckpt, device=where)


def outcome(make):
    try:
        return repr(make())
    except Exception as e:  # noqa: BLE001 -- the error is the outcome compared
        return type(e).__name__, str(e)


@pytest.mark.parametrize("make", [
    lambda lib: lib.device("cpu"), lambda lib: lib.device("cpu:0"),
    lambda lib: lib.device("cuda", 1), lambda lib: lib.device(lib.device("cpu")),
    lambda lib: str(lib.device("cuda:2")), lambda lib: lib.device("cpu:2").index,
    lambda lib: lib.device("cpu") == lib.device("cpu:0"),
    lambda lib: lib.device("cpu") == lib.device("cpu"),
    lambda lib: len({lib.device("cpu"), lib.device("cpu")}),
    lambda lib: lib.device("foo"), lambda lib: lib.device("cpu:x"),
    lambda lib: lib.zeros(2, device="foo"),
])
def test_device_parses_as_torchs(make):
    assert outcome(lambda: make(ckpt)) == outcome(lambda: make(torch))


def test_a_device_of_the_wrong_type_is_a_type_error_as_in_torch():
    with pytest.raises(TypeError):
        torch.zeros(2, device=1.5)
    with pytest.raises(TypeError, match="device must be a string such as 'cpu' or a device, not float"):
        ckpt.zeros(2, device=1.5)


def test_a_tensors_device_is_the_cpu_device():
    x = ckpt.zeros(2)
    assert x.device == ckpt.device("cpu") and ckpt.ones(1, device=x.device).device == "cpu"
