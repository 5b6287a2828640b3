"""A training pack: the runs of one run key over a block of seeds (kdtransfer.plan.packs),
trained one after another by one job in one process, so imports, the data (uploaded to the GPU
once) and the CUDA context are paid once per pack, not once per run.

A run's results never depend on its pack: each run seeds everything it draws from its own seed
and role (kdtransfer.training.seeding) and writes its own files at its own paths, exactly as
alone (tests/test_pack.py). Nothing finished is lost:

- a run that fails (divergence, a teacher that does not fit, a bad hint layer) is logged and
  the pack goes on with its other runs; the job then fails, naming every failed run;
- every run leaves its final state in its checkpoint until the whole pack is done. Snakemake
  deletes all outputs of a failed job, so the rerun restores each finished run from that state
  in seconds, resumes an interrupted one from its checkpoint and trains only the rest;
- SIGTERM (preemption, a time limit) checkpoints the run in training and stops the pack; a
  SIGKILL loses at most the epochs since each run's last checkpoint.

Concurrency (several runs of a pack stepped at once on one GPU) would replace the loop over
`runs` in `train_pack`; everything around it stays.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from kdtransfer.io.runlog import about
from kdtransfer.spec import RunSpec, pack_name
from kdtransfer.training import timing
from kdtransfer.training.device import configure_device, device_label, pick_device
from kdtransfer.training.gpus import claimed_gpu
from kdtransfer.training.job import checkpoint_path, resident_data, train_and_save
from kdtransfer.training.state import TrainingInterrupted, remove_checkpoints, sigterm_flag

log = logging.getLogger(__name__)


class PackFailed(RuntimeError):
    """Runs of a pack failed; its other runs are done and keep their final state for the rerun."""


@dataclass(frozen=True)
class PackRun:
    """One run of a pack and the files it writes (its rule's outputs for its seed)."""

    spec: RunSpec
    weights: str
    history: str
    predictions: dict[str, str]  # split -> path
    teacher_weights: str | None = None  # kd: the teacher of the same seed

    @classmethod
    def from_params(cls, pack_spec: dict, run: dict) -> PackRun:
        """A run of a training rule's params: the pack's spec (Plan.pack_spec) and one entry of
        its `runs` (seed and paths)."""
        return cls(
            RunSpec.from_params({**pack_spec, "seed": run["seed"]}),
            run["weights"],
            run["history"],
            dict(run["predictions"]),
            run.get("teacher"),
        )


def train_pack(
    runs: list[PackRun],
    data_path: str | os.PathLike,
    *,
    checkpoint_every: int,
    teacher_model: dict | None = None,
    threads: int = 1,
) -> None:
    """Train (or restore, or resume) every run of a pack on the prepared arrays at `data_path`,
    then remove their final states; raises PackFailed naming the runs that failed."""
    if not runs:
        raise ValueError("a pack needs at least one run")
    keys = {r.spec.run_key for r in runs}
    if len(keys) != 1:
        raise ValueError(f"a pack holds the runs of one run key, got {sorted(keys)}")
    with claimed_gpu():  # a GPU of its own on a machine with several, before CUDA starts
        _train_pack(runs, data_path, checkpoint_every=checkpoint_every, teacher_model=teacher_model, threads=threads)


def _train_pack(
    runs: list[PackRun], data_path, *, checkpoint_every: int, teacher_model: dict | None, threads: int
) -> None:
    started = time.perf_counter()
    timing.reset()
    name = pack_name(runs[0].spec.run_key, [r.spec.seed for r in runs])
    device = pick_device()
    # Before CUDA starts: the determinism switch (the runs share it).
    configure_device(device, deterministic=runs[0].spec.deterministic)
    with timing.timed("data"):
        resident = resident_data(data_path, device)  # once for the pack (on the GPU when there is one)
    log.info("pack of %d %s runs on %s", len(runs), runs[0].spec.condition, device_label(resident.device))
    failed: list[tuple[PackRun, BaseException]] = []
    with sigterm_flag() as sigterm:  # between runs; a run in training has its own
        for i, run in enumerate(runs, 1):
            if sigterm.raised:
                raise TrainingInterrupted(
                    f"SIGTERM in pack {name} before run {i}/{len(runs)}: the runs before it are done; rerun to continue"
                )
            with about(run.spec.name):
                log.info("run %d/%d of the pack", i, len(runs))  # the progress line a user tails for
                try:
                    train_and_save(
                        run.spec,
                        resident,
                        weights_out=run.weights,
                        predictions_out=run.predictions,
                        history_out=run.history,
                        checkpoint_every=checkpoint_every,
                        teacher_weights=run.teacher_weights,
                        teacher_model=teacher_model,
                        threads=threads,
                        keep_final_state=True,
                    )
                except TrainingInterrupted:
                    raise
                except Exception as exc:  # this run's own failure: its pack-mates still train
                    _log_failure(exc)
                    failed.append((run, exc))
    if failed:
        done = len(runs) - len(failed)
        raise PackFailed(
            f"{len(failed)} of {len(runs)} runs of pack {name} failed: "
            + "; ".join(f"{run.spec.name} ({type(exc).__name__}: {exc})" for run, exc in failed)
            + f". The other {done} are done and keep their final state: after fixing the cause, the same command "
            "trains only the failed runs and restores the others in seconds"
        )
    for run in runs:  # every output is written: the final states are no longer needed
        remove_checkpoints(checkpoint_path(run.weights))
    total = time.perf_counter() - started
    log.info("pack done: %d runs in %.2f s: %s", len(runs), total, timing.summary(total))


def _log_failure(exc: BaseException) -> None:
    # kdtransfer's errors name the problem and the fix; anything else keeps its traceback.
    if type(exc).__module__.startswith("kdtransfer"):
        log.error("failed: %s: %s", type(exc).__name__, exc)
    else:
        log.error("failed", exc_info=exc)
