"""Data sets as numpy arrays with fixed splits: scikit-learn's digits (bundled, offline), MNIST and
Fashion-MNIST (downloaded once into the data directory), or the user's own `.npz` file.

NumPy only: both trainers build their tensors from these arrays, and the server image's batch job
scores exactly the test split the trials were judged on."""

from __future__ import annotations

import gzip
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Held-out splits are fixed (seed 0) so every trial of an Experiment is judged on the same samples.
SPLIT_SEED = 0
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
IDX_SOURCES = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DataError(Exception):
    """A data set that cannot be loaded; the message says why and what to do."""


@dataclass
class Arrays:
    """Train/validation/test splits; x as float32 (N, C, H, W), y as int64 class ids."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shape: tuple[int, int, int]  # channels, height, width of one sample
    classes: int


def _split(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[np.ndarray, ...]:
    """Stratified split with the fixed seed: (x_rest, y_rest, x_part, y_part)."""
    rng = np.random.default_rng(SPLIT_SEED)
    part = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        part[idx[: max(1, round(len(idx) * fraction))]] = True
    return x[~part], y[~part], x[part], y[part]


def as_samples(x: np.ndarray) -> np.ndarray:
    """float32 (N, C, H, W): flat feature rows become one channel of one row, images one channel."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 2:
        return x.reshape(len(x), 1, 1, x.shape[1])
    if x.ndim == 3:
        return x.reshape(len(x), 1, *x.shape[1:])
    return x


def _build(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> Arrays:
    x_train, y_train, x_val, y_val = _split(x_train, y_train, VAL_FRACTION)
    x_train, x_val, x_test = as_samples(x_train), as_samples(x_val), as_samples(x_test)
    chw = (int(x_train.shape[1]), int(x_train.shape[2]), int(x_train.shape[3]))
    y_train, y_val, y_test = (np.asarray(y, dtype=np.int64) for y in (y_train, y_val, y_test))
    classes = int(max(y_train.max(), y_val.max(), y_test.max())) + 1
    return Arrays(name, x_train, y_train, x_val, y_val, x_test, y_test, chw, classes)


def load_digits() -> Arrays:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.data / 16.0).reshape(-1, 8, 8)
    x_train, y_train, x_test, y_test = _split(x, bunch.target, TEST_FRACTION)
    return _build("digits", x_train, y_train, x_test, y_test)


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _fetch(url: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            out.write(response.read())
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {url} ({reason}); with no network, copy the file into {target.parent} "
            "or use --dataset digits"
        ) from None
    tmp.replace(target)


def load_idx(name: str, data_dir: Path) -> Arrays:
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, files in IDX_FILES.items():
        for kind, filename in zip(("x", "y"), files, strict=True):
            path = folder / filename
            if not path.is_file():
                _fetch(IDX_SOURCES[name] + filename, path)
            arrays[f"{kind}_{split}"] = _read_idx(path)
    return _build(name, arrays["x_train"] / 255.0, arrays["y_train"], arrays["x_test"] / 255.0, arrays["y_test"])


def load_file(path: Path) -> Arrays:
    """A user's `.npz` with `x` (N, features) or (N, H, W) or (N, C, H, W), `y` (N,) class ids from 0;
    optional `x_test`/`y_test`, otherwise 20% is held out."""
    if not path.is_file():
        raise DataError(f"data file {path} not found; put an .npz with arrays x and y on the PVC")
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    if "x" not in arrays or "y" not in arrays or len(arrays["x"]) != len(arrays["y"]):
        raise DataError(f"{path} needs arrays x and y of the same length")
    x, y = arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{path}: labels in y must be class ids starting at 0")
    if "x_test" in arrays and "y_test" in arrays:
        return _build(path.stem, x, y, arrays["x_test"].astype(np.float32), arrays["y_test"].astype(np.int64))
    x_train, y_train, x_test, y_test = _split(x, y, TEST_FRACTION)
    return _build(path.stem, x_train, y_train, x_test, y_test)


def load(dataset: str, data_dir: Path, base_dir: Path) -> Arrays:
    if dataset == "digits":
        return load_digits()
    if dataset in IDX_SOURCES:
        return load_idx(dataset, data_dir)
    path = Path(dataset)
    return load_file(path if path.is_absolute() else base_dir / path)
