"""One training loop for every condition; the condition only selects the target.

Data sits in memory as tensors (on the GPU when there is one; uint8 images stay uint8 there,
4x smaller, and are scaled and standardised per batch); batches are index slices of a
per-epoch permutation drawn from a generator seeded by (seed, order role, epoch), so the batch
order is a pure function of the seed and a resumed run sees exactly the batches it would have.

On CUDA: image batches and models channels_last, bf16 autocast (RunSpec.bf16), optional
torch.compile of the student (RunSpec.compile), and the determinism switch. These do not apply on CPU, where runs are bit-identical at a fixed
thread count already and the switches would import torch._dynamo/_inductor (1.4-1.5 s per job,
most of a small job's time).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from kdtransfer.io.atomic import atomic_path, leftover_temp_files
from kdtransfer.training.batches import BatchInputs, autocast_context, predict_logits
from kdtransfer.data import ArrayDataset
from kdtransfer.training.losses import distillation_objective, feature_loss
from kdtransfer.training.models import FeatureTap, count_parameters, create_model_for, feature_shapes, state_fingerprint
from kdtransfer.training.optim import SGD, LRSchedule
from kdtransfer.training.seeding import derive_seed, run_roles
from kdtransfer.training.objective import build_regressor, build_targets, feature_kd_of

log = logging.getLogger("kdtransfer.training.loop")


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived (preemption, time limit): a checkpoint was saved; a rerun resumes."""


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class RunSpec:
    run_key: str
    condition: str
    seed: int
    model: dict  # {"arch": str, "options": dict}
    recipe: dict
    # kd and rcd: {"alpha", "temperature", "variant": "logit"|"hint"|"attention", "feature_weight",
    # "layers": student module names, "teacher_layers": teacher module names} (layers empty for logit)
    kd: dict = field(default_factory=dict)
    rcd: dict = field(default_factory=dict)  # {"noise": "uniform"|"gaussian", "resample": "step"|"fixed"} for rcd
    checkpoint_every: int = 1
    deterministic: bool = True
    bf16: bool = True  # bfloat16 autocast, on CUDA only
    compile: bool = False  # torch.compile the student, on CUDA only

    @classmethod
    def from_params(cls, params: dict) -> "RunSpec":
        return cls(**params)


def spec_fingerprint(spec: RunSpec) -> str:
    """Identifies what a checkpoint was trained for, so a stale one is never resumed.
    `checkpoint_every` is left out: how often a run saves does not change what it trains."""
    fields = asdict(spec)
    fields.pop("checkpoint_every")
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def epoch_permutation(order_seed: int, epoch: int, n: int, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(derive_seed(order_seed, "epoch", epoch))
    return torch.randperm(n, generator=g).to(device)


def order_fingerprint(order_seed: int, n: int, epochs: int) -> str:
    h = hashlib.sha256()
    for epoch in range(epochs):
        h.update(epoch_permutation(order_seed, epoch, n).numpy().tobytes())
    return h.hexdigest()[:16]


def build_initial_model(spec: RunSpec, data: ArrayDataset) -> torch.nn.Module:
    init_role, _ = run_roles(spec.condition)
    torch.manual_seed(derive_seed(spec.seed, init_role))
    return create_model_for(spec.model, data)


def make_optimizer(params, recipe: dict, steps_per_epoch: int):
    params = list(params)
    if recipe["optimizer"] == "sgd":
        opt = SGD(params, lr=recipe["lr"], momentum=recipe.get("momentum", 0.9),
                  weight_decay=recipe.get("weight_decay", 0.0), nesterov=recipe.get("nesterov", False))
    elif recipe["optimizer"] == "adamw":  # torch.optim imports torch._dynamo: only when asked for
        opt = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=recipe.get("weight_decay", 0.0))
    else:
        raise ValueError(f"unknown optimizer {recipe['optimizer']!r}; valid: sgd, adamw")
    schedule = LRSchedule(opt, recipe["lr"], recipe["epochs"] * steps_per_epoch,
                          int(recipe.get("warmup_epochs", 0) * steps_per_epoch), recipe.get("schedule", "constant"))
    return opt, schedule


