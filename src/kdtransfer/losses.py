"""Training losses: cross-entropy, Hinton logit KD, and random-control (noise) teacher targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)), averaged over the batch.

    The teacher distribution is the target (first argument of the KL); the T² factor keeps the
    gradient scale comparable to cross-entropy across temperatures (Hinton et al., 2015).
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True) * temperature**2


def distillation_objective(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    *,
    alpha: float,
    temperature: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """(1-α)·CE + α·T²·KL; plain CE when there is no teacher (teacher, nokd, independent)."""
    ce = F.cross_entropy(student_logits, labels)
    if teacher_logits is None:
        return ce, {"ce": ce.item()}
    kd = kd_loss(student_logits, teacher_logits, temperature)
    return (1 - alpha) * ce + alpha * kd, {"ce": ce.item(), "kd": kd.item()}


def random_control_logits(
    shape: tuple[int, int], noise: str, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Noise in place of the teacher's logits: `uniform` U(0,1) or `gaussian` N(0,1), one vector per sample."""
    if noise == "uniform":
        return torch.rand(shape, generator=generator, device=device)
    if noise == "gaussian":
        return torch.randn(shape, generator=generator, device=device)
    raise ValueError(f"unknown rcd noise {noise!r}; valid choices: uniform, gaussian")
