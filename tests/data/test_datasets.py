import pytest
import torch

from pyrovae.data import EVAL_SEED, Dataset, binarize, load_dataset
from tests.common import SHARED_DATA


def test_digits_is_embedded_and_split_three_ways():
    data = load_dataset("digits", binarize="none")
    assert (len(data.train), len(data.valid), len(data.test)) == (1297, 200, 300)
    assert data.x_dim == 64 and data.image_shape == (1, 8, 8) and data.num_classes == 10
    x = torch.cat([data.train.x, data.valid.x, data.test.x])
    assert x.min() == 0 and x.max() == 1  # 0..16 scaled to [0, 1]
    assert len(x.unique(dim=0)) > 1700  # splits do not overlap (digits has a few duplicate images)
    assert set(data.test.y.unique().tolist()) == set(range(10))


def test_splits_are_reproducible_and_follow_split_seed():
    a, b = load_dataset("digits", split_seed=1), load_dataset("digits", split_seed=1)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.test.y, load_dataset("digits", split_seed=2).test.y)


def test_dynamic_keeps_grey_training_images_and_binarizes_evaluation_once():
    grey = load_dataset("digits", binarize="none")
    dyn = load_dataset("digits", binarize="dynamic")
    assert torch.equal(dyn.train.x, grey.train.x)
    assert torch.equal(dyn.test.x, binarize(grey.test.x, seed=EVAL_SEED))
    assert set(dyn.valid.x.unique().tolist()) == {0.0, 1.0}
    static = load_dataset("digits", binarize="static")
    assert set(static.train.x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(static.test.x, dyn.test.x)


def test_valid_size_zero_trains_on_everything():
    data = load_dataset("digits", valid_size=0)
    assert len(data.train) == 1497 and len(data.valid) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "cifar"}, "unknown dataset 'cifar'"),
        ({"binarize": "sometimes"}, "unknown binarization"),
        ({"valid_size": 5000}, "valid_size must be in"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kwargs)


def test_missing_torchvision_files_name_what_to_put_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("fashion-mnist", tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert "train-images-idx3-ubyte[.gz]" in message and "t10k-labels-idx1-ubyte[.gz]" in message


def test_from_tensors_checks_its_input():
    with pytest.raises(ValueError, match="non-empty"):
        Dataset.from_tensors(torch.zeros(0, 4))
    with pytest.raises(ValueError, match=r"train has values in \[0, 2\], not in \[0, 1\].*real=True"):
        Dataset.from_tensors(torch.tensor([[0.0, 2.0]]))
    with pytest.raises(ValueError, match=r"test has values in \[-0.5, 1\]"):
        Dataset.from_tensors(torch.ones(3, 2), torch.tensor([[-0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"valid must be an \(N, 4\) tensor like train, got shape \(3, 5\)"):
        Dataset.from_tensors(torch.ones(3, 4), valid=torch.ones(3, 5))
    data = Dataset.from_tensors(torch.ones(3, 4))
    assert len(data.test) == 0 and data.train.y is None and not data.real


@pytest.mark.parametrize("real", [False, True])
def test_from_tensors_rejects_nan_and_infinite_values_naming_the_rows(real):
    x = torch.rand(5, 3)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"train holds NaN or infinite values in 1 row\(s\) \(e.g. row 3\)"):
        Dataset.from_tensors(x, real=real)
    with pytest.raises(ValueError, match=r"test holds NaN or infinite values in 2 row"):
        Dataset.from_tensors(torch.rand(5, 3), torch.tensor([[0.0, float("inf"), 0.0], [float("-inf"), 0.0, 0.0]]),
                             real=real)  # fmt: skip


def test_from_tensors_takes_real_values_with_real_true_and_never_binarizes_them():
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 10
    data = Dataset.from_tensors(x[:15], x[15:], real=True)
    assert data.real and data.binarize == "none" and data.image_shape == (1, 1, 5)
    assert torch.equal(data.train.x, x[:15].float()) and torch.equal(data.fixed_x("test"), x[15:].float())
    assert torch.equal(data.train_batch(torch.tensor([2, 0])), x[[2, 0]].float())
    assert data.to("cpu").real
    for mode in ("dynamic", "static"):
        with pytest.raises(ValueError, match=f"binarize='{mode}' draws binary data .* use binarize='none'"):
            Dataset.from_tensors(x, real=True, binarize=mode)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="shared MNIST files not present")
def test_mnist_loads_offline_without_writing_to_data_dir():
    """Only .gz files in the data folder, no network: read in place, data_dir untouched."""
    before = [p.name for p in (SHARED_DATA / "MNIST" / "raw").iterdir()]
    data = load_dataset("mnist", SHARED_DATA, download=False)
    assert (len(data.train), len(data.valid), len(data.test)) == (50000, 10000, 10000)
    assert data.x_dim == 784 and data.image_shape == (1, 28, 28)
    assert data.train.x.max() == 1 and data.train.x.min() == 0
    assert torch.bincount(data.test.y).tolist()[:2] == [980, 1135]  # MNIST's known test label counts
    assert sorted(p.name for p in (SHARED_DATA / "MNIST" / "raw").iterdir()) == sorted(before)
