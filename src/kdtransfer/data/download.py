"""Downloads for rule download_dataset: run by hand on a machine with internet, never by training.

Each download fills the loader's default root below `data_dir` (resources/data) and returns
what it fetched (URL, size, checksums) for the rule's marker file. Archives are verified
against published checksums where one exists (torchvision checks CIFAR's MD5s itself),
unpacked into a temporary folder and renamed into place, so a folder that exists is complete;
the archives are deleted afterwards.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import tarfile
import urllib.request
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from kdtransfer.data import DOWNLOAD_NAMES
from kdtransfer.data.audio import SPEECH_COMMANDS_ROOT
from kdtransfer.data.core import DatasetError
from kdtransfer.data.text import NAMES_CSV_PATH
from kdtransfer.data.vision import CIFAR_ROOT, TINY_IMAGENET_ROOT, torchvision_cifar_class
from kdtransfer.io.atomic import atomic_path
from kdtransfer.paths import DATA_DIR

log = logging.getLogger("kdtransfer.download")

# Values of rule download_dataset's {name} wildcard.
DOWNLOADS = tuple(DOWNLOAD_NAMES.values())

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
SPEECH_COMMANDS_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"  # torchaudio's
# The PyTorch char-RNN tutorial's data.zip (data/names/<Language>.txt); no published checksum,
# so its SHA-256 is recorded in the marker file instead.
NAMES_URL = "https://download.pytorch.org/tutorial/data.zip"
_NAMES_MEMBER = re.compile(r"^data/names/([^/]+)\.txt$")


def _below(data_dir: str | os.PathLike, default_path: str) -> Path:
    """The loader's default path, moved from resources/data to `data_dir`."""
    return Path(data_dir) / Path(default_path).relative_to(DATA_DIR)


def fetch(
    url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None, timeout: float = 60
) -> dict:
    """Stream `url` to `dest` (via dest.part), checking the digests given; return url, bytes, digests."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    digests = {"md5": hashlib.md5(usedforsecurity=False), "sha256": hashlib.sha256()}
    size, next_report = 0, 0
    log.info("downloading %s -> %s", url, dest)
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as fh:
        total = int(response.headers.get("Content-Length") or 0)
        while chunk := response.read(1 << 20):
            fh.write(chunk)
            for digest in digests.values():
                digest.update(chunk)
            size += len(chunk)
            if size >= next_report:
                log.info("%s: %.0f MB%s", dest.name, size / 1e6, f" of {total / 1e6:.0f} MB" if total else "")
                next_report += 100_000_000
    got = {name: digest.hexdigest() for name, digest in digests.items()}
    for name, expected in (("md5", md5), ("sha256", sha256)):
        if expected is not None and got[name] != expected:
            partial.unlink()
            raise DatasetError(
                f"{url}: {name} {got[name]} differs from the published {expected}: the download is "
                "corrupt or the file changed upstream; nothing was kept"
            )
    os.replace(partial, dest)
    return {"url": url, "bytes": size, **got}


def _unpack_into(archive: Path, destination: Path, archive_folder: str | None, must_contain: str) -> None:
    """Unpack `archive` (zip or tar.gz) so that its `archive_folder` (None: its top level)
    becomes `destination`, which must then contain `must_contain`."""
    staging = destination.with_name(f".{destination.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)  # zipfile drops absolute paths and "..": members stay inside
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(staging, filter="data")  # refuses links and paths leaving `staging`
        unpacked = staging / archive_folder if archive_folder else staging
        if not (unpacked / must_contain).exists():
            raise DatasetError(
                f"{archive} does not contain {archive_folder or '.'}/{must_contain}: not the expected archive"
            )
        os.replace(unpacked, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download_and_unpack(
    url: str,
    archive: Path,
    destination: Path,
    archive_folder: str | None,
    must_contain: str,
    md5: str | None = None,
    sha256: str | None = None,
) -> dict:
    if (destination / must_contain).exists():
        log.info("%s already present; nothing downloaded", destination)
        return {"already_present": True}
    if destination.exists():
        raise DatasetError(f"{destination} exists but has no {must_contain}: an incomplete copy? Remove it and rerun")
    info = fetch(url, archive, md5=md5, sha256=sha256)
    log.info("unpacking %s -> %s", archive, destination)
    _unpack_into(archive, destination, archive_folder, must_contain)
    archive.unlink()
    return info


def download_cifar(name: str, data_dir: str | os.PathLike = DATA_DIR) -> dict:
    """torchvision's own download: it checks the archive's and then every file's MD5."""
    root = _below(data_dir, CIFAR_ROOT)
    cls = torchvision_cifar_class(name, verify_md5=True)
    cls(str(root), train=True, download=True)  # verifies the train, test and meta files
    archive = root / cls.filename
    if archive.exists():
        archive.unlink()
    return {"url": cls.url, "md5": cls.tgz_md5}


