"""Dataset registry and loaders, one module per modality (embedded, vision, audio, text), and
download.py for the download rule. Loaders return numpy arrays in an ArrayDataset.

Every dataset has one fixed train/test split (independent of the run seed), so every run of a
setup is evaluated on the same test samples and runs can be paired sample by sample.

Importing this package imports numpy only (the Snakefile validates loader names and options at
parse time): torch, torchvision, PIL and scipy are imported inside the loaders that need them.
A loader's options are its keyword parameters, typed by their annotations (kdtransfer.options),
with the value ranges and sample shape it declares (kdtransfer.data.core.loader); it takes no
**kwargs, so a misspelt option is an error, never silently ignored.
Data that is not on disk is never downloaded by a loader; it raises DatasetError naming the
path and the download rule (rule download_dataset, run by hand where there is internet).
"""

from __future__ import annotations

import inspect

from kdtransfer.data.audio import load_speech_commands
from kdtransfer.data.core import SPLIT_OPTIONS, ArrayDataset, DatasetError, load_arrays, save_arrays
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

__all__ = [
    "DATASETS",
    "DOWNLOAD_NAMES",
    "ArrayDataset",
    "DatasetError",
    "dataset_problem",
    "downloads_for",
    "load_dataset",
    "prepare_dataset",
    "loader_options",
    "sample_shape",
    "save_arrays",
    "load_arrays",
]


def downloads_for(datasets: dict) -> list[str]:
    """The downloads (rule download_dataset's {name}) a config's `datasets` need, sorted."""
    return sorted({DOWNLOAD_NAMES[d["loader"]] for d in datasets.values() if d["loader"] in DOWNLOAD_NAMES})


def loader_options(name: str) -> dict[str, str]:
    """{option: type annotation} of loader `name`, read from its signature."""
    return signature_options(DATASETS[name])


def dataset_problem(name: str, options: dict, where: str) -> str | None:
    """What is wrong with loader `name`'s `options` (names, types, ranges), as one message; None if
    nothing. `where` names the options in the message (a config path such as datasets.x.options)."""
    return option_problem(loader_options(name), options, where, f"loader {name}", DATASETS[name].option_values)


def sample_shape(name: str, options: dict) -> tuple[tuple[int, ...], bool] | None:
    """(one sample's shape, whether samples are token rows) that loader `name` will give with these
    (valid) options, known before it runs; None where only the data can tell."""
    function = DATASETS[name]
    if function.sample_shape is None:
        return None
    defaults = {key: p.default for key, p in inspect.signature(function).parameters.items()}
    return tuple(function.sample_shape(**{**defaults, **options})), function.tokens


def prepare_dataset(name: str, loader: str, options: dict, path: str, log) -> None:
    """Rule prepare_data: load config dataset `name` with its loader and options and write it to
    `path` once it passes the checks of kdtransfer.data.core.dataset_problem; otherwise raise a
    DatasetError that names the dataset and the options that shape it, and write nothing."""
    ds = load_dataset(loader, **options)
    log.info(
        "dataset %s (%s): train %s %s, test %s, %d classes, %.1f MB",
        loader,
        ds.modality,
        ds.x_train.shape,
        ds.x_train.dtype,
        ds.x_test.shape,
        ds.num_classes,
        (ds.x_train.nbytes + ds.x_test.nbytes) / 1e6,
    )
    try:
        save_arrays(ds, path)
    except DatasetError as exc:
        shaping = [key for key in SPLIT_OPTIONS if key in loader_options(loader)]
        given = ", ".join(f"{key}: {options[key]!r}" for key in shaping if key in options) or "their defaults"
        fix = (
            f"change datasets.{name}.options ({', '.join(shaping)}; now {given})"
            if shaping
            else f"check the data that loader {loader} reads"
        )
        raise DatasetError(f"dataset {name} (loader {loader}): {exc}; {fix}") from None


def load_dataset(name: str, **options) -> ArrayDataset:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid choices: {', '.join(sorted(DATASETS))}")
    problem = dataset_problem(name, options, f"load_dataset({name!r})")
    if problem:
        raise DatasetError(problem)
    return DATASETS[name](**options)
