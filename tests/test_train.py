"""Training: reproducible bit for bit on CPU; kd/rcd/nokd share init and batch order."""

import hashlib
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_params, run_spec, train_into
from scipy import stats

from kdtransfer.data import ArrayDataset, load_dataset, save_arrays
from kdtransfer.io.predictions import read_predictions
from kdtransfer.spec import RunSpec, SpecError
from kdtransfer.training.batches import BatchInputs, epoch_permutation, predict_logits
from kdtransfer.training.job import train_and_save
from kdtransfer.training.loop import train_run
from kdtransfer.training.models import ModelError, count_parameters, create_model
from kdtransfer.training.objective import build_regressor
from kdtransfer.training.progress import divergence_message
from kdtransfer.training.seeding import derive_seed, run_roles
from kdtransfer.training.signals import NoiseSignal, TeacherError, teacher_shapes_without_weights

RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 2, "batch_size": 64}
MODEL = {"arch": "mlp", "options": {"hidden": [16]}}


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    save_arrays(load_dataset("digits", test_fraction=0.4), path)
    return str(path)


def spec(condition, seed=0, **training):
    return run_spec(
        condition,
        model=MODEL,
        recipe=RECIPE,
        kd={"alpha": 0.9, "temperature": 4},
        rcd={"noise": "uniform", "resample": "step"},
        seed=seed,
        **training,
    )


def run(tmp, name, s, data, teacher=None):
    d = tmp / name
    info = train_into(
        d,
        s,
        data,
        teacher_weights=teacher,
        teacher_model=MODEL if teacher else None,
    )
    return info, read_predictions(d / "p.parquet")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_npz):
    tmp = tmp_path_factory.mktemp("runs")
    out = {"teacher": run(tmp, "teacher", spec("teacher"), digits_npz)}
    teacher_weights = str(tmp / "teacher" / "model.pt")
    for c in ("kd", "rcd", "nokd", "independent"):
        out[c] = run(tmp, c, spec(c), digits_npz, teacher_weights if c == "kd" else None)
    out["kd_again"] = run(tmp, "kd_again", spec("kd"), digits_npz, teacher_weights)
    out["teacher_again"] = run(tmp, "teacher_again", spec("teacher"), digits_npz)
    return out


def test_same_seed_gives_bit_identical_predictions(runs):
    for a, b in (("teacher", "teacher_again"), ("kd", "kd_again")):
        pa, pb = runs[a][1], runs[b][1]
        assert pa.logits.tobytes() == pb.logits.tobytes()
        assert np.array_equal(pa.pred, pb.pred)


def test_students_share_teacher_init_and_one_batch_order(runs):
    init = {c: runs[c][0]["init_fingerprint"] for c in ("teacher", "kd", "rcd", "nokd", "independent")}
    order = {c: runs[c][0]["order_fingerprint"] for c in init}
    assert init["kd"] == init["rcd"] == init["nokd"] == init["teacher"]
    assert init["independent"] != init["teacher"]
    assert order["kd"] == order["rcd"] == order["nokd"]
    assert order["teacher"] != order["kd"] and order["independent"] not in (order["teacher"], order["kd"])


def test_conditions_differ_only_in_loss(runs):
    # Same init and order, different targets: the trained students must differ.
    assert not np.array_equal(runs["kd"][1].logits, runs["nokd"][1].logits)
    assert not np.array_equal(runs["rcd"][1].logits, runs["nokd"][1].logits)


def test_batch_order_is_a_function_of_seed_and_epoch():
    s = derive_seed(3, run_roles("nokd")[1])
    assert torch.equal(epoch_permutation(s, 1, 50), epoch_permutation(s, 1, 50))
    assert not torch.equal(epoch_permutation(s, 0, 50), epoch_permutation(s, 1, 50))
    assert sorted(epoch_permutation(s, 0, 50).tolist()) == list(range(50))


def test_different_seeds_give_different_models(tmp_path, digits_npz):
    _, a = run(tmp_path, "a", spec("teacher", seed=1), digits_npz)
    _, b = run(tmp_path, "b", spec("teacher", seed=2), digits_npz)
    assert not np.array_equal(a.logits, b.logits)


