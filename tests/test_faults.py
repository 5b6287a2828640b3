"""Fault injection: kill a training job for real (SIGKILL, SIGTERM) and resume."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kdtransfer.data import load_dataset, save_arrays
from kdtransfer.predictions import PredictionsError, read_predictions

SPEC = {
    "run_key": "kd/x", "condition": "rcd", "seed": 3,
    "model": {"arch": "mlp", "options": {"hidden": [32], "dropout": 0.1}},
    "recipe": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 30, "batch_size": 8},
    "kd": {"alpha": 0.9, "temperature": 4}, "rcd": {"noise": "gaussian", "resample": "step"},
    "checkpoint_every": 1,
}
RUNNER = """
import json, sys
from kdtransfer.train import RunSpec, TrainingInterrupted, train_and_save
spec, data, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    train_and_save(RunSpec.from_params(spec), data, weights_out=out + "/model.pt",
                   predictions_out={"test": out + "/predictions_test.parquet"}, history_out=out + "/history.parquet")
except TrainingInterrupted:
    sys.exit(143)
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    save_arrays(load_dataset("digits", test_fraction=0.4), path)
    return str(path)


def start(data, out):
    return subprocess.Popen([sys.executable, "-c", RUNNER, json.dumps(SPEC), data, str(out)])


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


@pytest.mark.parametrize("sig,at_epoch", [(signal.SIGKILL, 3), (signal.SIGKILL, 17), (signal.SIGTERM, 5), (signal.SIGTERM, 21)])
def test_killed_run_resumes_bit_identical(tmp_path, data, uninterrupted, sig, at_epoch):
    proc = start(data, tmp_path)
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
    assert start(data, tmp_path).wait(timeout=300) == 0
    resumed = read_predictions(tmp_path / "predictions_test.parquet")
    assert resumed.logits.tobytes() == uninterrupted.logits.tobytes()
    assert not ckpt.exists()


def test_corrupt_checkpoint_is_discarded_and_training_restarts(tmp_path, data, uninterrupted, caplog):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    from kdtransfer.train import RunSpec, train_and_save

    train_and_save(RunSpec.from_params(SPEC), data, weights_out=str(tmp_path / "model.pt"),
                   predictions_out={"test": str(tmp_path / "p.parquet")}, history_out=str(tmp_path / "h.parquet"))
    assert "unreadable" in caplog.text and "checkpoint.pt" in caplog.text
    assert read_predictions(tmp_path / "p.parquet").logits.tobytes() == uninterrupted.logits.tobytes()


def test_truncated_predictions_name_the_file(tmp_path, uninterrupted):
    raw = Path(uninterrupted.path).read_bytes()
    bad = tmp_path / "predictions_test.parquet"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PredictionsError, match="predictions_test.parquet.*unreadable.*re-run the training rule"):
        read_predictions(bad)


def test_nan_loss_stops_with_run_epoch_and_hint(tmp_path, data):
    from kdtransfer.train import RunSpec, TrainingDiverged, train_and_save

    spec = dict(SPEC, recipe=dict(SPEC["recipe"], lr=1e6, schedule="constant", epochs=3), condition="nokd",
                run_key="nokd/boom")
    spec.pop("rcd"), spec.pop("kd")
    with pytest.raises(TrainingDiverged) as info:
        train_and_save(RunSpec.from_params(spec), data, weights_out=str(tmp_path / "model.pt"),
                       predictions_out={"test": str(tmp_path / "p.parquet")}, history_out=str(tmp_path / "h.parquet"))
    msg = str(info.value)
    assert "nokd/boom" in msg and "seed 3" in msg and "epoch" in msg and "lower recipe.lr" in msg
    assert not (tmp_path / "p.parquet").exists() and not (tmp_path / "model.pt").exists()


def test_stale_checkpoint_from_other_hyperparameters_is_not_resumed(tmp_path, data, uninterrupted, caplog):
    from kdtransfer.data import load_arrays
    from kdtransfer.train import RunSpec, train_and_save, train_run

    # A 4-epoch run leaves a checkpoint (epoch 3); then the config changes to SPEC.
    other = RunSpec.from_params(dict(SPEC, recipe=dict(SPEC["recipe"], epochs=4, lr=0.05)))
    train_run(other, load_arrays(data), checkpoint_path=tmp_path / "checkpoint.pt")
    assert (tmp_path / "checkpoint.pt").exists()
    train_and_save(RunSpec.from_params(SPEC), data, weights_out=str(tmp_path / "model.pt"),
                   predictions_out={"test": str(tmp_path / "p.parquet")}, history_out=str(tmp_path / "h.parquet"))
    assert "different run specification" in caplog.text
    assert read_predictions(tmp_path / "p.parquet").logits.tobytes() == uninterrupted.logits.tobytes()
