"""The SLURM profile on a real SLURM cluster: `make test-slurm` (root, Debian/apt; not in `make test`).

tests/slurm/cluster_up.sh installs SLURM from Debian if needed and starts a single-node cluster
on this machine (munged + slurmctld + slurmd, partition `kdtci`, two count-only fake GPUs, no
slurmdbd); cluster_down.sh stops it by PID at the end, whatever happened. Every Snakemake call
runs in a temporary copy of the workflow, under `timeout -s INT -k 60` (SIGINT makes Snakemake
scancel its jobs): a hang fails the test instead of stalling CI.

The profile is profiles/slurm/config.yaml with only its site values replaced (`site_profile`):
partition, no account, `squeue` as status command (no slurmdbd), sizes that fit a 2-CPU node,
a short first status check, kept SLURM logs. Everything else (executor, retries, GPU request,
jobs, ...) is the shipped profile's.

Training jobs are packs (the runs of one run key over a block of seeds; one sbatch job each):

- A pack whose runs fail (its dataset file is corrupt) is reported as failed, retried as the
  profile says, each retry asking for more time (the pack's runtime times the attempt), and the
  run exits non-zero.
- A pack cancelled with `scancel` while its second run trains is resubmitted by the retry: its
  first run comes back from its final state without training, the second resumes from its
  checkpoint; both equal an uninterrupted local run bit for bit.
- A small experiment (tests/configs/tiny.yaml: both kinds of pack, data preparation) runs with
  every non-local job through sbatch (counted per rule against the plan, each job COMPLETED in
  SLURM's records); the sbatch calls of the pack rules carry the profile's GPU, CPU, memory and
  time request; results equal those of a local `snakemake --cores 2` run byte for byte (CPU
  training is bit-reproducible).
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_workflow, planned, run_dir

pytestmark = pytest.mark.slurm

SLURM_SCRIPTS = REPO / "tests" / "slurm"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
PARTITION = "kdtci"  # cluster_up.sh's default
# The kinds of training pack; their rules are <kind>_<seed block> (train_reference_seeds0to9).
GPU_KINDS = ("train_reference", "train_distilled")
# Site values of the CI cluster: 2 CPUs and 2 fake GPUs, so two training jobs run at once.
SITE_GPU_JOB = {"cpus_per_gpu": 1, "mem_mb": 1500, "runtime_per_run": 3, "runtime_max": 60}
SITE_DEFAULTS = {"mem_mb": 1000, "runtime": 10}

SMALL = ["--configfile", "tests/configs/slurm_resume.yaml"]
SMALL_PLAN = planned(REPO / "tests/configs/slurm_resume.yaml")
SMALL_KEY = SMALL_PLAN.run_key("teacher", "mnist_long")
SMALL_RUNS = [run_dir(SMALL_PLAN, "teacher", "mnist_long", seed) for seed in (0, 1)]
SMALL_TARGETS = [f"{d}/model.pt" for d in SMALL_RUNS]
SMALL_RULE = "train_reference_seeds0to9"  # one pack: the teachers of seeds 0 and 1
SMALL_LOG = f"logs/train/{SMALL_KEY}/seeds0to9.log"
SMALL_EPOCHS = 12

E2E = ["--configfile", "tests/configs/tiny.yaml"]
E2E_PLAN = planned(REPO / "tests/configs/tiny.yaml")

# Hard limits per Snakemake call (seconds): far above the measured times (docs/performance.md), so reaching
# one means a hang, never a slow machine.
LIMIT_SHORT = 900
LIMIT_E2E_SLURM = 1800
LIMIT_E2E_LOCAL = 900

SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def say(msg: str) -> None:
    print(f"[slurm-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- the cluster --------------------------------------------------------------------------------


def _slurm_installed() -> bool:
    return all(shutil.which(cmd) for cmd in ("slurmctld", "slurmd", "sbatch", "munged")) or all(
        Path(p).exists() for p in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")
    )


@pytest.fixture(scope="module")
def cluster(request):
    markexpr = request.config.getoption("markexpr") or ""
    if "slurm" not in markexpr or "not slurm" in markexpr:
        pytest.skip("real-SLURM test: run it with `make test-slurm` (pytest -m slurm)")
    if os.geteuid() != 0:
        pytest.skip("real-SLURM test needs root (installs SLURM, starts munged/slurmctld/slurmd)")
    if not _slurm_installed() and shutil.which("apt-get") is None:
        pytest.skip("real-SLURM test: SLURM is not installed and there is no apt-get to install it")
    down = SLURM_SCRIPTS / "cluster_down.sh"
    # Registered before starting anything: a half-started cluster is stopped too.
    request.addfinalizer(
        lambda: say(
            "cluster down:\n"
            + subprocess.run(["bash", str(down)], capture_output=True, text=True, timeout=180).stdout.strip()
        )
    )
    t0 = time.monotonic()
    up = subprocess.run(
        ["bash", str(SLURM_SCRIPTS / "cluster_up.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KDT_SLURM_PARTITION": PARTITION},
    )
    if up.returncode == 3:
        pytest.skip(f"real-SLURM test: SLURM cannot be installed here: {up.stderr.strip()[-600:]}")
    assert up.returncode == 0, f"cluster_up.sh failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    say(f"cluster up in {time.monotonic() - t0:.0f} s:\n{up.stdout.strip()}")
    return PARTITION


def slurm_jobs(ids) -> dict[str, dict[str, str]]:
    """SLURM's own records of these jobs, finished ones included (MinJobAge keeps them an hour)."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    jobs = {}
    for line in out.stdout.splitlines():
        fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if fields.get("JobId") in ids:
            jobs[fields["JobId"]] = fields
    return jobs


