import errno
import math
import os

import pytest
import torch
from pyro.params import param_with_module_name

import pyrovae
from pyrovae import checkpoint
from pyrovae.checkpoint import CheckpointError, load_checkpoint, malformed, save_checkpoint, section


def test_round_trip_with_weights_only(tmp_path):
    state = {"params": {"a": torch.arange(3.0)}, "history": [{"epoch": 1, "x": 0.5}], "extra": {"k": [1, 2]}}
    save_checkpoint(tmp_path / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["params"]["a"], state["params"]["a"]) and loaded["history"] == state["history"]
    assert os.listdir(tmp_path) == ["c.pt"]  # no temporary file left behind


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot save this")

    with pytest.raises(RuntimeError, match="cannot save"):
        save_checkpoint(tmp_path / "c.pt", {"epoch": 2, "bad": Unpicklable()})
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


def test_objects_that_need_code_to_load_are_refused(tmp_path):
    torch.save({"format": "pyrovae-checkpoint-1", "obj": torch.nn.Linear(2, 2)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    save_checkpoint(tmp_path / "c.pt", {"params": {"a": torch.randn(100)}})
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "c.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "c.pt")
    torch.save({"params": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a pyrovae checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_a_folder_an_unreadable_file_and_missing_entries_are_named(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    with pytest.raises(CheckpointError, match=r"run is a folder, not a checkpoint file \(it holds no checkpoint.pt\)"):
        load_checkpoint(tmp_path / "run")
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {"epoch": 1, "extra": {"data": {}}})
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file: give .*run/checkpoint.pt"):
        load_checkpoint(tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="without 'params': it was written by another kind of run"):
        load_checkpoint(path, require=("epoch", "params"))
    state = load_checkpoint(path)
    assert section(state, path, "extra", "data") == {}
    with pytest.raises(CheckpointError, match=r"has no entry \['extra'\]\['vae'\]"):
        section(state, path, "extra", "vae")
    with pytest.raises(CheckpointError, match=r"is malformed \(KeyError"):
        with malformed(path):
            state["params"]

    def denied(*args, **kwargs):  # what a file without read permission gives (root, running the tests, may read all)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(checkpoint, "open", denied, raising=False)
    with pytest.raises(PermissionError, match="cannot read the checkpoint .*: permission denied") as info:
        load_checkpoint(path)
    assert "corrupt" not in str(info.value) and "Delete" not in str(info.value)


def test_a_full_disk_is_named_and_the_previous_checkpoint_stays(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*c.pt: the disk is full; free some space .*previous content is "
                       "kept intact") as info:  # fmt: skip
        save_checkpoint(tmp_path / "c.pt", {"epoch": 2})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 1
    assert os.listdir(tmp_path) == ["c.pt"]


def test_non_finite_weights_are_refused_on_load(tmp_path):
    vae = pyrovae.VAE(6, z_dim=2, hidden=(4,))
    params = {param_with_module_name(part, k): v.detach().clone() for part in ("encoder", "decoder")
              for k, v in getattr(vae, part).named_parameters()}  # fmt: skip
    save_checkpoint(tmp_path / "ok.pt", {"params": params, "extra": {"vae": vae.config}})
    assert pyrovae.load_vae(tmp_path / "ok.pt")[0].config == vae.config
    bad = param_with_module_name("decoder", "net.0.weight")
    params[bad] = params[bad] * math.inf
    save_checkpoint(tmp_path / "inf.pt", {"params": params, "extra": {"vae": vae.config}})
    with pytest.raises(CheckpointError, match=r"non-finite weights \(1 tensors, e.g. \['decoder.*net.0.weight'\]\)"):
        pyrovae.load_vae(tmp_path / "inf.pt")
