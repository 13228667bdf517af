import pytest
import torch

from pyrovae.viz import latent, plots
from tests.common import png_size, tiny_vae


def grid_size(rows: int, cols: int, height: int, width: int, padding: int = 2) -> tuple[int, int]:
    """(width, height) in pixels of torchvision's make_grid of rows x cols images."""
    return cols * (width + padding) + padding, rows * (height + padding) + padding


def test_save_grid_writes_rows_by_columns_of_enlarged_images(tmp_path):
    images = torch.rand(3, 5, 64)  # 8x8 pictures are enlarged 4x to 32x32
    written = plots.save_grid(images, tmp_path / "g.png", (1, 8, 8))
    assert written.shape == (15, 1, 32, 32)
    assert png_size(tmp_path / "g.png") == grid_size(3, 5, 32, 32)
    big = plots.save_grid(torch.rand(2, 2, 784), tmp_path / "m.png", (1, 28, 28))  # 28x28 stay as they are
    assert big.shape == (4, 1, 28, 28) and png_size(tmp_path / "m.png") == grid_size(2, 2, 28, 28)
    with pytest.raises(ValueError, match="rows, cols, D"):
        plots.save_grid(torch.rand(4, 64), tmp_path / "bad.png", (1, 8, 8))


def test_manifold_picture_has_grid_squared_images(tmp_path):
    vae = tiny_vae(x_dim=6, z_dim=2)
    plots.save_grid(latent.manifold_images(vae.model, grid=7), tmp_path / "m.png", (1, 2, 3))
    # 2x3 pictures are enlarged 14x (to reach 28 pixels high): 28x42
    assert png_size(tmp_path / "m.png") == grid_size(7, 7, 28, 42)


def test_latent_map_and_panels(tmp_path):
    points, labels = torch.randn(100, 2), torch.arange(100) % 10
    plots.plot_latent_map(points, labels, tmp_path / "map.png", title="test")
    assert png_size(tmp_path / "map.png") == (600, 600)
    plots.plot_latent_map(points, None, tmp_path / "unlabelled.png")
    assert png_size(tmp_path / "unlabelled.png") == (600, 600)
    plots.plot_panels({"a": torch.rand(16, 64), "b": torch.rand(16, 64)}, tmp_path / "p.png", (1, 8, 8), nrow=4)
    assert png_size(tmp_path / "p.png") == (640, 350)  # figsize (3.2 per panel, 3.5) at 100 dpi
