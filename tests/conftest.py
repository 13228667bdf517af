import hashlib
from pathlib import Path

import pyro
import pytest
import torch
from torchvision.datasets import KMNIST

from tests.common import fake_files


@pytest.fixture(autouse=True)
def fresh_pyro():
    """Every test starts with an empty param store, validation on and a fixed seed."""
    pyro.clear_param_store()
    pyro.enable_validation(True)
    pyro.set_rng_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture
def float64():
    """Double precision for the test (models built in it too), so that sums of the same terms in another order agree
    to about 1e-13; the global RNG is left as it was."""
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            yield
        finally:
            torch.set_default_dtype(torch.float32)


@pytest.fixture
def fake_kmnist(tmp_path, monkeypatch):
    """Writes fake KMNIST files into a folder; their md5 sums become torchvision's (for downloads), and its mirror is
    a folder that does not exist, so that a download fails at once offline (and online)."""
    monkeypatch.setattr(KMNIST, "mirrors", [(tmp_path / "no-mirror").as_uri() + "/"])

    def write(folder: Path, seed: int = 0) -> dict[str, bytes]:
        files = fake_files(seed)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_bytes(content)
        monkeypatch.setattr(KMNIST, "resources", [(n, hashlib.md5(c).hexdigest()) for n, c in files.items()])
        return files

    return write