# ---- the profile and Snakemake calls ------------------------------------------------------------


def site_profile(workflow: Path) -> Path:
    """profiles/slurm/config.yaml with only its site values replaced, inside the workflow copy."""
    profile = yaml.safe_load(PROFILE.read_text())
    defaults = profile["default-resources"]
    defaults["slurm_partition"] = PARTITION
    defaults.pop("slurm_account", None)  # no accounts on this cluster
    defaults.update(SITE_DEFAULTS)
    for kind in GPU_KINDS:
        profile["set-resources"][kind].update(SITE_GPU_JOB)
    profile["set-resources"]["prepare_data"].update(SITE_DEFAULTS)
    profile["set-resources"]["prepare_data"]["slurm_partition"] = PARTITION
    profile.update(
        {
            "slurm-status-command": "squeue",  # no slurmdbd: sacct would make Snakemake wait forever
            "slurm-init-seconds-before-status-checks": 5,
            "slurm-keep-successful-logs": True,
        }
    )
    path = workflow / "profiles" / "slurm-ci" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(profile, sort_keys=False))
    return path.parent


@dataclass
class Run:
    args: list[str]
    returncode: int
    out: str
    seconds: float
    log: Path

    def tail(self, n: int = 6000) -> str:
        header = f"snakemake {' '.join(self.args)} -> {self.returncode} after {self.seconds:.0f} s ({self.log})"
        return f"{header}:\n{self.out[-n:]}"

    def submissions(self) -> list[tuple[str, str, Path]]:
        """(rule, SLURM job id, SLURM log) of every sbatch submission, in order."""
        subs = []
        for jobid, log in SUBMITTED.findall(self.out):
            rule = re.search(r"/slurm_logs/rule_([^/]+)/", log).group(1)
            subs.append((rule, jobid, Path(log)))
        return subs


def hard_limit(limit: int) -> list[str]:
    # SIGINT at the limit: Snakemake scancels its jobs and exits; KILL 60 s later if it does not.
    return ["timeout", "-s", "INT", "-k", "60", str(limit)]


