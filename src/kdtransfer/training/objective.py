"""What a student is distilled towards: the trained teacher (`kd`) or noise in its place (`rcd`).

A target source gives, for a batch, the logits the KD term matches and, for a feature-map
variant, the feature maps the hint / attention term matches. `kd` reads them off the teacher
(its logits computed once when the inputs are not augmented); `rcd` draws every teacher signal
from noise of the same shape, so the control differs from KD only in what it is taught.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from kdtransfer.training.batches import BatchInputs, autocast_context, predict_logits, to_device_async
from kdtransfer.catalog import DISTILLED_CONDITIONS, KD_VARIANTS
from kdtransfer.data import ArrayDataset
from kdtransfer.training.losses import HintRegressor, fixed_example_noise, random_control_noise
from kdtransfer.training.models import FeatureTap, create_model_for, feature_shapes
from kdtransfer.training.seeding import derive_seed

if TYPE_CHECKING:
    from kdtransfer.training.loop import RunSpec


class TeacherError(ValueError):
    """The teacher's weights cannot serve this run (wrong dataset, wrong model entry, missing)."""


@dataclass(frozen=True)
class FeatureKD:
    """A feature-map variant of a kd/rcd run: which maps are compared, how, and its weight β."""

    variant: str  # "hint" or "attention"
    weight: float
    layers: tuple[str, ...]  # student module names
    teacher_layers: tuple[str, ...]


def feature_kd_of(spec: RunSpec) -> FeatureKD | None:
    """The run's feature-map KD settings; None for logit KD and for runs without a teacher."""
    if spec.condition not in DISTILLED_CONDITIONS:
        return None
    variant = spec.kd.get("variant", "logit")
    if variant not in KD_VARIANTS:
        raise ValueError(f"run {spec.run_key}: unknown kd.variant {variant!r}; valid: {', '.join(KD_VARIANTS)}")
    if variant == "logit":
        return None
    layers = tuple(spec.kd.get("layers") or ())
    teacher_layers = tuple(spec.kd.get("teacher_layers") or layers)
    if not layers or len(layers) != len(teacher_layers):
        raise ValueError(f"run {spec.run_key}: kd.variant {variant!r} needs kd.layers (student module names) and as many "
                         f"kd.teacher_layers; got {list(layers)} and {list(teacher_layers)}")
    return FeatureKD(variant, float(spec.kd.get("feature_weight", 0.0)), layers, teacher_layers)


def load_teacher(spec: RunSpec, data: ArrayDataset, weights: str | os.PathLike, entry: dict) -> torch.nn.Module:
    """The trained teacher, or a TeacherError naming the file, the run and what does not fit."""
    teacher = create_model_for(entry, data)
    where = f"teacher {weights} (for run {spec.run_key} seed {spec.seed})"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TeacherError(f"{where} does not exist: train the teacher first") from None
    expected = teacher.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [(k, list(state[k].shape), list(expected[k].shape)) for k in expected if k in state and state[k].shape != expected[k].shape]
    if not (missing or unexpected or wrong):
        teacher.load_state_dict(state)
        return teacher
    # Only the head's output dimension differs: the weights fit the architecture, not the dataset.
    head_classes = {got[0] for _, got, want in wrong if got and want and want[0] == data.num_classes}
    if not (missing or unexpected) and len(head_classes) == 1 and all(want and want[0] == data.num_classes for _, _, want in wrong):
        raise TeacherError(f"{where} has {head_classes.pop()} output classes but dataset has {data.num_classes}: "
                           "the teacher was trained on another dataset")
    problems = [f"size mismatch for {k} (file {got}, model {want})" for k, got, want in wrong[:3]]
    problems += [f"missing keys {missing[:3]}"] if missing else []
    problems += [f"unexpected keys {unexpected[:3]}"] if unexpected else []
    raise TeacherError(f"{where} does not fit teacher model {entry['arch']!r} {entry.get('options', {})}: "
                       f"{'; '.join(problems)}; was it trained with another model entry?")


