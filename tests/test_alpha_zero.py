"""The negative control of the protocol, as an invariant: kd, rcd and nokd differ only in their loss.

A `kd` or `rcd` student with its distillation weight at zero (alpha = 0, and feature_weight = 0
for the hint and attention variants) has the plain cross-entropy loss of `nokd`, so it must
train *bit-identically* to the `nokd` run of the same seed: same final weights, same
predictions. Any random draw that depends on the condition (augmentation, dropout, the hint
regressor's init, the noise generators) or any step the teacher's presence changes breaks it.

Each case also checks that the invariant is not met trivially: with the distillation weight
switched on, the same student differs from `nokd`.
"""

import numpy as np
import pytest
import torch
from conftest import run_spec
from test_train import TEACHER_NET, standardised, token_data, uint8_images

from kdtransfer.data import ArrayDataset, load_dataset
from kdtransfer.training.batches import BatchInputs, predict_logits
from kdtransfer.training.loop import train_run

MLP = {"arch": "mlp", "options": {"hidden": [32]}}
MLP_DROPOUT = {"arch": "mlp", "options": {"hidden": [32], "dropout": 0.3}}
RESNET = {"arch": "resnet_cifar", "options": {"width": 4}}
GRU = {"arch": "char_gru", "options": {"embed_dim": 8, "hidden": 16, "dropout": 0.2, "layers": 2}}
SGD = {
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "epochs": 2,
    "batch_size": 64,
    "schedule": "cosine",
}
ADAMW = {"optimizer": "adamw", "lr": 0.003, "weight_decay": 0.01, "epochs": 2, "batch_size": 64, "schedule": "cosine"}
FLIP_CROP = dict(SGD, augment="flip_crop", batch_size=32)

# id: (data, student model, recipe, kd variant, student layers, teacher layers, teacher model)
CASES = {
    "logit-sgd": ("digits", MLP, SGD, "logit", [], [], MLP),
    "logit-dropout": ("digits", MLP_DROPOUT, SGD, "logit", [], [], MLP_DROPOUT),
    "logit-warmup-constant": ("digits", MLP, dict(SGD, warmup_epochs=1, schedule="constant"), "logit", [], [], MLP),
    "logit-adamw-warmup": ("digits", MLP, dict(ADAMW, warmup_epochs=1), "logit", [], [], MLP),
    "logit-flip_crop": ("images", RESNET, FLIP_CROP, "logit", [], [], TEACHER_NET),
    "hint-flip_crop": ("images", RESNET, FLIP_CROP, "hint", ["layer2"], ["layer3"], TEACHER_NET),
    "attention-flip_crop-adamw": (
        "images",
        RESNET,
        dict(ADAMW, augment="flip_crop", batch_size=32),
        "attention",
        ["layer1", "layer3"],
        ["layer1", "layer3"],
        TEACHER_NET,
    ),
    "hint-tokens-dropout": ("tokens", GRU, dict(SGD, batch_size=30), "hint", ["encoder"], ["encoder"], GRU),
}


@pytest.fixture(scope="module")
def datasets() -> dict[str, ArrayDataset]:
    return {
        "digits": load_dataset("digits", test_fraction=0.4),
        "images": standardised(uint8_images()),
        "tokens": token_data(),
    }


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, datasets):
    """One trained teacher per (data, teacher model), saved as the kd runs load it."""
    cache = {}

    def get(data_name, model, recipe):
        key = (data_name, repr(model))
        if key not in cache:
            d = tmp_path_factory.mktemp("teacher")
            s = run_spec("teacher", model=model, recipe=recipe)
            teacher, _, _ = train_run(s, datasets[data_name], checkpoint_path=d / "c.pt", checkpoint_every=1)
            torch.save(teacher.state_dict(), d / "model.pt")
            cache[key] = str(d / "model.pt")
        return cache[key]

    return get


def student(condition, model, recipe, variant, layers, teacher_layers, *, alpha, feature_weight, noise="uniform"):
    kd = {"alpha": alpha, "temperature": 4.0, "variant": variant}
    if variant != "logit":
        kd.update(layers=layers, teacher_layers=teacher_layers, feature_weight=feature_weight)
    return run_spec(condition, model=model, recipe=recipe, kd=kd, rcd={"noise": noise, "resample": "step"}, seed=3)


def trained(spec, data, tmp, teacher_weights=None, teacher_model=None):
    model, _, _ = train_run(
        spec,
        data,
        teacher_weights=teacher_weights,
        teacher_model=teacher_model,
        checkpoint_path=tmp / f"{spec.condition}-{spec.kd.alpha if spec.kd else None}" / "c.pt",
        checkpoint_every=1,
    )
    logits = predict_logits(model, torch.from_numpy(data.x_test), inputs=BatchInputs(data, "cpu"), bf16=spec.bf16)
    return model.state_dict(), logits


def bit_identical(a, b) -> bool:
    (state_a, logits_a), (state_b, logits_b) = a, b
    same_weights = state_a.keys() == state_b.keys() and all(
        state_a[k].dtype == state_b[k].dtype and state_a[k].numpy().tobytes() == state_b[k].numpy().tobytes()
        for k in state_a
    )
    return same_weights and logits_a.numpy().tobytes() == logits_b.numpy().tobytes()


@pytest.mark.parametrize("condition", ["kd", "rcd"])
@pytest.mark.parametrize("case", list(CASES))
def test_zero_distillation_weight_trains_bit_identically_to_nokd(tmp_path, datasets, teachers, case, condition):
    data_name, model, recipe, variant, layers, teacher_layers, teacher_model = CASES[case]
    data = datasets[data_name]
    weights = teachers(data_name, teacher_model, recipe) if condition == "kd" else None
    nokd = trained(
        student("nokd", model, recipe, variant, layers, teacher_layers, alpha=0.0, feature_weight=0.0), data, tmp_path
    )
    zero = student(condition, model, recipe, variant, layers, teacher_layers, alpha=0.0, feature_weight=0.0)
    assert bit_identical(trained(zero, data, tmp_path, weights, teacher_model), nokd), (
        f"{condition} with alpha = 0 (feature_weight = 0) is not bit-identical to nokd: a random draw or a step "
        "depends on the condition"
    )
    # Not trivially so: the same student with its distillation term switched on does differ.
    on = student(condition, model, recipe, variant, layers, teacher_layers, alpha=0.9, feature_weight=1.0)
    assert not bit_identical(trained(on, data, tmp_path, weights, teacher_model), nokd)


def test_flip_crop_augmentation_changes_the_trained_model(tmp_path, datasets):
    # The flip_crop cases above test something: the augmentation changes what is trained.
    data = datasets["images"]
    plain = trained(
        student("nokd", RESNET, dict(FLIP_CROP, augment="none"), "logit", [], [], alpha=0, feature_weight=0),
        data,
        tmp_path / "plain",
    )
    augmented = trained(
        student("nokd", RESNET, FLIP_CROP, "logit", [], [], alpha=0, feature_weight=0), data, tmp_path / "augmented"
    )
    assert not bit_identical(plain, augmented)


def test_narrow_resnet_trains_on_one_cpu_thread(tmp_path, datasets):
    # Training jobs run at one thread. channels_last on CPU crashed here (double free inside
    # oneDNN's backward of the 4 -> 8 channel strided 1x1 shortcut of a width-4 ResNet).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        state, logits = trained(
            student("nokd", RESNET, FLIP_CROP, "logit", [], [], alpha=0, feature_weight=0), datasets["images"], tmp_path
        )
    finally:
        torch.set_num_threads(threads)
    assert np.isfinite(logits.numpy()).all()
