"""GPU training: how fast the project's loop is on CUDA, what bounds it, and what the paper costs.

Three parts (bench/gpu_check.sh runs them on a GPU machine, with `--results-dir $OUT`):

`gpu-training`
  1. Loop comparison, per case, one epoch at the paper's recipe (batch 256, bf16 autocast,
     channels_last on CUDA), same model and initial weights everywhere:
     CIFAR-10-shaped ResNet-18 (50,000 synthetic uint8 32x32 images, flip_crop), SpeechCommands-
     shaped audio CNN (128 batches of log-mel 1x40x101 of the 84,843), Names-shaped char GRU
     (14,400 rows of 20 tokens).
     - `project nokd|rcd|kd`: kdtransfer.training.loop.train_run as a training job runs it, data resident
       on the GPU, augmentation on the GPU; kd runs its teacher (same architecture) every step
       when the inputs are augmented. Images/s over the epoch's training steps (train_run's own
       per-epoch timing, which ends on a host sync); the whole call (set-up, test pass) is noted.
     - `DataLoader`: the same arrays in a `DataLoader(TensorDataset)` on the host (shuffle, 4
       workers, pinned memory), non-blocking copies to the GPU, then the project's normalisation
       and augmentation on the GPU, torch.optim's SGD/AdamW: only where the data lives differs.
     - `bare` (the ceiling): forward, backward and step over GPU-resident, already standardised
       tensors in order: no augmentation, shuffling, statistics or checks; `bare + teacher` adds
       the teacher's forward and the KD loss (the ceiling for kd).
     The number that matters: project / bare (target >= 0.7), and kd / (bare + teacher).
  2. Per-epoch cost of every kind of run in experiments/paper.yaml (one "cost class" per
     dataset, student, and what its step computes besides cross-entropy), from a few steps of
     train_run at the real batch size on synthetic data of the real shapes: seconds per step,
     per pass over the full test split, per checkpoint; and the start-up of a training process.

`gpu-projection`
  GPU-hours of experiments/paper.yaml: for every run the Plan makes, start-up + epochs x (steps
  per epoch x seconds per step + test pass) + checkpoints, from the cost classes measured by
  gpu-training (read back from its CSV, so it also runs on a machine without a GPU:
  `python -m bench --only gpu-projection --gpu-csv bench/results/gpu-training.csv`).

`gpu-compile`
  ResNet-18 on CIFAR-10 shapes with `training.compile: true`: the compile time and the
  throughput after it, beside the eager loop.

Every timing synchronises the GPU before reading the clock, follows a warm-up on the same shapes
(kernel selection, cuDNN autotuning, lazy imports), and is the median of interleaved repeats.
`--gpu-smoke` runs all of it on the CPU with tiny sizes, to check the code, not to measure.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from bench.common import REPO, Row, median, write_results
from bench.paper import PAPER_CONFIG, dataset_size, read_config, synthetic_dataset

HEADLINE_CASES = (
    ("cifar10_resnet18", "CIFAR-10 / ResNet-18"),
    ("speech_cnn", "SpeechCommands / audio CNN"),
    ("names_gru", "Names / char GRU"),
)
PROJECT = "project {}"
LOADER = "DataLoader (workers, pinned, non-blocking)"
BARE = "bare (GPU-resident, no augmentation)"
BARE_TEACHER = "bare + teacher forward + KD loss"
# Where the project's time goes beyond the bare loop (augmented cases): each adds one of its parts.
BARE_PROJECT_SGD = "bare, with the project's SGD"
BARE_PROJECT_INPUTS = "bare, with the project's shuffled uint8 batches + augmentation"
# The CSV rows gpu-projection reads back: case = a cost class, variant = CLASS_VARIANT.
CLASS_VARIANT = "project (train_run), per cost class"
STEP, TEST_PASS, CHECKPOINT, START_UP = (
    "time per step",
    "time per test pass",
    "time per checkpoint",
    "training process start-up",
)
TO_SECONDS = {"s": 1.0, "ms": 1e-3}


@dataclass
class Sizes:
    """How much to run: real sizes on a GPU, tiny ones for --gpu-smoke on the CPU."""

    batch: int | None  # None: the recipe's
    headline_batches: dict  # setup -> batches of train data in the loop comparison (None: the real size)
    class_steps: int
    class_epochs: int  # the first is the warm-up
    n_test: int | None  # None: the real test split
    loader_workers: int


def sizes(args) -> Sizes:
    if getattr(args, "gpu_smoke", False):
        return Sizes(
            batch=4,
            headline_batches={name: 1.5 for name, _ in HEADLINE_CASES},
            class_steps=1,
            class_epochs=2,
            n_test=8,
            loader_workers=0,
        )
    # CIFAR-10 and Names at their real sizes; SpeechCommands' 84,843 clips cut to 128 batches.
    return Sizes(
        batch=None,
        headline_batches={"cifar10_resnet18": None, "speech_cnn": 128, "names_gru": None},
        class_steps=12,
        class_epochs=2,
        n_test=None,
        loader_workers=4,
    )


def pick_device(args):
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(args, "gpu_smoke", False):
        return torch.device("cpu")
    raise SystemExit("the gpu-* benchmark parts need a CUDA device (or --gpu-smoke, which checks the code on the CPU)")


def synchronise(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def device_note(device) -> str:
    import torch

    if device.type != "cuda":
        return f"Device: CPU (smoke run: sizes are tiny and nothing here is a measurement); torch {torch.__version__}."
    p = torch.cuda.get_device_properties(device)
    return (
        f"Device: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, compute capability "
        f"{p.major}.{p.minor}; torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}."
    )


# --------------------------------------------------------------------------------------------
# Runs as the pipeline plans them, on synthetic data of their real shapes
# --------------------------------------------------------------------------------------------


class PaperRuns:
    """experiments/paper.yaml's Plan, read without jsonschema (bench.paper.read_config)."""

    def __init__(self, config_path: Path = PAPER_CONFIG):
        from kdtransfer.plan.runs import Plan

        self.config = read_config(config_path)
        self.plan = Plan(self.config)

    def dataset_of(self, condition: str, key: str) -> tuple[str, object]:
        name = self.plan.setup_for_key(condition, key)["dataset"]
        entry = self.config["datasets"][name]
        return name, dataset_size(entry["loader"], entry["options"])

    def spec(self, condition: str, key: str, *, epochs: int, batch: int | None, **training):
        from kdtransfer.spec import RunSpec

        params = self.plan.run_spec(condition, key, 0)
        params["recipe"] = dict(params["recipe"], epochs=epochs, batch_size=batch or params["recipe"]["batch_size"])
        params.update(training)
        return RunSpec.from_params(params)


