"""The CUDA path, run for real: every setup of experiments/paper.yaml trains on the GPU as the
pipeline plans it (kd, rcd, nokd; bf16 autocast, channels_last, data resident on the device),
deterministic runs are bit-identical (also across a SIGTERM and a resume), kd and rcd with a
zero distillation weight train bit for bit as nokd, training steps never wait for the GPU, and
a compiled student follows the eager loss curve.

Each run is a few steps on synthetic data of the setup's real shapes, with the paper's model
options, recipe and KD settings (gpu_support.paper_spec). Runs `bash bench/gpu_check.sh` on a
GPU machine, or `pytest -m gpu tests/gpu`; `KDTRANSFER_TEST_DEVICE=cpu` runs the same logic on
the CPU (see gpu_support). Skipped without CUDA, so `make test` spends nothing here.
"""

import importlib
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from gpu_support import (
    BATCH,
    DEVICE,
    EPOCHS,
    ON_CUDA,
    PAPER,
    PAPER_SETUPS,
    SKIP_WITHOUT_DEVICE,
    STEPS,
    difference,
    loss_curve,
    nondeterminism_alerts,
    paper_spec,
    random_teacher,
    setup_data,
    sigterm_at_step,
    train,
    weight_bytes,
)

import kdtransfer.training.loop as train_module
from kdtransfer.training.batches import BatchInputs, predict_logits
from kdtransfer.training.state import TrainingInterrupted

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(DEVICE is None, reason=SKIP_WITHOUT_DEVICE)]

CONDITIONS = ("kd", "rcd", "nokd")
FEATURE_SETUPS = [
    name for name in PAPER_SETUPS if PAPER["setups"][name].get("kd", {}).get("variant", "logit") != "logit"
]
# One setup per architecture family and KD variant: CIFAR-100 and Tiny-ImageNet train the ResNet-18
# of cifar10_resnet18 on other shapes, and the ResNet-34 -> ResNet-18 student is that ResNet-18
# too; the first test trains all twelve.
FAMILY_SETUPS = [
    name
    for name in PAPER_SETUPS
    if name not in ("cifar100_resnet18", "tiny_imagenet_resnet18", "cifar10_resnet34_to_resnet18")
]
# compiled vs eager: each epoch's mean loss terms within this relative difference. bf16 keeps 8
# significant bits (relative rounding 2^-9, 0.2%); compiled kernels fuse and reorder the bf16
# arithmetic, so each step's loss moves at that level and the weights, hence the curves, drift
# apart a little more every step. 3% is about fifteen such roundings over these 8 steps, while
# what a compile bug does (a feature hook that no longer fires, batch-norm statistics not
# updated, a wrong gradient) moves the loss by its whole term or stops it falling.
COMPILE_RTOL = 0.03


@pytest.fixture(scope="module")
def data_of():
    cache = {}

    def get(setup_name):
        dataset = PAPER["setups"][setup_name]["dataset"]
        if dataset not in cache:
            cache[dataset] = setup_data(setup_name)
        return cache[dataset]

    return get


@pytest.fixture(scope="module")
def teacher_of(tmp_path_factory, data_of):
    folder = tmp_path_factory.mktemp("teachers")

    def get(setup_name, entry):
        return random_teacher(entry, data_of(setup_name), folder / f"{setup_name}.pt")

    return get


@pytest.fixture(scope="module")
def deterministic_runs(tmp_path_factory, data_of, teacher_of):
    """Deterministic runs by (setup, condition, alpha): (weights, loss curve), each trained once
    (the zero-weight test reuses the kd runs of the determinism test)."""
    cache = {}

    def get(setup_name, condition, alpha=None):
        key = (setup_name, condition, alpha)
        if key not in cache:
            kd = None if alpha is None else {"alpha": alpha, "feature_weight": alpha}
            spec, teacher_model = paper_spec(setup_name, condition, deterministic=True, kd=kd)
            weights = teacher_of(setup_name, teacher_model) if condition == "kd" else None
            model, history, _ = train(
                spec, data_of(setup_name), tmp_path_factory.mktemp(condition), weights, teacher_model
            )
            cache[key] = (weight_bytes(model), loss_curve(history))
        return cache[key]

    return get


