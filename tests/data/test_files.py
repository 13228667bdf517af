import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pyrovae.data.files import load_file
from pyrovae.data.standardize import Standardization
from pyrovae.models.likelihoods import choose_likelihood


def real_rows(n: int = 60, d: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(3.0, 2.0, (n, d))


def all_rows(data) -> torch.Tensor:
    return torch.cat([data.train.x, data.valid.x, data.test.x])


def save_images(folder, n: int, colour=(), size=(8, 8), seed: int = 0) -> None:
    """``n`` grey PNGs (colour ones at the indices ``colour``) of ``size`` (width, height) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        shape = (size[1], size[0], 3) if i in colour else (size[1], size[0])
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")


def test_npy_rows_are_split_standardized_and_modelled_as_normal(tmp_path):
    x = real_rows()
    np.save(tmp_path / "rows.npy", x)
    data = load_file(tmp_path / "rows.npy")
    assert (len(data.train), len(data.valid), len(data.test)) == (48, 6, 6)  # 10 % each by default
    assert data.x_dim == 5 and data.image_shape == (1, 1, 5) and data.train.y is None and data.real
    assert choose_likelihood(data)[0] == "normal"
    # standardized by the training split; the inverse gives back the file's rows, every row once
    assert torch.allclose(data.train.x.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(data.train.x.std(0, unbiased=False), torch.ones(5), atol=1e-4)
    back = data.standardization.inverse(all_rows(data)).double()
    assert torch.allclose(back.sort(0).values, torch.from_numpy(x).sort(0).values, atol=1e-4)
    raw = load_file(tmp_path / "rows.npy", standardize=False)
    assert raw.standardization is None and torch.allclose(raw.test.x, data.standardization.inverse(data.test.x))


def test_splits_follow_the_seed_and_the_sizes(tmp_path):
    np.save(tmp_path / "rows.npy", real_rows())
    a, b = load_file(tmp_path / "rows.npy", split_seed=1), load_file(tmp_path / "rows.npy", split_seed=1)
    assert torch.equal(a.test.x, b.test.x)
    assert not torch.equal(a.test.x, load_file(tmp_path / "rows.npy", split_seed=2).test.x)
    sized = load_file(tmp_path / "rows.npy", valid_size=0.25, test_size=3)
    assert (len(sized.train), len(sized.valid), len(sized.test)) == (42, 15, 3)
    with pytest.raises(ValueError, match="leave none to train on"):
        load_file(tmp_path / "rows.npy", valid_size=30, test_size=30)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\)"):
        load_file(tmp_path / "rows.npy", valid_size=1.5)


def test_npy_images_are_flattened_and_8_bit_ones_scaled(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (40, 3, 4, 6), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    data = load_file(tmp_path / "images.npy")
    assert data.image_shape == (3, 4, 6) and data.x_dim == 72 and not data.real
    assert all_rows(data).max() <= 1 and choose_likelihood(data)[0] == "continuous-bernoulli"
    expected = torch.from_numpy(images.reshape(40, -1).astype(np.float32) / 255)
    assert torch.allclose(all_rows(data).sort(0).values, expected.sort(0).values)
    np.save(tmp_path / "grey.npy", images[:, 0])
    assert load_file(tmp_path / "grey.npy").image_shape == (1, 4, 6)


def test_npz_with_labels_and_its_own_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x, x_test = rng.random((60, 6)) > 0.5, rng.random((10, 6)) > 0.5
    np.savez(tmp_path / "d.npz", x=x, y=rng.integers(0, 3, 60), x_test=x_test, y_test=np.full(10, 4))
    data = load_file(tmp_path / "d.npz")
    assert (len(data.train), len(data.valid), len(data.test)) == (54, 6, 10)
    assert torch.equal(data.test.x, torch.from_numpy(x_test).float())  # the file's test split, as it is
    assert data.num_classes == 5 and data.test.y.tolist() == [4] * 10  # the largest index + 1
    assert choose_likelihood(data) == ("bernoulli", "every value is 0 or 1") and not data.real
    with pytest.raises(ValueError, match="its own test split"):
        load_file(tmp_path / "d.npz", test_size=5)
    np.savez(tmp_path / "plain.npz", x=real_rows())
    plain = load_file(tmp_path / "plain.npz")
    assert (len(plain.train), len(plain.test), plain.num_classes) == (48, 6, 0) and plain.train.y is None


def test_a_test_split_outside_the_training_values_widens_the_likelihood(tmp_path):
    x = np.random.default_rng(0).random((30, 4))
    np.savez(tmp_path / "d.npz", x=x, x_test=x * 3)
    data = load_file(tmp_path / "d.npz")
    name, reason = choose_likelihood(data)
    assert name == "normal" and reason.startswith("in the test split") and data.real


def test_bad_npz_and_npy_files_are_named_with_the_fix(tmp_path):
    np.savez(tmp_path / "odd.npz", x=real_rows(), labels=np.zeros(60))
    with pytest.raises(ValueError, match=r"odd.npz holds the unknown array\(s\) labels: .* 'x' and optionally 'y'"):
        load_file(tmp_path / "odd.npz")
    np.savez(tmp_path / "float_y.npz", x=real_rows(), y=np.zeros(60))
    with pytest.raises(ValueError, match="'y' has shape .* integer class indices"):
        load_file(tmp_path / "float_y.npz")
    x = real_rows()
    x[17, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(ValueError, match=r"nan.npy: row 17, column 3 holds nan"):
        load_file(tmp_path / "nan.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="not numbers"):
        load_file(tmp_path / "text.npy")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"unknown kind of file '.txt'"):
        load_file(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_file(tmp_path / "missing.npy")
    np.save(tmp_path / "rows.npy", real_rows())
    with pytest.raises(ValueError, match="cannot be binarized"):
        load_file(tmp_path / "rows.npy", binarize="static")


def test_csv_label_column_gives_sorted_classes(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(real_rows(), columns=list("abcde"))
    frame["kind"] = np.random.default_rng(1).choice(["dog", "cat", "emu"], 60)
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_file(tmp_path / "t.csv", label_column="kind")
    assert data.class_names == ("cat", "dog", "emu") and data.num_classes == 3 and data.x_dim == 5
    names = [data.class_names[int(i)] for i in torch.cat([data.train.y, data.valid.y, data.test.y])]
    assert sorted(names) == sorted(frame["kind"])
    with pytest.raises(ValueError, match=r"t.csv: column 'kind' is not numeric \(row 0 \(line 2\) holds '.*'\): drop "
                       "the column, or name it with --label-column kind"):  # fmt: skip
        load_file(tmp_path / "t.csv")
    with pytest.raises(ValueError, match="has no column 'class' .* a, b, c, d, e, kind"):
        load_file(tmp_path / "t.csv", label_column="class")
    frame.loc[7, "c"] = np.nan
    frame.to_csv(tmp_path / "gap.csv", index=False)
    with pytest.raises(ValueError, match=r"gap.csv: row 7 \(line 9\), column 'c' is empty \(NaN\)"):
        load_file(tmp_path / "gap.csv", label_column="kind")


def test_parquet_table_and_integer_labels(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(np.random.default_rng(0).random((60, 4)), columns=["w", "x", "y", "z"])
    frame["digit"] = np.arange(60) % 3 * 10
    frame.to_parquet(tmp_path / "t.parquet")
    data = load_file(tmp_path / "t.parquet", label_column="digit")
    assert data.class_names == ("0", "10", "20") and choose_likelihood(data)[0] == "continuous-bernoulli"


def test_missing_pandas_says_how_to_install_it(tmp_path, monkeypatch):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        load_file(tmp_path / "t.csv")


def test_image_folder_grey_with_class_sub_folders(tmp_path):
    save_images(tmp_path / "imgs" / "zero", 6)
    save_images(tmp_path / "imgs" / "one", 4, seed=1)
    data = load_file(tmp_path / "imgs", valid_size=0, test_size=0)
    assert data.image_shape == (1, 8, 8) and data.class_names == ("one", "zero") and data.num_classes == 2
    assert data.train.y.tolist() == [0] * 4 + [1] * 6  # sub-folders sorted, files sorted within them
    first = np.asarray(Image.open(tmp_path / "imgs" / "one" / "0.png"), dtype=np.float32) / 255
    assert torch.allclose(data.train.x[0], torch.from_numpy(first).flatten())


def test_image_folder_turns_rgb_if_any_image_is_colour_and_resizes(tmp_path):
    save_images(tmp_path / "imgs", 5, colour=(3,), size=(8, 8))
    data = load_file(tmp_path / "imgs", image_size=(4, 6))
    assert data.image_shape == (3, 4, 6) and data.x_dim == 72 and data.train.y is None and data.class_names is None
    save_images(tmp_path / "mixed", 3, size=(8, 8))
    Image.new("L", (10, 8)).save(tmp_path / "mixed" / "wide.png")
    with pytest.raises(ValueError, match=r"wide.png is 10x8 \(width x height\) .* 8x8: give an image size"):
        load_file(tmp_path / "mixed")
    assert load_file(tmp_path / "mixed", image_size=8).image_shape == (1, 8, 8)


def test_bad_image_folders_are_named(tmp_path):
    save_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        load_file(tmp_path / "imgs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .png, .jpg or .jpeg images"):
        load_file(tmp_path / "empty")
    save_images(tmp_path / "both", 2)
    save_images(tmp_path / "both" / "cats", 2)
    with pytest.raises(ValueError, match="both in the folder .* and in class sub-folders"):
        load_file(tmp_path / "both")
    with pytest.raises(ValueError, match="label column names a column of a .csv"):
        load_file(tmp_path / "both", label_column="kind")
    (tmp_path / "deep").mkdir()  # 16-bit grey levels: an 8-bit conversion would clip all above 255 to white
    Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)).save(tmp_path / "deep" / "a.png")
    with pytest.raises(ValueError, match=r"a.png has more than 8 bits per pixel \(mode I;16\)"):
        load_file(tmp_path / "deep")


def test_a_given_standardization_is_applied_as_it_is(tmp_path):
    np.save(tmp_path / "rows.npy", real_rows())
    scale = Standardization(torch.zeros(5), torch.full((5,), 2.0))
    data = load_file(tmp_path / "rows.npy", standardize=scale)
    raw = load_file(tmp_path / "rows.npy", standardize=False)
    assert data.standardization is scale and torch.allclose(data.test.x * 2, raw.test.x)
