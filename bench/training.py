"""Training throughput: the project's loop (`kdtransfer.training.loop.train_run`) vs plain PyTorch loops.

Cases: the embedded default's three (dataset, model, recipe) triples from config.yaml, and a
CIFAR-shaped synthetic set (random 3x32x32 float32 images, 10 classes) with ResNet-18
(`resnet_cifar`, the CIFAR stem; 11.2 M parameters) under an SGD recipe, batch 128.

Variants, all from the same initial weights, on the same arrays, for the same epochs, with the
same SGD hyper-parameters and the same per-step cosine schedule, each evaluating test accuracy
after every epoch as the project's loop does:

- `project`: `train_run` as a training job runs it (checkpoint every epoch as config.yaml says,
  init and batch-order fingerprints, per-epoch history), with the project's SGD.
- `DataLoader(TensorDataset)`: `torch.utils.data.DataLoader(TensorDataset(x, y), batch_size,
  shuffle=True)`, `torch.optim.SGD`, `LambdaLR`; the loop most PyTorch users write for
  in-memory tensors.
- `DataLoader(per-sample Dataset)`: the same loop over a map-style Dataset whose `__getitem__`
  returns `(torch.from_numpy(x[i]), int(y[i]))`, collated by the default collate_fn: what a
  user writes for their own arrays.

Throughput = training samples x epochs / wall time of the whole call (set-up, epochs, test
evaluation), measured in this process after one untimed warm-up per case and variant,
variants interleaved and rotated across repeats. torch runs on `--threads` threads (default 1,
as each training job of the pipeline does).

Distillation cost: the project's loop for a `kd` student (teacher forward every step: image
batches with `flip_crop` augmentation, so the teacher's logits cannot be precomputed) vs the
`nokd` control with the same augmentation; ratio of their time per epoch of training steps.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import REPO, Row, median, python_c_seconds

PROJECT = "project (train_run)"
TENSOR_LOADER = "DataLoader(TensorDataset)"
SAMPLE_LOADER = "DataLoader(per-sample Dataset)"
VARIANTS = (PROJECT, TENSOR_LOADER, SAMPLE_LOADER)
CIFAR_RECIPE = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 0.0005,
    "epochs": 1,
    "batch_size": 128,
    "schedule": "cosine",
}


def _planned(config: dict):
    from kdtransfer.plan.config import validate_config
    from kdtransfer.plan.runs import Plan

    return Plan(validate_config(config, str(REPO / "workflow" / "schemas" / "config.schema.yaml")))


def _case(name: str, plan, setup: str, **data) -> dict:
    """A benchmark case: a setup of a plan (its runs' specs are the plan's) and the data to load."""
    return {
        "name": name,
        "plan": plan,
        "setup": setup,
        "recipe": plan.spec("teacher", setup, 0).recipe,
        "checkpoint_every": plan.config["training"]["checkpoint_every"],
        **data,
    }


def embedded_cases() -> list[dict]:
    """(dataset, model, recipe) of each setup of config.yaml, as its training jobs see them."""
    import yaml

    plan = _planned(yaml.safe_load((REPO / "config.yaml").read_text()))
    cases, seen = [], set()
    for name in plan.config["setups"]:  # as written: a recipe sweep's variants are not cases of their own
        setup = plan.setups[name]
        key = (setup["dataset"], setup["student"], setup["recipe"])
        if key in seen:
            continue
        seen.add(key)
        dataset = plan.config["datasets"][key[0]]
        cases.append(
            _case(
                f"{key[0]} / {plan.config['models'][key[1]]['arch']}",
                plan,
                name,
                loader=dataset["loader"],
                options=dataset["options"],
            )
        )
    return cases


def cifar_case(images: int, epochs: int) -> dict:
    config = {
        "seeds": 1,
        "datasets": {"cifar": {"loader": "cifar10"}},
        "models": {"resnet18": {"arch": "resnet_cifar"}},
        "recipes": {"cifar": dict(CIFAR_RECIPE, epochs=epochs)},
        "setups": {"cifar_resnet18": {"dataset": "cifar", "teacher": "resnet18", "recipe": "cifar"}},
    }
    return _case(
        f"synthetic CIFAR ({images:,} x 3x32x32) / resnet_cifar-18",
        _planned(config),
        "cifar_resnet18",
        loader="synthetic_cifar",
        images=images,
    )


def load_case_data(case: dict):
    from kdtransfer.data import ArrayDataset, load_dataset

    if case["loader"] != "synthetic_cifar":
        return load_dataset(case["loader"], **case["options"])
    rng = np.random.default_rng(0)
    n_train, n_test = case["images"], max(100, case["images"] // 4)
    return ArrayDataset(
        rng.standard_normal((n_train, 3, 32, 32), dtype=np.float32),
        rng.integers(0, 10, n_train),
        rng.standard_normal((n_test, 3, 32, 32), dtype=np.float32),
        rng.integers(0, 10, n_test),
        10,
        "image",
    )


def make_spec(case: dict, condition: str, *, augment: str = "none"):
    """The plan's spec of `condition` in the case's setup, with the case's recipe and `augment`."""
    from dataclasses import replace

    spec = case["plan"].spec(condition, case["setup"], 0)
    return replace(spec, recipe=replace(case["recipe"], augment=augment), deterministic=True)


