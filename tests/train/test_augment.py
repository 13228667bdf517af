import pytest
import torch

from pyrovae.train.augment import check_shift, random_shift
from tests.common import translations


def test_each_image_is_one_zero_filled_translation_with_its_own_offset():
    torch.manual_seed(0)
    shape, s = (2, 9, 7), 2
    x = torch.rand(400, *shape)
    y = random_shift(x.reshape(400, -1), shape, s).reshape(400, *shape)
    offsets = []
    for image, moved in zip(x, y, strict=True):
        matches = [offset for offset, t in translations(image, s).items() if torch.equal(t, moved)]
        assert len(matches) == 1  # both channels moved together, nothing wrapped around
        offsets.append(matches[0])
    counts = torch.tensor([offsets.count((dh, dw)) for dh in range(-s, s + 1) for dw in range(-s, s + 1)])
    assert counts.sum() == 400 and counts.min() > 0  # all 25 offsets drawn, each about 16 times
    assert counts.max() < 40


def test_a_white_image_loses_the_rows_and_columns_it_is_moved_by():
    torch.manual_seed(1)
    y = random_shift(torch.ones(200, 28 * 28), (1, 28, 28), 3).reshape(200, 28, 28)
    lost_rows, lost_cols = 28 - y.amax(2).sum(1), 28 - y.amax(1).sum(1)
    assert torch.equal(y.sum((1, 2)), (28 - lost_rows) * (28 - lost_cols))
    assert lost_rows.max() == lost_cols.max() == 3 and lost_rows.min() == lost_cols.min() == 0


def test_seeded_zero_shift_and_errors():
    x = torch.rand(5, 64)
    torch.manual_seed(3)
    a = random_shift(x, (1, 8, 8), 1)
    torch.manual_seed(3)
    assert torch.equal(a, random_shift(x, (1, 8, 8), 1))
    assert random_shift(x, (1, 8, 8), 0) is x
    with pytest.raises(ValueError, match=r"max_shift must be in 0..7 pixels for 8x8 images, got 8"):
        random_shift(x, (1, 8, 8), 8)
    with pytest.raises(ValueError, match="got -1"):
        check_shift((1, 8, 8), -1)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 64\), got \(5, 8, 8\) \(flatten images"):
        random_shift(x.reshape(5, 8, 8), (1, 8, 8), 1)
    with pytest.raises(ValueError, match="image_shape must be"):
        check_shift((8, 8), 1)
