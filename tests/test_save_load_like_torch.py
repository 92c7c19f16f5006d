"""ckpt.save / ckpt.load: what torch.save then torch.load gives back, ckpt gives back too,
from a file that holds no pickled objects."""
import collections
import io
import zipfile

import numpy as np
import pytest
import torch

import ckpt

from torch_oracle import assert_same_as_torch


def round_trip(lib, obj):
    buffer = io.BytesIO()
    lib.save(obj, buffer)
    buffer.seek(0)
    return lib.load(buffer)


def test_nested_containers_round_trip_as_torch():
    def program(lib):
        w = lib.tensor([[1.0, 2.0]], requires_grad=True)
        loaded = round_trip(lib, {"w": w, "again": w, "steps": [1, 2.5, None, True, "adam"],
                                  "pair": (lib.arange(3), lib.tensor(7, dtype=lib.float64)),
                                  3: "int key", ("a", 1): "tuple key"})
        return [sorted(map(str, loaded)), loaded["w"], loaded["w"].requires_grad,
                loaded["again"] is loaded["w"], loaded["w"] is w, loaded["steps"],
                type(loaded["pair"]).__name__, loaded["pair"], loaded[3], loaded[("a", 1)]]
    assert_same_as_torch(program)


def test_a_state_dict_round_trips_into_a_fresh_model_as_torch():
    def program(lib):
        lib.manual_seed(0)
        model = lib.nn.Sequential(lib.nn.Linear(3, 2), lib.nn.BatchNorm1d(2))
        state = round_trip(lib, model.state_dict())
        fresh = lib.nn.Sequential(lib.nn.Linear(3, 2), lib.nn.BatchNorm1d(2))
        fresh.load_state_dict(state)
        return [type(state).__name__, list(state), all(
            (a == b).all().item() for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))]
    assert_same_as_torch(program)


def test_parameters_stay_parameters_and_paths_work(tmp_path):
    p = ckpt.nn.Parameter(ckpt.ones(2))
    ckpt.save([p, np.arange(3)], tmp_path / "x.ckpt")
    loaded_p, array = ckpt.load(str(tmp_path / "x.ckpt"))
    assert isinstance(loaded_p, ckpt.nn.Parameter) and loaded_p.requires_grad
    assert array.tolist() == [0, 1, 2]


def test_the_file_is_an_npz_without_pickles():
    buffer = io.BytesIO()
    ckpt.save({"w": ckpt.ones(2)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        for name in archive.namelist():
            assert not archive.read(name)[:200].count(b"\x80\x04")  # no pickle protocol header
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["__header__", "a0"]


@pytest.mark.parametrize("obj, named", [(object(), "builtins.object"),
                                        ({"f": lambda x: x}, "function"),
                                        (np.array([{}], dtype=object), "Python objects")])
def test_objects_it_cannot_store_are_refused_naming_them(obj, named):
    with pytest.raises(TypeError, match=named):
        ckpt.save(obj, io.BytesIO())


def test_files_not_written_by_ckpt_and_other_devices_are_refused():
    buffer = io.BytesIO()
    torch.save(torch.ones(2), buffer)
    buffer.seek(0)
    with pytest.raises(Exception):
        ckpt.load(buffer)
    buffer = io.BytesIO()
    ckpt.save(ckpt.ones(1), buffer)
    buffer.seek(0)
    with pytest.raises(RuntimeError, match="cuda"):
        ckpt.load(buffer, map_location="cuda")
    buffer.seek(0)
    assert ckpt.load(buffer, map_location="cpu").tolist() == [1.0]
