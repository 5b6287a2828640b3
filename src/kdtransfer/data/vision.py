"""Image datasets read from their standard on-disk layouts into raw uint8 [n, 3, h, w].

Pixels stay uint8 (4x smaller than float32); per-channel mean and std of the train split go
with them and training normalises each batch on the device. torch, torchvision and PIL are
imported inside the loaders, so importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtransfer.data.core import (
    ArrayDataset,
    DatasetError,
    channel_mean_std,
    loader,
    missing_data_error,
    stratified_head,
)
from kdtransfer.options import COUNT
from kdtransfer.paths import DATA_DIR

CIFAR_ROOT = f"{DATA_DIR}/cifar"
TINY_IMAGENET_ROOT = f"{DATA_DIR}/tiny-imagenet-200"
TINY_IMAGENET_SIZE = 64

_CIFAR_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def torchvision_cifar_class(name: str, verify_md5: bool):
    """torchvision's CIFAR10/CIFAR100 class; with verify_md5=False, a subclass that only checks
    that each file exists. Checksums are verified once, when rule download_dataset downloads
    (torchvision checks the archive and every file); re-hashing 180 MB on each load would add
    nothing, and it would reject the small files in the real format that the tests write."""
    from torchvision.datasets import CIFAR10, CIFAR100

    base = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]
    if verify_md5:
        return base
    return type(
        f"Unverified{base.__name__}",
        (base,),
        {
            # torchvision's check_integrity(path, None) tests existence only.
            "train_list": [[filename, None] for filename, _ in base.train_list],
            "test_list": [[filename, None] for filename, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


def _check_cifar_files(name: str, root: Path) -> None:
    cls = torchvision_cifar_class(name, verify_md5=True)
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    for filename in files:
        path = root / cls.base_folder / filename
        if not path.is_file():
            listed = ", ".join(files)
            raise missing_data_error(
                _CIFAR_TITLES[name], root, path, f"{cls.base_folder}/{{{listed}}} under {root}", name, CIFAR_ROOT
            )


def _load_cifar(name: str, root: str, max_train: int | None, max_test: int | None) -> ArrayDataset:
    root_path = Path(root)
    _check_cifar_files(name, root_path)
    cls = torchvision_cifar_class(name, verify_md5=False)
    splits = []
    for train, max_n in ((True, max_train), (False, max_test)):
        ds = cls(str(root_path), train=train, download=False)
        labels = np.asarray(ds.targets, np.int64)
        keep = stratified_head(labels, max_n)
        # torchvision holds [n, h, w, c]; the models take [n, c, h, w].
        splits.append((np.ascontiguousarray(ds.data[keep].transpose(0, 3, 1, 2)), labels[keep]))
        classes = list(ds.classes)
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = channel_mean_std(x_train)
    return ArrayDataset(
        x_train, y_train, x_test, y_test, len(classes), "image", mean=mean, std=std, class_names=classes
    )


@loader(sample_shape=lambda **_: (3, 32, 32), max_train=COUNT, max_test=COUNT)
def load_cifar10(root: str = CIFAR_ROOT, max_train: int | None = None, max_test: int | None = None) -> ArrayDataset:
    """CIFAR-10 from `<root>/cifar-10-batches-py` (python pickles): train 50,000, test 10,000
    images, uint8 [n, 3, 32, 32]. max_train/max_test: stratified first-N subsample (core.stratified_head)."""
    return _load_cifar("cifar10", root, max_train, max_test)


@loader(sample_shape=lambda **_: (3, 32, 32), max_train=COUNT, max_test=COUNT)
def load_cifar100(root: str = CIFAR_ROOT, max_train: int | None = None, max_test: int | None = None) -> ArrayDataset:
    """CIFAR-100 (the 100 fine labels) from `<root>/cifar-100-python`; as load_cifar10."""
    return _load_cifar("cifar100", root, max_train, max_test)


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        # About 2% of Tiny-ImageNet's JPEGs are greyscale; every sample gets 3 channels.
        pixels = np.asarray(image.convert("RGB"))
    if pixels.shape != (TINY_IMAGENET_SIZE, TINY_IMAGENET_SIZE, 3):
        raise DatasetError(
            f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; Tiny-ImageNet images are "
            f"{TINY_IMAGENET_SIZE}x{TINY_IMAGENET_SIZE}"
        )
    return pixels.transpose(2, 0, 1)


def _read_images(paths: list[Path]) -> np.ndarray:
    out = np.empty((len(paths), 3, TINY_IMAGENET_SIZE, TINY_IMAGENET_SIZE), np.uint8)
    for i, path in enumerate(paths):
        out[i] = _read_rgb(path)
    return out


def tiny_imagenet_files(root: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(sorted wnids, train (path, wnid) pairs, val (path, wnid) pairs), in a fixed order."""
    expected = "wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt"
    for relative in ("wnids.txt", "words.txt", "train", "val/val_annotations.txt"):
        if not (root / relative).exists():
            raise missing_data_error(
                "Tiny-ImageNet", root, root / relative, f"{expected} under {root}", "tiny_imagenet", TINY_IMAGENET_ROOT
            )
    wnids = sorted((root / "wnids.txt").read_text().split())
    train = []
    for wnid in wnids:
        images = sorted((root / "train" / wnid / "images").glob("*.JPEG"))
        if not images:
            raise DatasetError(f"Tiny-ImageNet class {wnid} has no images under {root / 'train' / wnid / 'images'}")
        train += [(path, wnid) for path in images]
    known = set(wnids)
    val = []
    # val_annotations.txt: file name, wnid, then the bounding box, tab-separated.
    for line in (root / "val" / "val_annotations.txt").read_text().splitlines():
        if not line.strip():
            continue
        filename, wnid = line.split("\t")[:2]
        if wnid not in known:
            raise DatasetError(
                f"{root / 'val' / 'val_annotations.txt'} labels {filename} with {wnid}, not in wnids.txt"
            )
        val.append((root / "val" / "images" / filename, wnid))
    return wnids, train, sorted(val)