def observe_student_forwards(monkeypatch) -> list[dict]:
    """What the student sees in each training forward: autocast, input layout, output dtype."""
    seen = []

    def record(module, inputs, output):
        if module.training:
            x = inputs[0]
            seen.append(
                {
                    "autocast_bf16": torch.is_autocast_enabled("cuda")
                    and torch.get_autocast_dtype("cuda") == torch.bfloat16,
                    "channels_last": x.is_contiguous(memory_format=torch.channels_last),
                    "contiguous": x.is_contiguous(),
                    "output_dtype": output.dtype,
                    "device": output.device.type,
                }
            )

    create = train_module.create_model_for

    def create_and_observe(entry, data):
        model = create(entry, data)
        model.register_forward_hook(record)
        return model

    monkeypatch.setattr(train_module, "create_model_for", create_and_observe)
    return seen


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("setup_name", PAPER_SETUPS)
def test_paper_setup_trains_on_the_device_as_configured(
    tmp_path, monkeypatch, data_of, teacher_of, setup_name, condition
):
    # The paper's training flags (deterministic: false, bf16: true, compile: false).
    spec, teacher_model = paper_spec(setup_name, condition)
    data = data_of(setup_name)
    weights = teacher_of(setup_name, teacher_model) if condition == "kd" else None
    seen = observe_student_forwards(monkeypatch)
    model, history, info = train(spec, data, tmp_path, weights, teacher_model)

    assert info["device"].startswith(DEVICE.type) and len(history) == EPOCHS
    assert len(seen) == EPOCHS * STEPS and {s["device"] for s in seen} == {DEVICE.type}
    # (A 1x1 kernel or a one-channel image is both NCHW- and channels_last-contiguous: each
    # device's layout is checked, never the other's absence.)
    channels_last = ON_CUDA and data.x_train.ndim == 4
    assert all(s["channels_last"] if channels_last else s["contiguous"] for s in seen), seen[0]
    assert all(s["autocast_bf16"] == ON_CUDA for s in seen), seen[0]
    assert all(s["output_dtype"] == (torch.bfloat16 if ON_CUDA else torch.float32) for s in seen), seen[0]
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) if ON_CUDA else p.is_contiguous() for p in convs)
    assert all(np.isfinite([row["loss"], row["ce"], row["kd"], row["feature"]]).all() for row in history)
    if condition in ("kd", "rcd"):
        assert all(row["kd"] > 0 for row in history)
        assert all((row["feature"] > 0) == (setup_name in FEATURE_SETUPS) for row in history)
    logits = predict_logits(
        model, torch.from_numpy(data.x_test).to(DEVICE), inputs=BatchInputs(data, DEVICE), bf16=spec.bf16
    )
    assert logits.dtype == torch.float32 and logits.shape == (len(data.y_test), data.num_classes)
    assert torch.isfinite(logits).all()


DETERMINISM_CASES = [(name, "kd") for name in FAMILY_SETUPS] + [(name, "rcd") for name in FEATURE_SETUPS]


@pytest.mark.parametrize("setup_name,condition", DETERMINISM_CASES)
def test_deterministic_runs_are_bit_identical_also_across_sigterm_and_resume(
    tmp_path, monkeypatch, data_of, teacher_of, deterministic_runs, setup_name, condition
):
    first = deterministic_runs(setup_name, condition)
    spec, teacher_model = paper_spec(setup_name, condition, deterministic=True)
    data = data_of(setup_name)
    weights = teacher_of(setup_name, teacher_model) if condition == "kd" else None
    with nondeterminism_alerts() as alerts:
        model, history, _ = train(spec, data, tmp_path / "again", weights, teacher_model, checkpoint_every=1)
    again = (weight_bytes(model), loss_curve(history))
    assert again == first, (
        f"two deterministic runs differ: {difference(first, again)}; ops without a deterministic kernel: {alerts}"
    )

    # A real SIGTERM in the first step of epoch 2: a checkpoint mid-epoch, then a rerun resumes it.
    with sigterm_at_step(monkeypatch, STEPS + 1), pytest.raises(TrainingInterrupted):
        train(spec, data, tmp_path / "interrupted", weights, teacher_model, checkpoint_every=1)
    saved = torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)
    assert (saved["epoch"], saved["batch"]) == (1, 1)
    model, history, _ = train(spec, data, tmp_path / "interrupted", weights, teacher_model, checkpoint_every=1)
    resumed = (weight_bytes(model), loss_curve(history))
    assert resumed == first, f"the resumed run differs from the uninterrupted one: {difference(first, resumed)}"


