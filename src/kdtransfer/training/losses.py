"""The loss terms the objectives combine (kdtransfer.training.objective), each in one place:
cross-entropy, Hinton logit KD, feature-map KD (FitNets hints, attention transfer), and the
random-control (noise) targets that replace the teacher.

    loss = (1-α)·CE + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + β·feature_loss

with β = kd.feature_weight (0 for the `logit` variant). Feature maps are channels first
([n, c, h, w], [n, c, l] or [n, c]; see kdtransfer.training.models.features) and are compared in
float32 whatever the autocast dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdtransfer.catalog import FEATURE_VARIANTS
from kdtransfer.training.seeding import derive_seed


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch.

    The teacher distribution is the target (first argument of the KL); the T² factor keeps the
    gradient scale comparable to cross-entropy across temperatures (Hinton et al., 2015).
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature**2


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two maps with equal positions: where a spatial size differs, the larger map is
    adaptive-average-pooled to the smaller size (per dimension)."""
    if a.dim() != b.dim():
        raise ValueError(
            f"cannot compare a {a.dim()}-D feature map {list(a.shape)} with a {b.dim()}-D one {list(b.shape)}; "
            "pick student and teacher layers of the same kind (both conv maps, or both token sequences)"
        )
    if a.dim() <= 2 or a.shape[2:] == b.shape[2:]:
        return a, b
    size = tuple(min(sa, sb) for sa, sb in zip(a.shape[2:], b.shape[2:]))
    pool = F.adaptive_avg_pool2d if a.dim() == 4 else F.adaptive_avg_pool1d
    return (a if a.shape[2:] == size else pool(a, size)), (b if b.shape[2:] == size else pool(b, size))


class HintRegressor(nn.Module):
    """FitNets' learned map from each student map's channels to its teacher map's channels:
    a 1x1 convolution on [n, c, h, w], the same linear map at every position on [n, c, l]
    (tokens of transformers included: 1x1 Conv1d), a linear layer on [n, c].

    It belongs to the loss, not the student: it is trained with the student, checkpointed, and
    left out of the saved model and its parameter count.
    """

    def __init__(self, student_shapes: list[tuple[int, ...]], teacher_shapes: list[tuple[int, ...]]):
        super().__init__()
        maps = []
        for s, t in zip(student_shapes, teacher_shapes, strict=True):
            if len(s) != len(t):
                raise ValueError(
                    f"student feature map {list(s)} and teacher feature map {list(t)} differ in rank; "
                    "pick layers of the same kind"
                )
            layer = {1: nn.Linear, 2: nn.Conv1d, 3: nn.Conv2d}[len(s)]
            maps.append(layer(s[0], t[0]) if len(s) == 1 else layer(s[0], t[0], kernel_size=1))
        self.maps = nn.ModuleList(maps)

    def forward(self, student_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(f) for m, f in zip(self.maps, student_maps, strict=True)]


def hint_loss(
    student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor], regressor: HintRegressor
) -> torch.Tensor:
    """Σ over layer pairs of MSE(regressor(student map), teacher map), the MSE a mean over all
    elements. Spatial sizes are matched first (a 1x1 map commutes with average pooling, so
    pooling before the regressor gives the same value, cheaper)."""
    matched = [match_spatial(s.float(), t.float()) for s, t in zip(student_maps, teacher_maps, strict=True)]
    regressed = regressor([s for s, _ in matched])
    return sum(F.mse_loss(r, t) for r, (_, t) in zip(regressed, matched))


def attention_map(feature_map: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis (2017): the mean over channels of |F|² at each position,
    flattened and L2-normalised per sample: [n, positions]."""
    if feature_map.dim() < 3:
        raise ValueError(
            f"attention transfer needs maps with positions ([n, c, h, w] or [n, c, l]); got {list(feature_map.shape)}"
        )
    return F.normalize(feature_map.float().pow(2).mean(1).flatten(1), dim=1)


def attention_transfer_loss(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> torch.Tensor:
    """Σ over layer pairs of the batch mean of ‖a_s − a_t‖₂ (the paper's p = 2 norm of the
    difference, not squared). The reference code's (a_s − a_t).pow(2).mean() is the squared
    norm divided by the number of positions: its β = 1000 does not carry over to this loss.
    Spatial sizes are matched (pooling the larger map) before the maps are taken."""
    total = 0.0
    for s, t in zip(student_maps, teacher_maps, strict=True):
        s, t = match_spatial(s, t)
        total = total + torch.linalg.vector_norm(attention_map(s) - attention_map(t), dim=1).mean()
    return total


def feature_loss(
    variant: str,
    student_maps: list[torch.Tensor],
    teacher_maps: list[torch.Tensor],
    regressor: HintRegressor | None = None,
) -> torch.Tensor:
    if variant == "hint":
        return hint_loss(student_maps, teacher_maps, regressor)
    if variant == "attention":
        return attention_transfer_loss(student_maps, teacher_maps)
    raise ValueError(f"unknown feature KD variant {variant!r}; valid: {', '.join(FEATURE_VARIANTS)}")


def cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the labels, the loss of every condition (alone, or the (1-α) part of
    distillation's), on float32 logits whatever the autocast dtype."""
    return F.cross_entropy(student_logits.float(), labels)


def distillation_objective(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    alpha: float,
    temperature: float,
    feature_term: torch.Tensor | None = None,
    feature_weight: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(1-α)·CE + α·T²·KL [+ β·feature_term]. A feature term needs its weight β
    (kd.feature_weight; no default here: the schema's is the one). The parts come back as
    detached 0-d tensors (no host sync per step on a GPU)."""
    ce = cross_entropy(student_logits, labels)
    kd = kd_loss(student_logits, teacher_logits, temperature)
    total = (1 - alpha) * ce + alpha * kd
    parts = {"ce": ce.detach(), "kd": kd.detach()}
    if feature_term is not None:
        if feature_weight is None:
            raise ValueError("a feature term needs its feature_weight (kd.feature_weight)")
        total = total + feature_weight * feature_term
        parts["feature"] = feature_term.detach()
    return total, parts


def random_control_noise(
    shape: tuple[int, ...], noise: str, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Noise in place of a teacher signal: `uniform` U(0,1) or `gaussian` N(0,1), i.i.d."""
    if noise == "uniform":
        return torch.rand(shape, generator=generator, device=device)
    if noise == "gaussian":
        return torch.randn(shape, generator=generator, device=device)
    raise ValueError(f"unknown rcd noise {noise!r}; valid choices: uniform, gaussian")


def fixed_example_noise(
    indices: torch.Tensor, shape: tuple[int, ...], noise: str, seed: int, layer: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Noise feature maps for `resample: fixed`: one draw per (training example, layer), redrawn
    from a seed derived from (run seed, layer, example index) whenever the example is seen,
    rather than stored: a stored table would hold a teacher-sized map per training example
    (e.g. 64x32x32 floats, 256 KiB, per CIFAR image per layer: 12.5 GiB for 50,000 images)."""
    maps = []
    for i in indices.tolist():
        g = torch.Generator(device=device).manual_seed(derive_seed(seed, "noise", "fixed", "feature", layer, i))
        maps.append(random_control_noise(shape, noise, g, device))
    return torch.stack(maps)
