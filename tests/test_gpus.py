"""A training job on a machine with several GPUs claims one of its own (kdtransfer.training.gpus).

No CUDA is needed: KDTRANSFER_FAKE_GPUS=N makes N pretend GPUs, claimed with the same locks.
Claimants are separate processes, as Snakemake's jobs are.
"""

import os
import re
import select
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from conftest import snakemake

from kdtransfer.training.gpus import CLAIM_ENV, FAKE_ENV, LOCK_DIR_ENV, claim_gpu, claimable_gpus

# Claims, prints the GPU, holds it until its stdin closes (or it is killed).
HOLDER = (
    "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
    "from kdtransfer.training.gpus import claim_gpu; claim = claim_gpu(poll=0.05); "
    "print(claim.device, flush=True); sys.stdin.read()"
)


class Holder:
    def __init__(self, env):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def device(self) -> str:
        line = self.proc.stdout.readline().strip()  # blocks until it has claimed
        assert line, self.proc.stderr.read()
        return line

    def waiting(self, seconds=1.5) -> bool:
        """Still without a GPU after `seconds`."""
        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        return not ready and self.proc.poll() is None

    def release(self) -> str:
        """Let it end; its log."""
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        return self.proc.stderr.read()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
def env(tmp_path):
    environ = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    return {**environ, LOCK_DIR_ENV: str(tmp_path / "locks"), FAKE_ENV: "3"}


def started(env, n):
    holders = [Holder(env) for _ in range(n)]
    return holders, [h.device() for h in holders]


def test_concurrent_claimants_get_distinct_gpus(env):
    holders, devices = started(env, 3)
    assert sorted(devices) == ["0", "1", "2"]
    for h in holders:
        h.release()


def test_a_claimant_beyond_the_gpu_count_waits_for_a_released_gpu(env):
    holders, devices = started(env, 3)
    extra = Holder(env)
    assert extra.waiting()  # all three held
    holders[1].release()
    assert extra.device() == devices[1]
    assert "waiting for a GPU: all of 0,1,2 are held by other jobs" in extra.release()
    for h in (holders[0], holders[2]):
        h.release()


def test_a_claimant_killed_with_sigkill_frees_its_gpu(env):
    holders, devices = started(env, 3)
    extra = Holder(env)
    assert extra.waiting()
    holders[2].kill()  # no cleanup runs: the kernel drops the flock with the process
    assert extra.device() == devices[2]
    # The killed holder's lock file is still there, and blocks nothing.
    assert (Path(env[LOCK_DIR_ENV]) / f"gpu-{devices[2]}.lock").exists()
    for h in (holders[0], holders[1], extra):
        h.release()


def test_cuda_visible_devices_restricts_the_choice(env):
    env = {**env, FAKE_ENV: "4", "CUDA_VISIBLE_DEVICES": "1,3"}
    holders, devices = started(env, 2)
    assert sorted(devices) == ["1", "3"]
    extra = Holder(env)
    assert extra.waiting()  # 0 and 2 exist but are not this job's to take
    for h in holders:
        h.release()
    assert extra.device() in ("1", "3")
    extra.release()


def test_a_real_claim_makes_the_job_see_only_its_gpu(tmp_path):
    environ = {LOCK_DIR_ENV: str(tmp_path), "CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}
    first = claim_gpu(environ)
    assert (first.device, environ["CUDA_VISIBLE_DEVICES"]) == ("GPU-aaaa", "GPU-aaaa")
    # A second job of the same user, started with the same list, gets the other one.
    second_env = {LOCK_DIR_ENV: str(tmp_path), "CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}
    second = claim_gpu(second_env)
    assert second.device == "GPU-bbbb" and second_env["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
    first.release()
    second.release()


@pytest.mark.parametrize(
    "environ",
    [
        {"CUDA_VISIBLE_DEVICES": ""},  # no GPU visible
        {"CUDA_VISIBLE_DEVICES": "-1"},
        {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_ID": "42"},  # SLURM binds each job's GPU itself
        {"CUDA_VISIBLE_DEVICES": "0,1", CLAIM_ENV: "0"},  # turned off (MPS, sharing on purpose)
    ],
)
def test_nothing_is_claimed_where_there_is_nothing_to_claim(tmp_path, environ):
    before = dict(environ)
    assert claim_gpu({**environ, LOCK_DIR_ENV: str(tmp_path)}) is None
    assert environ == before


def test_cuda_ignores_the_entries_after_an_invalid_one():
    assert claimable_gpus({"CUDA_VISIBLE_DEVICES": "2, 0,-1,3"}) == ["2", "0"]


# ---------------------------------------------------------------------------------------------
# The workflow on a pretend 2-GPU machine


def claim_intervals(logs: list[Path]) -> list[tuple[datetime, datetime, str, str]]:
    """(claimed at, released at, GPU, pack) from each training log."""
    stamp = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
    out = []
    for log in logs:
        text = log.read_text()
        claimed = re.search(stamp + r" INFO .*claimed GPU (\S+) of ", text)
        released = re.search(stamp + r" INFO .*released GPU (\S+)", text)
        assert claimed and released and claimed[2] == released[2], text[-2000:]
        parse = lambda s: datetime.strptime(s, "%Y-%m-%d %H:%M:%S")  # noqa: E731
        out.append((parse(claimed[1]), parse(released[1]), claimed[2], str(log)))
    return out


def test_training_jobs_side_by_side_hold_different_gpus(workflow_copy, tmp_path):
    """`--resources gpu=2` on a (pretend) 2-GPU machine: two packs train at once, each on a GPU
    of its own, read back from the jobs' logs."""
    cfg = yaml.safe_load((workflow_copy / "tests/configs/tiny.yaml").read_text())
    cfg["seeds"] = 2
    # Packs of several seconds each, so that the two running at a time overlap by whole seconds
    # (the log's resolution).
    cfg["recipes"]["digits"]["epochs"] = 250
    cfg["recipes"]["mnist1d"]["epochs"] = 25
    (workflow_copy / "gpus.yaml").write_text(yaml.safe_dump(cfg))
    env_before = dict(os.environ)
    os.environ.update({FAKE_ENV: "2", LOCK_DIR_ENV: str(tmp_path / "locks")})
    try:
        snakemake(
            workflow_copy,
            "teachers",
            "--cores",
            "2",
            "--configfile",
            "gpus.yaml",
            "--resources",
            "gpu=2",
            "--set-resources",
            "train_reference:gpu=1",
            "train_distilled:gpu=1",
        )
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    logs = sorted((workflow_copy / "logs" / "train").rglob("*.log"))
    intervals = claim_intervals(logs)
    assert len(intervals) == 3  # the teachers of digits (mlp, mlp_small) and MNIST-1D
    overlapping = [(a, b) for i, a in enumerate(intervals) for b in intervals[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, f"no two packs trained side by side: {intervals}"
    assert all(a[2] != b[2] for a, b in overlapping), overlapping
    assert {gpu for _, _, gpu, _ in intervals} <= {"0", "1"}
