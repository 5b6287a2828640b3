"""Checkpoints written before objectives were nn.Modules still resume, bit-identically.

Those checkpoints held the objective's state as two top-level entries: "regressor" (the hint
regressor's own state_dict, or None) and "targets" (the signal's: {} for a teacher, the noise
generators for rcd; None for cross-entropy). Today's checkpoints hold the objective's
state_dict under "objective". Each test takes a mid-run checkpoint, lays it out the old way by
hand, and resumes from it.
"""

import shutil

import pytest
import torch
from conftest import run_spec, train_into

from kdtransfer.data import load_dataset, save_arrays
from kdtransfer.io.predictions import read_predictions

MODEL = {"arch": "mlp", "options": {"hidden": [32], "dropout": 0.1}}
TEACHER = {"arch": "mlp", "options": {"hidden": [48]}}
RECIPE = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 3, "batch_size": 32}
HINT = {
    "alpha": 0.9,
    "temperature": 4,
    "variant": "hint",
    "feature_weight": 0.5,
    "layers": ["features.1"],
    "teacher_layers": ["features.1"],
}
SPECS = {
    "nokd": run_spec("nokd", model=MODEL, recipe=RECIPE, seed=1),
    "kd": run_spec("kd", model=MODEL, recipe=RECIPE, teacher=TEACHER, kd={"alpha": 0.9, "temperature": 4}, seed=1),
    "rcd_hint": run_spec(
        "rcd",
        model=MODEL,
        recipe=RECIPE,
        teacher=TEACHER,
        kd=HINT,
        rcd={"noise": "gaussian", "resample": "step"},
        seed=1,
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    save_arrays(load_dataset("digits", test_fraction=0.4), path)
    return str(path)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("teacher")
    train(run_spec("teacher", model=TEACHER, recipe=RECIPE, seed=1), data, out)
    return str(out / "model.pt")


def train(spec, data, out, teacher_weights=None):
    train_into(
        out,
        spec,
        data,
        teacher_weights=teacher_weights,
        teacher_model=TEACHER if spec.condition in ("kd", "rcd") else None,
        keep_final_state=True,
    )
    return read_predictions(out / "p.parquet").logits


def in_old_layout(checkpoint: dict) -> dict:
    """`checkpoint` as written before objectives were modules."""
    objective = checkpoint.pop("objective")
    prefix = "features.regressor."
    regressor = {k.removeprefix(prefix): v for k, v in objective.items() if k.startswith(prefix)}
    checkpoint["regressor"] = regressor or None
    checkpoint["targets"] = objective.get("_extra_state")
    return checkpoint


@pytest.mark.parametrize("name", SPECS)
def test_a_checkpoint_in_the_old_layout_resumes_bit_identically(tmp_path, data, teacher, name, caplog):
    spec = SPECS[name]
    weights = teacher if spec.condition == "kd" else None
    uninterrupted = train(spec, data, tmp_path / "clean", weights)
    # The checkpoint before the final one: epoch 2 of 3 done, so the resumed run trains epoch 3.
    old = in_old_layout(torch.load(tmp_path / "clean" / "checkpoint.prev.pt", weights_only=True))
    assert old["epoch"] == 2 and "objective" not in old
    if name == "rcd_hint":
        assert set(old["regressor"]) == {"maps.0.weight", "maps.0.bias"}
        assert set(old["targets"]) == {"logit_rng", "feature_rng"}
    else:
        assert old["regressor"] is None and old["targets"] == ({} if name == "kd" else None)
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    torch.save(old, resumed_dir / "checkpoint.pt")
    caplog.set_level("INFO", logger="kdtransfer")
    resumed = train(spec, data, resumed_dir, weights)
    assert "at epoch 3 batch 0" in caplog.text
    assert resumed.tobytes() == uninterrupted.tobytes()
    shutil.rmtree(tmp_path / "clean")