def setup_run_key(runs: PaperRuns, setup_name: str, condition: str) -> str:
    return runs.plan.run_key(condition, setup_name)


def teacher_weights_for(entry: dict, data, folder: Path) -> str:
    """Untrained teacher weights (a teacher's cost does not depend on what it learnt)."""
    import hashlib
    import json

    import torch

    from kdtransfer.training.models import create_model_for

    # The weights depend on the model, the input shape and the number of classes (its head).
    key = json.dumps([entry, list(data.input_shape), int(data.num_classes)], sort_keys=True)
    path = folder / f"teacher-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if not path.exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            torch.save(create_model_for(entry, data).state_dict(), path)
    return str(path)


def project_epoch(
    runs: PaperRuns, spec, data, device, workdir: Path, teacher_model: dict | None
) -> tuple[list[float], float]:
    """(seconds of training steps per epoch from train_run's history, seconds of the whole call)."""
    from kdtransfer.training.loop import train_run

    weights = teacher_weights_for(teacher_model, data, workdir) if spec.condition == "kd" else None
    run_dir = Path(tempfile.mkdtemp(prefix=f"{spec.condition}-", dir=workdir))
    try:
        synchronise(device)
        started = time.perf_counter()
        _, history, _ = train_run(
            spec,
            data,
            teacher_weights=weights,
            teacher_model=teacher_model,
            checkpoint_path=run_dir / "checkpoint.pt",
            checkpoint_every=spec.recipe.epochs,
            device=device,
        )
        synchronise(device)
        total = time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return [row["seconds"] for row in history], total


# --------------------------------------------------------------------------------------------
# The alternatives: a DataLoader loop and the bare loop
# --------------------------------------------------------------------------------------------


def torch_optimizer(params, recipe):
    import torch

    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov
        )
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def fresh_student(spec, data, inputs):
    from kdtransfer.training.loop import build_initial_model

    return inputs.place(build_initial_model(spec, data)).train()