@pytest.mark.parametrize("nesterov,weight_decay", [(False, 0.0), (False, 5e-4), (True, 5e-4)])
def test_sgd_matches_torch_optim_sgd(nesterov, weight_decay):
    from kdtransfer.training.optim import SGD

    torch.manual_seed(0)
    ref = torch.nn.Linear(5, 3)
    ours = torch.nn.Linear(5, 3)
    ours.load_state_dict(ref.state_dict())
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    opt_ours = SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=weight_decay, nesterov=nesterov)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    for _ in range(5):
        for model, opt in ((ref, opt_ref), (ours, opt_ours)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for a, b in zip(ref.parameters(), ours.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


# --- The paper's architectures, feature-map KD, uint8 images and token inputs -------------------

TEACHER_NET = {"arch": "resnet_cifar", "options": {"width": 8}}
STUDENT_NET = {"arch": "resnet_cifar", "options": {"width": 4}}
IMAGE_RECIPE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 1, "batch_size": 32}


def image_arrays(seed=0, n_train=96, n_test=48, classes=3, size=16):
    """uint8 RGB images whose class is the brightest quadrant, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n_train + n_test)
    x = rng.integers(0, 120, (n_train + n_test, 3, size, size))
    half = size // 2
    for i, c in enumerate(y):
        x[i, :, (c // 2) * half : (c // 2 + 1) * half, (c % 2) * half : (c % 2 + 1) * half] += 120
    return x.astype(np.uint8), y.astype(np.int64), n_train, classes


def uint8_images(**kw) -> ArrayDataset:
    x, y, n, classes = image_arrays(**kw)
    mean = (x[:n].reshape(n, 3, -1).mean((0, 2)) / 255).astype(np.float32)
    std = (x[:n].reshape(n, 3, -1).std((0, 2)) / 255).astype(np.float32)
    return ArrayDataset(x[:n], y[:n], x[n:], y[n:], classes, "image", mean=mean, std=std)


def standardised(ds: ArrayDataset) -> ArrayDataset:
    """The float32 arrays a uint8 dataset stands for: x/255, then per-channel (x - mean) / std."""

    def f(x):
        return (x.astype(np.float32) / np.float32(255) - ds.mean[:, None, None]) / ds.std[:, None, None]

    return ArrayDataset(f(ds.x_train), ds.y_train, f(ds.x_test), ds.y_test, ds.num_classes, "image")


def feature_spec(
    condition,
    variant,
    layers,
    teacher_layers=None,
    model=STUDENT_NET,
    recipe=IMAGE_RECIPE,
    noise="gaussian",
    resample="step",
):
    kd = {
        "alpha": 0.9,
        "temperature": 4,
        "variant": variant,
        "feature_weight": 1.0,
        "layers": layers,
        "teacher_layers": teacher_layers or layers,
    }
    if variant == "logit":
        kd = {"alpha": 0.9, "temperature": 4}
    teacher = model if model is not STUDENT_NET else TEACHER_NET
    return run_spec(
        condition, model=model, recipe=recipe, kd=kd, rcd={"noise": noise, "resample": resample}, teacher=teacher
    )


@pytest.fixture(scope="module")
def images():
    return standardised(uint8_images())


@pytest.fixture(scope="module")
def image_npz(tmp_path_factory, images):
    path = tmp_path_factory.mktemp("images") / "images.npz"
    save_arrays(images, path)
    return str(path)


@pytest.fixture(scope="module")
def image_teacher(tmp_path_factory, image_npz):
    d = tmp_path_factory.mktemp("image_teacher")
    s = run_spec("teacher", model=TEACHER_NET, recipe=IMAGE_RECIPE)
    train_and_save(
        s,
        image_npz,
        weights_out=str(d / "model.pt"),
        predictions_out={},
        history_out=str(d / "h.parquet"),
        checkpoint_every=1,
    )
    return str(d / "model.pt")


@pytest.mark.parametrize("variant,layers", [("hint", ["layer2"]), ("attention", ["layer1", "layer3"])])
def test_kd_feature_variant_trains_and_saves_only_the_student(tmp_path, image_npz, image_teacher, variant, layers):
    s = feature_spec("kd", variant, layers)
    info = train_into(
        tmp_path,
        s,
        image_npz,
        teacher_weights=image_teacher,
        teacher_model=TEACHER_NET,
    )
    history = pd.read_parquet(tmp_path / "h.parquet")
    assert history["feature"].iloc[0] > 0 and np.isfinite(history["loss"]).all()
    student = create_model("resnet_cifar", (3, 16, 16), 3, width=4)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert set(saved) == set(student.state_dict())  # no regressor weights in model.pt
    assert info["num_parameters"] == count_parameters(student)
    assert len(read_predictions(tmp_path / "p.parquet").logits) == 48


def test_hint_regressor_is_trained_and_checkpointed_but_not_part_of_the_student(tmp_path, images, image_teacher):
    # Student layer2: 8 channels at 8x8; the teacher's layer3: 32 channels at 4x4 (pooled to match).
    s = feature_spec("kd", "hint", ["layer2"], ["layer3"], recipe=dict(IMAGE_RECIPE, epochs=2))
    train_run(
        s,
        images,
        teacher_weights=image_teacher,
        teacher_model=TEACHER_NET,
        checkpoint_path=tmp_path / "ckpt.pt",
        checkpoint_every=1,
    )
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)  # left after epoch 1 of 2
    initial = build_regressor(s.kd, [(8, 8, 8)], [(32, 4, 4)], seed=s.seed, run=s.name).state_dict()
    regressor = {k.removeprefix("features.regressor."): v for k, v in state["objective"].items() if k != "_extra_state"}
    assert set(regressor) == set(initial) == {"maps.0.weight", "maps.0.bias"}
    assert regressor["maps.0.weight"].shape == (32, 8, 1, 1)
    assert not torch.equal(regressor["maps.0.weight"], initial["maps.0.weight"])  # it was trained
    assert not any(k.startswith("maps.") for k in state["model"])


def test_feature_setup_leaves_the_global_rng_alone(images):
    s = feature_spec("rcd", "hint", ["layer2"])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = build_regressor(s.kd, [(8, 8, 8)], [(16, 8, 8)], seed=s.seed, run=s.name)
    shapes = teacher_shapes_without_weights(s.kd, images, TEACHER_NET, torch.zeros(2, 3, 16, 16), run=s.name)
    assert torch.equal(torch.get_rng_state(), before)
    assert shapes == [(16, 8, 8)]
    again = build_regressor(s.kd, [(8, 8, 8)], [(16, 8, 8)], seed=s.seed, run=s.name)
    assert torch.equal(first.maps[0].weight, again.maps[0].weight)


def test_feature_runs_share_init_and_batch_order_with_the_control(tmp_path, images, image_teacher):
    infos = {}
    for condition in ("nokd", "kd", "rcd"):
        s = feature_spec(condition, "hint", ["layer2"])
        _, _, infos[condition] = train_run(
            s,
            images,
            teacher_weights=image_teacher if condition == "kd" else None,
            teacher_model=TEACHER_NET,
            checkpoint_path=tmp_path / condition / "c.pt",
            checkpoint_every=1,
        )
    assert len({i["init_fingerprint"] for i in infos.values()}) == 1
    assert len({i["order_fingerprint"] for i in infos.values()}) == 1


@pytest.mark.parametrize("variant,resample", [("hint", "step"), ("attention", "fixed")])
def test_rcd_feature_variant_needs_the_teacher_architecture_only(tmp_path, images, variant, resample):
    s = feature_spec("rcd", variant, ["layer2"], resample=resample)
    _, history, _ = train_run(
        s,
        images,
        teacher_weights=None,
        teacher_model=TEACHER_NET,
        checkpoint_path=tmp_path / "c.pt",
        checkpoint_every=1,
    )
    assert history[0]["feature"] > 0 and np.isfinite(history[0]["loss"])
    with pytest.raises(ValueError, match="needs the teacher's model entry"):
        train_run(s, images, teacher_model=None, checkpoint_path=tmp_path / "c2.pt", checkpoint_every=1)


@pytest.mark.parametrize("noise", ["uniform", "gaussian"])
def test_rcd_noise_replaces_every_teacher_map_in_its_shape(noise):
    s = feature_spec("rcd", "hint", ["layer2"], noise=noise)
    targets = NoiseSignal(s.rcd, s.seed, 3, 96, [(16, 8, 8), (32, 4, 4)], torch.device("cpu"))
    targets.start_epoch(0)
    logits, maps = targets(torch.arange(40), None)
    assert logits.shape == (40, 3) and [m.shape for m in maps] == [(40, 16, 8, 8), (40, 32, 4, 4)]
    values = maps[0].numpy().ravel()
    dist = stats.uniform(0, 1) if noise == "uniform" else stats.norm(0, 1)
    assert stats.kstest(values[:5000], dist.cdf).pvalue > 0.01
    _, again = targets(torch.arange(40), None)
    assert not torch.equal(maps[0], again[0])  # resampled every step


def test_rcd_fixed_noise_maps_are_one_draw_per_example():
    s = feature_spec("rcd", "attention", ["layer2"], resample="fixed")
    targets = NoiseSignal(s.rcd, s.seed, 3, 96, [(4, 2, 2)], torch.device("cpu"))
    targets.start_epoch(0)
    logits_a, (a,) = targets(torch.tensor([5, 9]), None)
    targets.start_epoch(1)
    logits_b, (b,) = targets(torch.tensor([9, 1, 5]), None)
    assert torch.equal(a[0], b[2]) and torch.equal(a[1], b[0]) and torch.equal(logits_a[0], logits_b[2])


def test_uint8_images_are_standardised_per_batch_exactly_like_floats(tmp_path):
    raw = uint8_images()
    floats = standardised(raw)
    inputs = BatchInputs(raw, torch.device("cpu"))
    assert torch.equal(inputs(torch.from_numpy(raw.x_test)), torch.from_numpy(floats.x_test))
    recipe = dict(IMAGE_RECIPE, augment="flip_crop")
    s = run_spec("teacher", model=STUDENT_NET, recipe=recipe)
    a, _, _ = train_run(s, raw, checkpoint_path=tmp_path / "a.pt", checkpoint_every=1)
    b, _, _ = train_run(s, floats, checkpoint_path=tmp_path / "b.pt", checkpoint_every=1)
    logits_a = predict_logits(a, torch.from_numpy(raw.x_test), inputs=inputs, bf16=s.bf16)
    assert torch.equal(logits_a, predict_logits(b, torch.from_numpy(floats.x_test), bf16=s.bf16))


def token_data(seed=0, n_train=90, n_test=30, length=10, vocab=12, classes=3) -> ArrayDataset:
    """Right-padded token rows of random length whose class is set by their first token."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, classes, n)
    x = np.zeros((n, length), np.int64)
    for i in range(n):
        k = rng.integers(2, length + 1)
        x[i, :k] = rng.integers(1 + classes, vocab, k)
        x[i, 0] = 1 + y[i]
    return ArrayDataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], classes, "text", vocab_size=vocab)


