"""The prepared-dataset container, its .npz file, and helpers every loader shares.

numpy only: this module is imported when the Snakefile is parsed.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from kdtransfer.io.atomic import atomic_path
from kdtransfer.options import Values
from kdtransfer.paths import DOWNLOAD_MARKER, DOWNLOAD_RULE, DOWNLOAD_TARGET, PREPARE_RULE


class DatasetError(ValueError):
    pass


def loader(*, sample_shape: Callable[..., tuple[int, ...]] | None = None, tokens: bool = False, **values: Values):
    """Declare what the config can check about a loader before it runs: the ranges of its options
    (their types are its annotations), and one sample's shape as a function of its options (None:
    known only once the data is read); `tokens`: its samples are int64 token rows."""

    def declare(function):
        function.option_values = values
        function.sample_shape = sample_shape
        function.tokens = tokens
        return function

    return declare


@dataclass
class ArrayDataset:
    """One dataset in memory, with its fixed train/test split.

    x arrays are one of: float32 [n, *shape], already standardised (embedded sets, spectrograms);
    uint8 images [n, c, h, w], raw pixels, normalised per batch on the device as
    (x / 255 - mean[c]) / std[c] (CIFAR, Tiny-ImageNet: raw bytes keep the .npz 4x smaller);
    int64 tokens [n, L] with 0 = padding (text). y arrays are int64 [n].
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    modality: str
    mean: np.ndarray | None = None  # float32 [c], pixel units in [0, 1]; for uint8 images
    std: np.ndarray | None = None
    vocab_size: int = 0  # token inputs: ids are < vocab_size
    class_names: list[str] | None = None

    def __post_init__(self):
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, np.float32).reshape(-1)
            if self.x_train.ndim != 4 or len(value) != self.x_train.shape[1]:
                raise DatasetError(
                    f"{name} has {len(value)} values; images of shape {self.x_train.shape[1:]} "
                    "need one per channel (x as [n, c, h, w])"
                )
            setattr(self, name, value)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# What a prepared dataset's problem usually comes from: the loader options that set it.
SPLIT_OPTIONS = ("test_fraction", "max_train", "max_test", "num_samples", "classes", "split_seed")


