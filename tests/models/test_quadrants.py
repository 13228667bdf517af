import pytest
import torch

from pyrovae.models.quadrants import HIDDEN, hide, observed_mask, paste


def tutorial_mask(height: int, width: int, quadrants: int) -> torch.Tensor:
    """The observed pixels as Pyro's tutorial finds them (``MaskImages``): the output first loses the bottom left
    quadrant, then (2) the left half or (3) the top half; the input is the rest."""
    out = torch.zeros(height, width)
    out[height // 2 :, : width // 2] = -1
    if quadrants == 2:
        out[:, : width // 2] = -1
    if quadrants == 3:
        out[: height // 2, :] = -1
    return (out == -1).flatten()


@pytest.mark.parametrize("quadrants", [1, 2, 3])
@pytest.mark.parametrize("size", [(4, 4), (28, 28), (6, 10)])
def test_masks_are_the_tutorials(quadrants, size):
    mask = observed_mask((1, *size), quadrants)
    assert torch.equal(mask, tutorial_mask(*size, quadrants))
    assert int(mask.sum()) == quadrants * size[0] * size[1] // 4


def test_every_channel_of_a_pixel_is_on_the_same_side():
    mask = observed_mask((3, 4, 4), 2).reshape(3, 16)
    assert torch.equal(mask[0], mask[1]) and torch.equal(mask[0], mask[2])
    assert torch.equal(mask[0], observed_mask((1, 4, 4), 2))


@pytest.mark.parametrize("quadrants", [0, 4, True, 1.5, "1"])
def test_bad_quadrants_are_refused(quadrants):
    with pytest.raises(ValueError, match="number of observed quadrants, 1, 2 or 3"):
        observed_mask((1, 4, 4), quadrants)


@pytest.mark.parametrize("shape", [(1, 7, 8), (1, 8, 5), (1, 1, 64)])
def test_images_that_cannot_be_cut_in_quadrants_are_refused(shape):
    with pytest.raises(ValueError, match="cannot be cut into four equal quadrants"):
        observed_mask(shape, 1)


@pytest.mark.parametrize("shape", [(8, 8), (0, 4, 4), None])
def test_shapes_that_are_not_images_are_refused(shape):
    with pytest.raises(ValueError, match=r"\(channels, height, width\)"):
        observed_mask(shape, 1)


def test_hide_and_paste_touch_the_hidden_pixels_only():
    mask = observed_mask((1, 2, 2), 1)  # the bottom left pixel
    x = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert torch.equal(hide(x, mask), torch.tensor([[HIDDEN, HIDDEN, 0.3, HIDDEN]]))
    values = torch.tensor([[[1.0, 2.0, 4.0]], [[5.0, 6.0, 8.0]]])  # two completions of one image
    assert torch.equal(paste(x, mask, values), torch.tensor([[[1.0, 2.0, 0.3, 4.0]], [[5.0, 6.0, 0.3, 8.0]]]))
