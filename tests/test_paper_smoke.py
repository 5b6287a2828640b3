"""The paper's experiment, shrunken: one run of the real workflow per modality on a few samples
written in each dataset's real on-disk format (CIFAR-10 pickles, SpeechCommands WAVs, a names
CSV), tiny widths, one epoch: data preparation, training (logit, hint and attention KD, a
smaller student), predictions and the whole analysis."""

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, counts, planned, run_dir, snakemake
from test_loaders import write_cifar10, write_names_csv, write_speech_commands

from kdtransfer.data import load_arrays
from kdtransfer.io.predictions import read_predictions

pytestmark = pytest.mark.e2e
KEEP = [
    "cifar10_resnet18",
    "cifar10_resnet18_hint",
    "cifar10_resnet18_attention",
    "cifar10_resnet34_to_resnet18",
    "speech_cnn",
    "names_gru",
]
TINY_MODELS = {
    "resnet18": {"depth": 18, "width": 4},
    "resnet34": {"depth": 34, "width": 4},
    "audio_cnn": {"channels": [4, 8], "pooled": 2},
    "char_gru": {"embed_dim": 8, "hidden": 8, "layers": 1, "bidirectional": True},
}


def shrunken_paper_config() -> dict:
    cfg = yaml.safe_load((REPO / "experiments" / "paper.yaml").read_text())
    cfg["seeds"] = 2
    cfg["setups"] = {name: cfg["setups"][name] for name in KEEP}
    cfg["setups"]["cifar10_resnet18"].pop("sweep")
    used = {s[k] for s in cfg["setups"].values() for k in ("teacher", "student") if k in s}
    cfg["models"] = {name: {**cfg["models"][name], "options": TINY_MODELS[name]} for name in used}
    cfg["datasets"] = {name: cfg["datasets"][name] for name in ("cifar10", "speech_commands", "names")}
    cfg["datasets"]["speech_commands"]["options"]["classes"] = ["down", "no", "up", "yes"]
    cfg["datasets"]["names"]["options"].update(name_column="surname", label_column="language")
    for recipe in cfg["recipes"].values():
        recipe.update(epochs=1, batch_size=16, warmup_epochs=0)
    cfg["training"].update(deterministic=True, checkpoint_every=1)
    cfg["analysis"]["bootstrap"] = 200
    return cfg


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    wf = copy_workflow(tmp_path_factory.mktemp("paper_smoke"))
    data = wf / "resources" / "data"
    # Test-split sizes that differ from the class counts, so the counts cannot stand in for each
    # other: 7 CIFAR-10 test images (10 classes), 5 SpeechCommands test clips (4 words).
    write_cifar10(data / "cifar", n_test=7)
    speech = data / "SpeechCommands" / "speech_commands_v0.02"
    write_speech_commands(speech)
    with (speech / "testing_list.txt").open("a") as fh:
        fh.write("yes/spk2_nohash_0.wav\n")
    write_names_csv(data / "names.csv")
    (wf / "smoke.yaml").write_text(yaml.safe_dump(shrunken_paper_config()))
    plan = counts(snakemake(wf, "-n", "--configfile", "smoke.yaml").stdout)
    snakemake(wf, "--cores", "2", "--configfile", "smoke.yaml")
    return wf, plan, planned(wf / "smoke.yaml")


def test_every_modality_runs_through_training_and_analysis(finished):
    wf, plan, runs = finished
    # 4 teachers, 3 nokd controls (the ResNet-34 -> ResNet-18 student shares the ResNet-18 one),
    # kd + rcd for 6 setups; 2 seeds, one pack per run key.
    assert plan["train_reference_seeds0to9"] == 7 and plan["train_distilled_seeds0to9"] == 12 and plan["metrics"] == 6
    metrics = pd.read_parquet(wf / "results/analysis/metrics.parquet")
    assert set(metrics["setup"]) == set(KEEP)
    assert set(metrics["condition"]) >= {"teacher", "kd", "rcd", "nokd"}
    tests = pd.read_parquet(wf / "results/analysis/tests.parquet")
    assert set(tests["setup"]) == set(KEEP)
    for name in ("agreement_by_condition", "asymmetric_payoff", "accuracy_by_condition", "tests_overview"):
        assert (wf / "results/figures" / f"{name}.png").stat().st_size > 1000
    # setup -> (test samples, classes), each checked against its own truth; the prepared arrays
    # give the names' test split (a stratified fraction).
    expected = {"cifar10_resnet18_hint": (7, 10), "speech_cnn": (5, 4), "names_gru": (None, 3)}  # three languages
    for setup, (n_samples, n_classes) in expected.items():
        preds = read_predictions(wf / run_dir(runs, "kd", setup, 1) / "predictions_test.parquet")
        data = load_arrays(wf / runs.data_file(runs.setups[setup]["dataset"]))
        assert preds.num_samples == len(data.y_test) == (n_samples or len(data.y_test))
        assert np.array_equal(preds.label, data.y_test)
        assert preds.logits.shape[1] == data.num_classes == n_classes


def test_feature_variants_log_their_feature_term(finished):
    wf, _, runs = finished
    for variant in ("hint", "attention"):
        history = pd.read_parquet(wf / run_dir(runs, "kd", f"cifar10_resnet18_{variant}", 0) / "history.parquet")
        assert history["feature"].iloc[-1] > 0
        rcd = pd.read_parquet(wf / run_dir(runs, "rcd", f"cifar10_resnet18_{variant}", 0) / "history.parquet")
        assert rcd["feature"].iloc[-1] > 0  # noise feature maps in place of the teacher's
    logit = pd.read_parquet(wf / run_dir(runs, "kd", "cifar10_resnet18", 0) / "history.parquet")
    assert logit["feature"].iloc[-1] == 0
