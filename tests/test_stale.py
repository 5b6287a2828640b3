"""Never a stale answer, never a surprise retrain (real Snakemake runs of a small config).

Each scenario starts from a copy of one finished, up-to-date run: after any failure the next run
re-plans exactly the failed jobs and everything downstream; nothing that only touches code or
moves files retrains; two experiment files in one checkout never overwrite each other's runs.
"""

import os
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, counts, planned, planned_jobs, run_dir, snakemake

pytestmark = pytest.mark.e2e

SMALL = {
    "seeds": 2,
    "datasets": {"digits": {"loader": "digits", "options": {"test_fraction": 0.4}}},
    "models": {"mlp": {"arch": "mlp", "options": {"hidden": [16]}}},
    "recipes": {"digits": {"lr": 0.05, "epochs": 2, "batch_size": 64}},
    "setups": {"digits_mlp": {"dataset": "digits", "teacher": "mlp", "recipe": "digits", "kd": {"temperature": 4}}},
    "analysis": {"bootstrap": 200},
}
ANALYSIS = Counter({"metrics": 1, "statistics": 1, "figures": 1, "tables": 1, "all": 1})
# SMALL's two seeds are one pack per run key (the default pack_size, 10: the block of seeds 0-9).
REFERENCE, DISTILLED = "train_reference_seeds0to9", "train_distilled_seeds0to9"


def write_config(wf: Path, name: str, config: dict) -> list[str]:
    (wf / name).write_text(yaml.safe_dump(config))
    return ["--configfile", name]


@pytest.fixture(scope="module")
def finished_small(tmp_path_factory) -> Path:
    wf = copy_workflow(tmp_path_factory.mktemp("stale_base"))
    args = write_config(wf, "small.yaml", SMALL)
    snakemake(wf, "--cores", "2", *args)
    return wf


@pytest.fixture
def wf(finished_small, tmp_path) -> Path:
    """A private copy of the finished run (file times and Snakemake's records kept)."""
    dest = tmp_path / "wf"
    shutil.copytree(finished_small, dest, symlinks=True)
    return dest


def dry_run(wf: Path, *args) -> Counter:
    proc = snakemake(wf, "-n", *args)
    return Counter() if "Nothing to be done" in proc.stdout + proc.stderr else counts(proc.stdout)