# --------------------------------------------------------------------------------------------
# The loops
# --------------------------------------------------------------------------------------------


def project_loop(
    case: dict,
    data,
    device,
    workdir: Path,
    *,
    condition: str = "teacher",
    augment: str = "none",
    teacher_weights: Path | None = None,
) -> tuple[float, float]:
    """(seconds for the whole train_run call, seconds of training steps from its history)."""
    from kdtransfer.training.loop import train_run

    spec = make_spec(case, condition, augment=augment)
    # A fresh directory per run: any checkpoint left beside the path (train_run may keep more
    # than one) would be resumed instead of trained.
    run_dir = Path(tempfile.mkdtemp(prefix=f"{condition}-", dir=workdir))
    try:
        _synchronise(device)
        started = time.perf_counter()
        teacher_model = case["plan"].teacher_model("kd", spec.run_key) if teacher_weights else None
        _, history, _ = train_run(
            spec,
            data,
            teacher_weights=teacher_weights,
            teacher_model=teacher_model,
            checkpoint_path=run_dir / "checkpoint.pt",
            checkpoint_every=case["checkpoint_every"],
            device=device,
        )
        _synchronise(device)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if len(history) != spec.recipe.epochs:
        raise AssertionError(f"train_run returned {len(history)} epochs of history, expected {spec.recipe.epochs}")
    return seconds, sum(row["seconds"] for row in history)


class PerSampleDataset:
    """A map-style dataset as users write one for their own arrays: one sample per __getitem__."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        import torch

        return torch.from_numpy(self.x[i]), int(self.y[i])


def dataloader_loop(case: dict, data, device, *, per_sample: bool) -> tuple[float, float]:
    """The plain PyTorch loop; (seconds for the whole call, seconds of training steps)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from kdtransfer.training.loop import build_initial_model

    recipe = case["recipe"]
    _synchronise(device)
    started = time.perf_counter()
    model = build_initial_model(make_spec(case, "teacher"), data).to(device)
    if per_sample:
        train_set = PerSampleDataset(data.x_train, data.y_train)
    else:
        train_set = TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train))
    pin = device.type == "cuda"
    train_loader = DataLoader(
        train_set,
        batch_size=recipe.batch_size,
        shuffle=True,
        pin_memory=pin,
        generator=torch.Generator().manual_seed(0),
    )
    test_loader = DataLoader(
        TensorDataset(torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)), batch_size=1024, pin_memory=pin
    )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )
    total_steps = recipe.epochs * len(train_loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(1.0, step / total_steps)))
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    step_seconds = 0.0
    for _ in range(recipe.epochs):
        model.train()
        epoch_started = time.perf_counter()
        correct = seen = 0
        for xb, yb in train_loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with autocast:
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(yb)
        _synchronise(device)
        step_seconds += time.perf_counter() - epoch_started
        model.eval()
        with torch.no_grad(), autocast:
            hits = sum(int((model(xb.to(device)).argmax(1) == yb.to(device)).sum()) for xb, yb in test_loader)
        _ = (
            hits / len(data.y_test),
            correct / max(1, seen),
        )  # the accuracies train_run logs; here only their cost counts
    _synchronise(device)
    return time.perf_counter() - started, step_seconds