def test_token_inputs_train_char_gru_teacher_and_hint_student(tmp_path):
    data = token_data()
    net = {"arch": "char_gru", "options": {"embed_dim": 8, "hidden": 16}}
    recipe = dict(IMAGE_RECIPE, epochs=3, batch_size=30)
    teacher, history, _ = train_run(
        run_spec("teacher", model=net, recipe=recipe), data, checkpoint_path=tmp_path / "t.pt", checkpoint_every=1
    )
    assert history[-1]["train_accuracy"] > 1 / 3  # it learns from the tokens
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    s = feature_spec("kd", "hint", ["encoder"], model=net, recipe=recipe)
    _, history, _ = train_run(
        s,
        data,
        teacher_weights=str(tmp_path / "teacher.pt"),
        teacher_model=net,
        checkpoint_path=tmp_path / "s.pt",
        checkpoint_every=1,
    )
    assert all(np.isfinite(h["loss"]) and h["feature"] > 0 for h in history)


def test_teacher_from_another_dataset_is_named(tmp_path, images):
    torch.save(create_model("resnet_cifar", (3, 16, 16), 100, width=8).state_dict(), tmp_path / "model.pt")
    s = feature_spec("kd", "logit", [])
    with pytest.raises(
        TeacherError,
        match=rf"teacher .*model\.pt \(for run {re.escape(s.run_key)} seed 0\) has 100 output classes "
        r"but dataset has 3: the teacher was trained on another dataset",
    ):
        train_run(
            s,
            images,
            teacher_weights=str(tmp_path / "model.pt"),
            teacher_model=TEACHER_NET,
            checkpoint_path=tmp_path / "c.pt",
            checkpoint_every=1,
        )
    torch.save(create_model("resnet_cifar", (3, 16, 16), 3, width=4).state_dict(), tmp_path / "small.pt")
    with pytest.raises(
        TeacherError, match=r"small\.pt .*does not fit teacher model 'resnet_cifar' \{'width': 8\}: size mismatch"
    ):
        train_run(
            s,
            images,
            teacher_weights=str(tmp_path / "small.pt"),
            teacher_model=TEACHER_NET,
            checkpoint_path=tmp_path / "c.pt",
            checkpoint_every=1,
        )