def test_a_change_whose_new_runs_fail_is_replanned_until_they_succeed(wf):
    broken = dict(
        SMALL, setups={"digits_mlp": dict(SMALL["setups"]["digits_mlp"], kd={"variant": "hint", "layers": ["bogus"]})}
    )
    args = write_config(wf, "small.yaml", broken)
    summary_before = (wf / "results/tables/summary.csv").read_text()
    for attempt in range(2):  # the same command, twice: it fails both times, never "nothing to do"
        proc = snakemake(wf, "--cores", "2", *args, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, f"attempt {attempt}: {out[-3000:]}"
        assert "no module named 'bogus'" in out and "may still show an earlier run's answer" in out
    # The failed kd and rcd packs and everything downstream of them stay planned.
    assert dry_run(wf, *args) == Counter({DISTILLED: 2}) + ANALYSIS
    # The old analysis was never re-labelled as current: the tables are the old run's, untouched.
    assert (wf / "results/tables/summary.csv").read_text() == summary_before


def test_truncated_predictions_are_recomputed_after_the_suggested_forcerun(wf):
    plan = planned(wf / "small.yaml")
    args = ["--configfile", "small.yaml"]
    victim = f"{run_dir(plan, 'kd', 'digits_mlp', 0)}/predictions_test.parquet"
    raw = (wf / victim).read_bytes()
    (wf / victim).write_bytes(raw[: len(raw) // 3])
    proc = snakemake(wf, "--cores", "2", *args, check=False)  # the newer file re-runs metrics, which stops
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and victim in out and f"--forcerun {victim}" in out
    snakemake(wf, "--cores", "2", "--forcerun", victim, *args)  # the fix the message suggests
    assert dry_run(wf, *args) == Counter()
    metrics = pd.read_parquet(wf / "results/analysis/metrics.parquet")
    assert len(metrics.query("condition == 'kd' and seed == 0")) == 1  # the run is analysed again


def test_predictions_a_failed_job_deleted_are_replanned_with_their_analysis(wf):
    plan = planned(wf / "small.yaml")
    (wf / run_dir(plan, "rcd", "digits_mlp", 1) / "predictions_test.parquet").unlink()
    jobs = planned_jobs(snakemake(wf, "-n", "--configfile", "small.yaml").stdout)
    assert Counter(rule for rule, _ in jobs) == Counter({DISTILLED: 1}) + ANALYSIS
    assert [w["condition"] for rule, w in jobs if rule == DISTILLED] == ["rcd"]  # the rcd pack, of seeds 0 and 1


def test_a_deleted_per_setup_metrics_file_is_replanned(wf):
    (wf / "results/analysis/metrics/digits_mlp.parquet").unlink()
    assert dry_run(wf, "--configfile", "small.yaml") == ANALYSIS


def test_train_split_predictions_are_made_when_asked_for(wf):
    args = write_config(wf, "small.yaml", dict(SMALL, training={"predict_splits": ["test", "train"]}))
    assert dry_run(wf, *args) == Counter({REFERENCE: 2, DISTILLED: 2}) + ANALYSIS


def test_editing_code_retrains_nothing(wf):
    for script in ("workflow/scripts/train.py", "workflow/scripts/metrics.py"):
        os.utime(wf / script)  # an edit, a git pull, a fresh clone: a newer script
    assert dry_run(wf, "--configfile", "small.yaml") == Counter()


def test_moved_results_are_kept_with_snakemake_touch(wf, tmp_path):
    # A fresh clone with results/ and .snakemake/ copied in, file times not preserved.
    (tmp_path / "moved").mkdir()
    moved = copy_workflow(tmp_path / "moved")
    for name in ("results", ".snakemake", "small.yaml"):
        copy = shutil.copytree if (wf / name).is_dir() else shutil.copyfile
        copy(wf / name, moved / name, **({"copy_function": shutil.copyfile} if copy is shutil.copytree else {}))
    snakemake(moved, "--touch", "--cores", "1", "--configfile", "small.yaml")
    assert dry_run(moved, "--configfile", "small.yaml") == Counter()


def test_two_experiment_files_never_overwrite_each_others_runs(wf):
    # The same dataset, model and recipe names, meaning other things: new runs beside the old.
    other = dict(SMALL, datasets={"digits": {"loader": "digits", "options": {"test_fraction": 0.5}}})
    runs = sorted((wf / "results/runs").rglob("predictions_test.parquet"))
    before = {p: p.read_bytes() for p in runs}
    snakemake(wf, "--cores", "2", *write_config(wf, "other.yaml", other))
    assert all(p.read_bytes() == content for p, content in before.items())
    assert len(list((wf / "results/runs").rglob("predictions_test.parquet"))) == 2 * len(runs)
    # Back to the first experiment: its runs are all there; only its analysis is redone.
    assert dry_run(wf, "--configfile", "small.yaml") == ANALYSIS


def test_the_same_run_in_two_experiment_files_is_shared(wf):
    # Another experiment with an extra setup that reuses the teacher and control: they are not retrained.
    extra = dict(
        SMALL, setups={**SMALL["setups"], "digits_mlp_T8": dict(SMALL["setups"]["digits_mlp"], kd={"temperature": 8})}
    )
    jobs = dry_run(wf, *write_config(wf, "extra.yaml", extra))
    assert jobs == Counter({DISTILLED: 2, "metrics": 1, "statistics": 1, "figures": 1, "tables": 1, "all": 1})


def test_pack_size_and_seed_changes_train_only_new_seeds(wf):
    runs = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted((wf / "results/runs").rglob("*")) if p.is_file()}
    # Another pack size changes no run: nothing to do, though every training rule is another one.
    assert dry_run(wf, *write_config(wf, "small.yaml", dict(SMALL, training={"pack_size": 1}))) == Counter()
    # A third seed: only its runs (one-seed packs here) and the analysis.
    args = write_config(wf, "small.yaml", dict(SMALL, seeds=3, training={"pack_size": 1}))
    assert dry_run(wf, *args) == Counter({"train_reference_seed2": 2, "train_distilled_seed2": 2}) + ANALYSIS
    snakemake(wf, "--cores", "2", *args)
    assert dry_run(wf, *args) == Counter()
    assert all(p.read_bytes() == content and p.stat().st_mtime_ns == mtime for p, (content, mtime) in runs.items())
    metrics = pd.read_parquet(wf / "results/analysis/metrics.parquet")
    assert sorted(set(metrics["seed"])) == [0, 1, 2]
    # Back to two seeds, in packs of ten: the analysis again (over seeds 0 and 1), no training.
    assert dry_run(wf, *write_config(wf, "small.yaml", SMALL)) == ANALYSIS


def test_a_run_failing_inside_a_pack_is_the_only_one_retrained_after_the_fix(wf):
    """A kd pack whose seed-1 teacher file is corrupt: the job fails naming that run; seed 0
    trained and keeps its final state although Snakemake deletes the job's outputs; once the
    teacher is fixed, the rerun restores seed 0 in seconds and trains seed 1 alone."""
    plan = planned(wf / "small.yaml")
    args = ["--configfile", "small.yaml"]
    kd = {seed: wf / run_dir(plan, "kd", "digits_mlp", seed) for seed in (0, 1)}
    before = {seed: (d / "predictions_test.parquet").read_bytes() for seed, d in kd.items()}
    teacher = wf / run_dir(plan, "teacher", "digits_mlp", 1) / "model.pt"
    good = teacher.read_bytes()
    teacher.write_bytes(good[: len(good) // 2])  # an interrupted copy
    proc = snakemake(wf, "--cores", "2", *args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    key = plan.run_key("kd", "digits_mlp")
    assert f"1 of 2 runs of pack {key} seeds 0-1 failed: {key} seed 1 (TeacherError" in out and "unreadable" in out
    assert not (kd[0] / "predictions_test.parquet").exists()  # deleted by Snakemake: the job failed
    assert (kd[0] / "checkpoint.pt").exists() and not (kd[1] / "checkpoint.pt").exists()
    teacher.write_bytes(good)
    snakemake(wf, "--cores", "2", *args)
    log = (wf / paths_log(key)).read_text()
    assert f"restored {key} seed 0 from" in log and f"resumed {key} seed 0" not in log
    assert [seed for seed in (0, 1) if f"[{key} seed {seed}] kdtransfer.training.loop: epoch 1/" in log] == [1]
    assert {seed: (d / "predictions_test.parquet").read_bytes() for seed, d in kd.items()} == before
    assert not list((wf / "results/runs").rglob("checkpoint*"))


def paths_log(key: str) -> str:
    from kdtransfer import paths

    return paths.TRAIN_LOG.format(key=key, pack="seeds0to9")


def test_pack_concurrency_retrains_nothing_and_a_concurrent_pack_trains_each_run_as_in_turn(wf):
    """training.pack_concurrency never changes a result: changing it leaves nothing to do, and the
    distilled packs retrained (forced) two runs at a time, one worker process per run, write the
    same predictions and weights; each worker names its runs in the job's one log."""
    plan = planned(wf / "small.yaml")
    outputs = [
        wf / run_dir(plan, condition, "digits_mlp", seed) / name
        for condition in ("kd", "rcd")
        for seed in (0, 1)
        for name in ("predictions_test.parquet", "model.pt")
    ]
    before = {path: path.read_bytes() for path in outputs}
    args = write_config(wf, "small.yaml", dict(SMALL, training={"pack_concurrency": 2}))
    assert dry_run(wf, *args) == Counter()
    proc = snakemake(wf, "--cores", "2", "--forcerun", DISTILLED, *args)
    assert "threads: 2" in proc.stdout + proc.stderr  # a core per worker
    assert all(path.read_bytes() == content for path, content in before.items())
    for condition in ("kd", "rcd"):
        key = plan.run_key(condition, "digits_mlp")
        log = (wf / "logs" / "train" / key / "seeds0to9.log").read_text()
        assert log.count("share (1 of 2 at a time) of 1") == 2, log[-3000:]
        assert all(f"[{key} seed {seed}] kdtransfer.training.job: done" in log for seed in (0, 1))
        assert "pack done: 2 runs in" in log
    assert dry_run(wf, *args) == Counter()