def download_tiny_imagenet(
    data_dir: str | os.PathLike = DATA_DIR, url: str = TINY_IMAGENET_URL, md5: str | None = TINY_IMAGENET_MD5
) -> dict:
    destination = _below(data_dir, TINY_IMAGENET_ROOT)
    return _download_and_unpack(
        url,
        destination.with_name("tiny-imagenet-200.zip"),
        destination,
        "tiny-imagenet-200",
        "val/val_annotations.txt",
        md5=md5,
    )


def download_speech_commands(
    data_dir: str | os.PathLike = DATA_DIR, url: str = SPEECH_COMMANDS_URL, sha256: str | None = SPEECH_COMMANDS_SHA256
) -> dict:
    destination = _below(data_dir, SPEECH_COMMANDS_ROOT)
    # The archive has no top-level folder: its words and lists unpack straight into `destination`.
    return _download_and_unpack(
        url, destination.parent / "speech_commands_v0.02.tar.gz", destination, None, "testing_list.txt", sha256=sha256
    )


def names_zip_to_csv(zip_path: str | os.PathLike, csv_path: str | os.PathLike) -> int:
    """The tutorial's data/names/<Language>.txt files (one name per line) -> CSV `name,label`,
    languages in sorted order, names in file order. Returns the number of rows."""
    with zipfile.ZipFile(zip_path) as zf:
        members = sorted(
            (m.group(1), info.filename) for info in zf.infolist() if (m := _NAMES_MEMBER.match(info.filename))
        )
        if not members:
            raise DatasetError(f"{zip_path} has no data/names/<Language>.txt files")
        rows = []
        for language, member in members:
            for line in zf.read(member).decode("utf-8").splitlines():
                if line.strip():
                    rows.append((line.strip(), language))
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["name", "label"])
            writer.writerows(rows)
    return len(rows)


def download_names(data_dir: str | os.PathLike = DATA_DIR, url: str = NAMES_URL) -> dict:
    csv_path = _below(data_dir, NAMES_CSV_PATH)
    if csv_path.exists():
        log.info("%s already present; nothing downloaded", csv_path)
        return {"already_present": True}
    archive = csv_path.with_name("names_tutorial_data.zip")
    info = fetch(url, archive)
    info["rows"] = names_zip_to_csv(archive, csv_path)
    archive.unlink()
    return info


def download(name: str, data_dir: str | os.PathLike = DATA_DIR) -> dict:
    """Fetch one dataset (a value of DOWNLOADS); return what the marker file records."""
    if name in ("cifar10", "cifar100"):
        info, destination = download_cifar(name, data_dir), _below(data_dir, CIFAR_ROOT)
    elif name == "tiny_imagenet":
        info, destination = download_tiny_imagenet(data_dir), _below(data_dir, TINY_IMAGENET_ROOT)
    elif name == "speech_commands":
        info, destination = download_speech_commands(data_dir), _below(data_dir, SPEECH_COMMANDS_ROOT)
    elif name == "names":
        info, destination = download_names(data_dir), _below(data_dir, NAMES_CSV_PATH)
    else:
        raise DatasetError(f"nothing to download for {name!r}; valid: {', '.join(DOWNLOADS)}")
    return {
        "dataset": name,
        "destination": str(destination),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **info,
    }
