"""The paper-scale dataset loaders, on small files the tests write in each dataset's real format.

No test touches the network: downloads are exercised through file:// URLs on local archives.
"""

import csv
import hashlib
import inspect
import json
import pickle
import re
import struct
import subprocess
import sys
import tarfile
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, copy_workflow, snakemake

from kdtransfer.data import (
    DATASETS,
    DOWNLOAD_NAMES,
    ArrayDataset,
    DatasetError,
    audio,
    download,
    load_arrays,
    load_dataset,
    loader_options,
    save_arrays,
)
from kdtransfer.data.core import channel_mean_std, stratified_head
from kdtransfer.data.text import encode_names
from kdtransfer.options import matches, signature_options

# ---------------------------------------------------------------------------------------------
# Writers of the real on-disk formats


class Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 `str` (BINSTRING opcodes), as the official CIFAR files were
    written by Python 2: loaded with encoding="bytes" their keys are b"data", b"labels"; with
    encoding="latin1" (what torchvision does) they are "data", "labels"."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str


def write_python2_pickle(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        Python2Pickler(fh, protocol=2).dump(obj)


def cifar_batch(rng, n, num_classes, label_key, first_label=0):
    labels = [int((first_label + i) % num_classes) for i in range(n)]
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # rows: 1024 R, 1024 G, 1024 B values
    batch = {
        b"batch_label": b"a batch",
        label_key: labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [label // 5 for label in labels]
    return batch


def write_cifar10(root: Path, train_per_batch=6, n_test=10):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = [cifar_batch(rng, train_per_batch, 10, b"labels", first_label=k * train_per_batch) for k in range(5)]
    for i, batch in enumerate(batches, start=1):
        write_python2_pickle(folder / f"data_batch_{i}", batch)
    test = cifar_batch(rng, n_test, 10, b"labels")
    write_python2_pickle(folder / "test_batch", test)
    names = [f"class{i}".encode() for i in range(10)]
    write_python2_pickle(
        folder / "batches.meta", {b"num_cases_per_batch": train_per_batch, b"label_names": names, b"num_vis": 3072}
    )
    return batches, test


def write_cifar100(root: Path, n_train=30, n_test=20):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    train, test = cifar_batch(rng, n_train, 100, b"fine_labels"), cifar_batch(rng, n_test, 100, b"fine_labels")
    write_python2_pickle(folder / "train", train)
    write_python2_pickle(folder / "test", test)
    write_python2_pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return train, test


# wnids.txt is not sorted in the official file either; labels follow the sorted wnids.
TINY_WNIDS = ["n03000000", "n01000000", "n02000000"]
TINY_COLOURS = {"n01000000": (200, 30, 30), "n02000000": (30, 200, 30), "n03000000": (30, 30, 200)}


def write_tiny_imagenet(root: Path, train_per_class=4, val_per_class=2):
    from PIL import Image

    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    words = {
        "n01000000": "goldfish, Carassius auratus",
        "n02000000": "tabby, tabby cat",
        "n03000000": "sports car",
        "n09999999": "not in this set",
    }
    (root / "words.txt").write_text("".join(f"{w}\t{t}\n" for w, t in sorted(words.items())))
    for wnid in TINY_WNIDS:
        images = root / "train" / wnid / "images"
        images.mkdir(parents=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(train_per_class):
            Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(images / f"{wnid}_{i}.JPEG", quality=95)
    # One greyscale JPEG, as in the real set: it must come out with 3 equal channels.
    Image.new("L", (64, 64), 128).save(root / "train" / "n02000000" / "images" / "n02000000_grey.JPEG", quality=95)
    (root / "val" / "images").mkdir(parents=True)
    lines, k = [], 0
    for wnid in TINY_WNIDS:
        for _ in range(val_per_class):
            name = f"val_{k}.JPEG"
            Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(root / "val" / "images" / name, quality=95)
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
            k += 1
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (root / "test" / "images").mkdir(parents=True)  # unlabelled, never read


def write_wav(path: Path, samples: np.ndarray, rate=16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def tone(hz: float, seconds: float, rate=16000, amplitude=0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


SPEECH_TONES = {"yes": 500.0, "no": 2000.0, "up": 4000.0, "down": 1000.0}


def write_speech_commands(root: Path):
    # Clip lengths around 1 s, to exercise padding and trimming.
    for word, hz in SPEECH_TONES.items():
        for i, seconds in enumerate((1.0, 0.6, 1.2, 0.9, 1.0)):
            write_wav(root / word / f"spk{i}_nohash_0.wav", tone(hz, seconds))
    write_wav(root / "_background_noise_" / "white_noise.wav", tone(100.0, 3.0))
    (root / "validation_list.txt").write_text("yes/spk0_nohash_0.wav\nno/spk0_nohash_0.wav\n")
    (root / "testing_list.txt").write_text(
        "yes/spk1_nohash_0.wav\nno/spk1_nohash_0.wav\nup/spk1_nohash_0.wav\ndown/spk1_nohash_0.wav\n"
    )


NAMES = {
    "English": ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Thomas", "Roberts", "Walker"],
    "French": ["Dubois", "Lefèvre", "Moreau", "Laurent", "Simon", "Michel", "Garcia", "Bernard", "Durand", "Petit"],
    "Japanese": [
        "Sato",
        "Suzuki",
        "Takahashi",
        "Tanaka",
        "Watanabe",
        "Ito",
        "Yamamoto",
        "Nakamura",
        "Kobayashi",
        "Kato",
    ],
}


def write_names_csv(path: Path, extra_rows=()):
    rows = [(n, lang) for lang, names in NAMES.items() for n in names] + list(extra_rows)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["surname", "language"])
        writer.writerows(rows)


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")
    cifar10 = write_cifar10(base / "cifar")
    cifar100 = write_cifar100(base / "cifar")
    write_tiny_imagenet(base / "tiny-imagenet-200")
    write_speech_commands(base / "speech")
    write_names_csv(base / "names.csv", extra_rows=[("Smith", "English"), ("Abel", "French"), ("Abel", "English")])
    return {"base": base, "cifar10": cifar10, "cifar100": cifar100}


def expected_message(what, missing, expected, name, default_root):
    return (
        f"{what} not found: {missing} does not exist (expected {expected}). Download it on a machine with "
        f"internet access (e.g. a login node): `snakemake --cores 1 resources/data/{name}.done` (rule "
        f"download_dataset; `snakemake --cores 1 download_data --configfile <experiment>.yaml` fetches every "
        f"dataset of an experiment), which "
        f"fills {default_root}."
    )


# ---------------------------------------------------------------------------------------------
# Registry and container


def test_importing_the_registry_does_not_import_torch():
    code = (
        "import sys, kdtransfer.data; heavy = {'torch', 'torchvision', 'PIL', 'scipy', 'sklearn'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name,modality", [("digits", "image"), ("mnist1d", "signal"), ("mnist_subset", "image")])
def test_embedded_loaders_record_their_modality(name, modality):
    # The file-based loaders' modalities are checked in their own tests below.
    assert load_dataset(name).modality == modality


def test_unknown_loader_options_are_named():
    with pytest.raises(
        DatasetError,
        match=r"unknown option 'max_trian' at load_dataset\('cifar10'\) \(did you mean 'max_train'\?\); "
        r"options of loader cifar10: root, max_train, max_test",
    ):
        load_dataset("cifar10", max_trian=10)


@pytest.mark.parametrize(
    "loader,options,needle",
    [
        # A loader that swallowed unknown options (**_) would train on unchanged data.
        (
            "digits",
            {"test_fractio": 0.2},
            "unknown option 'test_fractio' at load_dataset('digits') (did you mean 'test_fraction'?)",
        ),
        (
            "mnist1d",
            {"num_sample": 100},
            "unknown option 'num_sample' at load_dataset('mnist1d') (did you mean 'num_samples'?)",
        ),
        (
            "mnist_subset",
            {"test_fraction": "half"},
            "load_dataset('mnist_subset').test_fraction: expected a number, got 'half'",
        ),
        ("cifar10", {"max_train": 10.5}, "load_dataset('cifar10').max_train: expected an integer or null, got 10.5"),
    ],
)
def test_loaders_reject_options_they_do_not_take(loader, options, needle):
    with pytest.raises(DatasetError) as info:
        load_dataset(loader, **options)
    assert needle in str(info.value)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_loader_declares_its_options_with_types(name):
    """A loader's keyword parameters are the config's options for it (no **kwargs that would
    swallow a typo); each has a type the config check understands and a default of that type."""
    parameters = inspect.signature(DATASETS[name]).parameters.values()
    declared = loader_options(name)
    assert list(declared) == [p.name for p in parameters]
    for p in parameters:
        assert matches(p.default, declared[p.name]), f"{name}.{p.name}: default {p.default!r} is not {declared[p.name]}"


def test_a_loader_without_types_or_with_kwargs_is_refused():
    def untyped(root="x"):
        pass

    def swallowing(root: str = "x", **_):
        pass

    with pytest.raises(TypeError, match="parameter 'root': no type annotation"):
        signature_options(untyped)
    with pytest.raises(TypeError, match="parameter '_' must be a keyword with a default"):
        signature_options(swallowing)


def _prepared(tmp_path) -> Path:
    path = tmp_path / "results" / "data" / "digits.npz"
    path.parent.mkdir(parents=True)
    save_arrays(load_dataset("digits"), path)
    return path


def _flip_a_byte(raw: bytes) -> bytes:
    data = bytearray(raw)
    data[len(data) // 3] ^= 0xFF
    return bytes(data)


DAMAGES = {
    "cut short": lambda raw: raw[: len(raw) // 2],
    "empty": lambda raw: b"",
    "not an npz": lambda raw: b"<html>502 Bad Gateway</html>" * 10,
    "one byte flipped": _flip_a_byte,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_corrupt_prepared_dataset_names_the_file_and_the_fix(tmp_path, damage):
    path = _prepared(tmp_path)
    path.write_bytes(DAMAGES[damage](path.read_bytes()))
    with pytest.raises(DatasetError) as info:
        load_arrays(path)
    message = str(info.value)
    assert f"prepared dataset {path} is unreadable" in message
    assert "Rule prepare_data remakes it" in message
    assert f"`rm {path}`" in message and f"`--forcerun {path}`" in message


def test_a_prepared_dataset_without_a_field_is_reported_as_unreadable(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((2, 3), np.float32))
    with pytest.raises(
        DatasetError, match="d.npz is unreadable \\(KeyError: 'y_train is not a file in the archive'\\)"
    ):
        load_arrays(path)


def test_a_corrupt_prepared_dataset_is_logged_without_a_traceback(tmp_path):
    """What a training job's log shows: kdtransfer.io.runlog writes kdtransfer errors as one line."""
    path = _prepared(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    log = tmp_path / "job.log"
    code = (
        "import sys; from kdtransfer.io.runlog import log_to; log_to(sys.argv[1]); "
        "from kdtransfer.data import load_arrays; load_arrays(sys.argv[2])"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(log), str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    text = log.read_text()
    assert f"DatasetError: prepared dataset {path} is unreadable" in text
    assert "Traceback" not in text and "Traceback" not in proc.stderr


@pytest.mark.parametrize("loader", sorted(DOWNLOAD_NAMES))
def test_missing_data_names_the_default_path_and_the_download_of_that_loader(loader, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset(loader)
    message = str(info.value)
    assert " not found: resources/data/" in message
    assert f"`snakemake --cores 1 resources/data/{DOWNLOAD_NAMES[loader]}.done` (rule download_dataset;" in message


def test_stratified_head_keeps_class_shares_and_takes_each_class_first_samples():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    idx = stratified_head(labels, 5)
    assert len(idx) == 5 and list(idx) == sorted(idx)
    assert np.bincount(labels[idx], minlength=3).tolist() == [3, 2, 0]  # 3, 1.5, 0.5: the largest remainder wins
    assert list(idx) == [0, 1, 2, 6, 7]
    assert list(stratified_head(labels, None)) == list(range(10))
    with pytest.raises(DatasetError, match="positive integer"):
        stratified_head(labels, 0)


def test_channel_mean_std_is_exact():
    x = np.random.default_rng(0).integers(0, 256, (50, 3, 5, 7), dtype=np.uint8)
    mean, std = channel_mean_std(x, chunk=7)
    reference = x.transpose(1, 0, 2, 3).reshape(3, -1) / 255.0
    np.testing.assert_allclose(mean, reference.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, reference.std(axis=1), rtol=1e-5)
    assert mean.dtype == std.dtype == np.float32


def test_save_load_round_trips_every_field_and_reads_older_files(tmp_path):
    rng = np.random.default_rng(0)
    images = ArrayDataset(
        rng.integers(0, 256, (4, 3, 2, 2), dtype=np.uint8),
        np.arange(4),
        rng.integers(0, 256, (2, 3, 2, 2), dtype=np.uint8),
        np.arange(2),
        4,
        "image",
        mean=[0.1, 0.2, 0.3],
        std=[0.4, 0.5, 0.6],
        class_names=["a", "bé", "c", "d"],
    )
    tokens = ArrayDataset(
        np.arange(12).reshape(3, 4), np.arange(3), np.arange(8).reshape(2, 4), np.arange(2), 3, "text", vocab_size=12
    )
    for ds in (images, tokens):
        save_arrays(ds, tmp_path / "d.npz")
        back = load_arrays(tmp_path / "d.npz")
        for field in ("x_train", "y_train", "x_test", "y_test"):
            assert getattr(back, field).dtype == getattr(ds, field).dtype
            np.testing.assert_array_equal(getattr(back, field), getattr(ds, field))
        assert (back.num_classes, back.modality, back.vocab_size, back.class_names) == (
            ds.num_classes,
            ds.modality,
            ds.vocab_size,
            ds.class_names,
        )
        for field in ("mean", "std"):
            assert (getattr(back, field) is None) == (getattr(ds, field) is None)
        assert back.input_shape == ds.input_shape
    np.testing.assert_array_equal(load_arrays(tmp_path / "d.npz").x_test, tokens.x_test)
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]  # no temporary left behind
    save_arrays(images, tmp_path / "d.npz")
    np.testing.assert_array_equal(load_arrays(tmp_path / "d.npz").mean, np.float32([0.1, 0.2, 0.3]))
    # A file from before mean/std/vocab_size/class_names existed.
    np.savez(
        tmp_path / "old.npz",
        x_train=np.zeros((2, 3), np.float32),
        y_train=np.arange(2),
        x_test=np.zeros((1, 3), np.float32),
        y_test=np.zeros(1, np.int64),
        num_classes=np.int64(2),
        modality=np.str_("signal"),
    )
    old = load_arrays(tmp_path / "old.npz")
    assert (old.mean, old.std, old.vocab_size, old.class_names) == (None, None, 0, None)


def test_uint8_images_need_per_channel_statistics(tmp_path):
    x = np.zeros((2, 3, 4, 4), np.uint8)
    with pytest.raises(DatasetError, match="mean and std"):
        save_arrays(ArrayDataset(x, np.zeros(2, np.int64), x, np.zeros(2, np.int64), 2, "image"), tmp_path / "d.npz")
    with pytest.raises(DatasetError, match="one per channel"):
        ArrayDataset(x, np.zeros(2, np.int64), x, np.zeros(2, np.int64), 2, "image", mean=[0.5], std=[0.5])


# ---------------------------------------------------------------------------------------------
# CIFAR


def test_cifar10_reads_the_official_pickles(trees, tmp_path):
    batches, test = trees["cifar10"]
    ds = load_dataset("cifar10", root=str(trees["base"] / "cifar"))
    assert ds.x_train.dtype == ds.x_test.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert (ds.num_classes, ds.modality) == (10, "image")
    assert ds.class_names == [f"class{i}" for i in range(10)]
    train_rows = np.concatenate([b[b"data"] for b in batches])
    # Batches in order 1..5; each row is the R, then G, then B plane.
    np.testing.assert_array_equal(ds.x_train, train_rows.reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(ds.y_train, np.concatenate([b[b"labels"] for b in batches]))
    np.testing.assert_array_equal(ds.x_test, test[b"data"].reshape(-1, 3, 32, 32))
    planes = train_rows.reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1) / 255.0
    np.testing.assert_allclose(ds.mean, planes.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(ds.std, planes.std(axis=1), rtol=1e-5)
    save_arrays(ds, tmp_path / "cifar10.npz")
    back = load_arrays(tmp_path / "cifar10.npz")
    np.testing.assert_array_equal(back.x_train, ds.x_train)
    np.testing.assert_array_equal(back.std, ds.std)


def test_cifar_subsampling_is_stratified_first_n(trees):
    full = load_dataset("cifar10", root=str(trees["base"] / "cifar"))
    small = load_dataset("cifar10", root=str(trees["base"] / "cifar"), max_train=20, max_test=5)
    assert len(small.y_train) == 20 and len(small.y_test) == 5
    assert np.bincount(small.y_train, minlength=10).tolist() == [2] * 10
    keep = stratified_head(full.y_train, 20)
    np.testing.assert_array_equal(small.x_train, full.x_train[keep])
    assert not np.allclose(small.mean, full.mean)  # statistics of the train split actually used


def test_cifar100_uses_the_fine_labels(trees):
    train, test = trees["cifar100"]
    ds = load_dataset("cifar100", root=str(trees["base"] / "cifar"))
    assert ds.x_train.shape == (30, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.num_classes == 100 and ds.class_names[:2] == ["fine0", "fine1"]
    np.testing.assert_array_equal(ds.y_train, train[b"fine_labels"])
    np.testing.assert_array_equal(ds.y_test, test[b"fine_labels"])
    np.testing.assert_array_equal(ds.x_test, test[b"data"].reshape(-1, 3, 32, 32))


def test_missing_cifar_names_path_and_download_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10")
    files = "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta"
    assert str(info.value) == expected_message(
        "CIFAR-10",
        "resources/data/cifar/cifar-10-batches-py/data_batch_1",
        f"cifar-10-batches-py/{{{files}}} under resources/data/cifar",
        "cifar10",
        "resources/data/cifar",
    )
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar100", root="/scratch/cifar")
    message = str(info.value)
    assert "/scratch/cifar/cifar-100-python/train does not exist" in message
    assert "`snakemake --cores 1 resources/data/cifar100.done` (rule download_dataset" in message
    assert message.endswith(
        "The dataset's `root` option is /scratch/cifar: point it at the downloaded copy, or put the files there."
    )


# ---------------------------------------------------------------------------------------------
# Tiny-ImageNet


def test_tiny_imagenet_reads_the_folder_layout(trees, tmp_path):
    root = trees["base"] / "tiny-imagenet-200"
    ds = load_dataset("tiny_imagenet", root=str(root))
    assert ds.x_train.shape == (13, 3, 64, 64) and ds.x_test.shape == (6, 3, 64, 64)
    assert ds.x_train.dtype == np.uint8 and (ds.num_classes, ds.modality) == (3, "image")
    assert ds.class_names == ["goldfish", "tabby", "sports car"]  # sorted wnids, first synonym
    assert ds.y_train.tolist() == [0] * 4 + [1] * 5 + [2] * 4
    assert ds.y_test.tolist() == [2, 2, 0, 0, 1, 1]  # val_0..5 sorted by file name; annotations list n03 first
    sorted_wnids = sorted(TINY_WNIDS)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        for image, label in zip(x, y):
            colour = np.array(TINY_COLOURS[sorted_wnids[label]])[:, None, None]
            if np.ptp(image.reshape(3, -1).mean(axis=1)) > 1:  # the one greyscale image excepted
                assert np.abs(image.astype(int) - colour).max() <= 3
    grey = ds.x_train[4 + 4]  # n02000000_grey sorts after n02000000_0..3
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2]) and abs(int(grey.mean()) - 128) <= 2
    small = load_dataset("tiny_imagenet", root=str(root), max_train=6, max_test=3)
    assert small.y_train.tolist() == [0, 0, 1, 1, 2, 2] and small.y_test.tolist() == [2, 0, 1]
    save_arrays(small, tmp_path / "tiny.npz")
    np.testing.assert_array_equal(load_arrays(tmp_path / "tiny.npz").x_test, small.x_test)


def test_missing_tiny_imagenet_names_path_and_download_rule(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    with pytest.raises(DatasetError) as info:
        load_dataset("tiny_imagenet", root=str(root))
    message = str(info.value)
    assert message.startswith(
        f"Tiny-ImageNet not found: {root}/wnids.txt does not exist (expected wnids.txt, words.txt, "
        f"train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt under {root})."
    )
    assert "`snakemake --cores 1 resources/data/tiny_imagenet.done` (rule download_dataset" in message


# ---------------------------------------------------------------------------------------------
# Log-mel spectrograms (torch only) and SpeechCommands


def test_mel_scale_and_filterbank_triangles():
    assert abs(float(audio.hz_to_mel(1000.0)) - 1000.0) < 0.1
    np.testing.assert_allclose(audio.mel_to_hz(audio.hz_to_mel([0.0, 440.0, 8000.0])), [0.0, 440.0, 8000.0], atol=1e-9)
    # A fine frequency grid, so each triangle's peak falls (almost) on a bin.
    n_freqs, rate, n_mels = 8001, 16000, 10
    bank = audio.mel_filterbank(n_freqs, rate, n_mels)
    hz = np.linspace(0, rate / 2, n_freqs)
    edges = audio.mel_to_hz(np.linspace(0, audio.hz_to_mel(rate / 2), n_mels + 2))
    assert bank.shape == (n_mels, n_freqs) and bank.dtype == np.float32
    for m, row in enumerate(bank):
        support = hz[row > 0]
        assert edges[m] <= support.min() and support.max() <= edges[m + 2]  # zero outside its two neighbours' peaks
        assert abs(hz[np.argmax(row)] - edges[m + 1]) <= 1.0 and row.max() > 0.99  # peak 1 at its centre
        rising, falling = row[(hz > edges[m]) & (hz <= edges[m + 1])], row[(hz >= edges[m + 1]) & (hz < edges[m + 2])]
        assert np.all(np.diff(rising) > 0) and np.all(np.diff(falling) < 0)
        # Linear in Hz on each side: the midpoint of the rising edge is at one half.
        assert abs(np.interp((edges[m] + edges[m + 1]) / 2, hz, row) - 0.5) < 1e-3
    # Neighbouring triangles sum to 1 between the first and the last peak.
    inner = (hz >= edges[1]) & (hz <= edges[-2])
    np.testing.assert_allclose(bank[:, inner].sum(axis=0), 1.0, atol=1e-4)
    widths = np.diff(audio.hz_to_mel(edges))
    np.testing.assert_allclose(widths, widths[0])  # equal spacing on the mel scale
    with pytest.raises(DatasetError, match="cover no frequency bin"):
        audio.mel_filterbank(257, 16000, 128)


def test_log_mel_of_a_pure_tone_peaks_in_the_right_band_with_101_frames():
    import torch

    rate, n_mels = 16000, 40
    assert audio.stft_sizes(rate, 25, 10) == (400, 160, 512)
    assert audio.frame_count(rate, 160) == 101
    edges = audio.mel_to_hz(np.linspace(0, audio.hz_to_mel(rate / 2), n_mels + 2))
    waves = torch.from_numpy(np.stack([tone(hz, 1.0) for hz in (300.0, 1000.0, 3000.0, 6000.0)]) / 32768.0)
    spec = audio.log_mel_spectrogram(waves, rate, n_mels, 25.0, 10.0)
    assert spec.shape == (4, n_mels, 101) and spec.dtype == torch.float32
    for hz, s in zip((300.0, 1000.0, 3000.0, 6000.0), spec):
        assert int(s.mean(dim=1).argmax()) == int(np.argmin(np.abs(edges[1:-1] - hz)))
    silence = audio.log_mel_spectrogram(torch.zeros(1, rate), rate, n_mels)
    torch.testing.assert_close(silence, torch.full_like(silence, float(np.log(audio.LOG_FLOOR))))


def test_read_pcm16_checks_the_format(tmp_path):
    samples = tone(440.0, 0.1)
    write_wav(tmp_path / "a.wav", samples)
    np.testing.assert_array_equal(audio.read_pcm16(tmp_path / "a.wav", 16000), samples)
    with pytest.raises(DatasetError, match="expected mono 16-bit PCM at 8000 Hz"):
        audio.read_pcm16(tmp_path / "a.wav", 8000)


def test_speech_commands_splits_by_the_official_lists(trees):
    root = trees["base"] / "speech"
    train, test = audio.speech_commands_files(root, ["no", "up", "yes"])
    assert test == [("no/spk1_nohash_0.wav", 0), ("up/spk1_nohash_0.wav", 1), ("yes/spk1_nohash_0.wav", 2)]
    listed = set((root / "validation_list.txt").read_text().split()) | set(
        (root / "testing_list.txt").read_text().split()
    )
    assert not listed & {path for path, _ in train}
    assert len(train) == 3 * 5 - 2 - 3  # five clips a word, minus the validation and test clips
    assert all(path.split("/")[0] in ("no", "up", "yes") for path, _ in train)


def test_speech_commands_log_mels(trees, tmp_path):
    root = str(trees["base"] / "speech")
    ds = load_dataset("speech_commands", root=root, classes=["yes", "up", "no"])
    assert ds.x_train.shape == (10, 1, 40, 101) and ds.x_test.shape == (3, 1, 40, 101)
    assert ds.x_train.dtype == np.float32 and (ds.num_classes, ds.modality) == (3, "audio")
    assert ds.class_names == ["no", "up", "yes"] and ds.mean is None
    assert ds.y_train.tolist() == [0] * 3 + [1] * 4 + [2] * 3 and ds.y_test.tolist() == [0, 1, 2]
    assert abs(float(ds.x_train.mean())) < 1e-5 and abs(float(ds.x_train.std()) - 1) < 1e-4  # train statistics
    # Each word is a tone: its band is the loudest in the first, never padded, 0.6 s.
    edges = audio.mel_to_hz(np.linspace(0, audio.hz_to_mel(8000), 42))
    for x, y in zip(ds.x_test, ds.y_test):
        hz = SPEECH_TONES[ds.class_names[y]]
        assert int(x[0, :, :60].mean(axis=1).argmax()) == int(np.argmin(np.abs(edges[1:-1] - hz)))
    # The test clips last 0.6 s: zero padding makes the frames after it silent, hence constant.
    assert np.all(ds.x_test[:, :, :, 70:] == ds.x_test[0, 0, 0, 70])
    again = load_dataset("speech_commands", root=root, classes=["no", "yes", "up"])
    np.testing.assert_array_equal(again.x_train, ds.x_train)  # deterministic, word order irrelevant
    save_arrays(ds, tmp_path / "speech.npz")
    np.testing.assert_array_equal(load_arrays(tmp_path / "speech.npz").x_test, ds.x_test)
    small = load_dataset("speech_commands", root=root, classes=["yes", "up", "no"], max_train=4, n_mels=20)
    assert small.x_train.shape == (4, 1, 20, 101) and np.bincount(small.y_train).tolist() == [1, 2, 1]


def test_speech_commands_classes_are_checked(trees, tmp_path):
    root = trees["base"] / "speech"
    with pytest.raises(DatasetError) as info:
        load_dataset("speech_commands", root=str(root))  # "all": 35 words, but the tree has 4
    assert f"SpeechCommands v0.02 not found: {root}/backward does not exist" in str(info.value)
    with pytest.raises(DatasetError, match="unknown or repeated words \\['yess'\\]"):
        load_dataset("speech_commands", root=str(root), classes=["yes", "yess"])
    with pytest.raises(DatasetError) as info:
        load_dataset("speech_commands", root=str(tmp_path / "nowhere"), classes=["yes"])
    assert "testing_list.txt does not exist" in str(info.value)
    assert "`snakemake --cores 1 resources/data/speech_commands.done` (rule download_dataset" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Names


def test_names_csv_tokens_labels_and_split(trees, tmp_path):
    path = str(trees["base"] / "names.csv")
    ds = load_dataset("names_csv", path=path, name_column="surname", label_column="language", max_len=8)
    assert ds.class_names == ["English", "French", "Japanese"] and (ds.num_classes, ds.modality) == (3, "text")
    # 33 rows: the repeated (Smith, English) is dropped; Abel stays once per language.
    assert len(ds.y_train) + len(ds.y_test) == 32
    assert ds.x_train.dtype == np.int64 and ds.x_train.shape[1] == 8
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]  # test_fraction 0.2 of each class
    # The vocabulary is the train split's characters: no unknown token there, and the last id is used.
    assert 1 not in ds.x_train and ds.vocab_size == ds.x_train.max() + 1 and ds.x_test.max() < ds.vocab_size
    assert (ds.x_train != 0).all(axis=1).any()  # names longer than max_len are cut, not dropped
    again = load_dataset("names_csv", path=path, name_column="surname", label_column="language", max_len=8)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    other = load_dataset(
        "names_csv", path=path, name_column="surname", label_column="language", max_len=8, split_seed=1
    )
    assert not np.array_equal(other.x_test, ds.x_test)
    save_arrays(ds, tmp_path / "names.npz")
    back = load_arrays(tmp_path / "names.npz")
    assert back.vocab_size == ds.vocab_size and back.class_names == ds.class_names
    np.testing.assert_array_equal(back.x_train, ds.x_train)
    with pytest.raises(DatasetError, match="has no column 'name'; its columns: surname, language"):
        load_dataset("names_csv", path=path)


def test_encode_names_pads_truncates_and_marks_unknown_characters():
    vocabulary = {"a": 2, "b": 3, "é": 4}
    tokens = encode_names(["ab", "abéabé", "xa", ""], vocabulary, max_len=4)
    assert tokens.tolist() == [[2, 3, 0, 0], [2, 3, 4, 2], [1, 2, 0, 0], [0, 0, 0, 0]]


def test_missing_names_csv_names_path_and_download_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as info:
        load_dataset("names_csv")
    assert str(info.value) == expected_message(
        "Names CSV",
        "resources/data/names.csv",
        "a UTF-8 CSV with columns name,label",
        "names",
        "resources/data/names.csv",
    )


# ---------------------------------------------------------------------------------------------
# Downloads, offline: local archives through file:// URLs


def zip_folder(folder: Path, archive: Path, prefix: str) -> None:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{prefix}/{path.relative_to(folder)}")


def digest(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


# The downloads go to resources/data (relative to the working directory), and the loaders
# then find the data at their default roots: the tests load without a root option.


def test_names_zip_converts_to_the_csv_the_loader_reads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/eng-fra.txt", "Go.\tVa !\n")
        zf.writestr("data/names/French.txt", "Dubois\nLefèvre\nMoreau\nLaurent\nSimon\n")
        zf.writestr("data/names/English.txt", "Smith\nJones \n\nBrown\nTaylor\nWilson\n")
    info = download.download_names("resources/data", url=archive.as_uri())
    assert info["rows"] == 10 and info["sha256"] == digest(archive, "sha256")
    lines = Path("resources/data/names.csv").read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["name,label", "Smith,English", "Jones,English"] and "Lefèvre,French" in lines
    assert sorted(p.name for p in Path("resources/data").iterdir()) == ["names.csv"]  # the archive is removed
    ds = load_dataset("names_csv")
    assert ds.class_names == ["English", "French"] and len(ds.y_train) + len(ds.y_test) == 10
    assert download.download_names("resources/data", url="file:///nonexistent.zip") == {"already_present": True}


def test_tiny_imagenet_download_verifies_and_unpacks(trees, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "tiny.zip"
    zip_folder(trees["base"] / "tiny-imagenet-200", archive, "tiny-imagenet-200")
    data_dir = Path("resources/data")
    with pytest.raises(DatasetError, match="md5 .* differs from the published 0{32}"):
        download.download_tiny_imagenet(data_dir, url=archive.as_uri(), md5="0" * 32)
    assert not any(data_dir.iterdir())  # nothing kept from a corrupt download
    info = download.download_tiny_imagenet(data_dir, url=archive.as_uri(), md5=digest(archive, "md5"))
    assert info["md5"] == digest(archive, "md5") and info["bytes"] == archive.stat().st_size
    assert sorted(p.name for p in data_dir.iterdir()) == ["tiny-imagenet-200"]
    assert load_dataset("tiny_imagenet").x_train.shape == (13, 3, 64, 64)


def test_speech_commands_download_verifies_and_unpacks(trees, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "speech.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for path in sorted((trees["base"] / "speech").iterdir()):
            tf.add(path, arcname=f"./{path.name}")  # no top-level folder, like the real archive
    with pytest.raises(DatasetError, match="sha256"):
        download.download_speech_commands("resources/data", url=archive.as_uri(), sha256="0" * 64)
    info = download.download_speech_commands("resources/data", url=archive.as_uri(), sha256=digest(archive, "sha256"))
    assert info["sha256"] == digest(archive, "sha256")
    assert sorted(p.name for p in Path("resources/data/SpeechCommands").iterdir()) == ["speech_commands_v0.02"]
    assert load_dataset("speech_commands", classes=["yes", "no"]).x_test.shape == (2, 1, 40, 101)
    again = download.download_speech_commands("resources/data", url="file:///nonexistent.tar.gz")
    assert again == {"already_present": True}


def test_unpacking_rejects_an_archive_without_the_expected_layout(tmp_path):
    archive = tmp_path / "wrong.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("something/else.txt", "")
    with pytest.raises(DatasetError, match="does not contain tiny-imagenet-200/val/val_annotations.txt"):
        download.download_tiny_imagenet(tmp_path / "data", url=archive.as_uri(), md5=None)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["tiny-imagenet-200.zip"]


def test_download_target_runs_only_downloads_and_writes_the_marker(tmp_path):
    workdir = copy_workflow(tmp_path)
    cfg = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    cfg["datasets"]["names"] = {"loader": "names_csv", "options": {"max_len": 12}}
    (workdir / "experiment.yaml").write_text(yaml.safe_dump(cfg))
    # Already on disk, so the real rule runs offline: the download is skipped, the marker says so.
    (workdir / "resources" / "data").mkdir(parents=True)
    write_names_csv(workdir / "resources" / "data" / "names.csv")
    proc = snakemake(workdir, "--cores", "1", "download_data", "--configfile", "experiment.yaml")
    out = proc.stdout + proc.stderr
    rules = {m.group(1) for m in re.finditer(r"^(?:local)?rule (\w+):$", out, re.MULTILINE)}
    assert rules == {"download_dataset", "download_data"}  # downloading prepares and trains nothing
    marker = json.loads((workdir / "resources" / "data" / "names.done").read_text())
    assert (
        marker["dataset"] == "names"
        and marker["already_present"]
        and marker["destination"] == "resources/data/names.csv"
    )
    assert "already present" in (workdir / "logs" / "download_dataset" / "names.log").read_text()


# ---------------------------------------------------------------------------------------------
# What the config knows before a loader runs, and what a prepared dataset must satisfy


def loader_calls(trees):
    """One cheap call of every loader on the test trees: (loader, options)."""
    base = trees["base"]
    return [
        ("digits", {"test_fraction": 0.5}),
        ("mnist1d", {"num_samples": 400}),
        ("mnist_subset", {}),
        ("cifar10", {"root": str(base / "cifar")}),
        ("cifar100", {"root": str(base / "cifar")}),
        ("tiny_imagenet", {"root": str(base / "tiny-imagenet-200")}),
        (
            "speech_commands",
            {"root": str(base / "speech"), "classes": ["yes", "up", "no"], "n_mels": 20, "hop_ms": 20.0},
        ),
        (
            "names_csv",
            {"path": str(base / "names.csv"), "name_column": "surname", "label_column": "language", "max_len": 8},
        ),
    ]


def test_every_loader_declares_the_sample_shape_it_gives(trees):
    from kdtransfer.data import sample_shape

    calls = loader_calls(trees)
    assert sorted(name for name, _ in calls) == sorted(DATASETS)
    for name, options in calls:
        ds = load_dataset(name, **options)
        assert sample_shape(name, options) == (ds.input_shape, ds.vocab_size > 0), name
    # Computed from the options, not a constant: 20 mels at a 20 ms hop give 51 frames.
    assert sample_shape("speech_commands", {"n_mels": 20, "hop_ms": 20.0})[0] == (1, 20, 51)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_loader_option_range_is_checked(name):
    """Each ranged option of each loader refuses a value just outside its range, naming it."""
    from kdtransfer.data import dataset_problem

    ranges = DATASETS[name].option_values
    assert ranges, f"loader {name} declares no option ranges"
    for option, values in ranges.items():
        outside = {"in (0, 1)": 1.0, "at least 1": 0, "at least 0": -1, "in (0, inf)": 0.0}[values.phrase]
        problem = dataset_problem(name, {option: outside}, "datasets.x.options")
        assert problem == f"datasets.x.options.{option}: {outside!r} is not {values.phrase}"
        default = inspect.signature(DATASETS[name]).parameters[option].default
        assert values.problem(default) is None and dataset_problem(name, {option: default}, "x") is None


def digits_like(**changes):
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    fields = dict(
        x_train=x[:12],
        y_train=np.arange(12) % 3,
        x_test=x[12:],
        y_test=np.arange(8) % 3,
        num_classes=3,
        modality="signal",
    )
    fields.update(changes)
    return ArrayDataset(**fields)


def images_like(**changes):
    x = np.zeros((6, 3, 2, 2), np.uint8)
    fields = dict(
        x_train=x,
        y_train=np.arange(6) % 2,
        x_test=x[:2],
        y_test=np.arange(2),
        num_classes=2,
        modality="image",
        mean=[0.5, 0.5, 0.5],
        std=[0.2, 0.2, 0.2],
    )
    fields.update(changes)
    return ArrayDataset(**fields)


def with_nan(x):
    x = x.copy()
    x[3, 1] = np.nan
    return x


BAD_DATASETS = {
    "empty training split": (
        lambda: digits_like(x_train=np.zeros((0, 4), np.float32), y_train=np.zeros(0, np.int64)),
        "its training split is empty (x (0, 4), y (0,))",
    ),
    "empty test split": (
        lambda: digits_like(x_test=np.zeros((0, 4), np.float32), y_test=np.zeros(0, np.int64)),
        "its test split is empty",
    ),
    "label above the classes": (
        lambda: digits_like(y_test=np.array([0, 1, 2, 3, 0, 1, 2, 0])),
        "1 test labels lie outside [0, 3) (e.g. 3)",
    ),
    "negative label": (
        lambda: digits_like(y_train=np.array([0, 1, 2] * 3 + [-1, 0, 1])),
        "1 training labels lie outside [0, 3) (e.g. -1)",
    ),
    "class absent from training": (
        lambda: digits_like(y_train=np.arange(12) % 2),
        "1 of its 3 classes have no training sample (e.g. class 2)",
    ),
    "non-finite mean": (lambda: images_like(mean=[0.5, np.nan, 0.5]), "its normalisation mean is not finite"),
    "zero std": (lambda: images_like(std=[0.2, 0.0, 0.2]), "its normalisation std has a value <= 0"),
    "NaN input": (
        lambda: digits_like(x_train=with_nan(digits_like().x_train)),
        "its training inputs hold 1 NaN or infinite values",
    ),
    "infinite input": (
        lambda: digits_like(x_test=np.full((8, 4), np.inf, np.float32)),
        "its test inputs hold 32 NaN or infinite",
    ),
    "token beyond the vocabulary": (
        lambda: ArrayDataset(
            np.array([[2, 3], [4, 9]]), np.arange(2), np.array([[2, 0]]), np.array([1]), 2, "text", vocab_size=5
        ),
        "token ids at or above its vocabulary size 5",
    ),
}


@pytest.mark.parametrize("case", BAD_DATASETS)
def test_a_dataset_unfit_to_train_on_is_never_written(tmp_path, case):
    make, needle = BAD_DATASETS[case]
    with pytest.raises(DatasetError) as info:
        save_arrays(make(), tmp_path / "d.npz")
    assert needle in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", BAD_DATASETS)
def test_a_prepared_file_unfit_to_train_on_is_refused_when_read(tmp_path, case):
    """As a file written by an older version, which did not check: the reader checks the same."""
    make, needle = BAD_DATASETS[case]
    ds = make()
    path = tmp_path / "old.npz"
    fields = {k: getattr(ds, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    fields.update(
        num_classes=np.int64(ds.num_classes), modality=np.str_(ds.modality), vocab_size=np.int64(ds.vocab_size)
    )
    fields.update({k: np.asarray(getattr(ds, k), np.float32) for k in ("mean", "std") if getattr(ds, k) is not None})
    np.savez(path, **fields)
    with pytest.raises(DatasetError) as info:
        load_arrays(path)
    assert needle in str(info.value) and f"--forcerun {path}" in str(info.value)


def test_prepare_data_stops_on_an_empty_training_split_and_writes_nothing(tmp_path):
    """The new user's case: a test_fraction that leaves no training image. In range, so only the
    prepared data can tell; the job fails naming the dataset and the option, with no file."""
    import logging

    from kdtransfer.data import prepare_dataset

    path = tmp_path / "results" / "data" / "mnist-0123abcd.npz"
    path.parent.mkdir(parents=True)
    with pytest.raises(DatasetError) as info:
        prepare_dataset("mnist", "mnist_subset", {"test_fraction": 0.9999}, str(path), logging.getLogger("test"))
    message = str(info.value)
    assert message.startswith("dataset mnist (loader mnist_subset): prepared dataset not written")
    assert "its training split is empty (x (0, 1, 28, 28)" in message
    assert "change datasets.mnist.options (test_fraction, split_seed; now test_fraction: 0.9999)" in message
    assert list(path.parent.iterdir()) == []
    # Out of range, the loader refuses before reading anything.
    with pytest.raises(DatasetError, match=r"test_fraction: 1.5 is not in \(0, 1\)"):
        prepare_dataset("mnist", "mnist_subset", {"test_fraction": 1.5}, str(path), logging.getLogger("test"))
    assert list(path.parent.iterdir()) == []
