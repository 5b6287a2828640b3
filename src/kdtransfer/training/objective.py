"""What a run minimises: one objective object per run, owning everything its loss needs besides
the student (the teacher or the noise, the feature taps, the hint regressor), as mdistiller's
distillers do. The training loop is the same for every condition; only its objective differs.

- `Objective`: teacher, nokd, independent: cross-entropy on the labels.
- `Distillation`: kd and rcd: (1-α)·CE + α·T²·KL(signal ‖ student) [+ β·feature term]
  (kdtransfer.training.losses), towards a signal (kdtransfer.training.signals): the trained
  teacher for kd, noise of the teacher's shapes for rcd. A feature variant adds a
  `FeatureMatch`: the student's maps at kd.layers matched to the signal's maps, for hints
  through a regressor trained with the student.

Every objective: `objective(forward, xb, yb, idx)` -> (student logits, loss, its parts as
detached 0-d tensors); `start_epoch` (fresh per-epoch noise generators), `parameters()`
(trained with the student: the hint regressor), `state_dict` / `load_state_dict` (its part of a
checkpoint), `close()` (removes its forward hooks).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from kdtransfer.catalog import DISTILLED_CONDITIONS
from kdtransfer.data import ArrayDataset
from kdtransfer.spec import KDSettings, RunSpec
from kdtransfer.training.batches import BatchInputs, autocast_context
from kdtransfer.training.losses import HintRegressor, distillation_objective, feature_loss
from kdtransfer.training.models import FeatureTap, feature_shapes
from kdtransfer.training.seeding import derive_seed
from kdtransfer.training.signals import NoiseSignal, TeacherSignal, teacher_shapes_without_weights


class Objective:
    """teacher, nokd, independent: cross-entropy on the labels, nothing else."""

    def __init__(self, autocast):
        self.autocast = autocast

    def __call__(self, forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor):
        with self.autocast():
            logits = forward(xb)
        ce = F.cross_entropy(logits.float(), yb)
        return logits, ce, {"ce": ce.detach()}

    def start_epoch(self, epoch: int) -> None:
        pass

    def parameters(self) -> list[torch.nn.Parameter]:
        return []

    def state_dict(self) -> dict:
        return {"regressor": None, "targets": None}

    def load_state_dict(self, state: dict) -> None:
        pass

    def close(self) -> None:
        pass


class FeatureMatch:
    """The hint / attention term of a feature variant: the student's maps at kd.layers (a
    forward hook) against the signal's maps; a hint maps the student's through a regressor."""

    def __init__(self, spec: RunSpec, student: torch.nn.Module, example: torch.Tensor, target_shapes):
        layers = list(spec.kd.layers)
        student_shapes = feature_shapes(student, layers, example, "student")
        self.tap = FeatureTap(student, layers, "student")
        self.variant = spec.kd.variant
        self.regressor = build_regressor(spec, student_shapes, target_shapes).to(example.device) if self.variant == "hint" else None

    def __call__(self, target_maps: list[torch.Tensor]) -> torch.Tensor:
        return feature_loss(self.variant, self.tap.take(), target_maps, self.regressor)

    def close(self) -> None:
        self.tap.remove()


def build_regressor(spec: RunSpec, student_shapes, teacher_shapes) -> HintRegressor:
    """The hint regressor, initialised from its own seed without drawing from the global RNG
    (whose stream gives kd, rcd and nokd their shared init and dropout draws)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "regressor"))
        try:
            return HintRegressor(student_shapes, teacher_shapes)
        except ValueError as exc:
            raise ValueError(f"run {spec.run_key}: kd.layers {list(spec.kd.layers)} vs kd.teacher_layers "
                             f"{list(spec.kd.teacher_layers)}: {exc}") from None


class Distillation(Objective):
    """kd and rcd: (1-α)·CE + α·T²·KL(signal ‖ student) [+ β·feature term]."""

    def __init__(self, autocast, kd: KDSettings, signal: TeacherSignal | NoiseSignal, features: FeatureMatch | None):
        super().__init__(autocast)
        self.kd, self.signal, self.features = kd, signal, features

    @property
    def regressor(self) -> HintRegressor | None:
        """The hint regressor: part of the loss, trained with the student, not part of it."""
        return self.features.regressor if self.features is not None else None

    def __call__(self, forward, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor):
        target_logits, target_maps = self.signal(idx, xb)
        with self.autocast(), (self.features.tap if self.features else contextlib.nullcontext()):
            logits = forward(xb)
        feature_term = self.features(target_maps) if self.features else None
        loss, parts = distillation_objective(logits.float(), yb, target_logits, alpha=self.kd.alpha, temperature=self.kd.temperature,
                                             feature_term=feature_term,
                                             feature_weight=float(self.kd.feature_weight) if self.features else None)
        return logits, loss, parts

    def start_epoch(self, epoch: int) -> None:
        self.signal.start_epoch(epoch)

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.regressor.parameters()) if self.regressor is not None else []

    def state_dict(self) -> dict:
        return {"regressor": self.regressor.state_dict() if self.regressor is not None else None,
                "targets": self.signal.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.regressor is not None:
            self.regressor.load_state_dict(state["regressor"])
        self.signal.load_state_dict(state["targets"])

    def close(self) -> None:
        self.signal.close()
        if self.features is not None:
            self.features.close()


def build_objective(spec: RunSpec, student: torch.nn.Module, data: ArrayDataset, x_train: torch.Tensor, inputs: BatchInputs,
                    teacher_weights=None, teacher_model: dict | None = None) -> Objective:
    """The objective of `spec`'s condition. kd needs the teacher's weights and model entry; rcd
    of a feature variant the entry alone (the shapes of the noise maps)."""
    autocast = lambda: autocast_context(inputs.device, spec.bf16)  # noqa: E731
    if spec.condition not in DISTILLED_CONDITIONS:
        return Objective(autocast)
    example = inputs(x_train[:2])  # one forward of two samples gives the feature-map shapes
    if spec.condition == "kd":
        signal = TeacherSignal(spec, data, teacher_weights, teacher_model, x_train, inputs, example)
    else:
        shapes = teacher_shapes_without_weights(spec, data, teacher_model, example) if spec.kd.feature_variant else None
        signal = NoiseSignal(spec, data.num_classes, x_train.shape[0], shapes, inputs.device)
    features = FeatureMatch(spec, student, example, signal.feature_shapes) if spec.kd.feature_variant else None
    return Distillation(autocast, spec.kd, signal, features)
