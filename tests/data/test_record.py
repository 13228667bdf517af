"""DataRecord: what a checkpoint records of how its model sees the data, written and read in one place."""

import pytest
import torch

from pyrovae import CheckpointError
from pyrovae.checkpoint import load_checkpoint, save_checkpoint
from pyrovae.data import Dataset
from pyrovae.data.record import DataRecord


def test_a_record_round_trips_through_a_checkpoint(tmp_path):
    data = Dataset.from_tensors(torch.randn(20, 3) * 5, real=True, image_shape=(1, 1, 3)).standardized()
    save_checkpoint(tmp_path / "c.pt", {"extra": {"data": DataRecord.of(data).state()}})
    record = DataRecord.read(load_checkpoint(tmp_path / "c.pt"), tmp_path / "c.pt")  # weights_only: plain values
    assert record.image_shape == (1, 1, 3) and record.binarize == "none"
    assert torch.equal(record.standardization.mean, data.standardization.mean)
    assert torch.equal(record.standardization.std, data.standardization.std)


def test_older_records_read_as_the_named_datasets_images_seen_as_they_are():
    record = DataRecord.read({"extra": {"data": {"name": "mnist", "binarize": "dynamic"}}}, "old.pt")
    assert record == DataRecord((1, 28, 28), "dynamic", None)
    assert DataRecord.read({}, "bare.pt") == DataRecord()


def test_a_damaged_record_is_an_error_naming_the_file():
    with pytest.raises(CheckpointError, match="bad.pt is malformed"):
        DataRecord.read({"extra": {"data": {"image_shape": 3}}}, "bad.pt")
    with pytest.raises(ValueError, match="dict of the tensors 'mean' and 'std'"):
        DataRecord.read({"extra": {"data": {"standardization": [1.0]}}}, "bad.pt")