def _synchronise(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def run_variant(variant: str, case: dict, data, device, workdir: Path) -> tuple[float, float]:
    if variant == PROJECT:
        return project_loop(case, data, device, workdir)
    return dataloader_loop(case, data, device, per_sample=(variant == SAMPLE_LOADER))


def throughput_rows(case: dict, data, device, workdir: Path, repeats: int) -> list[Row]:
    samples = len(data.y_train) * case["recipe"].epochs
    warm_case, warm_data = _warm_up(case, data)
    for variant in VARIANTS:  # first-call allocations and kernel selection are not what we measure
        run_variant(variant, warm_case, warm_data, device, workdir)
    seconds = {v: [] for v in VARIANTS}
    # Sub-second runs (the MLP on digits) get more repeats: their medians would be noise otherwise.
    probe, _ = run_variant(PROJECT, case, data, device, workdir)
    repeats = max(repeats, min(5 * repeats, math.ceil(3.0 / max(probe, 1e-3))))
    for repeat in range(repeats):
        order = VARIANTS[repeat % len(VARIANTS) :] + VARIANTS[: repeat % len(VARIANTS)]
        for variant in order:
            total, _ = run_variant(variant, case, data, device, workdir)
            seconds[variant].append(total)
            print(
                f"[training] {case['name']} repeat {repeat + 1}/{repeats} {variant}: {samples / total:,.0f} samples/s "
                f"({total:.2f} s)",
                flush=True,
            )
    rows = []
    project_rate = samples / median(seconds[PROJECT])
    for variant in VARIANTS:
        rate = samples / median(seconds[variant])
        rows.append(
            Row(
                case["name"],
                variant,
                "training throughput",
                rate,
                "samples/s",
                project_rate / rate,
                f"batch {case['recipe'].batch_size}, {case['recipe'].epochs} epoch(s) x {len(data.y_train):,} samples; "
                "ratio = project / this",
                [samples / s for s in seconds[variant]],
            )
        )
    return rows


def distillation_rows(case: dict, data, device, workdir: Path, repeats: int) -> list[Row]:
    """kd (teacher forward every step) vs nokd, both with flip_crop augmentation, project loop."""
    import torch

    from kdtransfer.training.loop import build_initial_model

    teacher_weights = workdir / "teacher.pt"
    torch.save(build_initial_model(make_spec(case, "teacher"), data).state_dict(), teacher_weights)
    warm_case, warm_data = _warm_up(case, data)
    project_loop(
        warm_case, warm_data, device, workdir, condition="kd", augment="flip_crop", teacher_weights=teacher_weights
    )
    project_loop(warm_case, warm_data, device, workdir, condition="nokd", augment="flip_crop")
    step_seconds = {"kd": [], "nokd": []}
    for repeat in range(repeats):
        for condition in ("kd", "nokd") if repeat % 2 == 0 else ("nokd", "kd"):
            _, steps = project_loop(
                case,
                data,
                device,
                workdir,
                condition=condition,
                augment="flip_crop",
                teacher_weights=teacher_weights if condition == "kd" else None,
            )
            step_seconds[condition].append(steps)
            print(
                f"[training] {case['name']} repeat {repeat + 1}/{repeats} {condition} (flip_crop): {steps:.2f} s of "
                "steps",
                flush=True,
            )
    batches = math.ceil(len(data.y_train) / case["recipe"].batch_size) * case["recipe"].epochs
    nokd = median(step_seconds["nokd"])
    return [
        Row(
            case["name"],
            "project: nokd step (CE, flip_crop)",
            "time per training step",
            1000 * nokd / batches,
            "ms",
            samples=[1000 * s / batches for s in step_seconds["nokd"]],
        ),
        Row(
            case["name"],
            "project: kd step (teacher forward + KD loss, flip_crop)",
            "time per training step",
            1000 * median(step_seconds["kd"]) / batches,
            "ms",
            median(step_seconds["kd"]) / nokd,
            "ratio = kd / nokd: the cost of distillation",
            [1000 * s / batches for s in step_seconds["kd"]],
        ),
    ]


def _warm_up(case: dict, data):
    """One epoch of two batches: enough to allocate and pick kernels, cheap even for ResNet-18."""
    from dataclasses import replace

    keep = 2 * case["recipe"].batch_size
    small = replace(
        data,
        x_train=data.x_train[:keep],
        y_train=data.y_train[:keep],
        x_test=data.x_test[:keep],
        y_test=data.y_test[:keep],
    )
    return dict(case, recipe=replace(case["recipe"], epochs=1)), small


def import_rows(repeats: int) -> list[Row]:
    """What a training job pays before its first step, in a new process: the imports of each loop
    and the construction of its optimizer (a torch.optim optimizer imports torch._dynamo then)."""
    programs = {
        PROJECT: "import torch, kdtransfer.training.loop; from kdtransfer.training.optim import SGD; "
        "SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False)",
        "DataLoader loops": "import torch, torch.utils.data, kdtransfer.training.models; "
        "torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)",
    }
    seconds = {name: [] for name in programs}
    for repeat in range(max(3, repeats)):
        for name in programs if repeat % 2 == 0 else reversed(list(programs)):
            seconds[name].append(python_c_seconds(programs[name]))
    project = median(seconds[PROJECT])
    return [
        Row(
            "training job start-up (new process)",
            name,
            "imports + optimizer construction",
            median(times),
            "s",
            median(times) / project,
            f"`python -c '{programs[name]}'`; ratio = this / project",
            times,
        )
        for name, times in seconds.items()
    ]


def run(args) -> tuple[list[Row], list[str]]:
    import torch

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and args.device in ("auto", "cuda") else "cpu")
    if args.device == "cuda" and device.type != "cuda":
        raise SystemExit("--device cuda: no CUDA device here")
    cases = embedded_cases() + [cifar_case(args.cifar_images, args.cifar_epochs)]
    if args.training_cases:
        wanted = [w.strip().lower() for w in args.training_cases.split(",")]
        cases = [c for c in cases if any(w in c["name"].lower() for w in wanted)]
    rows: list[Row] = import_rows(args.repeats)
    with tempfile.TemporaryDirectory(prefix="kdtransfer-bench-") as tmp:
        workdir = Path(tmp)
        for case in cases:
            started = time.perf_counter()
            data = load_case_data(case)
            print(f"[training] {case['name']}: data ready ({time.perf_counter() - started:.1f} s)", flush=True)
            rows += throughput_rows(case, data, device, workdir, args.repeats)
            if data.x_train.ndim == 4:
                rows += distillation_rows(case, data, device, workdir, args.repeats)
    notes = [
        f"Device: {device}; torch {torch.__version__}, {args.threads} thread(s) (torch.set_num_threads), as a "
        "pipeline training job.",
        "Same initial weights (kdtransfer.training.loop.build_initial_model), data, epochs, SGD hyper-parameters and "
        "per-step cosine "
        "schedule in every variant; the DataLoader loops use torch.optim.SGD and evaluate test accuracy every epoch "
        "as train_run "
        "does. Constructing a torch.optim optimizer imports torch._dynamo once per process (the start-up rows; not "
        "in the "
        "throughputs); the project's SGD is the same update without it.",
        "The project's time includes what a training job does besides steps: init/order fingerprints and a "
        "checkpoint every epoch.",
        f"CIFAR-shaped case: {args.cifar_images:,} random standardised images, {args.cifar_epochs} epoch(s) (one "
        "ResNet-18 step of 128 "
        "images takes seconds on one CPU core; --cifar-images 2000 for the 2,000-image set).",
        "Distillation: kd and nokd both with flip_crop augmentation, so the kd student runs its teacher (same "
        "architecture) "
        "forward on every augmented batch; ratio of time per step (training steps only, from train_run's history).",
        "On a CUDA machine the same code runs on the GPU (`--device cuda`): the project loop with bf16 autocast and "
        "channels_last, the DataLoader loops with pin_memory, non_blocking copies and bf16 autocast.",
    ]
    return rows, notes
