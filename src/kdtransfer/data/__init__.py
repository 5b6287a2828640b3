"""Dataset registry. Loaders return numpy arrays in an ArrayDataset.

Every dataset has one fixed train/test split (independent of the run seed), so every run of a
setup is evaluated on the same test samples and runs can be paired sample by sample.

Importing this package imports numpy only (the Snakefile validates loader names and options at
parse time): torch, torchvision, PIL and scipy are imported inside the loaders that need them.
A loader's options are its keyword parameters, typed by their annotations (kdtransfer.options);
it takes no **kwargs, so a misspelt option is an error, never silently ignored.
Data that is not on disk is never downloaded by a loader; it raises DatasetError naming the
path and the download rule (rule download_dataset, run by hand where there is internet).
"""

from __future__ import annotations

from kdtransfer.data.audio import load_speech_commands
from kdtransfer.data.core import ArrayDataset, DatasetError, load_arrays, save_arrays
from kdtransfer.data.embedded import load_digits, load_mnist1d, load_mnist_subset
from kdtransfer.data.text import load_names_csv
from kdtransfer.data.vision import load_cifar10, load_cifar100, load_tiny_imagenet
from kdtransfer.options import option_problem, signature_options

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

__all__ = ["DATASETS", "DOWNLOAD_NAMES", "ArrayDataset", "DatasetError", "downloads_for", "load_dataset", "loader_options",
           "save_arrays", "load_arrays"]


def downloads_for(datasets: dict) -> list[str]:
    """The downloads (rule download_dataset's {name}) a config's `datasets` need, sorted."""
    return sorted({DOWNLOAD_NAMES[d["loader"]] for d in datasets.values() if d["loader"] in DOWNLOAD_NAMES})


def loader_options(name: str) -> dict[str, str]:
    """{option: type annotation} of loader `name`, read from its signature."""
    return signature_options(DATASETS[name])


def load_dataset(name: str, **options) -> ArrayDataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid choices: {', '.join(sorted(DATASETS))}")
    problem = option_problem(loader_options(name), options, f"load_dataset({name!r})", f"loader {name}")
    if problem:
        raise DatasetError(problem)
    return DATASETS[name](**options)
