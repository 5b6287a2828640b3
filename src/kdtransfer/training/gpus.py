"""Each training job on a machine with several GPUs claims one of its own.

Snakemake gives a job a count of `gpu` resources, never a device id (its issue #281), and
`torch.device("cuda")` is always GPU 0: without a claim, `--resources gpu=8` would put eight
jobs on one GPU. A job therefore takes an exclusive `flock` on one lock file per GPU in a
node-local folder (KDTRANSFER_GPU_LOCK_DIR, default /tmp/kdtransfer-gpu-locks), before CUDA is
initialised, and then sees only that GPU (CUDA_VISIBLE_DEVICES = the claimed entry). A flock
belongs to the open file: it goes when the job ends, crashes or is killed with SIGKILL, so a
stale claim never blocks a GPU. When every GPU is held, the job waits for one.

- The GPUs claimed among are those CUDA_VISIBLE_DEVICES lists (ids or UUIDs), when the user
  set it; otherwise every GPU of the machine (/proc/driver/nvidia/gpus, else `nvidia-smi -L`).
  Locks are named by those entries: jobs that name one GPU in two spellings (index and UUID)
  do not see each other's claims.
- Under SLURM (SLURM_JOB_ID set) nothing is claimed: SLURM already gives each job its own GPU,
  and with cgroup-constrained devices two jobs on one node may both see theirs as GPU 0.
- KDTRANSFER_CLAIM_GPU=0 turns claiming off (GPUs shared on purpose, e.g. under MPS).
- KDTRANSFER_FAKE_GPUS=N (tests) claims among N pretend GPUs and leaves CUDA alone.

Standard library only: it runs before torch touches CUDA.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, MutableMapping

log = logging.getLogger(__name__)

LOCK_DIR_ENV = "KDTRANSFER_GPU_LOCK_DIR"
DEFAULT_LOCK_DIR = "/tmp/kdtransfer-gpu-locks"  # node-local: a shared filesystem would couple nodes
CLAIM_ENV = "KDTRANSFER_CLAIM_GPU"
FAKE_ENV = "KDTRANSFER_FAKE_GPUS"
POLL_SECONDS = 1.0


@dataclass
class GpuClaim:
    """A GPU held by this process: `device` is its CUDA_VISIBLE_DEVICES entry, `among` the
    entries it was chosen from, `fake` a pretend GPU (tests)."""

    device: str
    among: tuple[str, ...]
    lock_path: Path
    fake: bool
    _fd: int

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = -1
            log.info("released GPU %s", self.device)


def claimable_gpus(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The CUDA_VISIBLE_DEVICES entries a job may claim among: those it lists (CUDA ignores the
    entries after an invalid one such as -1), else every GPU of the machine."""
    fake = environ.get(FAKE_ENV)
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        entries = []
        for entry in (e.strip() for e in listed.split(",")):
            if not entry or entry.startswith("-"):
                break
            entries.append(entry)
        return [e for e in entries if not fake or (e.isdigit() and int(e) < int(fake))]
    if fake:
        return [str(i) for i in range(int(fake))]
    return [str(i) for i in range(_machine_gpu_count())]


def _machine_gpu_count() -> int:
    # Without CUDA: the driver's /proc entries (one folder per GPU), else nvidia-smi, else none.
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return sum(1 for _ in proc.iterdir())
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def _lock_dir(environ: Mapping[str, str]) -> Path:
    folder = Path(environ.get(LOCK_DIR_ENV) or DEFAULT_LOCK_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    try:  # shared by every user of the machine, like /tmp itself
        os.chmod(folder, 0o1777)
    except PermissionError:
        pass
    return folder


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}\n".encode())  # for a curious `cat`; the flock is the claim
    return fd


def claim_gpu(environ: MutableMapping[str, str] = os.environ, poll: float = POLL_SECONDS) -> GpuClaim | None:
    """Claim a free GPU for this process, waiting while all are held; None where there is
    nothing to claim (no GPU, SLURM, claiming turned off). A real claim sets
    CUDA_VISIBLE_DEVICES in `environ` to the claimed entry: call it before CUDA starts."""
    if environ.get(CLAIM_ENV, "1") == "0" or ("SLURM_JOB_ID" in environ and FAKE_ENV not in environ):
        return None
    among = tuple(claimable_gpus(environ))
    if not among:
        return None
    folder = _lock_dir(environ)
    waited = False
    while True:
        for device in among:
            path = folder / f"gpu-{device}.lock"
            fd = _try_lock(path)
            if fd is not None:
                fake = FAKE_ENV in environ
                if not fake:
                    environ["CUDA_VISIBLE_DEVICES"] = device
                log.info("claimed GPU %s of %s%s (lock %s)", device, ",".join(among), " (fake)" if fake else "", path)
                return GpuClaim(device, among, path, fake, fd)
        if not waited:
            log.info("waiting for a GPU: all of %s are held by other jobs (locks in %s)", ",".join(among), folder)
            waited = True
        time.sleep(poll)


@contextmanager
def claimed_gpu(environ: MutableMapping[str, str] = os.environ) -> Iterator[GpuClaim | None]:
    """claim_gpu for the length of a block (a training pack), released at its end."""
    claim = claim_gpu(environ)
    try:
        yield claim
    finally:
        if claim is not None:
            claim.release()