def dataset_problem(ds: ArrayDataset) -> str | None:
    """The first thing that makes `ds` unfit to train and test on, or None. Cheap beside any
    training: labels and constants, and one chunked pass over float inputs for NaN and inf
    (about a second for SpeechCommands' 1.4 GB)."""
    for split, x, y in (("training", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if len(x) == 0 or len(y) == 0:
            return f"its {split} split is empty (x {tuple(x.shape)}, y {tuple(y.shape)})"
        if len(x) != len(y):
            return f"its {split} split has {len(x)} inputs but {len(y)} labels"
        outside = (y < 0) | (y >= ds.num_classes)
        if outside.any():
            return (
                f"{int(outside.sum())} {split} labels lie outside [0, {ds.num_classes}) "
                f"(e.g. {int(y[outside][0])}), the dataset's {ds.num_classes} classes"
            )
    absent = np.setdiff1d(np.arange(ds.num_classes), ds.y_train)
    if len(absent):
        return (
            f"{len(absent)} of its {ds.num_classes} classes have no training sample (e.g. class {int(absent[0])}): "
            f"no model can learn them"
        )
    for name in ("mean", "std"):
        value = getattr(ds, name)
        if value is not None and not np.isfinite(value).all():
            return f"its normalisation {name} is not finite ({np.asarray(value).tolist()})"
    if ds.std is not None and (np.asarray(ds.std) <= 0).any():
        return f"its normalisation std has a value <= 0 ({np.asarray(ds.std).tolist()}): a channel is constant"
    for split, x in (("training", ds.x_train), ("test", ds.x_test)):
        if np.issubdtype(x.dtype, np.floating):
            bad = sum(int((~np.isfinite(x[start : start + 4096])).sum()) for start in range(0, len(x), 4096))
            if bad:
                return f"its {split} inputs hold {bad} NaN or infinite values"
    if ds.vocab_size and max(int(ds.x_train.max()), int(ds.x_test.max())) >= ds.vocab_size:
        return f"it holds token ids at or above its vocabulary size {ds.vocab_size}"
    return None


def save_arrays(ds: ArrayDataset, path: str | os.PathLike) -> None:
    """Write the prepared dataset atomically as one uncompressed .npz that training loads into
    memory (uncompressed: loading 1 GB of pixels should cost a read, not a decompression). A
    dataset that fails dataset_problem raises DatasetError and writes nothing."""
    if ds.x_train.dtype == np.uint8 and (ds.mean is None or ds.std is None):
        raise DatasetError("uint8 images need per-channel mean and std (train statistics) to be saved")
    problem = dataset_problem(ds)
    if problem:
        raise DatasetError(f"prepared dataset not written to {path}: {problem}")
    fields = {
        "x_train": ds.x_train,
        "y_train": ds.y_train,
        "x_test": ds.x_test,
        "y_test": ds.y_test,
        "num_classes": np.int64(ds.num_classes),
        "modality": np.str_(ds.modality),
        "vocab_size": np.int64(ds.vocab_size),
    }
    if ds.mean is not None:
        fields["mean"] = np.asarray(ds.mean, np.float32)
    if ds.std is not None:
        fields["std"] = np.asarray(ds.std, np.float32)
    if ds.class_names is not None:
        fields["class_names"] = np.array(ds.class_names, dtype=np.str_)
    # A file handle, not a name: np.savez would append ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **fields)


def load_arrays(path: str | os.PathLike) -> ArrayDataset:
    """Read a prepared dataset, checked as save_arrays checks it (a file an older version wrote
    was not)."""
    dataset = _read_arrays(path)
    problem = dataset_problem(dataset)
    if problem:
        raise DatasetError(
            f"prepared dataset {path} cannot be trained on: {problem}. It was written by an older "
            f"version, which did not check this: fix the dataset's options, then rerun Snakemake with "
            f"`--forcerun {path}` (rule {PREPARE_RULE})"
        )
    return dataset


def _read_arrays(path: str | os.PathLike) -> ArrayDataset:
    try:
        with np.load(path) as z:
            files = set(z.files)
            return ArrayDataset(
                z["x_train"],
                z["y_train"],
                z["x_test"],
                z["y_test"],
                int(z["num_classes"]),
                str(z["modality"]),
                mean=z["mean"] if "mean" in files else None,
                std=z["std"] if "std" in files else None,
                # Files written before these fields existed read as their defaults.
                vocab_size=int(z["vocab_size"]) if "vocab_size" in files else 0,
                class_names=[str(c) for c in z["class_names"]] if "class_names" in files else None,
            )
    except FileNotFoundError:
        raise DatasetError(
            f"prepared dataset {path} is missing; run `snakemake {path}` (rule {PREPARE_RULE})"
        ) from None
    except DatasetError as exc:
        raise DatasetError(_unreadable(path, str(exc))) from None
    # What numpy raises for a cut-short, overwritten or foreign file, or one that lacks a field.
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(_unreadable(path, f"{type(exc).__name__}: {exc}")) from None


def _unreadable(path, reason: str) -> str:
    return (
        f"prepared dataset {path} is unreadable ({reason}): it is corrupt or was cut short. Rule {PREPARE_RULE} "
        f"remakes it: delete it (`rm {path}`) and rerun Snakemake, or add `--forcerun {path}` to your snakemake "
        f"command (with the same --configfile)"
    )


def standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Statistics from the train split only, so the test split stays unseen.
    if x_train.size == 0:
        # Nothing to standardise with: dataset_problem reports the empty split when it is saved.
        return x_train.astype(np.float32), x_test.astype(np.float32)
    mean, std = x_train.mean(), x_train.std() + 1e-8
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


def stratified_split(y: np.ndarray, test_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(len(idx) * test_fraction))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(test_idx))


def stratified_head(labels: np.ndarray, max_n: int | None) -> np.ndarray:
    """Sorted indices of at most `max_n` samples for smoke runs: each class keeps its share of
    `max_n` (largest-remainder rounding) and contributes its FIRST samples in the dataset's own
    order. No randomness, so a subsample is the same on every machine."""
    labels = np.asarray(labels)
    if max_n is None or max_n >= len(labels):
        return np.arange(len(labels))
    if not isinstance(max_n, (int, np.integer)) or max_n < 1:
        raise DatasetError(f"max_train/max_test must be a positive integer or null, not {max_n!r}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * max_n / len(labels)
    take = np.floor(quota).astype(np.int64)
    # Stable sort: ties in the remainder go to the smaller class label.
    for i in np.argsort(-(quota - take), kind="stable")[: max_n - take.sum()]:
        take[i] += 1
    picked = [np.flatnonzero(labels == c)[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def channel_mean_std(images: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of uint8 images [n, c, h, w] in [0, 1] units.

    Exact, from a 256-bin histogram per channel filled chunk by chunk: a float copy of
    Tiny-ImageNet's train split would take 10 GB."""
    n, channels = images.shape[:2]
    histogram = np.zeros((channels, 256), np.int64)
    for start in range(0, n, chunk):
        block = images[start : start + chunk]
        for c in range(channels):
            histogram[c] += np.bincount(block[:, c].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64) / 255.0
    total = histogram.sum(axis=1)
    mean = histogram @ values / total
    var = histogram @ values**2 / total - mean**2
    return mean.astype(np.float32), np.sqrt(np.maximum(var, 0.0)).astype(np.float32)


def missing_data_error(
    what: str,
    root: str | os.PathLike,
    missing: str | os.PathLike,
    expected: str,
    download_name: str,
    default_root: str,
    option: str = "root",
) -> DatasetError:
    """The one message for data that is not on disk: what, where, and how to get it."""
    message = (
        f"{what} not found: {missing} does not exist (expected {expected}). "
        f"Download it on a machine with internet access (e.g. a login node): "
        f"`snakemake --cores 1 {DOWNLOAD_MARKER.format(name=download_name)}` (rule {DOWNLOAD_RULE}; "
        f"`snakemake --cores 1 {DOWNLOAD_TARGET} --configfile <experiment>.yaml` fetches every dataset of an "
        "experiment), "
        f"which fills {default_root}."
    )
    if Path(root) != Path(default_root):
        message += (
            f" The dataset's `{option}` option is {root}: point it at the downloaded copy, or put the files there."
        )
    return DatasetError(message)