def test_unknown_feature_layer_is_named_with_valid_choices(tmp_path, images, image_teacher):
    s = feature_spec("kd", "attention", ["layer9"], ["layer1"])
    with pytest.raises(ModelError, match=r"student has no module named 'layer9'.*layer1, .*layer4"):
        train_run(
            s,
            images,
            teacher_weights=image_teacher,
            teacher_model=TEACHER_NET,
            checkpoint_path=tmp_path / "c.pt",
            checkpoint_every=1,
        )


def test_divergence_hint_names_the_bf16_switch_only_when_bf16_was_on():
    s = spec("nokd")
    assert "training.bf16: false" in divergence_message(s.name, float("nan"), 0, 3, bf16_active=True)
    cpu = divergence_message(s.name, float("nan"), 0, 3, bf16_active=False)
    assert "lower recipe.lr" in cpu and "bf16" not in cpu


def test_fingerprint_is_the_digest_of_every_field_checkpoints_carry():
    """The checkpoint's `spec` digest, recomputed: sha256 of the params as JSON with absent kd /
    rcd settings as {} (the form existing checkpoints carry, so that they stay resumable).
    Checkpoint frequency is no part of it (not in a spec)."""
    for condition in ("teacher", "kd", "rcd"):
        s = spec(condition)
        body = {
            "kd": {},
            "rcd": {},
            **run_params(
                condition,
                model=MODEL,
                recipe=RECIPE,
                kd={"alpha": 0.9, "temperature": 4},
                rcd={"noise": "uniform", "resample": "step"},
            ),
        }
        assert s.fingerprint == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    assert spec("kd").fingerprint != spec("kd", bf16=False).fingerprint
    assert "checkpoint_every" not in RunSpec.__dataclass_fields__


