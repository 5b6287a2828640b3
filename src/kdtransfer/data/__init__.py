"""Dataset registry. Loaders return numpy arrays in an ArrayDataset.

Every dataset has one fixed train/test split (independent of the run seed), so every run of a
setup is evaluated on the same test samples and runs can be paired sample by sample.

Importing this package imports numpy only (the Snakefile validates loader names at parse
time): torch, torchvision, PIL and scipy are imported inside the loaders that need them.
Data that is not on disk is never downloaded by a loader; it raises DatasetError naming the
path and the download rule (rule download_dataset, run by hand where there is internet).
"""

from __future__ import annotations

import inspect

from kdtransfer.data.audio import load_speech_commands
from kdtransfer.data.core import ArrayDataset, DatasetError, load_arrays, save_arrays
from kdtransfer.data.embedded import load_digits, load_mnist1d, load_mnist_subset
from kdtransfer.data.text import load_names_csv
from kdtransfer.data.vision import load_cifar10, load_cifar100, load_tiny_imagenet

DATASETS = {
    "digits": load_digits,
    "mnist1d": load_mnist1d,
    "mnist_subset": load_mnist_subset,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tiny_imagenet": load_tiny_imagenet,
    "speech_commands": load_speech_commands,
    "names_csv": load_names_csv,
}

# Loaders whose data rule download_dataset fetches: loader -> the rule's {name} wildcard.
DOWNLOAD_NAMES = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "tiny_imagenet": "tiny_imagenet",
    "speech_commands": "speech_commands",
    "names_csv": "names",
}

__all__ = ["DATASETS", "DOWNLOAD_NAMES", "ArrayDataset", "DatasetError", "load_dataset",
           "save_arrays", "load_arrays"]


def _check_options(name: str, loader, options: dict) -> None:
    parameters = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # the embedded loaders ignore options they do not know
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise DatasetError(f"unknown option(s) {', '.join(unknown)} for dataset loader {name!r}; "
                           f"valid options: {', '.join(parameters)}")


def load_dataset(name: str, **options) -> ArrayDataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid choices: {', '.join(sorted(DATASETS))}")
    _check_options(name, DATASETS[name], options)
    return DATASETS[name](**options)
