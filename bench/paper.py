"""experiments/paper.yaml where jsonschema is not installed, and synthetic data of its shapes.

The GPU machine that runs `bench/gpu_check.sh` has torch, numpy, pandas and yaml but not
jsonschema (nor snakemake, mnist1d, mlxtend), so it cannot call `kdtransfer.plan.config.validate_config`.
`read_config` fills in the schema's defaults the way validate_config does (checks nothing: the
config is the committed, valid paper.yaml; tests/test_gpu_check.py checks that both give the
same config), so `kdtransfer.plan.runs.Plan` plans the same runs there as here.

`synthetic_dataset` makes data of a paper dataset's real shapes and dtypes (uint8 images with
channel statistics, standardised float32 log-mel spectrograms, int64 token rows), small or at
full size, with a class signal a model can learn. DATASET_SIZES holds the real sizes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PAPER_CONFIG = REPO / "experiments" / "paper.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def fill_defaults(instance, schema: dict) -> None:
    """Insert every missing property's `default` (a deep copy), in place, then descend into
    properties, additionalProperties and items: what validate_config's validator adds."""
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if "default" in sub and name not in instance:
                instance[name] = copy.deepcopy(sub["default"])
        for name, value in instance.items():
            sub = properties.get(name, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                fill_defaults(value, sub)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for value in instance:
            fill_defaults(value, schema["items"])


def read_config(path: str | Path = PAPER_CONFIG, schema_path: str | Path = SCHEMA) -> dict:
    """A config file with the schema's defaults filled in, without validating it."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    fill_defaults(config, yaml.safe_load(Path(schema_path).read_text()))
    return config


@dataclass(frozen=True)
class DatasetSize:
    """A dataset as training holds it: split sizes, one sample's shape and dtype, classes."""

    n_train: int
    n_test: int
    sample: tuple[int, ...]
    dtype: str  # "uint8" images, "float32" spectrograms, "int64" tokens
    num_classes: int
    vocab_size: int = 0
    note: str = ""


def dataset_size(loader: str, options: dict) -> DatasetSize:
    """The real sizes of a paper dataset (the loaders' docstrings; names: approximate)."""
    if loader in ("cifar10", "cifar100"):
        return DatasetSize(50_000, 10_000, (3, 32, 32), "uint8", 10 if loader == "cifar10" else 100)
    if loader == "tiny_imagenet":
        return DatasetSize(100_000, 10_000, (3, 64, 64), "uint8", 200)
    if loader == "speech_commands":
        from kdtransfer.data.audio import CLIP_SECONDS, frame_count, stft_sizes

        rate = options.get("sample_rate", 16000)
        _, hop, _ = stft_sizes(rate, options.get("win_ms", 25.0), options.get("hop_ms", 10.0))
        frames = frame_count(int(round(CLIP_SECONDS * rate)), hop)
        if options.get("classes", "all") != "all":
            raise ValueError("speech_commands sizes are known for classes: all only")
        return DatasetSize(84_843, 11_005, (1, options.get("n_mels", 40), frames), "float32", 35)
    if loader == "names_csv":
        return DatasetSize(
            14_400,
            3_600,
            (options.get("max_len", 20),),
            "int64",
            18,
            vocab_size=90,
            note="about 18,000 distinct (name, language) pairs of the char-RNN tutorial's 20,074 lines",
        )
    raise ValueError(f"no known size for dataset loader {loader!r}")


def synthetic_dataset(size: DatasetSize, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
    """An ArrayDataset of `size`'s shapes and dtype (n_train/n_test default to the real sizes).

    Never zeros: each class adds its own fixed random pattern to noise (images, spectrograms),
    or opens every row with its own token (text), so a loss curve falls as a model learns.
    """
    import torch

    from kdtransfer.data import ArrayDataset
    from kdtransfer.data.core import channel_mean_std

    n_train = size.n_train if n_train is None else n_train
    n_test = size.n_test if n_test is None else n_test
    n = n_train + n_test
    rng = np.random.default_rng(seed)
    y = rng.integers(0, size.num_classes, n).astype(np.int64)
    if size.dtype == "int64":
        length = size.sample[0]
        x = rng.integers(2, size.vocab_size, (n, length)).astype(np.int64)
        x[:, 0] = 2 + y % (size.vocab_size - 2)
        lengths = rng.integers(3, length + 1, n)
        x[np.arange(length)[None, :] >= lengths[:, None]] = 0  # right padding
        return ArrayDataset(
            x[:n_train], y[:n_train], x[n_train:], y[n_train:], size.num_classes, "text", vocab_size=size.vocab_size
        )
    # torch's generators fill large arrays on every core (numpy's on one): full-size sets in seconds.
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.randn((size.num_classes, *size.sample), generator=generator)
    if size.dtype == "float32":
        x = torch.randn((n, *size.sample), generator=generator)
    else:
        x = torch.randint(0, 160, (n, *size.sample), dtype=torch.uint8, generator=generator)
        patterns = (patterns.clamp(-2, 2) * 24 + 48).to(torch.uint8)  # at most 159 + 96: no overflow
    labels = torch.from_numpy(y)
    for start in range(0, n, 8192):  # in blocks: a full-size array of class patterns would double the memory
        x[start : start + 8192] += patterns[labels[start : start + 8192]]
    x = x.numpy()
    if size.dtype == "float32":
        return ArrayDataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], size.num_classes, "audio")
    # Normalisation constants only: the statistics of a few thousand images do.
    mean, std = channel_mean_std(x[: min(n_train, 8192)])
    return ArrayDataset(
        x[:n_train], y[:n_train], x[n_train:], y[n_train:], size.num_classes, "image", mean=mean, std=std
    )
