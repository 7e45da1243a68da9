"""Digit images for the CNN task, as neutral numpy arrays: images (N, 28, 28) float32 in [0, 1].

- `digits`: scikit-learn's bundled 8x8 digits (1,797 images), bilinearly resized to 28x28,
  stratified seeded train/test split. Needs no network.
- `mnist`, `fashion-mnist`: IDX files from `data_dir`, or downloaded from the standard mirrors into
  the cache (`SPOTDIFF_HOME/data/<name>/`) with a SHA-256 check. A download goes to a temporary
  file and is renamed only after its checksum matched: nothing half-written stays in the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from spotdiff.errors import UserError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
}
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
DATASETS = ("digits", "mnist", "fashion-mnist")


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), bilinear with pixel centres aligned (half-pixel rule)."""
    n, h, w = images.shape

    def axis(src: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size) + 0.5) * src / size - 0.5, 0, src - 1)
        low = np.floor(pos).astype(int)
        high = np.minimum(low + 1, src - 1)
        return low, high, pos - low

    r0, r1, rf = axis(h)
    c0, c1, cf = axis(w)
    rows = images[:, r0, :] * (1 - rf)[None, :, None] + images[:, r1, :] * rf[None, :, None]  # (N, size, w)
    return rows[:, :, c0] * (1 - cf)[None, None, :] + rows[:, :, c1] * cf[None, None, :]


def load_digits_28(seed: int, test_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """scikit-learn's digits at 28x28 in [0, 1], split stratified by label with `seed`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = resize_bilinear(bunch.images.astype(np.float64) / 16.0, 28).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        bunch.target.astype(np.int64),
        test_size=test_fraction,
        stratify=bunch.target,
        random_state=seed,
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array; UserError when it is not valid IDX."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise UserError(f"{path} is a corrupt IDX file (truncated header)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(shape)):
        raise UserError(f"{path} is a corrupt IDX file: {len(raw) - header} bytes of data for shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(urls: list[str], target: Path, expected_sha256: str) -> Path:
    """Fetch the first URL that works into `target`, atomically, after checking its SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                shutil.copyfileobj(response, out)
            actual = sha256(tmp)
            if actual != expected_sha256:
                errors.append(
                    f"{url}: checksum mismatch (got {actual[:12]}…, expected {expected_sha256[:12]}…)"
                )
                continue
            os.replace(tmp, target)
            return target
        except OSError as error:
            errors.append(f"{url}: {error}")
        finally:
            tmp.unlink(missing_ok=True)
    raise UserError(f"could not download {target.name}: " + "; ".join(errors))


def locate_idx(
    name: str, data_dir: Path | None, cache_dir: Path, allow_download: bool = True
) -> dict[str, Path]:
    """The four IDX files of dataset `name`: from data_dir, else the cache, else downloaded."""
    found = {}
    for key, filename in IDX_FILES.items():
        candidates = []
        if data_dir is not None:
            candidates += [data_dir / filename, data_dir / filename.removesuffix(".gz")]
        candidates += [cache_dir / filename]
        path = next((p for p in candidates if p.exists()), None)
        if path is None and data_dir is not None:
            raise UserError(
                f"{name}: {filename} not found in {data_dir}; put the four IDX files "
                f"({', '.join(IDX_FILES.values())}) there, gzipped or not"
            )
        if path is None:
            if not allow_download:
                raise UserError(f"{name}: {filename} is not in the cache {cache_dir}")
            urls = [m + filename for m in MIRRORS[name]]
            try:
                path = download(urls, cache_dir / filename, SHA256[name][filename])
            except UserError as error:
                raise UserError(
                    f"{error}. Without a network, download the four IDX files of {name} elsewhere and "
                    f"pass --set data_dir=DIR (or copy them into {cache_dir})"
                ) from None
        elif path.parent == cache_dir and sha256(path) != SHA256[name][filename]:
            raise UserError(f"{path} fails its SHA-256 check; delete it and run again")
        found[key] = path
    return found


def load_idx_dataset(
    name: str, data_dir: Path | None, cache_dir: Path, limit_train: int | None = None
) -> dict[str, np.ndarray]:
    paths = locate_idx(name, data_dir, cache_dir)
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"{name}: {split} images {images.shape} and labels {labels.shape} do not match")
    return {
        "x_train": arrays["train_images"].astype(np.float32) / 255.0,
        "y_train": arrays["train_labels"].astype(np.int64),
        "x_test": arrays["test_images"].astype(np.float32) / 255.0,
        "y_test": arrays["test_labels"].astype(np.int64),
    }
