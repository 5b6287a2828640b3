"""One training loop for every condition; the condition only selects the objective.

Data sits in memory as tensors (on the GPU when there is one; uint8 images stay uint8 there,
4x smaller, and are scaled and standardised per batch); batches are index slices of a per-epoch
permutation of the run's seed and data-order role (kdtransfer.training.batches). Each step is
forward + objective, backward, optimizer step; a SIGTERM saves a checkpoint at the end of the
step and stops, and a rerun resumes bit-identically (kdtransfer.training.state).

On CUDA: image batches and models channels_last, bf16 autocast (RunSpec.bf16), optional
torch.compile of the student (RunSpec.compile), and the determinism switch. These do not apply
on CPU, where runs are bit-identical at a fixed thread count already and the switches would
import torch._dynamo/_inductor (1.4-1.5 s per job, most of a small job's time).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import torch

from kdtransfer.data import ArrayDataset
from kdtransfer.spec import RunSpec
from kdtransfer.training.batches import (
    BatchInputs,
    ResidentData,
    epoch_permutation,
    order_fingerprint,
    predict_logits,
    steps_per_epoch,
)
from kdtransfer.training.device import configure_device, device_label, pick_device
from kdtransfer.training.models import count_parameters, create_model_for, state_fingerprint
from kdtransfer.training.objective import build_objective
from kdtransfer.training.optim import make_optimizer
from kdtransfer.training.progress import DivergenceGuard
from kdtransfer.training.seeding import derive_seed, run_roles
from kdtransfer.training.state import Checkpoint, TrainingInterrupted, TrainState, sigterm_flag
from kdtransfer.training.timing import add as add_time
from kdtransfer.training.timing import timed

log = logging.getLogger(__name__)


def build_initial_model(spec: RunSpec, data: ArrayDataset) -> torch.nn.Module:
    """The run's initial weights, from its seed and init role (shared by the teacher and the
    students of a seed when their architectures match)."""
    init_role, _ = run_roles(spec.condition)
    torch.manual_seed(derive_seed(spec.seed, init_role))
    return create_model_for(spec.model, data)


def train_run(
    spec: RunSpec,
    data: ArrayDataset | ResidentData,
    *,
    checkpoint_path: str | os.PathLike,
    checkpoint_every: int,
    teacher_weights: str | os.PathLike | None = None,
    teacher_model: dict | None = None,
    device: torch.device | None = None,
) -> tuple[torch.nn.Module, list[dict], dict]:
    """Train one run; returns (final model, per-epoch history, run info).

    `kd` needs `teacher_weights` and `teacher_model` (its model entry); `rcd` of a feature
    variant needs `teacher_model` only (the shapes its noise maps take). The final epoch's
    weights are the model: nothing is ever selected on the test split. The final state is saved
    to the checkpoint too, so a run whose outputs are lost before they are written (a kill, a
    failed pack-mate) comes back from it without training; the caller removes it.
    """
    setup_started = time.perf_counter()
    resident = data if isinstance(data, ResidentData) else ResidentData(data, device or pick_device())
    data, device, inputs = resident.data, resident.device, resident.inputs
    configure_device(device, deterministic=spec.deterministic)
    recipe, (_, order_role) = spec.recipe, run_roles(spec.condition)
    order_seed = derive_seed(spec.seed, order_role)
    x_train, y_train, x_test, y_test = resident.x_train, resident.y_train, resident.x_test, resident.y_test
    n, steps = x_train.shape[0], steps_per_epoch(x_train.shape[0], recipe)

    model = inputs.place(build_initial_model(spec, data))
    info = {
        "init_fingerprint": state_fingerprint(model),
        "order_fingerprint": order_fingerprint(order_seed, n, recipe.epochs),
        "num_parameters": count_parameters(model),
        "device": device_label(device),
    }
    objective = build_objective(
        spec.condition,
        spec.kd,
        spec.rcd,
        seed=spec.seed,
        run=spec.name,
        bf16=spec.bf16,
        augment=recipe.augment,
        student=model,
        resident=resident,
        teacher_weights=teacher_weights,
        teacher_model=teacher_model,
    )
    opt, sched = make_optimizer([*model.parameters(), *objective.parameters()], recipe, steps)
    state = TrainState(model, opt, sched, objective, device)
    checkpoint = Checkpoint(checkpoint_path, spec.fingerprint, run=spec.name)
    if not checkpoint.resume(state, recipe.epochs):
        # Dropout draws from the global RNG: reseed after the (condition-dependent) setup, from the
        # seed and the data-order role alone, so kd, rcd and nokd differ only in their loss.
        torch.manual_seed(derive_seed(spec.seed, "dropout", order_role))
    guard = DivergenceGuard(spec.name, spec.bf16, device)
    # Compiled after the objective registered its feature hooks, so they are traced.
    forward = torch.compile(model) if spec.compile and device.type == "cuda" else model
    add_time("set-up", time.perf_counter() - setup_started)

    with sigterm_flag() as sigterm, contextlib.closing(objective):  # closing: removes its forward hooks
        for epoch in range(state.epoch, recipe.epochs):
            perm = epoch_permutation(order_seed, epoch, n, device)
            if state.batch == 0:  # fresh per-epoch generators: a resumed run repeats the draws it would have made
                objective.start_epoch(epoch)
                state.aug_gen.manual_seed(
                    derive_seed(spec.seed, "augment", order_role, epoch)
                )  # kd, rcd, nokd: same crops
            model.train()
            started = time.perf_counter()
            for b in range(state.batch, steps):
                idx = perm[b * recipe.batch_size : (b + 1) * recipe.batch_size]
                xb, yb = inputs(x_train[idx], recipe.augment, state.aug_gen), y_train[idx]
                logits, loss, parts = objective(forward, xb, yb, idx)
                guard.before_step(loss, epoch, b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                state.stats.add(loss, parts, logits, yb)
                guard.after_step(state.stats, epoch, b)
                if sigterm.raised:
                    stop(spec.name, state, checkpoint, guard, epoch, b, started)
            guard.check(state.stats, epoch, steps - 1)
            add_time("training", time.perf_counter() - started)
            seconds = state.stats.seconds + time.perf_counter() - started
            with timed("evaluation"):
                test_accuracy = accuracy(model, x_test, y_test, inputs, spec.bf16)
            row = state.end_epoch(test_accuracy, seconds)
            log.info(
                "epoch %d/%d loss %.4f ce %.4f kd %.4f feature %.4f train_acc %.4f test_acc %.4f lr %.4g time %.2fs",
                row["epoch"],
                recipe.epochs,
                row["loss"],
                row["ce"],
                row["kd"],
                row["feature"],
                row["train_accuracy"],
                row["test_accuracy"],
                row["lr"],
                seconds,
            )
            if state.epoch % checkpoint_every == 0 or state.epoch == recipe.epochs:
                checkpoint.save(state)
    return model, state.history, info


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, inputs: BatchInputs, bf16: bool) -> float:
    return float((predict_logits(model, x, inputs=inputs, bf16=bf16).argmax(1) == y).float().mean())


def stop(
    run: str, state: TrainState, checkpoint: Checkpoint, guard: DivergenceGuard, epoch: int, batch: int, started: float
) -> None:
    """SIGTERM arrived during step `batch`: save the state after it (never a diverged one) and stop."""
    state.stats.seconds += time.perf_counter() - started
    guard.check(state.stats, epoch, batch)
    state.epoch, state.batch = epoch, batch + 1
    checkpoint.save(state)
    raise TrainingInterrupted(
        f"SIGTERM during {run} epoch {epoch + 1}: checkpoint saved to {checkpoint.path}; rerun to resume"
    )