@pytest.mark.parametrize("setup_name", FAMILY_SETUPS)
def test_zero_distillation_weight_trains_bit_for_bit_as_nokd(deterministic_runs, setup_name):
    # tests/test_alpha_zero.py checks this on the CPU; on a GPU in deterministic mode it must hold too.
    nokd = deterministic_runs(setup_name, "nokd")
    nokd_weights = nokd[0]
    for condition in ("kd", "rcd"):
        zero = deterministic_runs(setup_name, condition, alpha=0.0)
        assert zero[0] == nokd_weights, (
            f"{condition} with alpha = 0 (and feature_weight = 0) differs from nokd: "
            f"{difference(nokd, (zero[0], nokd[1]))}"
        )
    distilled_weights, _ = deterministic_runs(setup_name, "kd")
    assert distilled_weights != nokd_weights  # the invariant is not met trivially


# The teacher every step (kd), noise logits (rcd), noise feature maps (rcd hint), AdamW (ViT).
SYNC_CASES = [
    ("cifar10_resnet18", "kd"),
    ("cifar10_resnet18", "rcd"),
    ("cifar10_resnet18_hint", "rcd"),
    ("cifar10_vit", "kd"),
]


@pytest.mark.skipif(not ON_CUDA, reason="host-device synchronisation exists on CUDA only")
@pytest.mark.parametrize("setup_name,condition", SYNC_CASES)
def test_training_steps_never_wait_for_the_gpu(tmp_path, teacher_of, setup_name, condition):
    """A step that synchronises (a blocking copy of CPU random draws, a tensor built from Python
    numbers) leaves the GPU idle while Python queues the next one. Counted with CUDA's sync
    debug mode over two runs that differ only in their number of steps: setup and the per-epoch
    evaluation synchronise alike in both, so the difference is what the extra steps did."""
    syncs, where = {}, {}
    for steps in (2, 2, 10):  # the first run selects kernels for these shapes: not counted
        spec, teacher_model = paper_spec(setup_name, condition)
        data = setup_data(setup_name, n_train=steps * BATCH)
        weights = teacher_of(setup_name, teacher_model) if condition == "kd" else None
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                train(spec, data, tmp_path / f"{steps}-{len(syncs)}", weights, teacher_model)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        lines = [f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchronizing" in str(w.message)]
        syncs[steps], where[steps] = len(lines), Counter(lines)
    per_step = (syncs[10] - syncs[2]) / (EPOCHS * 8)
    assert per_step < 0.25, f"{per_step:.2f} host syncs per training step ({syncs}), from {where[10] - where[2]}"


COMPILE_CASES = {
    "speech_cnn-nokd": ("speech_cnn", "nokd", None),
    # A feature hint on the audio CNN: the student's forward hook runs inside the compiled graph.
    "speech_cnn-kd-hint": (
        "speech_cnn",
        "kd",
        {"variant": "hint", "layers": ["features.10"], "teacher_layers": ["features.10"], "feature_weight": 1.0},
    ),
}


@pytest.mark.parametrize("case", list(COMPILE_CASES))
def test_compiled_student_follows_the_eager_loss_curve(tmp_path, data_of, teacher_of, case):
    # On the CPU train_run ignores `compile` (it is a CUDA option), so there the two runs are one.
    setup_name, condition, kd = COMPILE_CASES[case]
    data = setup_data(setup_name, n_train=2 * BATCH, seed=1)
    dynamo = importlib.import_module("torch._dynamo") if ON_CUDA else None  # an import of 1.5 s: only where it compiles
    curves = {}
    for compiled in (False, True):
        spec, teacher_model = paper_spec(setup_name, condition, epochs=4, deterministic=True, compile=compiled, kd=kd)
        weights = teacher_of(setup_name, teacher_model) if condition == "kd" else None
        if compiled and dynamo is not None:
            dynamo.reset()
            graphs_before = dynamo.utils.counters["stats"]["unique_graphs"]
        _, history, _ = train(spec, data, tmp_path / str(compiled), weights, teacher_model)
        curves[compiled] = history
    if dynamo is not None:
        assert dynamo.utils.counters["stats"]["unique_graphs"] > graphs_before, "nothing was compiled"
        dynamo.reset()
    eager, compiled = curves[False], curves[True]
    assert eager[-1]["loss"] < eager[0]["loss"]  # a curve that falls: the comparison means something
    for term in ("loss", "ce", "kd", "feature"):
        np.testing.assert_allclose(
            [row[term] for row in compiled],
            [row[term] for row in eager],
            rtol=COMPILE_RTOL,
            atol=1e-6,
            err_msg=f"{case}: the compiled run's {term} per epoch",
        )


# A pack's runs train one after another in one process on one device (kdtransfer.training.pack),
# or K at a time in K worker processes: in deterministic mode each must come out as it does alone
# (tests/test_pack.py on the CPU).
PACK_CASES = [("cifar10_resnet18", "kd"), ("cifar10_resnet18_hint", "rcd"), ("cifar10_vit", "kd")]


@pytest.mark.parametrize("setup_name,condition", PACK_CASES)
def test_a_deterministic_pack_trains_each_run_as_it_trains_alone(tmp_path, data_of, teacher_of, setup_name, condition):
    from kdtransfer.data import save_arrays
    from kdtransfer.spec import RunSpec
    from kdtransfer.training.pack import PackRun, train_pack

    spec, teacher_model = paper_spec(setup_name, condition, deterministic=True)
    weights = teacher_of(setup_name, teacher_model) if condition == "kd" else None
    # save_arrays refuses a train split without some class: the CPU's 8 samples miss some of 10.
    save_arrays(data_of(setup_name) if ON_CUDA else setup_data(setup_name, n_train=40), tmp_path / "data.npz")

    def runs(folder, seeds):
        out = []
        for seed in seeds:
            d = tmp_path / folder / f"seed{seed}"
            out.append(
                PackRun(
                    RunSpec.from_params(dict(spec.params(), seed=seed)),
                    str(d / "model.pt"),
                    str(d / "h.parquet"),
                    {"test": str(d / "p.parquet")},
                    weights,
                )
            )
        return out

    pack, alone = runs("pack", (0, 1, 2)), runs("alone", (2,))
    train_pack(pack, tmp_path / "data.npz", checkpoint_every=100, teacher_model=teacher_model)
    train_pack(alone, tmp_path / "data.npz", checkpoint_every=100, teacher_model=teacher_model)
    in_pack, by_itself = (torch.load(r.weights, weights_only=True) for r in (pack[-1], alone[0]))
    assert in_pack.keys() == by_itself.keys() and all(torch.equal(in_pack[k], by_itself[k]) for k in in_pack), (
        f"{setup_name} {condition}: the third run of a pack differs from the same run trained alone"
    )
    assert Path(pack[-1].predictions["test"]).read_bytes() == Path(alone[0].predictions["test"]).read_bytes()
    # Two at a time on the same GPU (training.pack_concurrency = 2, a worker process each): every
    # run as in turn, though its kernels share the device with a pack-mate's.
    side = runs("side_by_side", (0, 1, 2))
    train_pack(side, tmp_path / "data.npz", checkpoint_every=100, teacher_model=teacher_model, concurrency=2)
    for a, b in zip(side, pack):
        assert Path(a.predictions["test"]).read_bytes() == Path(b.predictions["test"]).read_bytes(), (
            f"{setup_name} {condition} seed {a.spec.seed}: trained two at a time, it differs from it trained in turn"
        )


@pytest.mark.skipif(not ON_CUDA, reason="claims real GPUs")
def test_a_job_claims_a_gpu_of_its_own_and_sees_only_it(tmp_path):
    """kdtransfer.training.gpus on the machine's real GPUs: each of N claimants (N = the GPU
    count) sees exactly the one it claimed, under its name; the N+1-th waits (with one GPU,
    claims serialise) and gets the GPU the first releases."""
    import os
    import select
    import subprocess
    import sys

    child = (
        "import os, sys, torch; from kdtransfer.training.gpus import claim_gpu; "
        "from kdtransfer.training.device import device_label; claim = claim_gpu(poll=0.05); "
        "print(claim.device, os.environ['CUDA_VISIBLE_DEVICES'], torch.cuda.device_count(), "
        "device_label(torch.device('cuda')), sep='|', flush=True); sys.stdin.read()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env["KDTRANSFER_GPU_LOCK_DIR"] = str(tmp_path)
    count = torch.cuda.device_count()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", child], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(count + 1)
    ]
    try:
        seen = []
        for proc in procs[:count]:
            device, visible, visible_count, label = proc.stdout.readline().strip().split("|")
            assert visible == device and visible_count == "1" and label.startswith(f"cuda:0 = GPU {device} (")
            seen.append(device)
        assert sorted(seen) == [str(i) for i in range(count)]
        ready, _, _ = select.select([procs[-1].stdout], [], [], 3.0)
        assert not ready, "a claimant beyond the GPU count got a GPU"
        procs[0].stdin.close()
        assert procs[-1].stdout.readline().split("|")[0] == seen[0]
    finally:
        for proc in procs:
            proc.kill()
