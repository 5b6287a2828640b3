"""Everything a run continues from after a stop, and the checkpoint files that hold it.

`TrainState` gathers the model, optimizer, lr schedule, objective (hint regressor, noise
generators), every random generator, the epoch's running sums, the history and the position
(epoch, batch) into one state_dict: a run resumed from it, after a SIGKILL or a SIGTERM at any
instant, trains bit-identically to one never stopped (tests/test_faults.py).

`Checkpoint` writes it atomically, keeps the one before as a fallback, and never resumes a
checkpoint of another run specification (its fingerprint, kdtransfer.spec). SIGTERM
(preemption, a time limit) only raises a flag: the loop finishes its step, saves, and stops.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import torch

from kdtransfer import TRAINING_REVISION
from kdtransfer.io.atomic import atomic_path, leftover_temp_files
from kdtransfer.training.objective import objective_state
from kdtransfer.training.progress import EpochStats
from kdtransfer.training.timing import timed

log = logging.getLogger(__name__)


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived (preemption, time limit): a checkpoint was saved; a rerun resumes."""


class TrainState:
    """What a run has done so far, with state_dict / load_state_dict (the checkpoint's content)."""

    def __init__(self, model: torch.nn.Module, optimizer, schedule, objective, device: torch.device):
        self.model, self.optimizer, self.schedule, self.objective, self.device = (
            model,
            optimizer,
            schedule,
            objective,
            device,
        )
        self.aug_gen = torch.Generator()  # augmentation draws, reseeded every epoch
        self.stats = EpochStats(device)
        self.history: list[dict] = []
        self.epoch = self.batch = 0  # where training continues

    def end_epoch(self, test_accuracy: float, seconds: float) -> dict:
        """The epoch's history row; the next epoch starts with fresh sums."""
        row = {
            "epoch": self.epoch + 1,
            **self.stats.means(),
            "test_accuracy": test_accuracy,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": seconds,
        }
        self.history.append(row)
        self.stats = EpochStats(self.device)
        self.epoch, self.batch = self.epoch + 1, 0
        return row

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "objective": self.objective.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "aug_rng": self.aug_gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,  # dropout draws on the GPU
            "history": self.history,
            "stats": self.stats.state_dict(),
            "epoch": self.epoch,
            "batch": self.batch,
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(objective_state(state))
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.aug_gen.set_state(state["aug_rng"])
        self.stats.load_state_dict(state["stats"])
        self.history = state["history"]
        self.epoch, self.batch = state["epoch"], state["batch"]


class Checkpoint:
    """The checkpoint file of one run specification (`fingerprint`), at `path`; `run` (RunSpec.name)
    names the run in the resume message (docs/cluster.md documents its form: `resumed <run> seed <s> from ...`)."""

    def __init__(self, path: str | os.PathLike, fingerprint: str, *, run: str):
        self.path, self.fingerprint, self.run = Path(path), fingerprint, run
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def resume(self, state: TrainState, epochs: int) -> bool:
        """Load the newest usable checkpoint into `state`; False when there is none (a fresh run).
        A checkpoint at the end of all `epochs` is a finished run whose outputs went missing."""
        saved = load_checkpoint(self.path, self.fingerprint)
        if saved is None:
            return False
        state.load_state_dict(saved)
        if state.epoch >= epochs:
            log.info(
                "restored %s from %s: finished earlier (all %d epochs), not trained again", self.run, self.path, epochs
            )
        else:
            log.info("resumed %s from %s at epoch %d batch %d", self.run, self.path, state.epoch + 1, state.batch)
        return True

    def save(self, state: TrainState) -> None:
        with timed("checkpoints"):
            save_checkpoint_file(
                {**state.state_dict(), "spec": self.fingerprint, "training_revision": TRAINING_REVISION}, self.path
            )


@contextlib.contextmanager
def sigterm_flag():
    """A flag that SIGTERM raises while the block runs (the previous handler is restored after)."""
    flag = _Flag()
    previous = None
    if hasattr(signal, "SIGTERM"):
        try:
            previous = signal.signal(signal.SIGTERM, lambda *_: flag.set())
        except ValueError:  # not in the main thread
            previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Flag:
    raised = False

    def set(self) -> None:
        self.raised = True


def previous_checkpoint_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_as_previous(path: Path) -> None:
    previous = previous_checkpoint_path(path)
    try:
        with atomic_path(previous) as staged:
            os.link(path, staged)
    except OSError:  # a file system without hard links: a rename leaves a brief gap instead
        os.replace(path, previous)


def save_checkpoint_file(state: dict, path: Path) -> None:
    """Write a checkpoint atomically, keeping the one before as a fallback: should the newest
    ever be unreadable (a bad disk block, a copy cut short), training resumes from the previous
    one instead of from scratch.

    `path` never goes missing once written, so a job killed at any instant leaves a checkpoint
    there: the new state is written to a temp file first, the current checkpoint is hard-linked
    to the fallback name, and only then is the temp file renamed over `path`.
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        if path.exists():
            _keep_as_previous(path)


def _read_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning("checkpoint %s is unreadable (%s); discarding it", path, exc)
        path.unlink(missing_ok=True)
        return None


def load_checkpoint(path: Path, fingerprint: str | None = None) -> dict | None:
    """The newest readable checkpoint of this run specification, else None (start from scratch).

    An unreadable checkpoint is discarded with a warning and the previous one is tried; one left
    by another specification (the config changed since) or by code of another training revision
    (kdtransfer.TRAINING_REVISION: what it trained would differ now) is never resumed. Checkpoints
    that carry no revision were written at revision 3, before checkpoints recorded it.
    """
    for candidate in (path, previous_checkpoint_path(path)):
        state = _read_checkpoint(candidate)
        if state is None:
            continue
        if fingerprint is not None and state.get("spec") != fingerprint:
            log.warning("checkpoint %s belongs to a different run specification; discarding it", candidate)
            candidate.unlink(missing_ok=True)
            continue
        revision = state.get("training_revision", 3)
        if fingerprint is not None and revision != TRAINING_REVISION:
            log.warning(
                "checkpoint %s was written by training revision %s, not %s; discarding it",
                candidate,
                revision,
                TRAINING_REVISION,
            )
            candidate.unlink(missing_ok=True)
            continue
        if candidate != path:
            log.warning("resuming from the previous checkpoint %s", candidate)
        return state
    return None


def remove_checkpoints(path: Path) -> None:
    """Remove both checkpoints and any half-written ones a killed attempt left behind."""
    for checkpoint in (path, previous_checkpoint_path(path)):
        for file in (checkpoint, *leftover_temp_files(checkpoint)):
            file.unlink(missing_ok=True)