def test_params_of_the_plan_round_trip_and_partial_ones_are_refused():
    params = run_params("rcd", model=MODEL, recipe=RECIPE, rcd={"noise": "gaussian"})
    assert RunSpec.from_params(params).params() == params
    assert RunSpec.from_params(params).recipe.weight_decay == 0.0005  # the schema's default, filled by the plan
    partial = dict(params, recipe={k: v for k, v in params["recipe"].items() if k != "schedule"})
    with pytest.raises(SpecError, match="recipe: missing schedule.*kdtransfer.plan.runs.Plan"):
        RunSpec.from_params(partial)
    with pytest.raises(SpecError, match="lacks rcd"):
        RunSpec.from_params({k: v for k, v in params.items() if k != "rcd"})
    with pytest.raises(SpecError, match="keys no nokd run takes: kd"):
        RunSpec.from_params({**{k: v for k, v in params.items() if k != "rcd"}, "condition": "nokd"})


# --- What a GPU run needs that a CPU run does not show -------------------------------------------


def test_sgd_momentum_returns_to_the_parameters_device_on_resume():
    # Checkpoints are read onto the CPU; a resumed GPU run steps with these buffers. The meta
    # device stands in for the GPU here: any device other than the checkpoint's.
    from kdtransfer.training.optim import SGD

    cpu = torch.nn.Linear(3, 2)
    opt = SGD(cpu.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)
    torch.nn.functional.mse_loss(cpu(torch.ones(4, 3)), torch.zeros(4, 2)).backward()
    opt.step()
    elsewhere = torch.nn.Linear(3, 2, device="meta")
    resumed = SGD(elsewhere.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)
    resumed.load_state_dict(opt.state_dict())
    assert [buf.device.type for buf in resumed.momentum_buffers] == ["meta", "meta"]
    for p in elsewhere.parameters():
        p.grad = torch.ones_like(p)
    resumed.step()  # the buffers and the gradients now live on one device


def test_deterministic_cuda_runs_use_the_math_attention_kernel(monkeypatch):
    # The fused attention kernels' backward is not reproducible under warn_only determinism;
    # configure_device only sets process-wide switches, so this runs without a GPU.
    from kdtransfer.training.device import FUSED_ATTENTION_SWITCHES, configure_device

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    flags = {
        "flash": torch.backends.cuda.flash_sdp_enabled,
        "mem_efficient": torch.backends.cuda.mem_efficient_sdp_enabled,
        "cudnn": torch.backends.cuda.cudnn_sdp_enabled,
        "math": torch.backends.cuda.math_sdp_enabled,
    }
    try:
        configure_device(torch.device("cuda"), deterministic=True)
        assert {name: enabled() for name, enabled in flags.items()} == {
            "flash": False,
            "mem_efficient": False,
            "cudnn": False,
            "math": True,
        }
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        configure_device(torch.device("cuda"), deterministic=False)
        assert all(enabled() for enabled in flags.values())
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = False
        for switch in FUSED_ATTENTION_SWITCHES:
            getattr(torch.backends.cuda, switch)(True)
