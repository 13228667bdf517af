import os

import pytest
import torch

from pyrovae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


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
