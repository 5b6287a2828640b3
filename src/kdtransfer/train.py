"""One training loop for every condition; the condition only selects the target.

Data sits in memory as tensors (on the GPU when there is one); batches are index slices of a
per-epoch permutation drawn from a generator seeded by (seed, order role, epoch), so the batch
order is a pure function of the seed and a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kdtransfer.data import ArrayDataset
from kdtransfer.losses import distillation_objective, random_control_logits
from kdtransfer.optim import SGD, LRSchedule
from kdtransfer.models import count_parameters, create_model, state_fingerprint
from kdtransfer.seeding import derive_seed, run_roles

log = logging.getLogger("kdtransfer.train")


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
    kd: dict = field(default_factory=dict)  # {"alpha", "temperature"} for kd and rcd
    rcd: dict = field(default_factory=dict)  # {"noise", "resample"} for rcd
    checkpoint_every: int = 1
    deterministic: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "RunSpec":
        return cls(**params)


def spec_fingerprint(spec: RunSpec) -> str:
    """Identifies what a checkpoint was trained for, so a stale one is never resumed."""
    import json
    from dataclasses import asdict

    return hashlib.sha256(json.dumps(asdict(spec), sort_keys=True, default=str).encode()).hexdigest()[:16]


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
    return create_model(spec.model["arch"], data.input_shape, data.num_classes, **spec.model.get("options", {}))


def augment_batch(x: torch.Tensor, augment: str, generator: torch.Generator) -> torch.Tensor:
    """Batched augmentation on the device: `flip_crop` = random 4-px-padded crop + horizontal flip."""
    if augment == "none":
        return x
    if augment != "flip_crop" or x.dim() != 4:
        raise ValueError(f"augment {augment!r} needs image batches [n, c, h, w]; valid: none, flip_crop")
    n, _, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None, :])  # [n, h]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None, :])  # [n, w]
    out = padded[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]
    flip = torch.rand(n, generator=generator).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def make_optimizer(model: torch.nn.Module, recipe: dict, steps_per_epoch: int):
    if recipe["optimizer"] == "sgd":
        opt = SGD(model.parameters(), lr=recipe["lr"], momentum=recipe.get("momentum", 0.9),
                  weight_decay=recipe.get("weight_decay", 0.0), nesterov=recipe.get("nesterov", False))
    elif recipe["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe.get("weight_decay", 0.0))
    else:
        raise ValueError(f"unknown optimizer {recipe['optimizer']!r}; valid: sgd, adamw")
    schedule = LRSchedule(opt, recipe["lr"], recipe["epochs"] * steps_per_epoch,
                          int(recipe.get("warmup_epochs", 0) * steps_per_epoch), recipe.get("schedule", "cosine"))
    return opt, schedule


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _nullcontext()
    outs = []
    with autocast:
        for i in range(0, x.shape[0], batch_size):
            outs.append(model(x[i:i + batch_size]).float())
    return torch.cat(outs)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict | None:
    """A checkpoint that cannot be read is discarded with a warning (training restarts)."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        log.warning("checkpoint %s is unreadable (%s); discarding it and starting from scratch", path, exc)
        path.unlink(missing_ok=True)
        return None


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

    `teacher_weights`/`teacher_model` are needed for `kd` only. The final epoch's weights are
    the model: nothing is ever selected on the test split.
    """
    device = device or pick_device()
    if device.type == "cuda":
        # CPU kernels are deterministic at a fixed thread count already; on CPU this call would
        # also import torch._inductor (1.5 s per job, most of a small job's time).
        torch.use_deterministic_algorithms(spec.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not spec.deterministic
    recipe = spec.recipe
    _, order_role = run_roles(spec.condition)
    order_seed = derive_seed(spec.seed, order_role)

    x_train = torch.from_numpy(data.x_train).to(device)
    y_train = torch.from_numpy(data.y_train).to(device)
    x_test = torch.from_numpy(data.x_test).to(device)
    y_test = torch.from_numpy(data.y_test).to(device)
    n, batch_size, epochs = x_train.shape[0], recipe["batch_size"], recipe["epochs"]
    steps_per_epoch = math.ceil(n / batch_size) if not recipe.get("drop_last", False) else n // batch_size
    augment = recipe.get("augment", "none")

    model = build_initial_model(spec, data).to(device)
    info = {
        "init_fingerprint": state_fingerprint(model),
        "order_fingerprint": order_fingerprint(order_seed, n, epochs),
        "num_parameters": count_parameters(model),
        "device": str(device),
    }
    if device.type == "cuda" and x_train.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    opt, sched = make_optimizer(model, recipe, steps_per_epoch)

    teacher = None
    teacher_train_logits = None
    if spec.condition == "kd":
        if teacher_weights is None or teacher_model is None:
            raise ValueError(f"run {spec.run_key} seed {spec.seed}: kd needs the teacher's weights")
        teacher = create_model(teacher_model["arch"], data.input_shape, data.num_classes, **teacher_model.get("options", {}))
        teacher.load_state_dict(torch.load(teacher_weights, map_location="cpu", weights_only=True))
        teacher.to(device).eval()
        if augment == "none":  # the student sees fixed inputs: teacher logits once, not every step
            teacher_train_logits = predict_logits(teacher, x_train)
    fixed_noise = None
    if spec.condition == "rcd" and spec.rcd.get("resample", "step") == "fixed":
        g = torch.Generator().manual_seed(derive_seed(spec.seed, "noise", "fixed"))
        fixed_noise = random_control_logits((n, data.num_classes), spec.rcd["noise"], g).to(device)

    ckpt_path = Path(checkpoint_path)
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    start_epoch, start_batch = 0, 0
    running = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
    noise_gen = torch.Generator()
    aug_gen = torch.Generator()
    spec_digest = spec_fingerprint(spec)
    state = load_checkpoint(ckpt_path)
    if state is not None and state.get("spec") != spec_digest:
        # Left by a run with other hyper-parameters (the config changed since): not ours to resume.
        log.warning("checkpoint %s belongs to a different run specification; discarding it", ckpt_path)
        ckpt_path.unlink(missing_ok=True)
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        noise_gen.set_state(state["noise_rng"])
        aug_gen.set_state(state["aug_rng"])
        history, running = state["history"], state["running"]
        start_epoch, start_batch = state["epoch"], state["batch"]
        log.info("resumed %s seed %d from %s at epoch %d batch %d", spec.run_key, spec.seed, ckpt_path, start_epoch + 1, start_batch)
    else:
        # Dropout draws from the global RNG: reseed after the (condition-dependent) setup, so kd,
        # rcd and nokd differ only in their loss.
        torch.manual_seed(derive_seed(spec.seed, "dropout"))

    def save_checkpoint(epoch: int, batch: int) -> None:
        _atomic_save({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(), "noise_rng": noise_gen.get_state(), "aug_rng": aug_gen.get_state(),
            "history": history, "running": running, "epoch": epoch, "batch": batch, "spec": spec_digest,
        }, ckpt_path)

    interrupted = {"flag": False}
    previous_handler = None
    if hasattr(signal, "SIGTERM"):
        try:
            previous_handler = signal.signal(signal.SIGTERM, lambda *_: interrupted.update(flag=True))
        except ValueError:  # not in the main thread
            previous_handler = None

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _nullcontext()
    alpha, temperature = spec.kd.get("alpha", 0.0), spec.kd.get("temperature", 1.0)
    try:
        for epoch in range(start_epoch, epochs):
            perm = epoch_permutation(order_seed, epoch, n, device)
            if start_batch == 0:
                # Fresh per-epoch generators, so a resume mid-run reproduces the same draws.
                noise_gen.manual_seed(derive_seed(spec.seed, "noise", epoch))
                aug_gen.manual_seed(derive_seed(spec.seed, "augment", spec.condition, epoch))
            model.train()
            t0 = time.perf_counter()
            for b in range(start_batch, steps_per_epoch):
                idx = perm[b * batch_size:(b + 1) * batch_size]
                xb = augment_batch(x_train[idx], augment, aug_gen)
                yb = y_train[idx]
                target_logits = None
                if spec.condition == "kd":
                    target_logits = teacher_train_logits[idx] if teacher_train_logits is not None else predict_logits(teacher, xb)
                    model.train()
                elif spec.condition == "rcd":
                    target_logits = fixed_noise[idx] if fixed_noise is not None else \
                        random_control_logits((len(idx), data.num_classes), spec.rcd["noise"], noise_gen).to(device)
                with autocast:
                    logits = model(xb)
                loss, parts = distillation_objective(logits.float(), yb, target_logits, alpha=alpha, temperature=temperature)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"run {spec.run_key} ({spec.condition}) seed {spec.seed}: loss is {loss.item()} at epoch {epoch + 1}"
                        f" batch {b}; lower recipe.lr or disable bf16 (recipe.bf16: false)"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                k = len(idx)
                running["loss"] += loss.item() * k
                running["ce"] += parts["ce"] * k
                running["kd"] += parts.get("kd", 0.0) * k
                running["correct"] += int((logits.argmax(1) == yb).sum())
                running["seen"] += k
                if interrupted["flag"]:
                    running["seconds"] += time.perf_counter() - t0
                    save_checkpoint(epoch, b + 1)
                    raise TrainingInterrupted(
                        f"SIGTERM during {spec.run_key} seed {spec.seed} epoch {epoch + 1}: checkpoint saved to {ckpt_path}; rerun to resume"
                    )
            start_batch = 0
            seconds = running["seconds"] + time.perf_counter() - t0
            test_acc = float((predict_logits(model, x_test).argmax(1) == y_test).float().mean())
            seen = max(1, running["seen"])
            row = {
                "epoch": epoch + 1, "loss": running["loss"] / seen, "ce": running["ce"] / seen, "kd": running["kd"] / seen,
                "train_accuracy": running["correct"] / seen, "test_accuracy": test_acc,
                "lr": opt.param_groups[0]["lr"], "seconds": seconds,
            }
            history.append(row)
            log.info("epoch %d/%d loss %.4f ce %.4f kd %.4f train_acc %.4f test_acc %.4f lr %.4g time %.2fs",
                     row["epoch"], epochs, row["loss"], row["ce"], row["kd"], row["train_accuracy"], test_acc, row["lr"], seconds)
            running = {"loss": 0.0, "ce": 0.0, "kd": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
            if (epoch + 1) % spec.checkpoint_every == 0 and epoch + 1 < epochs:
                save_checkpoint(epoch + 1, 0)
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
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
    import pandas as pd

    from kdtransfer.data import load_arrays
    from kdtransfer.predictions import write_predictions

    torch.set_num_threads(max(1, threads))
    data = load_arrays(data_path)
    run_dir = Path(weights_out).parent
    checkpoint = run_dir / "checkpoint.pt"
    model, history, info = train_run(spec, data, teacher_weights=teacher_weights, teacher_model=teacher_model,
                                     checkpoint_path=checkpoint)
    device = next(model.parameters()).device
    for split, path in predictions_out.items():
        x = data.x_test if split == "test" else data.x_train
        y = data.y_test if split == "test" else data.y_train
        logits = predict_logits(model, torch.from_numpy(x).to(device)).cpu().numpy()
        write_predictions(path, run_key=spec.run_key, condition=spec.condition, seed=spec.seed, split=split,
                          sample_idx=np.arange(len(y)), label=y, logits=logits, extra_metadata=info)
    hist = pd.DataFrame(history)
    for k, v in info.items():
        hist[k] = v
    tmp = Path(history_out).with_name(f".{Path(history_out).name}.tmp{os.getpid()}")
    hist.to_parquet(tmp, index=False)
    os.replace(tmp, history_out)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save(state, Path(weights_out))
    checkpoint.unlink(missing_ok=True)  # the run is complete; the checkpoint would only waste disk
    log.info("done %s seed %d: test accuracy %.4f, %d parameters", spec.run_key, spec.seed,
             history[-1]["test_accuracy"], info["num_parameters"])
    return info
