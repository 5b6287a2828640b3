"""What a run minimises: one objective per method, as mdistiller's distillers are, each owning
everything its loss needs besides the student (the teacher or the noise, the feature taps, the
hint regressor). The training loop is the same for every condition; only its objective differs.

- `CrossEntropy`: teacher, nokd, independent: cross-entropy on the labels.
- `Distillation`: kd and rcd: (1-α)·CE + α·T²·KL(signal ‖ student) [+ β·feature term]
  (kdtransfer.training.losses), towards a signal (kdtransfer.training.signals): the trained
  teacher for kd, noise of the teacher's shapes for rcd. A feature variant adds a
  `FeatureMatch`: the student's maps at kd.layers matched to the signal's maps, for hints
  through a regressor trained with the student.

Every objective is an nn.Module: `objective(student, xb, yb, idx)` -> (student logits, loss, its
parts as detached 0-d tensors); `parameters()` are trained with the student (the hint
regressor); `state_dict` / `load_state_dict` hold its part of a checkpoint (the regressor, and
the signal's generators as its extra state); `start_epoch` (fresh per-epoch noise generators),
`close()` (removes its forward hooks).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from kdtransfer.catalog import DISTILLED_CONDITIONS
from kdtransfer.spec import KDSettings, RCDSettings
from kdtransfer.training.batches import ResidentData, autocast_context
from kdtransfer.training.losses import HintRegressor, cross_entropy, distillation_objective, feature_loss
from kdtransfer.training.models import FeatureTap, feature_shapes
from kdtransfer.training.seeding import derive_seed
from kdtransfer.training.signals import NoiseSignal, TeacherSignal, load_teacher, teacher_shapes_without_weights


class Objective(nn.Module):
    """What the training loop asks of every objective; `autocast` wraps the student's forward."""

    def __init__(self, autocast):
        super().__init__()
        self.autocast = autocast

    def start_epoch(self, epoch: int) -> None:
        """Called before each epoch's first step; an objective that draws noise reseeds here."""

    def close(self) -> None:
        """Called when the run ends; an objective that hooked into a model removes its hooks here."""


class CrossEntropy(Objective):
    """teacher, nokd, independent: cross-entropy on the labels, nothing else."""

    def forward(self, student, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor):
        with self.autocast():
            logits = student(xb)
        ce = cross_entropy(logits, yb)
        return logits, ce, {"ce": ce.detach()}


class FeatureMatch(nn.Module):
    """The hint / attention term of a feature variant: the student's maps at kd.layers (a
    forward hook) against the signal's maps; a hint maps the student's through a regressor."""

    def __init__(
        self, kd: KDSettings, student: nn.Module, example: torch.Tensor, target_shapes, *, seed: int, run: str
    ):
        super().__init__()
        layers = list(kd.layers)
        student_shapes = feature_shapes(student, layers, example, "student")
        self.tap = FeatureTap(student, layers, "student")
        self.variant = kd.variant
        self.regressor = (
            build_regressor(kd, student_shapes, target_shapes, seed=seed, run=run).to(example.device)
            if self.variant == "hint"
            else None
        )

    def forward(self, target_maps: list[torch.Tensor]) -> torch.Tensor:
        return feature_loss(self.variant, self.tap.take(), target_maps, self.regressor)

    def close(self) -> None:
        self.tap.remove()


def build_regressor(kd: KDSettings, student_shapes, teacher_shapes, *, seed: int, run: str) -> HintRegressor:
    """The hint regressor, initialised from its own seed without drawing from the global RNG
    (whose stream gives kd, rcd and nokd their shared init and dropout draws)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "regressor"))
        try:
            return HintRegressor(student_shapes, teacher_shapes)
        except ValueError as exc:
            raise ValueError(
                f"run {run}: kd.layers {list(kd.layers)} vs kd.teacher_layers {list(kd.teacher_layers)}: {exc}"
            ) from None


class Distillation(Objective):
    """kd and rcd: (1-α)·CE + α·T²·KL(signal ‖ student) [+ β·feature term]. Its state: the hint
    regressor (`features.regressor.*`) and the signal's generators (its extra state)."""

    def __init__(self, autocast, kd: KDSettings, signal: TeacherSignal | NoiseSignal, features: FeatureMatch | None):
        super().__init__(autocast)
        self.kd, self.signal, self.features = kd, signal, features

    def forward(self, student, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor):
        target_logits, target_maps = self.signal(idx, xb)
        with self.autocast(), self.features.tap if self.features else contextlib.nullcontext():
            logits = student(xb)
        feature_term = self.features(target_maps) if self.features else None
        loss, parts = distillation_objective(
            logits.float(),
            yb,
            target_logits,
            alpha=self.kd.alpha,
            temperature=self.kd.temperature,
            feature_term=feature_term,
            feature_weight=float(self.kd.feature_weight) if self.features else None,
        )
        return logits, loss, parts

    def start_epoch(self, epoch: int) -> None:
        self.signal.start_epoch(epoch)

    def get_extra_state(self) -> dict:
        return self.signal.state_dict()

    def set_extra_state(self, state: dict) -> None:
        self.signal.load_state_dict(state)

    def close(self) -> None:
        self.signal.close()
        if self.features is not None:
            self.features.close()


def objective_state(checkpoint: dict) -> dict:
    """The objective's state_dict in a checkpoint. Checkpoints written before objectives were
    modules hold it as two top-level entries instead, converted here: the hint regressor's
    state_dict ("regressor") and the signal's ("targets"), each None where there was none."""
    if "objective" in checkpoint:
        return checkpoint["objective"]
    state = {f"features.regressor.{k}": v for k, v in (checkpoint["regressor"] or {}).items()}
    if checkpoint["targets"] is not None:
        state["_extra_state"] = checkpoint["targets"]
    return state


def build_objective(
    condition: str,
    kd: KDSettings | None,
    rcd: RCDSettings | None,
    *,
    seed: int,
    run: str,
    bf16: bool,
    augment: str,
    student: nn.Module,
    resident: ResidentData,
    teacher_weights=None,
    teacher_model: dict | None = None,
) -> Objective:
    """The objective of a run of `condition`, named `run` in messages. kd needs the teacher's
    weights and model entry; rcd of a feature variant the entry alone (the shapes of the noise
    maps). `augment`: the recipe's (unaugmented inputs let kd compute the teacher's logits once)."""
    inputs, data, x_train = resident.inputs, resident.data, resident.x_train
    autocast = lambda: autocast_context(inputs.device, bf16)  # noqa: E731
    if condition not in DISTILLED_CONDITIONS:
        return CrossEntropy(autocast)
    example = inputs(x_train[:2])  # one forward of two samples gives the feature-map shapes
    if condition == "kd":
        if teacher_weights is None or teacher_model is None:
            raise ValueError(f"run {run}: kd needs the teacher's weights and model entry")
        teacher = load_teacher(data, teacher_weights, teacher_model, run=run)
        signal = TeacherSignal(
            teacher,
            inputs,
            example,
            kd.teacher_layers if kd.feature_variant else None,
            bf16=bf16,
            fixed_inputs=x_train if augment == "none" else None,
        )
    else:
        shapes = (
            teacher_shapes_without_weights(kd, data, teacher_model, example, run=run) if kd.feature_variant else None
        )
        signal = NoiseSignal(rcd, seed, data.num_classes, x_train.shape[0], shapes, inputs.device)
    features = (
        FeatureMatch(kd, student, example, signal.feature_shapes, seed=seed, run=run) if kd.feature_variant else None
    )
    return Distillation(autocast, kd, signal, features)
