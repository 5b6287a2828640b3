"""Fault injection: kill a training job for real (SIGKILL, SIGTERM) and resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import run_params, train_into

from kdtransfer.data import load_dataset, save_arrays
from kdtransfer.io.predictions import PredictionsError, read_predictions
from kdtransfer.spec import RunSpec

MODEL = {"arch": "mlp", "options": {"hidden": [32], "dropout": 0.1}}
RECIPE = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 30, "batch_size": 8}
SPEC = run_params(
    "rcd",
    model=MODEL,
    recipe=RECIPE,
    kd={"alpha": 0.9, "temperature": 4},
    rcd={"noise": "gaussian", "resample": "step"},
    seed=3,
)
# rcd of the hint variant: a learned regressor and noise feature maps, both of which a resumed
# run must restore exactly (the regressor's weights and momentum, the feature-noise generator).
HINT_TEACHER = {"arch": "mlp", "options": {"hidden": [48]}}
HINT_SPEC = run_params(
    "rcd",
    model=MODEL,
    recipe=dict(RECIPE, epochs=6),
    teacher=HINT_TEACHER,
    seed=3,
    kd={
        "alpha": 0.9,
        "temperature": 4,
        "variant": "hint",
        "feature_weight": 0.5,
        "layers": ["features.1"],
        "teacher_layers": ["features.1"],
    },
    rcd={"noise": "gaussian", "resample": "step"},
)
RUNNER = """
import json, sys
from kdtransfer.spec import RunSpec
from kdtransfer.training.job import train_and_save
from kdtransfer.training.state import TrainingInterrupted
spec, data, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
teacher_model = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
try:
    train_and_save(RunSpec.from_params(spec), data, weights_out=out + "/model.pt", teacher_model=teacher_model,
                   predictions_out={"test": out + "/predictions_test.parquet"}, history_out=out + "/history.parquet",
                   checkpoint_every=1)
except TrainingInterrupted:
    sys.exit(143)
"""


# A pack of three runs of one run key (seeds 2, 3, 4), shorter, for kills inside a pack.
PACK_SEEDS = (2, 3, 4)
PACK_SPECS = [
    run_params(
        "rcd",
        model=MODEL,
        recipe=dict(RECIPE, epochs=10),
        kd={"alpha": 0.9, "temperature": 4},
        rcd={"noise": "gaussian", "resample": "step"},
        seed=seed,
    )
    for seed in PACK_SEEDS
]
PACK_RUNNER = """
import json, sys
from kdtransfer.spec import RunSpec
from kdtransfer.training.pack import PackRun, train_pack
from kdtransfer.training.state import TrainingInterrupted
specs, data, out, concurrency = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
runs = [PackRun(RunSpec.from_params(s), f"{out}/seed{s['seed']}/model.pt", f"{out}/seed{s['seed']}/history.parquet",
                {"test": f"{out}/seed{s['seed']}/predictions_test.parquet"}) for s in specs]
try:
    train_pack(runs, data, checkpoint_every=1, concurrency=concurrency)
except TrainingInterrupted:
    sys.exit(143)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    save_arrays(load_dataset("digits", test_fraction=0.4), path)
    return str(path)


def start(data, out, spec=SPEC, teacher_model=None):
    extra = [json.dumps(teacher_model)] if teacher_model else []
    return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(spec), data, str(out), *extra])


def checkpoint_epoch(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True)["epoch"])
    except Exception:
        return -1


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("clean")
    assert start(data, out).wait(timeout=300) == 0
    return read_predictions(out / "predictions_test.parquet")


def kill_and_resume(tmp_path, data, sig, at_epoch, **run):
    """Kill a run once its checkpoint reaches `at_epoch`, rerun it, return the resumed predictions."""
    proc = start(data, tmp_path, **run)
    ckpt = tmp_path / "checkpoint.pt"
    deadline = time.time() + 120
    while checkpoint_epoch(ckpt) < at_epoch:
        assert proc.poll() is None, "training finished before the fault could be injected"
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.03)  # land somewhere inside the next epoch
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    assert code != 0
    assert not (tmp_path / "predictions_test.parquet").exists()
    state = torch.load(ckpt, weights_only=True)
    if sig == signal.SIGTERM:
        assert code == 143 and state["batch"] > 0  # saved mid-epoch on SIGTERM
    assert start(data, tmp_path, **run).wait(timeout=300) == 0
    assert not [p.name for p in tmp_path.iterdir() if "checkpoint" in p.name]  # half-written ones too
    return read_predictions(tmp_path / "predictions_test.parquet")