def dataloader_epoch(spec, data, device, workers: int) -> float:
    """One epoch of the usual PyTorch loop over host arrays; seconds of the epoch's steps."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    from kdtransfer.training.batches import BatchInputs, autocast_context

    inputs = BatchInputs(data, device)
    model = fresh_student(spec, data, inputs)
    optimizer = torch_optimizer(model.parameters(), spec.recipe)
    cuda = device.type == "cuda"
    loader = DataLoader(
        TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
        batch_size=spec.recipe.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=cuda,
        generator=torch.Generator().manual_seed(0),
    )
    augment, generator = spec.recipe.augment, torch.Generator().manual_seed(0)
    synchronise(device)
    started = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=cuda), yb.to(device, non_blocking=cuda)
        xb = inputs(xb, augment, generator)
        with autocast_context(device, spec.bf16):
            logits = model(xb)
        loss = F.cross_entropy(logits.float(), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronise(device)
    return time.perf_counter() - started


def resident_inputs(data, inputs, device):
    """The whole train split on the device as the model takes it (standardised, channels_last)."""
    import torch

    x = torch.from_numpy(data.x_train)
    if x.dtype != torch.uint8:
        return inputs(x.to(device))
    x = torch.cat([inputs(x[i : i + 8192].to(device)) for i in range(0, len(x), 8192)])
    return x.contiguous(memory_format=torch.channels_last) if inputs.channels_last else x


def bare_epoch(spec, data, device, teacher=None, *, project_sgd: bool = False, project_inputs: bool = False) -> float:
    """Forward, backward and step over resident, standardised tensors in order (the ceiling);
    with `teacher`, its forward and the KD loss too. `project_sgd`: the project's SGD instead of
    torch.optim's; `project_inputs`: the project's shuffled uint8 batches, normalised and
    augmented per batch. Seconds of the epoch's steps."""
    import torch
    import torch.nn.functional as F

    from kdtransfer.training.batches import BatchInputs, autocast_context
    from kdtransfer.training.losses import kd_loss
    from kdtransfer.training.optim import SGD

    inputs = BatchInputs(data, device)
    model = fresh_student(spec, data, inputs)
    recipe = spec.recipe
    if project_sgd:
        optimizer = SGD(
            model.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
            nesterov=recipe.nesterov,
        )
    else:
        optimizer = torch_optimizer(model.parameters(), recipe)
    y = torch.from_numpy(data.y_train).to(device)
    if project_inputs:
        x = torch.from_numpy(data.x_train).to(device)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0)).to(device)
        augment, generator = recipe.augment, torch.Generator().manual_seed(0)
    else:
        x = resident_inputs(data, inputs, device)
    batch = recipe.batch_size
    synchronise(device)
    started = time.perf_counter()
    for i in range(0, len(y), batch):
        if project_inputs:
            idx = order[i : i + batch]
            xb, yb = inputs(x[idx], augment, generator), y[idx]
        else:
            xb, yb = x[i : i + batch], y[i : i + batch]
        with autocast_context(device, spec.bf16):
            logits = model(xb)
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(xb)
        loss = F.cross_entropy(logits.float(), yb)
        if teacher is not None:
            loss = (1 - spec.kd.alpha) * loss + spec.kd.alpha * kd_loss(
                logits.float(), teacher_logits.float(), spec.kd.temperature
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronise(device)
    return time.perf_counter() - started


def loaded_teacher(entry: dict, data, inputs, weights: str):
    import torch

    from kdtransfer.training.models import create_model_for

    teacher = create_model_for(entry, data)
    teacher.load_state_dict(torch.load(weights, weights_only=True))
    return inputs.place(teacher).eval()


# --------------------------------------------------------------------------------------------
# gpu-training, 1: the loop comparison
# --------------------------------------------------------------------------------------------


def compare_loops(
    runs: PaperRuns, setup_name: str, label: str, device, workdir: Path, sz: Sizes, repeats: int
) -> list[Row]:
    import torch

    from kdtransfer.training.batches import BatchInputs

    _, size = runs.dataset_of("nokd", setup_run_key(runs, setup_name, "nokd"))
    specs = {
        c: runs.spec(c, setup_run_key(runs, setup_name, c), epochs=1, batch=sz.batch) for c in ("nokd", "rcd", "kd")
    }
    recipe = specs["nokd"].recipe
    batch, augmented = recipe.batch_size, recipe.augment != "none"
    batches = sz.headline_batches.get(setup_name)
    started = time.perf_counter()
    data = synthetic_dataset(size, None if batches is None else int(batches * batch), sz.n_test)
    n = len(data.y_train)
    print(
        f"[gpu] {label}: {n:,} synthetic samples of {list(size.sample)} {size.dtype} ready "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    teacher_model = runs.plan.teacher_model("kd", setup_run_key(runs, setup_name, "kd"))
    teacher = loaded_teacher(
        teacher_model, data, BatchInputs(data, device), teacher_weights_for(teacher_model, data, workdir)
    )

    def variant_runs(d) -> dict:
        """variant -> a function timing one epoch over `d`: (seconds of steps, seconds of the whole call or None)."""
        # rcd of logit KD is priced as cross-entropy steps (cost_class); the CIFAR-10 case checks
        # that with a project rcd row beside project nokd.
        conditions = ("nokd", "rcd", "kd") if augmented else ("nokd", "kd")
        out = {
            PROJECT.format(c): (
                lambda c=c: project_epoch(runs, specs[c], d, device, workdir, teacher_model if c == "kd" else None)
            )
            for c in conditions
        }
        out[LOADER] = lambda: (dataloader_epoch(specs["nokd"], d, device, sz.loader_workers), None)
        out[BARE] = lambda: (bare_epoch(specs["nokd"], d, device), None)
        if augmented:  # else kd computes its teacher's logits once: its ceiling is the bare loop
            out[BARE_TEACHER] = lambda: (bare_epoch(specs["kd"], d, device, teacher), None)
            out[BARE_PROJECT_SGD] = lambda: (bare_epoch(specs["nokd"], d, device, project_sgd=True), None)
            out[BARE_PROJECT_INPUTS] = lambda: (bare_epoch(specs["nokd"], d, device, project_inputs=True), None)
        return out

    # Warm-up: every variant once on a full batch and the epoch's last, partial one (cuDNN
    # autotunes each shape), with the whole test split (the evaluation's shapes). A variant that
    # fails is reported and left out; the others are still measured.
    failed: dict[str, str] = {}

    def attempt(variant, time_one):
        try:
            return time_one()
        except Exception as exc:  # noqa: BLE001 - one run on a lent machine: report and carry on
            traceback.print_exc()
            failed[variant] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            return None

    keep = batch + (n % batch or batch)
    for variant, time_one in variant_runs(
        replace(data, x_train=data.x_train[:keep], y_train=data.y_train[:keep])
    ).items():
        attempt(variant, time_one)
    timed = variant_runs(data)
    variants = list(timed)
    seconds, whole_call = {v: [] for v in variants}, []
    for repeat in range(repeats):
        for variant in variants[repeat % len(variants) :] + variants[: repeat % len(variants)]:
            if variant in failed:
                continue
            result = attempt(variant, timed[variant])
            if result is None:
                continue
            steps, total = result
            seconds[variant].append(steps[0] if isinstance(steps, list) else steps)
            if variant == PROJECT.format("nokd"):
                whole_call.append(total)
            print(
                f"[gpu] {label} repeat {repeat + 1}/{repeats} {variant}: {n / seconds[variant][-1]:,.0f} samples/s",
                flush=True,
            )
    teacher = None  # frees its GPU memory (the timing closures are done with it)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rate = {v: n / median(s) for v, s in seconds.items() if v not in failed and s}
    with_teacher = (PROJECT.format("kd"), BARE_TEACHER) if augmented else ()
    rows = []
    for v in variants:
        ceiling = BARE_TEACHER if v in with_teacher else BARE
        if v not in rate:
            rows.append(
                Row(
                    label,
                    v,
                    "training throughput",
                    float("nan"),
                    "samples/s",
                    None,
                    f"FAILED: {failed.get(v, 'no run finished')}",
                )
            )
            continue
        notes = []
        if v == PROJECT.format("nokd"):
            notes += [
                f"{n:,} x {list(size.sample)} {size.dtype}, batch {batch}, {recipe.optimizer}, augment "
                f"{recipe.augment}, bf16 {specs['nokd'].bf16}",
                f"whole train_run call (set-up, epoch, test pass) {median(whole_call):.2f} s",
            ]
        if v == PROJECT.format("kd") and not augmented:
            notes.append("inputs not augmented: the teacher's logits are computed once, before the epoch (not timed)")
        if v == LOADER:
            notes.append(
                f"{sz.loader_workers} workers; the project's normalisation{' and augmentation' if augmented else ''} "
                "on the device"
            )
        notes.append(f"ratio = this / {ceiling.split(' (')[0]}")
        rows.append(
            Row(
                label,
                v,
                "training throughput",
                rate[v],
                "samples/s",
                rate[v] / rate[ceiling] if ceiling in rate else None,
                "; ".join(notes),
                [n / s for s in seconds[v]],
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# gpu-training, 2: cost classes of the paper's runs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostClass:
    """Runs whose steps cost the same: one dataset, one student, the same extra work per step."""

    dataset: str
    student: str
    extra: str  # "" (cross-entropy only), "kd <teacher>[ <variant>]" or "rcd <variant>"

    @property
    def key(self) -> str:
        return f"{self.dataset} / {self.student}" + (f" / {self.extra}" if self.extra else "")


def cost_class(runs: PaperRuns, condition: str, key: str) -> tuple[CostClass, bool]:
    """(the class of a run, whether it first runs its teacher over the train split once).

    rcd of logit KD steps as cross-entropy does plus a [batch, classes] noise draw (the loop
    comparison measures project rcd beside nokd); kd of logit KD on inputs that are not
    augmented computes the teacher's logits once, then steps as cross-entropy does."""
    from kdtransfer.spec import RunSpec

    setup = runs.plan.setup_for_key(condition, key)
    spec = RunSpec.from_params(runs.plan.run_spec(condition, key, 0))
    student = setup["teacher"] if condition == "teacher" else setup["student"]
    variant = spec.kd.variant if spec.kd is not None else "logit"
    augmented = spec.recipe.augment != "none"
    extra, teacher_pass = "", False
    if condition == "kd" and (augmented or variant != "logit"):
        extra = f"kd {setup['teacher']}" + ("" if variant == "logit" else f" {variant}")
    elif condition == "kd":
        teacher_pass = True
    elif condition == "rcd" and variant != "logit":
        extra = f"rcd {variant}"
    return CostClass(setup["dataset"], student, extra), teacher_pass


def paper_cost_classes(runs: PaperRuns) -> dict[CostClass, list]:
    """Every run of the plan by cost class; the first run of each class is the one measured."""
    classes: dict[CostClass, list] = {}
    for run in runs.plan.runs:
        cls, _ = cost_class(runs, run.condition, run.key)
        classes.setdefault(cls, []).append(run)
    return classes


def measure_class(runs: PaperRuns, cls: CostClass, run, device, workdir: Path, sz: Sizes) -> list[Row]:
    import torch

    from kdtransfer.training.batches import BatchInputs, predict_logits
    from kdtransfer.training.loop import train_run
    from kdtransfer.training.state import save_checkpoint_file

    _, size = runs.dataset_of(run.condition, run.key)
    spec = runs.spec(run.condition, run.key, epochs=sz.class_epochs, batch=sz.batch)
    steps, batch = sz.class_steps, spec.recipe.batch_size
    data = synthetic_dataset(size, steps * batch, sz.n_test)
    teacher_model = runs.plan.teacher_model(run.condition, run.key)
    weights = teacher_weights_for(teacher_model, data, workdir) if run.condition == "kd" else None
    run_dir = Path(tempfile.mkdtemp(prefix="class-", dir=workdir))
    try:
        model, history, _ = train_run(
            spec,
            data,
            teacher_weights=weights,
            teacher_model=teacher_model,
            checkpoint_path=run_dir / "checkpoint.pt",
            checkpoint_every=spec.recipe.epochs,
            device=device,
        )
        per_step = [row["seconds"] / steps for row in history[1:]]  # the first epoch warms up
        inputs, x_test = BatchInputs(data, device), torch.from_numpy(data.x_test).to(device)
        test_pass = []  # after train_run's own test passes, which warmed these shapes up
        for _ in range(2):
            synchronise(device)
            started = time.perf_counter()
            predict_logits(model, x_test, inputs=inputs, bf16=spec.bf16)
            synchronise(device)
            test_pass.append(time.perf_counter() - started)
        # A checkpoint holds the model and the optimizer's state (SGD: one momentum buffer per
        # parameter; AdamW: two moments): timed with parameter-sized stand-ins for that state.
        copies = 2 if spec.recipe.optimizer == "adamw" else 1
        state = {
            "model": model.state_dict(),
            "optimizer": [p.detach().clone() for p in model.parameters() for _ in range(copies)],
        }
        checkpoint = []
        for _ in range(1):
            started = time.perf_counter()
            save_checkpoint_file(state, run_dir / "checkpoint.pt")
            checkpoint.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    note = (
        f"{len(history) - 1} timed epoch(s) of {steps} steps of {batch}, after one warm-up epoch; "
        f"{list(size.sample)} {size.dtype}"
    )
    return [
        Row(
            cls.key, CLASS_VARIANT, STEP, 1000 * median(per_step), "ms", note=note, samples=[1000 * s for s in per_step]
        ),
        Row(
            cls.key,
            CLASS_VARIANT,
            TEST_PASS,
            median(test_pass),
            "s",
            note=f"{len(data.y_test):,} test samples",
            samples=test_pass,
        ),
        Row(cls.key, CLASS_VARIANT, CHECKPOINT, median(checkpoint), "s", samples=checkpoint),
    ]


def start_up_row(device, repeats: int) -> Row:
    """A training job's process start: interpreter, imports, the CUDA context."""
    program = (
        "import torch, kdtransfer.training.loop; torch.zeros(1, device='cuda').sum().item()"
        if device.type == "cuda"
        else "import torch, kdtransfer.training.loop"
    )
    seconds = []
    for _ in range(max(2, repeats - 1)):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", program], check=True, cwd=REPO)
        seconds.append(time.perf_counter() - started)
    return Row(
        "training process",
        CLASS_VARIANT,
        START_UP,
        median(seconds),
        "s",
        note=f'`python -c "{program}"`',
        samples=seconds,
    )


def run_training(args) -> tuple[list[Row], list[str]]:
    import torch

    device = pick_device(args)
    sz = sizes(args)
    runs = PaperRuns()
    notes = [
        device_note(device),
        "Loop comparison: one epoch per repeat, variants interleaved and rotated; ratio = this / the bare loop "
        "(project kd and bare + teacher: / bare + teacher). Project times are train_run's training steps (its "
        "per-epoch time ends on a host sync); the other loops synchronise before reading the clock.",
        "Cost classes: paper runs whose steps cost the same (dataset, student, extra work per step); rcd of logit "
        "KD counts as cross-entropy steps, and kd on inputs without augmentation as cross-entropy steps after one "
        "teacher pass over the train split (the project rcd row of the CIFAR-10 comparison checks the first).",
        f"Recipes, models, KD settings and training flags are experiments/paper.yaml's (deterministic: "
        f"{runs.config['training']['deterministic']}, bf16: {runs.config['training']['bf16']}); data is synthetic.",
    ]
    rows: list[Row] = []
    title = "GPU training: the project's loop vs a DataLoader loop and the bare loop; cost of the paper's runs"

    def flush():  # results so far: a run cut short still leaves its tables
        write_results(
            f"gpu-training-{args.tag}" if args.tag else "gpu-training",
            title,
            rows,
            notes,
            args.command,
            args.results_dir,
        )

    def measured(what: str, measure) -> list[Row]:
        """One measurement's rows; a failure is printed, noted and counted, and the part goes on."""
        try:
            return measure()
        except Exception as exc:  # noqa: BLE001 - one run on a lent machine: report and carry on
            traceback.print_exc()
            args.failures = [*getattr(args, "failures", []), what]
            notes.append(f"FAILED: {what}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            return []
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()

    wanted = [w.strip().lower() for w in (args.gpu_cases or "").split(",") if w.strip()]
    wanted_classes = [w.strip().lower() for w in (args.gpu_classes or "").split(",") if w.strip()]

    def comparison(setup_name: str, label: str) -> None:
        nonlocal rows
        if wanted and not any(w in label.lower() for w in wanted):
            return
        rows += measured(label, lambda: compare_loops(runs, setup_name, label, device, workdir, sz, args.repeats))
        args.failures = [
            *getattr(args, "failures", []),
            *(f"{label}: {r.variant}" for r in rows if r.case == label and r.note.startswith("FAILED")),
        ]
        flush()

    # In order of what matters, as a run cut short keeps what it measured: the CIFAR-10 comparison
    # (the headline), the cost classes and start-up (the projection), then the other comparisons.
    with tempfile.TemporaryDirectory(prefix="kdtransfer-gpu-bench-") as tmp:
        workdir = Path(tmp)
        comparison(*HEADLINE_CASES[0])
        for cls, members in paper_cost_classes(runs).items():
            if wanted_classes and not any(w in cls.key.lower() for w in wanted_classes):
                continue
            started = time.perf_counter()
            new = measured(f"cost class {cls.key}", lambda: measure_class(runs, cls, members[0], device, workdir, sz))
            rows += new
            if new:
                print(
                    f"[gpu] cost class {cls.key} ({len(members)} runs): {new[0].value:.1f} ms per step, "
                    f"test pass {new[1].value:.2f} s ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
            flush()
        rows += measured("training process start-up", lambda: [start_up_row(device, args.repeats)])
        flush()
        for setup_name, label in HEADLINE_CASES[1:]:
            comparison(setup_name, label)
    return rows, notes


# --------------------------------------------------------------------------------------------
# gpu-projection
# --------------------------------------------------------------------------------------------


def read_measurements(path: Path) -> dict[tuple[str, str], float]:
    """(cost class, metric) -> seconds, from gpu-training's CSV."""
    with path.open() as fh:
        return {
            (r["case"], r["metric"]): float(r["median"]) * TO_SECONDS[r["unit"]]
            for r in csv.DictReader(fh)
            if r["variant"] == CLASS_VARIANT
        }


def run_projection(args) -> tuple[list[Row], list[str]]:
    from kdtransfer.spec import RunSpec
    from kdtransfer.training.batches import steps_per_epoch

    source = Path(args.gpu_csv) if args.gpu_csv else Path(args.results_dir) / "gpu-training.csv"
    if not source.exists():
        raise SystemExit(
            f"gpu-projection reads gpu-training's measurements: {source} does not exist (run --only "
            "gpu-training on a GPU first, or pass --gpu-csv)"
        )
    measured = read_measurements(source)
    runs = PaperRuns()
    start_up = measured.get(("training process", START_UP))
    per_class: dict[str, dict] = {}
    missing = set()
    for run in runs.plan.runs:
        cls, teacher_pass = cost_class(runs, run.condition, run.key)
        _, size = runs.dataset_of(run.condition, run.key)
        recipe = RunSpec.from_params(runs.plan.run_spec(run.condition, run.key, run.seed)).recipe
        try:
            step, test_pass, checkpoint = (measured[(cls.key, m)] for m in (STEP, TEST_PASS, CHECKPOINT))
        except KeyError:
            missing.add(cls.key)
            continue
        n_train = size.n_train
        steps, epochs = steps_per_epoch(n_train, recipe), recipe.epochs
        checkpoints = (epochs - 1) // runs.config["training"]["checkpoint_every"] + 1  # + the final weights
        seconds = (
            (start_up or 0.0)
            + epochs * (steps * step + test_pass)
            + checkpoints * checkpoint
            + (test_pass * n_train / size.n_test if teacher_pass else 0.0)
        )
        entry = per_class.setdefault(
            cls.key,
            {"runs": 0, "seconds": 0.0, "epochs": set(), "epoch_s": steps * step + test_pass, "dataset": cls.dataset},
        )
        entry["runs"] += 1
        entry["seconds"] += seconds
        entry["epochs"].add(epochs)
    rows = [
        Row(
            key,
            "projected",
            "GPU-hours",
            e["seconds"] / 3600,
            "h",
            note=f"{e['runs']} runs x {'/'.join(map(str, sorted(e['epochs'])))} epochs "
            f"x {e['epoch_s']:.1f} s per epoch "
            "(+ start-up, checkpoints)",
        )
        for key, e in sorted(per_class.items(), key=lambda kv: -kv[1]["seconds"])
    ]
    by_dataset: dict[str, list] = {}
    for e in per_class.values():
        by_dataset.setdefault(e["dataset"], []).append(e)
    for dataset, entries in sorted(by_dataset.items()):
        rows.append(
            Row(
                f"all {dataset} runs",
                "projected",
                "GPU-hours",
                sum(e["seconds"] for e in entries) / 3600,
                "h",
                note=f"{sum(e['runs'] for e in entries)} runs",
            )
        )
    total_runs = sum(e["runs"] for e in per_class.values())
    rows.append(
        Row(
            "experiments/paper.yaml, all runs",
            "projected",
            "GPU-hours",
            sum(e["seconds"] for e in per_class.values()) / 3600,
            "h",
            note=f"{total_runs} of the plan's {len(runs.plan.runs)} training runs, one GPU each, in sequence",
        )
    )
    notes = [
        f"From {source.name}: seconds per step, per test pass and per checkpoint of each cost class, and the "
        "training process start-up, as measured by gpu-training on the card it names.",
        "Per run: start-up + epochs x (steps per epoch x s per step + one test pass) + checkpoints (every "
        f"training.checkpoint_every = {runs.config['training']['checkpoint_every']} epochs, and the final weights) "
        "+ for kd without augmentation, one teacher pass over the train split (at the test pass's rate).",
        "Not counted: reading the prepared .npz and copying it to the GPU (seconds per job), writing predictions, "
        "data preparation, the analysis (CPU), queueing.",
        f"Training flags as in experiments/paper.yaml (deterministic: {runs.config['training']['deterministic']}, "
        f"compile: {runs.config['training']['compile']}).",
    ]
    if start_up is None:
        notes.append("NOT MEASURED: the training process start-up, counted as 0.")
    if missing:
        notes.append(f"NOT MEASURED, left out of the totals: {', '.join(sorted(missing))}.")
    return rows, notes


# --------------------------------------------------------------------------------------------
# gpu-compile
# --------------------------------------------------------------------------------------------


def run_compile(args) -> tuple[list[Row], list[str]]:
    device = pick_device(args)
    sz = sizes(args)
    runs = PaperRuns()
    key = setup_run_key(runs, "cifar10_resnet18", "nokd")
    _, size = runs.dataset_of("nokd", key)
    batch = sz.batch or runs.plan.run_spec("nokd", key, 0)["recipe"]["batch_size"]
    # Whole batches only (49,920 of CIFAR-10's 50,000 images): a last, smaller batch would be
    # compiled again for dynamic shapes, another minute that a training job pays once.
    batches = sz.headline_batches["cifar10_resnet18"] or size.n_train // batch
    data = synthetic_dataset(size, int(batches) * batch, sz.n_test)
    n = len(data.y_train)
    label, title = "CIFAR-10 / ResNet-18, nokd", "GPU training with torch.compile (ResNet-18)"
    notes = [
        device_note(device),
        "One run each (not repeated: a compile takes a minute); the paper's flags otherwise "
        "(deterministic: false, bf16: true). Epoch 1 of the compiled run includes compiling.",
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kdtransfer-gpu-compile-") as tmp:
        for compiled in (False, True):
            spec = runs.spec("nokd", key, epochs=2, batch=sz.batch, compile=compiled)
            epochs, total = project_epoch(runs, spec, data, device, Path(tmp), None)
            print(
                f"[gpu] ResNet-18 compile={compiled}: epochs {', '.join(f'{s:.2f} s' for s in epochs)}, call "
                f"{total:.1f} s",
                flush=True,
            )
            if not compiled:
                eager = epochs
                rows.append(
                    Row(
                        label,
                        "project, eager",
                        "training throughput (epoch 2)",
                        n / eager[1],
                        "samples/s",
                        1.0,
                        f"{n:,} samples, batch {batch}; epoch 1: {eager[0]:.2f} s",
                        [n / s for s in eager],
                    )
                )
            else:
                rows.append(
                    Row(
                        label,
                        "project, torch.compile",
                        "training throughput (epoch 2)",
                        n / epochs[1],
                        "samples/s",
                        eager[1] / epochs[1],
                        "ratio = compiled / eager",
                        [n / s for s in epochs],
                    )
                )
                rows.append(
                    Row(
                        label,
                        "project, torch.compile",
                        "compile time (epoch 1 minus epoch 2)",
                        epochs[0] - epochs[1],
                        "s",
                    )
                )
            write_results(
                f"gpu-compile-{args.tag}" if args.tag else "gpu-compile",
                title,
                rows,
                notes,
                args.command,
                args.results_dir,
            )
    return rows, notes
