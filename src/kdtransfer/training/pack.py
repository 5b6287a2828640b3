"""A training pack: the runs of one run key over a block of seeds (kdtransfer.plan.packs),
trained by one job, so imports, the data (uploaded to the GPU once) and the CUDA context are
paid once per pack, not once per run. The runs train one after another in the job's process,
or, with `training.pack_concurrency` K > 1, K at a time on the same device, in K worker
processes that each take every K-th run (kdtransfer.training.side_by_side).

A run's results never depend on its pack or on K: each run seeds everything it draws from its
own seed and role (kdtransfer.training.seeding), trains in a process of its own or in turn, and
writes its own files at its own paths, exactly as alone (tests/test_pack.py). Nothing finished
is lost:

- a run that fails (divergence, a teacher that does not fit, a bad hint layer, CUDA out of
  memory) is logged and the pack goes on with its other runs; the job then fails, naming every
  failed run;
- every run leaves its final state in its checkpoint until the whole pack is done. Snakemake
  deletes all outputs of a failed job, so the rerun restores each finished run from that state
  in seconds, resumes an interrupted one from its checkpoint and trains only the rest;
- SIGTERM (preemption, a time limit) checkpoints every run in training and stops the pack; a
  SIGKILL loses at most the epochs since each run's last checkpoint.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from kdtransfer.io.runlog import about
from kdtransfer.spec import RunSpec, pack_name
from kdtransfer.training import timing
from kdtransfer.training.device import configure_device, device_label, pick_device
from kdtransfer.training.gpus import claimed_gpu
from kdtransfer.training.job import checkpoint_path, resident_data, train_and_save
from kdtransfer.training.side_by_side import run_workers
from kdtransfer.training.state import TrainingInterrupted, remove_checkpoints, sigterm_flag

log = logging.getLogger(__name__)

WORKERS_FOLDER = ".pack-workers"  # a concurrent pack's requests and results, beside its first checkpoint


class PackFailed(RuntimeError):
    """Runs of a pack failed; its other runs are done and keep their final state for the rerun."""


class OutOfMemory(RuntimeError):
    """A run of a pack ran out of GPU memory; the message names the settings that use it."""


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

    def outputs_written(self) -> bool:
        return all(Path(p).exists() for p in (self.weights, self.history, *self.predictions.values()))

    def params(self) -> tuple[dict, dict]:
        """(pack spec, run) as from_params takes them: how a pack worker receives its runs."""
        run = {"seed": self.spec.seed, "weights": self.weights, "history": self.history}
        return self.spec.params(), {**run, "predictions": self.predictions, "teacher": self.teacher_weights}


def train_pack(
    runs: list[PackRun],
    data_path: str | os.PathLike,
    *,
    checkpoint_every: int,
    teacher_model: dict | None = None,
    threads: int = 1,
    concurrency: int = 1,
    log_path: str | None = None,
) -> None:
    """Train (or restore, or resume) every run of a pack on the prepared arrays at `data_path`,
    `concurrency` at a time (training.pack_concurrency), then remove their final states; raises
    PackFailed naming the runs that failed. `threads`: the job's, shared among the runs training
    at once. `log_path`: the job's log, which the workers of a concurrent pack append to."""
    if not runs:
        raise ValueError("a pack needs at least one run")
    keys = {r.spec.run_key for r in runs}
    if len(keys) != 1:
        raise ValueError(f"a pack holds the runs of one run key, got {sorted(keys)}")
    started = time.perf_counter()
    timing.reset()
    name = pack_name(runs[0].spec.run_key, [r.spec.seed for r in runs])
    workers = min(concurrency, len(runs))
    settings = dict(checkpoint_every=checkpoint_every, teacher_model=teacher_model, threads=max(1, threads // workers))
    with claimed_gpu():  # a GPU of its own on a machine with several, before CUDA starts
        if workers > 1:
            failed = _train_side_by_side(runs, data_path, name=name, workers=workers, log_path=log_path, **settings)
        else:
            failed = train_in_turn(runs, data_path, name=name, concurrency=1, **settings)
    if failed:
        done = len(runs) - len(failed)
        raise PackFailed(
            f"{len(failed)} of {len(runs)} runs of pack {name} failed: "
            + "; ".join(f"{run.spec.name} ({why})" for run, why in failed)
            + f". The other {done} are done and keep their final state: after fixing the cause, the same command "
            "trains only the failed runs and restores the others in seconds"
        )
    for run in runs:  # every output is written: the final states are no longer needed
        remove_checkpoints(checkpoint_path(run.weights))
    shutil.rmtree(checkpoint_path(runs[0].weights).parent / WORKERS_FOLDER, ignore_errors=True)  # a killed job's
    total = time.perf_counter() - started
    summed = " (phases summed over its workers)" if workers > 1 else ""
    log.info("pack done: %d runs in %.2f s: %s%s", len(runs), total, timing.summary(total), summed)


def train_in_turn(
    runs: list[PackRun],
    data_path,
    *,
    name: str,
    checkpoint_every: int,
    teacher_model: dict | None,
    threads: int,
    concurrency: int,
) -> list[tuple[PackRun, str]]:
    """Train `runs` one after another in this process (a pack, or a worker's share of one);
    returns the failed runs with why. SIGTERM raises TrainingInterrupted once the run in
    training has checkpointed. `concurrency`: how many runs share the device (for messages)."""
    device = pick_device()
    # Before CUDA starts: the determinism switch (the runs share it).
    configure_device(device, deterministic=runs[0].spec.deterministic)
    with timing.timed("data"):
        resident = resident_data(data_path, device)  # once for the pack (on the GPU when there is one)
    share = "pack" if concurrency == 1 else f"share (1 of {concurrency} at a time)"
    log.info("%s of %d %s runs on %s", share, len(runs), runs[0].spec.condition, device_label(resident.device))
    failed: list[tuple[PackRun, str]] = []
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
                    if isinstance(exc, torch.cuda.OutOfMemoryError):
                        exc = OutOfMemory(out_of_memory_message(run.spec, concurrency))
                    _log_failure(exc)
                    failed.append((run, f"{type(exc).__name__}: {exc}"))
                    if isinstance(exc, OutOfMemory):
                        torch.cuda.empty_cache()  # what the failed run held, for its pack-mates
    return failed


def out_of_memory_message(spec: RunSpec, concurrency: int) -> str:
    """What to change when `spec` ran out of GPU memory with `concurrency` runs on the GPU."""
    smaller = f"recipe.batch_size (now {spec.recipe.batch_size}) or the model's width"
    if concurrency > 1:
        return (
            f"CUDA out of memory with {concurrency} runs of the pack training at once on this GPU: lower "
            f"training.pack_concurrency (now {concurrency}), or {smaller}"
        )
    return f"CUDA out of memory with one run on this GPU: lower {smaller}, or use a GPU with more memory"


def _train_side_by_side(
    runs: list[PackRun], data_path, *, name: str, workers: int, log_path: str | None, **settings
) -> list[tuple[PackRun, str]]:
    """`workers` processes, the i-th training runs i, i + workers, ... in turn; returns the runs
    that failed, with why (a worker that died fails the runs it had not finished)."""
    shares = [runs[i::workers] for i in range(workers)]
    log.info("pack of %d %s runs, %d at a time on one device", len(runs), runs[0].spec.condition, workers)
    requests = [
        {
            "runs": [run.params() for run in share],
            "data": str(data_path),
            "name": name,
            "concurrency": workers,
            "log": log_path,
            **settings,
        }
        for share in shares
    ]
    folder = checkpoint_path(runs[0].weights).parent / WORKERS_FOLDER
    with sigterm_flag() as sigterm:
        outcomes = run_workers(requests, folder=folder, sigterm=sigterm)
    failed, interrupted = [], []
    for share, (code, result) in zip(shares, outcomes):
        if result is None:  # its runs with every output written finished before it died
            why = f"its worker process ended with exit code {code} before reporting"
            failed += [(run, why) for run in share if not run.outputs_written()]
            continue
        by_name = {run.spec.name: run for run in share}
        failed += [(by_name[f["run"]], f["why"]) for f in result["failed"]]
        if result["interrupted"]:
            interrupted.append(result["interrupted"])
        for phase, seconds in result["seconds"].items():
            timing.add(phase, seconds)
    if interrupted or sigterm.raised:
        raise TrainingInterrupted(
            f"SIGTERM in pack {name}: each worker checkpointed its run in training ({'; '.join(interrupted)}); "
            "rerun to continue"
        )
    return failed


def work(request: dict) -> dict:
    """A pack worker's share (kdtransfer.training.pack_worker): its runs trained in turn; the
    result says which failed and why, whether SIGTERM stopped it, and its seconds per phase."""
    runs = [PackRun.from_params(spec, run) for spec, run in request["runs"]]
    result = {"failed": [], "interrupted": None}
    try:
        failed = train_in_turn(
            runs,
            request["data"],
            name=request["name"],
            checkpoint_every=request["checkpoint_every"],
            teacher_model=request["teacher_model"],
            threads=request["threads"],
            concurrency=request["concurrency"],
        )
        result["failed"] = [{"run": run.spec.name, "why": why} for run, why in failed]
    except TrainingInterrupted as exc:
        result["interrupted"] = str(exc)
    except Exception as exc:  # before its first run (the device, the data): none of its runs trains
        _log_failure(exc)
        result["failed"] = [{"run": run.spec.name, "why": f"{type(exc).__name__}: {exc}"} for run in runs]
    result["seconds"] = timing.seconds()
    return result


def _log_failure(exc: BaseException) -> None:
    # kdtransfer's errors name the problem and the fix; anything else keeps its traceback.
    if type(exc).__module__.startswith("kdtransfer"):
        log.error("failed: %s: %s", type(exc).__name__, exc)
    else:
        log.error("failed", exc_info=exc)
