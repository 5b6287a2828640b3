"""What a student is distilled towards: the trained teacher (`kd`) or noise in its place (`rcd`).

A signal gives, for a batch, the logits the KD term matches and, for a feature-map variant, the
feature maps the hint / attention term matches. `kd` reads them off the teacher (its logits
computed once when the inputs are not augmented and no maps are needed); `rcd` draws every
teacher signal from noise of the same shape, so the control differs from KD only in what it is
taught.
"""

from __future__ import annotations

import contextlib
import os

import torch

from kdtransfer.data import ArrayDataset
from kdtransfer.spec import KDSettings, RCDSettings
from kdtransfer.training.batches import BatchInputs, autocast_context, predict_logits, to_device_async
from kdtransfer.training.losses import fixed_example_noise, random_control_noise
from kdtransfer.training.models import FeatureTap, create_model_for, feature_shapes
from kdtransfer.training.seeding import derive_seed


class TeacherError(ValueError):
    """The teacher's weights cannot serve this run (wrong dataset, wrong model entry, missing)."""


def load_teacher(data: ArrayDataset, weights: str | os.PathLike, entry: dict, *, run: str) -> torch.nn.Module:
    """The trained teacher of `run`, or a TeacherError naming the file, the run and what does not fit."""
    teacher = create_model_for(entry, data)
    where = f"teacher {weights} (for run {run})"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TeacherError(f"{where} does not exist: train the teacher first") from None
    except Exception as exc:  # what torch raises for a file cut short, overwritten or not a state dict
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise TeacherError(
            f"{where} is unreadable ({type(exc).__name__}: {reason}): it is corrupt or was cut short; "
            f"retrain it with `snakemake --forcerun {weights}` (same --configfile)"
        ) from None
    expected = teacher.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        (k, list(state[k].shape), list(expected[k].shape))
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or wrong):
        teacher.load_state_dict(state)
        return teacher
    # Only the head's output dimension differs: the weights fit the architecture, not the dataset.
    head_classes = {got[0] for _, got, want in wrong if got and want and want[0] == data.num_classes}
    if (
        not (missing or unexpected)
        and len(head_classes) == 1
        and all(want and want[0] == data.num_classes for _, _, want in wrong)
    ):
        raise TeacherError(
            f"{where} has {head_classes.pop()} output classes but dataset has {data.num_classes}: "
            "the teacher was trained on another dataset"
        )
    problems = [f"size mismatch for {k} (file {got}, model {want})" for k, got, want in wrong[:3]]
    problems += [f"missing keys {missing[:3]}"] if missing else []
    problems += [f"unexpected keys {unexpected[:3]}"] if unexpected else []
    raise TeacherError(
        f"{where} does not fit teacher model {entry['arch']!r} {entry.get('options', {})}: "
        f"{'; '.join(problems)}; was it trained with another model entry?"
    )


class TeacherSignal:
    """kd: the trained teacher's logits for a batch and, for a feature variant, its maps at
    `layers` (None: logits alone). `fixed_inputs`: the training inputs when the student sees
    them unaugmented, whose logits are then computed once rather than every step."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        inputs: BatchInputs,
        example: torch.Tensor,
        layers: tuple[str, ...] | None,
        *,
        bf16: bool,
        fixed_inputs: torch.Tensor | None,
    ):
        self.teacher = inputs.place(teacher).eval()
        self.autocast = lambda: autocast_context(inputs.device, bf16)
        self.fixed_logits = self.tap = self.feature_shapes = None
        if layers is not None:
            self.feature_shapes = feature_shapes(self.teacher, list(layers), example, "teacher")
            self.tap = FeatureTap(self.teacher, list(layers), "teacher")
        elif fixed_inputs is not None:
            self.fixed_logits = predict_logits(self.teacher, fixed_inputs, inputs=inputs, bf16=bf16)

    def start_epoch(self, epoch: int) -> None:
        pass

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if self.fixed_logits is not None:
            return self.fixed_logits[idx], None
        self.teacher.eval()
        with self.autocast(), self.tap or contextlib.nullcontext():
            logits = self.teacher(xb).float()
        return logits, (self.tap.take() if self.tap else None)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def close(self) -> None:
        if self.tap is not None:
            self.tap.remove()


class NoiseSignal:
    """rcd: every teacher signal replaced by noise of the configured distribution, drawn from
    the run's noise generators (seeded from the run's `seed`): logits [k, classes] from a CPU
    generator (the same draws on any device) and, for a feature variant, each teacher map in
    its own shape (a generator on the device: teacher-sized maps are too large to draw on the
    CPU and copy every step).

    `resample: fixed` gives each training example one logit vector (a stored table) and one map
    per layer (redrawn from a per-example seed when seen, not stored; see fixed_example_noise).
    """

    def __init__(
        self,
        rcd: RCDSettings,
        seed: int,
        num_classes: int,
        n: int,
        feature_shapes: list[tuple[int, ...]] | None,
        device: torch.device,
    ):
        self.seed, self.num_classes, self.feature_shapes, self.device = seed, num_classes, feature_shapes, device
        self.noise = rcd.noise
        self.fixed = rcd.resample == "fixed"
        self.logit_gen = torch.Generator()
        self.feature_gen = torch.Generator(device=device)
        self.fixed_logits = None
        if self.fixed:
            g = torch.Generator().manual_seed(derive_seed(seed, "noise", "fixed"))
            self.fixed_logits = random_control_noise((n, num_classes), self.noise, g).to(device)

    def start_epoch(self, epoch: int) -> None:
        # Fresh per-epoch seeds, so a resume mid-run reproduces the same draws.
        self.logit_gen.manual_seed(derive_seed(self.seed, "noise", epoch))
        self.feature_gen.manual_seed(derive_seed(self.seed, "noise", "feature", epoch))

    def __call__(self, idx: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        if self.fixed:
            logits = self.fixed_logits[idx]
        else:
            logits = to_device_async(
                random_control_noise((len(idx), self.num_classes), self.noise, self.logit_gen), self.device
            )
        if self.feature_shapes is None:
            return logits, None
        if self.fixed:
            maps = [
                fixed_example_noise(idx, shape, self.noise, self.seed, layer, self.device)
                for layer, shape in enumerate(self.feature_shapes)
            ]
        else:
            maps = [
                random_control_noise((len(idx), *shape), self.noise, self.feature_gen, self.device)
                for shape in self.feature_shapes
            ]
        return logits, maps

    def state_dict(self) -> dict:
        return {"logit_rng": self.logit_gen.get_state(), "feature_rng": self.feature_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.logit_gen.set_state(state["logit_rng"])
        self.feature_gen.set_state(state["feature_rng"])

    def close(self) -> None:
        pass


def teacher_shapes_without_weights(
    kd: KDSettings, data: ArrayDataset, entry: dict | None, example: torch.Tensor, *, run: str
) -> list[tuple[int, ...]]:
    """rcd of a feature variant: the shapes of the teacher maps that noise replaces, from the
    teacher architecture built without weights (on the CPU, leaving the global RNG as it was)."""
    if entry is None:
        raise ValueError(
            f"run {run}: rcd with kd.variant {kd.variant!r} needs the teacher's model "
            "entry (teacher_model) for the shapes of the noise feature maps"
        )
    with torch.random.fork_rng(devices=[]):
        teacher = create_model_for(entry, data)
    return feature_shapes(teacher, list(kd.teacher_layers), example.cpu(), "teacher")
