"""Worker processes that train shares of one pack at the same time on the job's device.

A pack whose runs leave the GPU idle (small models: the step waits on Python, kernel launches
and the optimizer, not on arithmetic) trains `training.pack_concurrency` of them at once, each
share in a process of its own (kdtransfer.training.pack_worker). A run in a worker trains exactly
as it would alone: the same code, the same seeds, its own CUDA context, its own files, so its
weights and predictions do not depend on the concurrency or on its pack-mates
(tests/test_pack.py). Where the node runs the CUDA MPS daemon, the workers' kernels overlap;
without it they time-slice the GPU, which still overlaps one worker's host work with another's
kernels.

- SIGTERM to the job is passed to every worker, which checkpoints its run in training and stops;
  the job then stops as a sequential pack does (TrainingInterrupted).
- A worker dies with its job (PR_SET_PDEATHSIG on Linux): a SIGKILLed job leaves no process
  training on the GPU.
- A worker that dies (killed, out of host memory) fails the runs it had not finished; the runs
  it finished keep their final state for the rerun, as in a sequential pack.
- Requests and results are files in `.pack-workers/` beside the first run's checkpoint, removed
  when the pack ends and emptied when it starts (a SIGKILLed job leaves them behind).

Standard library only: the workers, not this process, import torch and start CUDA.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from kdtransfer.io.atomic import atomic_path

WORKER_MODULE = "kdtransfer.training.pack_worker"
POLL_SECONDS = 0.2


def run_workers(requests: list[dict], *, folder: Path, sigterm) -> list[tuple[int, dict | None]]:
    """Start one worker per request (`python -m kdtransfer.training.pack_worker <request.json>`),
    pass SIGTERM on (`sigterm`: the job's kdtransfer.training.state.sigterm_flag) and wait for all;
    per request, (exit code, the result the worker wrote, or None when it wrote none). Requests
    and results live in `folder` (beside the pack's checkpoints), emptied first: what a killed
    job left there is never read as this job's."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        workers = []
        for i, request in enumerate(requests):
            result = folder / f"result{i}.json"
            path = folder / f"request{i}.json"
            path.write_text(json.dumps({**request, "result": str(result), "parent": os.getpid()}))
            process = subprocess.Popen([sys.executable, "-m", WORKER_MODULE, str(path)])
            workers.append((process, result))
        passed_on = False
        while any(process.poll() is None for process, _ in workers):
            if sigterm.raised and not passed_on:
                for process, _ in workers:
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                passed_on = True
            time.sleep(POLL_SECONDS)
        return [(process.returncode, _read(result)) for process, result in workers]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def report(request: dict, result: dict) -> None:
    """Write a worker's result, whole or not at all (the job reads a missing one as a crash)."""
    with atomic_path(request["result"]) as staged:
        Path(staged).write_text(json.dumps(result))


def die_with_parent(parent: int) -> None:
    """A worker gets SIGTERM when its job dies (Linux), so it checkpoints and stops instead of
    training on; if the job is already gone, it stops at once."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        raise SystemExit(f"kdtransfer pack worker: its job (pid {parent}) has ended")