def _class_words(root: Path, wnids: list[str]) -> list[str]:
    """The first synonym of each wnid in words.txt ("n01443537\tgoldfish, Carassius auratus")."""
    words = {}
    for line in (root / "words.txt").read_text().splitlines():
        wnid, _, synonyms = line.partition("\t")
        words[wnid] = synonyms.split(",")[0].strip()
    return [words.get(wnid) or wnid for wnid in wnids]


@loader(sample_shape=lambda **_: (3, TINY_IMAGENET_SIZE, TINY_IMAGENET_SIZE), max_train=COUNT, max_test=COUNT)
def load_tiny_imagenet(
    root: str = TINY_IMAGENET_ROOT, max_train: int | None = None, max_test: int | None = None
) -> ArrayDataset:
    """Tiny-ImageNet-200 from its standard folder: train = train/ (100,000 images), test = val/
    (10,000; the official test split has no labels). uint8 [n, 3, 64, 64]; labels index the
    sorted wnids. max_train/max_test: stratified first-N subsample, taken before reading."""
    root_path = Path(root)
    wnids, train, val = tiny_imagenet_files(root_path)
    index = {wnid: i for i, wnid in enumerate(wnids)}
    splits = []
    for files, max_n in ((train, max_train), (val, max_test)):
        labels = np.array([index[wnid] for _, wnid in files], np.int64)
        keep = stratified_head(labels, max_n)
        splits.append((_read_images([files[i][0] for i in keep]), labels[keep]))
    (x_train, y_train), (x_test, y_test) = splits
    mean, std = channel_mean_std(x_train)
    return ArrayDataset(
        x_train,
        y_train,
        x_test,
        y_test,
        len(wnids),
        "image",
        mean=mean,
        std=std,
        class_names=_class_words(root_path, wnids),
    )