class TeacherTargets:
    """kd: the trained teacher's logits for a batch and, for a feature variant, its maps."""

    def __init__(self, teacher: torch.nn.Module, features: FeatureKD | None, example: torch.Tensor,
                 fixed_logits: torch.Tensor | None, autocast):
        self.teacher, self.fixed_logits, self.autocast = teacher, fixed_logits, autocast
        self.tap = self.feature_shapes = None
        if features is not None:
            self.feature_shapes = feature_shapes(teacher, list(features.teacher_layers), example, "teacher")
            self.tap = FeatureTap(teacher, list(features.teacher_layers), "teacher")

    def start_epoch(self, epoch: int) -> None:
        pass

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if self.fixed_logits is not None:
            return self.fixed_logits[idx], None
        self.teacher.eval()
        with self.autocast(), (self.tap or contextlib.nullcontext()):
            logits = self.teacher(xb).float()
        return logits, (self.tap.take() if self.tap else None)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NoiseTargets:
    """rcd: every teacher signal replaced by noise of the configured distribution, drawn from
    the run's noise generators: logits [k, classes] (CPU generator, as logit-only rcd always
    was) and, for a feature variant, each teacher map in its own shape (a generator on the
    device: teacher-sized maps are too large to draw on the CPU and copy every step).

    `resample: fixed` gives each training example one logit vector (a stored table) and one map
    per layer (redrawn from a per-example seed when seen, not stored; see fixed_example_noise).
    """

    def __init__(self, spec: RunSpec, num_classes: int, n: int, feature_shapes: list[tuple[int, ...]] | None,
                 device: torch.device):
        self.seed, self.num_classes, self.feature_shapes, self.device = spec.seed, num_classes, feature_shapes, device
        self.noise = spec.rcd["noise"]
        self.fixed = spec.rcd.get("resample", "step") == "fixed"
        self.logit_gen = torch.Generator()
        self.feature_gen = torch.Generator(device=device)
        self.fixed_logits = None
        if self.fixed:
            g = torch.Generator().manual_seed(derive_seed(spec.seed, "noise", "fixed"))
            self.fixed_logits = random_control_noise((n, num_classes), self.noise, g).to(device)

    def start_epoch(self, epoch: int) -> None:
        # Fresh per-epoch seeds, so a resume mid-run reproduces the same draws.
        self.logit_gen.manual_seed(derive_seed(self.seed, "noise", epoch))
        self.feature_gen.manual_seed(derive_seed(self.seed, "noise", "feature", epoch))

    def __call__(self, idx: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if self.fixed:
            logits = self.fixed_logits[idx]
        else:
            logits = to_device_async(random_control_noise((len(idx), self.num_classes), self.noise, self.logit_gen), self.device)
        if self.feature_shapes is None:
            return logits, None
        if self.fixed:
            maps = [fixed_example_noise(idx, shape, self.noise, self.seed, layer, self.device)
                    for layer, shape in enumerate(self.feature_shapes)]
        else:
            maps = [random_control_noise((len(idx), *shape), self.noise, self.feature_gen, self.device)
                    for shape in self.feature_shapes]
        return logits, maps

    def state_dict(self) -> dict:
        return {"logit_rng": self.logit_gen.get_state(), "feature_rng": self.feature_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.logit_gen.set_state(state["logit_rng"])
        self.feature_gen.set_state(state["feature_rng"])


def teacher_shapes_without_weights(spec: RunSpec, data: ArrayDataset, entry: dict | None, layers: tuple[str, ...],
                                   example: torch.Tensor) -> list[tuple[int, ...]]:
    """rcd of a feature variant: the shapes of the teacher maps that noise replaces, from the
    teacher architecture built without weights (on the CPU, leaving the global RNG as it was)."""
    if entry is None:
        raise ValueError(f"run {spec.run_key}: rcd with kd.variant {spec.kd['variant']!r} needs the teacher's model "
                         "entry (teacher_model) for the shapes of the noise feature maps")
    with torch.random.fork_rng(devices=[]):
        teacher = create_model_for(entry, data)
    return feature_shapes(teacher, list(layers), example.cpu(), "teacher")


def build_regressor(spec: RunSpec, student_shapes, teacher_shapes) -> HintRegressor:
    """The hint regressor, initialised from its own seed without drawing from the global RNG
    (whose stream gives kd, rcd and nokd their shared init and dropout draws)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(spec.seed, "regressor"))
        try:
            return HintRegressor(student_shapes, teacher_shapes)
        except ValueError as exc:
            raise ValueError(f"run {spec.run_key}: kd.layers {spec.kd['layers']} vs kd.teacher_layers "
                             f"{spec.kd.get('teacher_layers')}: {exc}") from None


def build_targets(spec: RunSpec, data: ArrayDataset, features: FeatureKD | None, teacher_weights, teacher_model: dict | None,
                  x_train: torch.Tensor, inputs: BatchInputs, device: torch.device) -> TeacherTargets | NoiseTargets | None:
    """What the student is distilled towards: kd the teacher, rcd noise, other conditions nothing."""
    example = inputs(x_train[:2])  # one forward of two samples gives the feature-map shapes
    if spec.condition == "kd":
        if teacher_weights is None or teacher_model is None:
            raise ValueError(f"run {spec.run_key} seed {spec.seed}: kd needs the teacher's weights and model entry")
        teacher = inputs.place(load_teacher(spec, data, teacher_weights, teacher_model)).eval()
        fixed_logits = None
        if spec.recipe.get("augment", "none") == "none" and features is None:
            # The student sees fixed inputs: teacher logits once, not every step.
            fixed_logits = predict_logits(teacher, x_train, inputs=inputs, bf16=spec.bf16)
        return TeacherTargets(teacher, features, example, fixed_logits, lambda: autocast_context(device, spec.bf16))
    if spec.condition == "rcd":
        noise_shapes = None
        if features is not None:
            noise_shapes = teacher_shapes_without_weights(spec, data, teacher_model, features.teacher_layers, example)
        return NoiseTargets(spec, data.num_classes, x_train.shape[0], noise_shapes, device)
    return None
