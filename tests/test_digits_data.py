"""Digits data: resizing, the split, the IDX reader, download with checksum, and failure paths."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from conftest import run_cli

from spotdiff.errors import UserError
from spotdiff.tasks.digits import data as datasets


def write_idx(path, array: np.ndarray, gzipped: bool = True) -> None:
    """An unsigned-byte IDX file, as the MNIST files are."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gzipped else raw)


def make_idx_dir(folder, n_train=96, n_test=40, gzipped=True):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)), "train_labels": np.arange(n_train) % 10,
        "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": np.arange(n_test) % 10,
    }
    for key, filename in datasets.IDX_FILES.items():
        name = filename if gzipped else filename.removesuffix(".gz")
        write_idx(folder / name, arrays[key], gzipped)
    return arrays


def test_resize_is_deterministic_and_keeps_range():
    images = np.random.default_rng(0).random((3, 8, 8))
    big = datasets.resize_bilinear(images, 28)
    assert big.shape == (3, 28, 28)
    assert big.min() >= images.min() - 1e-12 and big.max() <= images.max() + 1e-12
    np.testing.assert_array_equal(big, datasets.resize_bilinear(images, 28))
    flat = datasets.resize_bilinear(np.full((1, 8, 8), 0.25), 28)
    np.testing.assert_allclose(flat, 0.25)


def test_digits_split_is_stratified_and_seeded():
    a, b = datasets.load_digits_28(0), datasets.load_digits_28(0)
    np.testing.assert_array_equal(a["y_test"], b["y_test"])
    assert a["x_train"].shape == (1437, 28, 28) and a["x_test"].shape == (360, 28, 28)
    assert 0.0 <= a["x_train"].min() and a["x_train"].max() <= 1.0
    counts = np.bincount(a["y_test"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~36 of each digit
    assert not np.array_equal(datasets.load_digits_28(1)["y_test"], a["y_test"])


@pytest.mark.parametrize("gzipped", [True, False])
def test_idx_round_trip(tmp_path, gzipped):
    arrays = make_idx_dir(tmp_path, gzipped=gzipped)
    loaded = datasets.load_idx_dataset("mnist", tmp_path, tmp_path / "cache")
    np.testing.assert_allclose(loaded["x_train"] * 255, arrays["train_images"], atol=1e-4)
    np.testing.assert_array_equal(loaded["y_test"], arrays["test_labels"])


def test_corrupt_idx_files(tmp_path):
    bad_magic = tmp_path / "bad.idx"
    bad_magic.write_bytes(b"\x01\x02\x03\x04" + b"\x00" * 20)
    with pytest.raises(UserError, match="bad magic number"):
        datasets.read_idx(bad_magic)
    truncated = tmp_path / "short.idx"
    write_idx(truncated, np.zeros((4, 28, 28)), gzipped=False)
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(UserError, match="corrupt IDX"):
        datasets.read_idx(truncated)
    broken_gzip = tmp_path / "broken.gz"
    broken_gzip.write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="cannot read IDX"):
        datasets.read_idx(broken_gzip)


def test_missing_file_in_data_dir_says_what_to_do(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz not found .* put the four IDX files"):
        datasets.locate_idx("mnist", tmp_path, tmp_path / "cache")


def test_download_checks_sha256_and_writes_atomically(tmp_path):
    source = tmp_path / "served.gz"
    source.write_bytes(gzip.compress(b"payload"))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    target = datasets.download([source.as_uri()], cache / "file.gz", digest)
    assert target.read_bytes() == source.read_bytes()
    with pytest.raises(UserError, match="checksum mismatch"):
        datasets.download([source.as_uri()], cache / "other.gz", "0" * 64)
    assert sorted(p.name for p in cache.iterdir()) == ["file.gz"]  # nothing half-written


def test_no_network_error_explains_how_to_provide_files(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [(tmp_path / "nowhere").as_uri() + "/"])
    with pytest.raises(UserError, match="--set data_dir=DIR"):
        datasets.locate_idx("mnist", None, tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())


def test_corrupt_cached_file_is_reported(tmp_path):
    cache = tmp_path / "cache"
    make_idx_dir(cache)  # our tiny files do not have MNIST's checksums
    with pytest.raises(UserError, match="fails its SHA-256 check"):
        datasets.locate_idx("mnist", None, cache)


def test_cli_errors_for_data_and_options(tmp_path):
    missing = run_cli("run", "digits", "--set", "dataset=mnist", "--set", f"data_dir={tmp_path}")
    assert missing.returncode == 2 and "not found in" in missing.stderr and "Traceback" not in missing.stderr
    make_idx_dir(tmp_path / "bad")
    (tmp_path / "bad" / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    corrupt = run_cli("run", "digits", "--set", "dataset=mnist", "--set", f"data_dir={tmp_path / 'bad'}")
    assert corrupt.returncode == 2 and "cannot read IDX" in corrupt.stderr
    model = run_cli("run", "digits", "--set", "model=resnet")
    assert model.returncode == 2 and "model" in model.stderr and "pytorch-examples" in model.stderr
    batch = run_cli("run", "digits", "--set", "batch_size=5000")
    assert batch.returncode == 2 and "larger than the training set" in batch.stderr
    make_idx_dir(tmp_path / "small", n_train=20)
    small = run_cli("run", "digits", "--set", "dataset=mnist", "--set", f"data_dir={tmp_path / 'small'}")
    assert small.returncode == 2 and "larger than the training set (20 images)" in small.stderr


def test_mnist_from_idx_files_runs(tmp_path):
    make_idx_dir(tmp_path / "idx")
    out = tmp_path / "run"
    result = run_cli("run", "digits", "--frameworks", "torch", "--modes", "eager", "--set", "dataset=mnist",
                     "--set", f"data_dir={tmp_path / 'idx'}", "--set", "epochs=1", "--set", "batch_size=32",
                     "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr
    (cell,) = json.loads((out / "results.json").read_text())["cells"]
    assert cell["status"] == "ok", cell["error"]
    assert len(cell["series"]["train_loss"]) == 3  # 96 images / 32