@pytest.mark.parametrize(
    "sig,at_epoch", [(signal.SIGKILL, 3), (signal.SIGKILL, 17), (signal.SIGTERM, 5), (signal.SIGTERM, 21)]
)
def test_killed_run_resumes_bit_identical(tmp_path, data, uninterrupted, sig, at_epoch):
    resumed = kill_and_resume(tmp_path, data, sig, at_epoch)
    assert resumed.logits.tobytes() == uninterrupted.logits.tobytes()


def start_pack(data, out, concurrency=1):
    return subprocess.Popen(
        [sys.executable, "-c", PACK_RUNNER, json.dumps(PACK_SPECS), data, str(out), str(concurrency)]
    )


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pack_predictions(out: Path) -> list[bytes]:
    return [(out / f"seed{seed}" / "predictions_test.parquet").read_bytes() for seed in PACK_SEEDS]


@pytest.fixture(scope="module")
def uninterrupted_pack(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("clean_pack")
    assert start_pack(data, out).wait(timeout=300) == 0
    return pack_predictions(out)


@pytest.mark.parametrize(
    "sig,run,at_epoch", [(signal.SIGKILL, 1, 4), (signal.SIGKILL, 2, 1), (signal.SIGTERM, 2, 6), (signal.SIGTERM, 3, 2)]
)
def test_killed_pack_resumes_each_run_bit_identical(tmp_path, data, uninterrupted_pack, sig, run, at_epoch):
    """Kill a pack while its `run`-th run trains; the rerun restores the runs before it from their
    final state, resumes it from its checkpoint, trains the rest: every run as if never killed."""
    proc = start_pack(data, tmp_path)
    ckpt = tmp_path / f"seed{PACK_SEEDS[run - 1]}" / "checkpoint.pt"
    deadline = time.time() + 120
    while checkpoint_epoch(ckpt) < at_epoch:
        assert proc.poll() is None, "the pack finished before the fault could be injected"
        assert time.time() < deadline
        time.sleep(0.01)
    time.sleep(0.03)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    assert code == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    for seed in PACK_SEEDS[: run - 1]:  # finished before the kill: outputs written, final state kept
        assert (tmp_path / f"seed{seed}" / "predictions_test.parquet").exists()
        assert checkpoint_epoch(tmp_path / f"seed{seed}" / "checkpoint.pt") == 10
    if sig == signal.SIGTERM:
        assert torch.load(ckpt, weights_only=True)["batch"] > 0  # saved mid-epoch on SIGTERM
    for path in [*tmp_path.rglob("*.parquet"), *tmp_path.rglob("model.pt")]:  # Snakemake deletes a failed job's outputs
        path.unlink()
    assert start_pack(data, tmp_path).wait(timeout=300) == 0
    assert pack_predictions(tmp_path) == uninterrupted_pack
    assert not list(tmp_path.rglob("*checkpoint*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; workers die with their job on Linux")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_concurrent_pack_stops_its_workers_and_resumes_each_run_bit_identical(
    tmp_path, data, uninterrupted_pack, sig
):
    """Kill a pack training two runs at a time (seeds 2 and 4 in one worker, 3 in the other) while
    both workers train: SIGTERM reaches each worker, which checkpoints its run mid-epoch; SIGKILL
    takes the workers down with the job (they checkpoint too). No worker trains on. The rerun,
    one run at a time, gives every run as if never killed."""
    proc = start_pack(data, tmp_path, concurrency=2)
    checkpoints = {seed: tmp_path / f"seed{seed}" / "checkpoint.pt" for seed in PACK_SEEDS}
    # Seed 3 is the second worker's first run, which starts last: at epoch 3 both workers train
    # (the first on seed 2, or already on seed 4).
    deadline = time.time() + 120
    while checkpoint_epoch(checkpoints[3]) < 3:
        assert proc.poll() is None, "the pack finished before the fault could be injected"
        assert time.time() < deadline
        time.sleep(0.01)
    workers = children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
    deadline = time.time() + 60
    while any(alive(w) for w in workers):
        assert time.time() < deadline, "a worker trains on after its job was killed"
        time.sleep(0.05)
    # Seed 3 was in training: saved mid-epoch on SIGTERM. Every other run is finished (its final
    # state kept) or was the first worker's run in training, saved mid-epoch too.
    assert 3 <= checkpoint_epoch(checkpoints[3]) < 10 and torch.load(checkpoints[3], weights_only=True)["batch"] > 0
    for seed in (2, 4):
        epoch = checkpoint_epoch(checkpoints[seed])
        assert epoch in (-1, 10) or torch.load(checkpoints[seed], weights_only=True)["batch"] > 0, seed
    for path in [*tmp_path.rglob("*.parquet"), *tmp_path.rglob("model.pt")]:  # Snakemake deletes a failed job's outputs
        path.unlink()
    assert start_pack(data, tmp_path).wait(timeout=300) == 0
    assert pack_predictions(tmp_path) == uninterrupted_pack
    assert not list(tmp_path.rglob("*checkpoint*")) and not list(tmp_path.rglob(".pack-workers"))


@pytest.fixture(scope="module")
def uninterrupted_hint(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("clean_hint")
    assert start(data, out, HINT_SPEC, HINT_TEACHER).wait(timeout=300) == 0
    return read_predictions(out / "predictions_test.parquet")


@pytest.mark.parametrize("sig,at_epoch", [(signal.SIGKILL, 2), (signal.SIGTERM, 3)])
def test_killed_feature_kd_run_resumes_bit_identical(tmp_path, data, uninterrupted_hint, sig, at_epoch):
    resumed = kill_and_resume(tmp_path, data, sig, at_epoch, spec=HINT_SPEC, teacher_model=HINT_TEACHER)
    assert resumed.logits.tobytes() == uninterrupted_hint.logits.tobytes()


def test_corrupt_checkpoint_is_discarded_and_training_restarts(tmp_path, data, uninterrupted, caplog):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    train_into(tmp_path, RunSpec.from_params(SPEC), data)
    assert "unreadable" in caplog.text and "checkpoint.pt" in caplog.text
    assert read_predictions(tmp_path / "p.parquet").logits.tobytes() == uninterrupted.logits.tobytes()


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, data, uninterrupted, caplog):
    from kdtransfer.training.state import previous_checkpoint_path

    caplog.set_level("INFO", logger="kdtransfer")
    proc = start(data, tmp_path)
    ckpt = tmp_path / "checkpoint.pt"
    deadline = time.time() + 120
    while checkpoint_epoch(ckpt) < 6 or not previous_checkpoint_path(ckpt).exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    previous_epoch = checkpoint_epoch(previous_checkpoint_path(ckpt))
    assert previous_epoch >= 5
    raw = ckpt.read_bytes()
    ckpt.write_bytes(raw[: len(raw) // 2])  # a checkpoint cut short
    train_into(tmp_path, RunSpec.from_params(SPEC), data)
    assert "checkpoint.pt is unreadable" in caplog.text and "resuming from the previous checkpoint" in caplog.text
    # The form docs/cluster.md documents for a resumed job's log: run, seed, checkpoint, position.
    spec = RunSpec.from_params(SPEC)
    assert f"resumed {spec.run_key} seed 3 from {ckpt} at epoch {previous_epoch + 1} batch" in caplog.text
    assert read_predictions(tmp_path / "p.parquet").logits.tobytes() == uninterrupted.logits.tobytes()
    assert not ckpt.exists() and not previous_checkpoint_path(ckpt).exists()


def test_a_checkpoint_exists_at_every_instant_of_writing_the_next(tmp_path, monkeypatch):
    """A SIGKILL can land anywhere; while the next checkpoint is being written the current one
    must still be at checkpoint.pt (the CI failure this guards against: killed mid-write, none)."""
    from kdtransfer.training import state as train

    ckpt = tmp_path / "checkpoint.pt"
    train.save_checkpoint_file({"epoch": 1}, ckpt)
    real_save, present_during_write = torch.save, []

    def save_and_look(obj, f, *args, **kwargs):
        present_during_write.append(torch.load(ckpt, weights_only=True)["epoch"])
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(train.torch, "save", save_and_look)
    train.save_checkpoint_file({"epoch": 2}, ckpt)
    monkeypatch.setattr(train.os, "link", lambda *a: (_ for _ in ()).throw(OSError("no hard links here")))
    train.save_checkpoint_file({"epoch": 3}, ckpt)
    assert present_during_write == [1, 2]
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    assert torch.load(train.previous_checkpoint_path(ckpt), weights_only=True)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


def test_finished_run_removes_checkpoints_and_half_written_leftovers(tmp_path):
    from kdtransfer.training.state import remove_checkpoints

    names = [
        "checkpoint.pt",
        "checkpoint.prev.pt",
        ".checkpoint.pt.tmp41",
        ".checkpoint.prev.pt.tmp42",
        "model.pt",
        ".model.pt.tmp43",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    remove_checkpoints(tmp_path / "checkpoint.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".model.pt.tmp43", "model.pt"]


def test_truncated_predictions_name_the_file(tmp_path, uninterrupted):
    raw = Path(uninterrupted.path).read_bytes()
    bad = tmp_path / "predictions_test.parquet"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PredictionsError, match="predictions_test.parquet.*unreadable.*re-run the training rule"):
        read_predictions(bad)
    # Under the workflow's layout the message names the rule that makes the file.
    for condition, rule in (
        ("kd", "train_distilled_seeds"),
        ("rcd", "train_distilled_seeds"),
        ("nokd", "train_reference_seeds"),
        ("teacher", "train_reference_seeds"),
    ):
        run_dir = tmp_path / "results" / "runs" / condition / "digits_mlp" / "seed0"
        run_dir.mkdir(parents=True)
        (run_dir / "predictions_test.parquet").write_bytes(raw[: len(raw) // 2])
        with pytest.raises(
            PredictionsError, match=rf"unreadable.*re-run its training pack \(rule {rule}\.\.\.\), which makes it"
        ):
            read_predictions(run_dir / "predictions_test.parquet")


def test_nan_loss_stops_with_run_epoch_and_hint(tmp_path, data):
    from kdtransfer.training.progress import TrainingDiverged

    spec = run_params("nokd", model=MODEL, recipe=dict(RECIPE, lr=1e6, schedule="constant", epochs=3), seed=3)
    with pytest.raises(TrainingDiverged) as info:
        train_into(tmp_path, RunSpec.from_params(spec), data)
    msg = str(info.value)
    assert spec["run_key"] in msg and "seed 3" in msg and "epoch" in msg and "lower recipe.lr" in msg
    assert not (tmp_path / "p.parquet").exists() and not (tmp_path / "model.pt").exists()


def test_stale_checkpoint_from_other_hyperparameters_is_not_resumed(tmp_path, data, uninterrupted, caplog):
    from kdtransfer.data import load_arrays
    from kdtransfer.training.loop import train_run

    # A 4-epoch run leaves a checkpoint (epoch 3); then the config changes to SPEC.
    other = RunSpec.from_params(dict(SPEC, recipe=dict(SPEC["recipe"], epochs=4, lr=0.05)))
    train_run(other, load_arrays(data), checkpoint_path=tmp_path / "checkpoint.pt", checkpoint_every=1)
    assert (tmp_path / "checkpoint.pt").exists()
    train_into(tmp_path, RunSpec.from_params(SPEC), data)
    assert "different run specification" in caplog.text
    assert read_predictions(tmp_path / "p.parquet").logits.tobytes() == uninterrupted.logits.tobytes()


def test_checkpoint_of_another_training_revision_is_not_resumed(tmp_path, data, uninterrupted, caplog):
    """A finished run's final state (kept until its pack is done) or a mid-run checkpoint from code
    of an older TRAINING_REVISION would be restored as today's result: it is retrained instead."""
    from kdtransfer.data import load_arrays
    from kdtransfer.training.loop import train_run

    spec = RunSpec.from_params(SPEC)
    train_run(spec, load_arrays(data), checkpoint_path=tmp_path / "checkpoint.pt", checkpoint_every=1)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):  # the final state, which a pack keeps, and the one before
        state = torch.load(tmp_path / name, weights_only=True)
        state["training_revision"] -= 1
        torch.save(state, tmp_path / name)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == spec.recipe.epochs
    caplog.set_level("INFO", logger="kdtransfer")
    train_into(tmp_path, spec, data)
    assert caplog.text.count("written by training revision") == 2 and "restored" not in caplog.text
    assert "resumed" not in caplog.text  # trained from scratch
    assert read_predictions(tmp_path / "p.parquet").logits.tobytes() == uninterrupted.logits.tobytes()


def test_missing_dataset_stops_only_its_jobs_and_names_the_download(tmp_path):
    """A setup whose data files are absent: its prepare_data job fails naming the download
    command; the setups with data still train, and their predictions are complete and valid."""
    import yaml
    from conftest import copy_workflow, planned, run_dir, snakemake

    wf = copy_workflow(tmp_path)
    cfg = yaml.safe_load((wf / "tests/configs/tiny.yaml").read_text())
    cfg["seeds"] = 2
    cfg["setups"]["digits_mlp"].pop("sweep")
    cfg["setups"] = {
        "digits_mlp": cfg["setups"]["digits_mlp"],
        "cifar_cnn": {"dataset": "cifar10", "teacher": "cnn", "recipe": "digits"},
    }
    cfg["datasets"]["cifar10"] = {"loader": "cifar10", "options": {"root": "resources/data/cifar"}}
    cfg["models"]["cnn"] = {"arch": "cnn2d", "options": {"channels": [4]}}
    (wf / "missing.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(wf, "--cores", "2", "--configfile", "missing.yaml", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "resources/data/cifar/cifar-10-batches-py" in out
    assert "snakemake --cores 1 resources/data/cifar10.done" in out and "download_dataset" in out
    plan = planned(wf / "missing.yaml")
    cifar = plan.data_file("cifar10")
    assert (
        "Traceback" not in (wf / cifar.replace("results/data", "logs/prepare_data").replace(".npz", ".log")).read_text()
    )
    assert not (wf / cifar).exists()
    for condition in ("teacher", "kd", "rcd"):
        for seed in (0, 1):
            preds = read_predictions(wf / run_dir(plan, condition, "digits_mlp", seed) / "predictions_test.parquet")
            assert preds.condition == condition and preds.num_samples > 0