def divergence_message(spec: RunSpec, loss: float, epoch: int, batch: int, bf16_active: bool) -> str:
    fix = "lower recipe.lr" + (" or disable bf16 autocast (training.bf16: false)" if bf16_active else "")
    return f"run {spec.run_key} ({spec.condition}) seed {spec.seed}: loss is {loss} at epoch {epoch + 1} batch {batch}; {fix}"


def previous_checkpoint_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _keep_as_previous(path: Path) -> None:
    previous = previous_checkpoint_path(path)
    try:
        with atomic_path(previous) as staged:
            os.link(path, staged)
    except OSError:  # a file system without hard links: a rename leaves a brief gap instead
        os.replace(path, previous)


def save_checkpoint_file(state: dict, path: Path) -> None:
    """Write a checkpoint atomically, keeping the one before as a fallback: should the newest
    ever be unreadable (a bad disk block, a copy cut short), training resumes from the previous
    one instead of from scratch.

    `path` never goes missing once written, so a job killed at any instant leaves a checkpoint
    there: the new state is written to a temp file first, the current checkpoint is hard-linked
    to the fallback name, and only then is the temp file renamed over `path`.
    """
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
        if path.exists():
            _keep_as_previous(path)


def _read_checkpoint(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning("checkpoint %s is unreadable (%s); discarding it", path, exc)
        path.unlink(missing_ok=True)
        return None


def load_checkpoint(path: Path, spec_digest: str | None = None) -> dict | None:
    """The newest readable checkpoint of this run specification, else None (start from scratch).

    An unreadable checkpoint is discarded with a warning and the previous one is tried; one left
    by another specification (the config changed since) is never resumed.
    """
    for candidate in (path, previous_checkpoint_path(path)):
        state = _read_checkpoint(candidate)
        if state is None:
            continue
        if spec_digest is not None and state.get("spec") != spec_digest:
            log.warning("checkpoint %s belongs to a different run specification; discarding it", candidate)
            candidate.unlink(missing_ok=True)
            continue
        if candidate != path:
            log.warning("resuming from the previous checkpoint %s", candidate)
        return state
    return None


def remove_checkpoints(path: Path) -> None:
    """Remove both checkpoints and any half-written ones a killed attempt left behind."""
    for checkpoint in (path, previous_checkpoint_path(path)):
        for file in (checkpoint, *leftover_temp_files(checkpoint)):
            file.unlink(missing_ok=True)


class EpochStats:
    """Per-epoch sums of the loss terms and of correct predictions, kept on the device: reading
    them every step would stall a GPU on a host sync each batch."""

    FIELDS = ("loss", "ce", "kd", "feature", "correct")

    def __init__(self, device: torch.device):
        self.device = device
        self.sums = torch.zeros(len(self.FIELDS), dtype=torch.float64, device=device)
        self.zero = torch.zeros((), device=device)
        self.seen, self.seconds = 0, 0.0
        # Per batch size: the weights of the terms (means x k, the count of correct ones x 1).
        # Made once, not per step: a tensor built from Python numbers on a GPU is a host sync.
        self._weights: dict[int, torch.Tensor] = {}

    def add(self, loss: torch.Tensor, parts: dict, logits: torch.Tensor, labels: torch.Tensor) -> None:
        k = labels.shape[0]
        terms = [loss.detach(), parts["ce"], parts.get("kd", self.zero), parts.get("feature", self.zero),
                 (logits.argmax(1) == labels).sum()]
        if k not in self._weights:
            self._weights[k] = torch.tensor([k, k, k, k, 1], dtype=torch.float64, device=self.device)
        self.sums += torch.stack([t.to(torch.float64) for t in terms]) * self._weights[k]
        self.seen += k

    def loss_is_finite(self) -> bool:
        return bool(torch.isfinite(self.sums[0]))

    def means(self) -> dict:
        seen = max(1, self.seen)
        values = (self.sums / seen).tolist()
        out = dict(zip(self.FIELDS, values))
        out["train_accuracy"] = out.pop("correct")
        return out

    def state_dict(self) -> dict:
        return {"sums": self.sums.cpu(), "seen": self.seen, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.sums = state["sums"].to(self.device)
        self.seen, self.seconds = state["seen"], state["seconds"]


FUSED_ATTENTION_SWITCHES = ("enable_flash_sdp", "enable_mem_efficient_sdp", "enable_cudnn_sdp")


def configure_device(spec: RunSpec, device: torch.device) -> None:
    """The determinism switch, on CUDA (process-wide settings, set for each run).

    warn_only=True: strict mode raises on every op flagged as non-deterministic on CUDA, such as
    the backward of adaptive pooling (the ResNet's global average pool), whose atomic adds are
    reproducible anyway where each input element gets one (non-overlapping windows, as here).
    Attention's are not: the fused kernels' backward passes (flash, memory-efficient, cuDNN)
    accumulate in a varying order unless strict mode is on, so a deterministic run computes
    attention with the math kernel (the sequences here are short). tests/gpu checks the result.
    """
    if device.type == "cuda":
        if spec.deterministic:  # deterministic cuBLAS; read when CUDA first creates its handle
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # CPU kernels are deterministic at a fixed thread count already; on CPU this call would
        # also import torch._inductor (1.5 s per job, most of a small job's time).
        torch.use_deterministic_algorithms(spec.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not spec.deterministic
        for switch in FUSED_ATTENTION_SWITCHES:
            if hasattr(torch.backends.cuda, switch):  # enable_cudnn_sdp: torch >= 2.3
                getattr(torch.backends.cuda, switch)(not spec.deterministic)


def train_run(
    spec: RunSpec,
    data: ArrayDataset,
    *,
    teacher_weights: str | os.PathLike | None = None,
    teacher_model: dict | None = None,
    checkpoint_path: str | os.PathLike,
    device: torch.device | None = None,
) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train one run; returns (final model, per-epoch history, run info).

    `kd` needs `teacher_weights` and `teacher_model` (its model entry); `rcd` of a feature
    variant needs `teacher_model` only (the shapes its noise maps take). The final epoch's
    weights are the model: nothing is ever selected on the test split.
    """
    device = device or pick_device()
    configure_device(spec, device)
    recipe = spec.recipe
    _, order_role = run_roles(spec.condition)
    order_seed = derive_seed(spec.seed, order_role)
    features = feature_kd_of(spec)
    bf16_active = device.type == "cuda" and spec.bf16

    x_train = torch.from_numpy(data.x_train).to(device)
    y_train = torch.from_numpy(data.y_train).to(device)
    x_test = torch.from_numpy(data.x_test).to(device)
    y_test = torch.from_numpy(data.y_test).to(device)
    inputs = BatchInputs(data, device)
    n, batch_size, epochs = x_train.shape[0], recipe["batch_size"], recipe["epochs"]
    steps_per_epoch = math.ceil(n / batch_size) if not recipe.get("drop_last", False) else n // batch_size
    augment = recipe.get("augment", "none")

    model = inputs.place(build_initial_model(spec, data))
    info = {
        "init_fingerprint": state_fingerprint(model),
        "order_fingerprint": order_fingerprint(order_seed, n, epochs),
        "num_parameters": count_parameters(model),
        "device": str(device),
    }

    targets = build_targets(spec, data, features, teacher_weights, teacher_model, x_train, inputs, device)
    student_tap = regressor = None
    if features is not None:
        student_shapes = feature_shapes(model, list(features.layers), inputs(x_train[:2]), "student")
        student_tap = FeatureTap(model, list(features.layers), "student")
        if features.variant == "hint":
            regressor = build_regressor(spec, student_shapes, targets.feature_shapes).to(device)
    # The regressor is trained with the student, but is not part of it: not in model.pt, not counted.
    trained = [*model.parameters(), *(regressor.parameters() if regressor is not None else [])]
    opt, sched = make_optimizer(trained, recipe, steps_per_epoch)

    ckpt_path = Path(checkpoint_path)
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    start_epoch, start_batch = 0, 0
    stats = EpochStats(device)
    aug_gen = torch.Generator()
    spec_digest = spec_fingerprint(spec)
    state = load_checkpoint(ckpt_path, spec_digest)
    if state is not None:
        model.load_state_dict(state["model"])
        if regressor is not None:
            regressor.load_state_dict(state["regressor"])
        if targets is not None:
            targets.load_state_dict(state["targets"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:  # dropout draws on the GPU
            torch.cuda.set_rng_state(state["cuda_rng"])
        aug_gen.set_state(state["aug_rng"])
        stats.load_state_dict(state["stats"])
        history = state["history"]
        start_epoch, start_batch = state["epoch"], state["batch"]
        log.info("resumed %s seed %d from %s at epoch %d batch %d", spec.run_key, spec.seed, ckpt_path, start_epoch + 1, start_batch)
    else:
        # Dropout draws from the global RNG: reseed after the (condition-dependent) setup, from the
        # seed and the data-order role alone, so kd, rcd and nokd differ only in their loss.
        torch.manual_seed(derive_seed(spec.seed, "dropout", order_role))

    def save_checkpoint(epoch: int, batch: int) -> None:
        save_checkpoint_file({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "regressor": regressor.state_dict() if regressor is not None else None,
            "targets": targets.state_dict() if targets is not None else None,
            "torch_rng": torch.get_rng_state(), "aug_rng": aug_gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "history": history, "stats": stats.state_dict(), "epoch": epoch, "batch": batch, "spec": spec_digest,
        }, ckpt_path)

    def check_finite(epoch: int, batch: int) -> None:
        if not stats.loss_is_finite():
            raise TrainingDiverged(divergence_message(spec, stats.sums[0].item(), epoch, batch, bf16_active))

    # On the CPU a per-step check is free; on a GPU it is a host sync, so every few steps (and
    # always before a checkpoint is written, so no checkpoint ever holds a diverged model).
    check_every = 1 if device.type == "cpu" else 25

    interrupted = {"flag": False}
    previous_handler = None
    if hasattr(signal, "SIGTERM"):
        try:
            previous_handler = signal.signal(signal.SIGTERM, lambda *_: interrupted.update(flag=True))
        except ValueError:  # not in the main thread
            previous_handler = None

    forward = model
    if spec.compile and device.type == "cuda":  # after the hooks are registered, so they are traced
        forward = torch.compile(model)
    alpha, temperature = spec.kd.get("alpha", 0.0), spec.kd.get("temperature", 1.0)
    try:
        for epoch in range(start_epoch, epochs):
            perm = epoch_permutation(order_seed, epoch, n, device)
            if start_batch == 0:
                # Fresh per-epoch generators, so a resume mid-run reproduces the same draws.
                if targets is not None:
                    targets.start_epoch(epoch)
                # From the data-order role, never the condition: kd, rcd and nokd see the same crops.
                aug_gen.manual_seed(derive_seed(spec.seed, "augment", order_role, epoch))
            model.train()
            t0 = time.perf_counter()
            for b in range(start_batch, steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                xb = inputs(x_train[idx], augment, aug_gen)
                yb = y_train[idx]
                target_logits, target_maps = targets(idx, xb) if targets is not None else (None, None)
                with autocast_context(device, spec.bf16), (student_tap or contextlib.nullcontext()):
                    logits = forward(xb)
                feature_term = None
                if features is not None:
                    feature_term = feature_loss(features.variant, student_tap.take(), target_maps, regressor)
                loss, parts = distillation_objective(logits.float(), yb, target_logits, alpha=alpha, temperature=temperature,
                                                     feature_term=feature_term,
                                                     feature_weight=features.weight if features is not None else 0.0)
                if device.type == "cpu" and not torch.isfinite(loss):  # before the step spoils the weights
                    raise TrainingDiverged(divergence_message(spec, loss.item(), epoch, b, bf16_active))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                stats.add(loss, parts, logits, yb)
                if (b + 1) % check_every == 0:
                    check_finite(epoch, b)
                if interrupted["flag"]:
                    stats.seconds += time.perf_counter() - t0
                    check_finite(epoch, b)
                    save_checkpoint(epoch, b + 1)
                    raise TrainingInterrupted(
                        f"SIGTERM during {spec.run_key} seed {spec.seed} epoch {epoch + 1}: checkpoint saved to {ckpt_path}; rerun to resume"
                    )
            start_batch = 0
            check_finite(epoch, steps_per_epoch - 1)
            seconds = stats.seconds + time.perf_counter() - t0
            test_acc = float((predict_logits(model, x_test, inputs=inputs, bf16=spec.bf16).argmax(1) == y_test).float().mean())
            row = {"epoch": epoch + 1, **stats.means(), "test_accuracy": test_acc, "lr": opt.param_groups[0]["lr"],
                   "seconds": seconds}
            history.append(row)
            log.info("epoch %d/%d loss %.4f ce %.4f kd %.4f feature %.4f train_acc %.4f test_acc %.4f lr %.4g time %.2fs",
                     row["epoch"], epochs, row["loss"], row["ce"], row["kd"], row["feature"], row["train_accuracy"], test_acc,
                     row["lr"], seconds)
            stats = EpochStats(device)
            if (epoch + 1) % spec.checkpoint_every == 0 and epoch + 1 < epochs:
                save_checkpoint(epoch + 1, 0)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        for tap in (student_tap, getattr(targets, "tap", None)):
            if tap is not None:
                tap.remove()
    return model, history, info


def train_and_save(
    spec: RunSpec,
    data_path: str,
    *,
    weights_out: str,
    predictions_out: dict[str, str],
    history_out: str,
    teacher_weights: str | None = None,
    teacher_model: dict | None = None,
    threads: int = 1,
) -> dict:
    """What the training rule runs: train (or resume), then write weights, predictions, history."""
    import pyarrow.parquet as pq

    from kdtransfer.io.arrow import table_from_records  # not pandas: its import costs ~0.3 s per job
    from kdtransfer.data import load_arrays
    from kdtransfer.io.predictions import write_predictions

    torch.set_num_threads(max(1, threads))
    data = load_arrays(data_path)
    run_dir = Path(weights_out).parent
    checkpoint = run_dir / "checkpoint.pt"
    model, history, info = train_run(spec, data, teacher_weights=teacher_weights, teacher_model=teacher_model,
                                     checkpoint_path=checkpoint)
    device = next(model.parameters()).device
    inputs = BatchInputs(data, device)
    for split, path in predictions_out.items():
        x = data.x_test if split == "test" else data.x_train
        y = data.y_test if split == "test" else data.y_train
        logits = predict_logits(model, torch.from_numpy(x).to(device), inputs=inputs, bf16=spec.bf16).cpu().numpy()
        write_predictions(path, run_key=spec.run_key, condition=spec.condition, seed=spec.seed, split=split,
                          sample_idx=np.arange(len(y)), label=y, logits=logits, extra_metadata=info)
    with atomic_path(history_out) as tmp:
        pq.write_table(table_from_records([{**epoch, **info} for epoch in history]), tmp)
    with atomic_path(weights_out) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    remove_checkpoints(checkpoint)  # the run is complete; checkpoints would only waste disk
    log.info("done %s seed %d: test accuracy %.4f, %d parameters", spec.run_key, spec.seed,
             history[-1]["test_accuracy"], info["num_parameters"])
    return info