def snakemake_env() -> dict:
    """This environment without settings that would change the runs (a profile, SLURM defaults)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("SNAKEMAKE_", "SLURM_", "SBATCH_", "SRUN_"))}


def check_not_hung(run: Run, limit: int) -> None:
    assert run.returncode not in (124, 137), f"Snakemake HUNG: stopped by its {limit} s hard limit\n{run.tail()}"
    # The plugin's silent fallback to sacct is what hangs without slurmdbd: never take it.
    assert "Falling back to 'sacct'" not in run.out, run.tail()


def snakemake(workflow: Path, name: str, *args: str, limit: int) -> Run:
    """One Snakemake call under a hard time limit; output (stdout + stderr) kept in a file."""
    log = workflow / f"snakemake-{name}.out"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(
            [*hard_limit(limit), *SNAKEMAKE, *args],
            cwd=workflow,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=snakemake_env(),
            timeout=limit + 120,
        )
    run = Run(list(args), proc.returncode, log.read_text(), time.monotonic() - t0, log)
    check_not_hung(run, limit)
    say(f"snakemake {name}: exit {run.returncode} in {run.seconds:.0f} s")
    return run


def job_stats(out: str) -> Counter:
    """The first 'Job stats' table of a Snakemake output, without the total."""
    lines = out[out.index("Job stats:") :].splitlines()[3:]
    stats = Counter()
    for line in lines:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


# ---- a job that fails ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def failed_run(cluster, tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("slurm_fail"))
    profile = site_profile(wf)
    # A dataset file cut short (an interrupted copy): the training job fails reading it, every time.
    data = wf / SMALL_PLAN.data_file("mnist_subset")
    data.parent.mkdir(parents=True)
    buf = io.BytesIO()
    np.savez(buf, x_train=np.zeros((64, 1, 28, 28), np.float32), y_train=np.zeros(64, np.int64))
    data.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    plan = snakemake(wf, "plan", *SMALL_TARGETS, "-n", *SMALL, limit=LIMIT_SHORT)
    assert plan.returncode == 0 and job_stats(plan.out) == Counter({SMALL_RULE: 1}), plan.tail()
    return snakemake(wf, "fail", *SMALL_TARGETS, "--profile", str(profile), *SMALL, limit=LIMIT_SHORT), wf


def test_failed_job_is_reported_retried_and_fails_the_run(failed_run):
    run, wf = failed_run
    assert run.returncode != 0, run.tail()
    subs = run.submissions()
    assert subs and {rule for rule, _, _ in subs} == {SMALL_RULE}, run.tail()
    assert len(subs) >= 2, f"the failed job was not retried\n{run.tail()}"
    ids = [jobid for _, jobid, _ in subs]
    assert len(set(ids)) == len(ids), ids
    for jobid in ids:
        assert f"SLURM-job '{jobid}' failed, SLURM status is: 'FAILED'" in run.out, run.tail()
    assert "Trying to restart job" in run.out and f"Error in rule {SMALL_RULE}" in run.out
    jobs = slurm_jobs(ids)
    assert {jobid: job["JobState"] for jobid, job in jobs.items()} == {jobid: "FAILED" for jobid in ids}
    # Each attempt asks for the pack's time, 2 runs x runtime_per_run, times the attempt.
    minutes = [2 * SITE_GPU_JOB["runtime_per_run"] * attempt for attempt in range(1, len(ids) + 1)]
    assert [jobs[jobid]["TimeLimit"] for jobid in ids] == [f"{m // 60:02d}:{m % 60:02d}:00" for m in minutes]
    for _, jobid, log in subs:  # each attempt's SLURM log shows the training script's error
        text = log.read_text()
        # the one-line explanation naming the file and the rule that remakes it, with the pack's prefix
        assert re.search(
            r"ERROR \[[^\]]+ seeds 0-1\] kdtransfer: DatasetError: prepared dataset \S+ is unreadable", text
        ), text[-3000:]
        assert "prepare_data" in text and "Exited with exit code 1" in text, text[-3000:]
    assert not any((wf / target).exists() for target in SMALL_TARGETS)


def test_failed_job_is_retried_as_often_as_the_slurm_profile_says(failed_run):
    """`retries` of profiles/slurm/config.yaml must take effect under `--profile slurm`."""
    run, _ = failed_run
    retries = yaml.safe_load(PROFILE.read_text())["retries"]
    attempts = len(run.submissions())
    assert attempts == 1 + retries, (
        f"the failing job was submitted {attempts} times, the slurm profile's `retries: {retries}` promises "
        f"{1 + retries}. The workflow profile profiles/default (auto-loaded, applied after --profile) sets "
        f"`retries` too, and its value replaces the cluster profile's."
    )


# ---- a job cancelled with scancel, then resumed -------------------------------------------------


def wait_for(what: str, predicate, proc: subprocess.Popen, deadline: float, out: Path):
    while True:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"Snakemake exited ({proc.returncode}) while waiting for {what}:\n{out.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{out.read_text()[-4000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def resumed_run(cluster, tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("slurm_resume"))
    profile = site_profile(wf)
    out = wf / "snakemake-resume.out"
    args = [*SMALL_TARGETS, "--profile", str(profile), *SMALL]
    t0 = time.monotonic()
    with open(out, "w") as fh:
        proc = subprocess.Popen(
            [*hard_limit(LIMIT_SHORT), *SNAKEMAKE, *args],
            cwd=wf,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=snakemake_env(),
        )
    try:
        deadline = time.monotonic() + LIMIT_SHORT

        def training_job():
            subs = [s for s in Run(args, 0, out.read_text(), 0, out).submissions() if s[0] == SMALL_RULE]
            return subs[0][1] if subs else None

        jobid = wait_for("the training pack's submission", training_job, proc, deadline, out)

        def second_run_epochs():  # the pack's second run (seed 1) has trained 3 epochs and checkpointed
            log = wf / SMALL_LOG
            done = (
                len(re.findall(rf"\[{re.escape(SMALL_KEY)} seed 1\] \S+ epoch \d+/", log.read_text()))
                if log.exists()
                else 0
            )
            return done if done >= 3 and (wf / SMALL_RUNS[1] / "checkpoint.pt").exists() else 0

        done = wait_for("3 epochs of the second run and a checkpoint", second_run_epochs, proc, deadline, out)
        cancel = subprocess.run(["scancel", jobid], capture_output=True, text=True, timeout=60)
        assert cancel.returncode == 0, cancel.stderr
        say(f"scancel {jobid} after {done} of {SMALL_EPOCHS} epochs of the pack's second run")
        proc.wait(timeout=LIMIT_SHORT + 120)
    finally:
        if proc.poll() is None:
            proc.send_signal(2)  # let Snakemake scancel what is left
            proc.wait(timeout=180)
    run = Run(args, proc.returncode, out.read_text(), time.monotonic() - t0, out)
    check_not_hung(run, LIMIT_SHORT)
    say(f"snakemake resume (scancel + retry): exit {run.returncode} in {run.seconds:.0f} s")
    # The same pack, uninterrupted, on this machine without SLURM.
    ref = copy_workflow(tmp_path_factory.mktemp("local_uninterrupted"))
    local = snakemake(ref, "local", *SMALL_TARGETS, "--cores", "1", *SMALL, limit=LIMIT_SHORT)
    return run, jobid, done, wf, local, ref


def epochs_of(text: str, seed: int) -> list[int]:
    return [
        int(e) for e in re.findall(rf"\[{re.escape(SMALL_KEY)} seed {seed}\] \S+ epoch (\d+)/{SMALL_EPOCHS} loss", text)
    ]


def test_cancelled_pack_is_resubmitted_and_resumes_each_run(resumed_run):
    run, cancelled, done, wf, _, _ = resumed_run
    assert run.returncode == 0, run.tail()
    subs = [s for s in run.submissions() if s[0] == SMALL_RULE]
    assert [jobid for _, jobid, _ in subs][:1] == [cancelled] and len(subs) == 2, run.tail()
    resumed = subs[1][1]
    assert f"SLURM-job '{cancelled}' failed, SLURM status is: 'CANCELLED'" in run.out, run.tail()
    assert "Trying to restart job" in run.out
    states = slurm_jobs([cancelled, resumed])
    assert states[cancelled]["JobState"] == "CANCELLED" and states[resumed]["JobState"] == "COMPLETED", states
    # SIGTERM from scancel: the pack saved its second run's checkpoint and exited; the retry
    # restored the first run from its final state and resumed the second.
    first, second = subs[0][2].read_text(), subs[1][2].read_text()
    assert "SIGTERM during" in first and "checkpoint saved" in first, first[-3000:]
    assert f"restored {SMALL_KEY} seed 0 from" in second and "not trained again" in second, second[-3000:]
    m = re.search(rf"resumed {re.escape(SMALL_KEY)} seed 1 from (\S*checkpoint\S*) at epoch (\d+) batch (\d+)", second)
    assert m, second[-3000:]
    assert int(m.group(2)) >= done, (m.group(0), done)
    # Each epoch trained once over the two jobs: a resume, not a restart. (Snakemake deletes a rule's
    # log before each attempt, so logs/train/... holds the resumed attempt; the SLURM logs hold both.)
    everything = list(range(1, SMALL_EPOCHS + 1))
    assert epochs_of(first, 0) == everything and epochs_of(second, 0) == []
    before, after = epochs_of(first, 1), epochs_of(second, 1)
    assert before and after and before + after == everything, (before, after)
    assert after[0] == int(m.group(2)), (after, m.group(0))
    log = (wf / SMALL_LOG).read_text()
    assert m.group(0) in log and epochs_of(log, 1) == after
    import pandas as pd

    for d in SMALL_RUNS:
        history = pd.read_parquet(wf / d / "history.parquet")
        assert list(history["epoch"]) == everything
        assert not (wf / d / "checkpoint.pt").exists()


def test_resumed_pack_equals_an_uninterrupted_run_bit_for_bit(resumed_run):
    run, _, _, wf, local, ref = resumed_run
    assert run.returncode == 0 and local.returncode == 0, local.tail()
    import pandas as pd
    import torch

    for d in SMALL_RUNS:
        assert (wf / d / "predictions_test.parquet").read_bytes() == (ref / d / "predictions_test.parquet").read_bytes()
        resumed = torch.load(wf / d / "model.pt", weights_only=True)
        straight = torch.load(ref / d / "model.pt", weights_only=True)
        assert resumed.keys() == straight.keys() and all(torch.equal(resumed[k], straight[k]) for k in resumed)
        cols = ["epoch", "loss", "ce", "kd", "train_accuracy", "test_accuracy", "lr"]
        a = pd.read_parquet(wf / d / "history.parquet")[cols]
        b = pd.read_parquet(ref / d / "history.parquet")[cols]
        pd.testing.assert_frame_equal(a, b, check_exact=True)


# ---- a small experiment, through SLURM and locally ----------------------------------------------


def kind_of(rule: str) -> str | None:
    """train_reference for train_reference_seeds0to9: the kind whose profile settings a pack rule takes."""
    return next((kind for kind in GPU_KINDS if rule.startswith(f"{kind}_")), None)


@pytest.fixture(scope="module")
def e2e_runs(cluster, tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("e2e_slurm"))
    profile = site_profile(wf)
    plan = snakemake(wf, "plan", "-n", "--profile", str(profile), *E2E, limit=LIMIT_SHORT)
    assert plan.returncode == 0, plan.tail()
    # --verbose: the plugin logs each sbatch call at debug level.
    slurm = snakemake(wf, "e2e-slurm", "--profile", str(profile), "--verbose", *E2E, limit=LIMIT_E2E_SLURM)
    local_wf = copy_workflow(tmp_path_factory.mktemp("e2e_local"))
    local = snakemake(local_wf, "e2e-local", "--cores", "2", *E2E, limit=LIMIT_E2E_LOCAL)
    return job_stats(plan.out), slurm, wf, local, local_wf


def test_every_cluster_job_goes_through_sbatch_one_per_pack(e2e_runs):
    planned, run, wf, _, _ = e2e_runs
    assert run.returncode == 0, run.tail()
    subs = run.submissions()
    submitted = Counter(rule for rule, _, _ in subs)
    say(f"e2e experiment: sbatch submissions per rule {dict(submitted)}; planned {dict(planned)}")
    local_rules = {"metrics", "statistics", "figures", "tables", "all"}
    assert submitted == Counter({rule: n for rule, n in planned.items() if rule not in local_rules}), (
        submitted,
        planned,
    )
    assert sum(n for rule, n in submitted.items() if kind_of(rule)) == len(E2E_PLAN.packs)  # one sbatch job per pack
    assert {kind_of(rule) for rule in submitted} == {*GPU_KINDS, None} and submitted["prepare_data"] == len(
        E2E_PLAN.data_keys
    )
    assert planned.keys() >= local_rules
    ids = [jobid for _, jobid, _ in subs]
    assert len(set(ids)) == len(ids)
    # SLURM's own records: every submitted job ran to completion under SLURM.
    jobs = slurm_jobs(ids)
    assert {jobid: job["JobState"] for jobid, job in jobs.items()} == {jobid: "COMPLETED" for jobid in ids}
    assert len({job["JobName"] for job in jobs.values()}) == 1  # one Snakemake run (its run id)
    for rule, jobid, log in subs:  # kept SLURM logs: the job's Snakemake ran exactly that rule
        assert f"Finished jobid: 0 (Rule: {rule})" in log.read_text(), log
    for name in ("summary", "tests", "verdicts"):
        assert (wf / "results" / "tables" / f"{name}.csv").stat().st_size > 0


def test_pack_rules_sbatch_carries_the_profile_request(e2e_runs):
    planned, run, wf, _, _ = e2e_runs
    assert run.returncode == 0, run.tail()
    profile = yaml.safe_load((wf / "profiles" / "slurm-ci" / "config.yaml").read_text())
    runs_per_pack = len(E2E_PLAN.seeds)
    calls = {}
    for line in run.out.splitlines():
        if line.startswith("sbatch call: "):
            args = shlex.split(line.removeprefix("sbatch call: "))
            rule = args[args.index("--comment") + 1].split("_wildcards")[0].removeprefix("rule_")
            calls.setdefault(rule, []).append(args)
    pack_rules = [rule for rule in planned if kind_of(rule)]
    assert {kind_of(rule) for rule in pack_rules} == set(GPU_KINDS)
    for rule in pack_rules:
        want = profile["set-resources"][kind_of(rule)]
        assert want["gpu"] == 1 and want["cpus_per_gpu"] == SITE_GPU_JOB["cpus_per_gpu"]
        minutes = min(runs_per_pack * want["runtime_per_run"], want["runtime_max"])
        assert len(calls.get(rule, [])) == planned[rule], (rule, len(calls.get(rule, [])))
        for args in calls[rule]:
            line = " ".join(args)
            assert "--gpus=1" in args, line
            assert f"--cpus-per-gpu={want['cpus_per_gpu']}" in args and "--cpus-per-task" not in line, line
            assert args[args.index("-t") + 1] == str(minutes), line
            assert args[args.index("--mem") + 1] == str(want["mem_mb"]), line
            assert args[args.index("-p") + 1] == PARTITION and "-A" not in args, line
        # ... and SLURM took exactly that request: one GPU, one CPU per GPU, the memory, the time limit.
        ids = [jobid for r, jobid, _ in run.submissions() if r == rule]
        jobs = slurm_jobs(ids)
        assert len(jobs) == len(ids)
        for jobid, job in jobs.items():
            got = {
                k: job.get(k)
                for k in ("TresPerJob", "CpusPerTres", "NumCPUs", "MinMemoryNode", "TimeLimit", "Partition", "Account")
            }
            assert got == {
                "TresPerJob": "gres:gpu:1",
                "CpusPerTres": f"gres:gpu:{want['cpus_per_gpu']}",
                "NumCPUs": str(want["cpus_per_gpu"]),
                "MinMemoryNode": f"{want['mem_mb']}M",
                "TimeLimit": f"{minutes // 60:02d}:{minutes % 60:02d}:00",
                "Partition": PARTITION,
                "Account": "(null)",
            }, (jobid, got)
    # prepare_data is a CPU job: no GPU asked for.
    assert all("--gpus=1" not in args for args in calls["prepare_data"])


def test_results_through_slurm_equal_a_local_run(e2e_runs):
    _, run, wf, local, local_wf = e2e_runs
    assert run.returncode == 0, run.tail()
    assert local.returncode == 0, local.tail()
    assert "submitted with SLURM" not in local.out
    tables = sorted(p.relative_to(local_wf) for p in (local_wf / "results" / "tables").iterdir())
    analysis = [Path("results/analysis") / f"{name}.parquet" for name in ("metrics", "tests", "verdicts")]
    assert len(tables) >= 6
    for rel in [*tables, *analysis]:
        assert (wf / rel).read_bytes() == (local_wf / rel).read_bytes(), (
            f"{rel} differs between the SLURM and the local run"
        )
    predictions = sorted(
        p.relative_to(local_wf) for p in (local_wf / "results" / "runs").rglob("predictions_*.parquet")
    )
    assert len(predictions) == len(E2E_PLAN.runs)
    differ = [str(rel) for rel in predictions if (wf / rel).read_bytes() != (local_wf / rel).read_bytes()]
    assert not differ, f"{len(differ)} predictions files differ, e.g. {differ[:3]}"
