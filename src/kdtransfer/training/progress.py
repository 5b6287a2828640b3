"""What a run reports as it trains: per-epoch sums of its loss terms, and a stop with a clear
message when the loss is no longer finite."""

from __future__ import annotations

import torch


class TrainingDiverged(RuntimeError):
    pass


def divergence_message(run: str, loss: float, epoch: int, batch: int, bf16_active: bool) -> str:
    fix = "lower recipe.lr" + (" or disable bf16 autocast (training.bf16: false)" if bf16_active else "")
    return f"run {run}: loss is {loss} at epoch {epoch + 1} batch {batch}; {fix}"


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
        terms = [
            loss.detach(),
            parts["ce"],
            parts.get("kd", self.zero),
            parts.get("feature", self.zero),
            (logits.argmax(1) == labels).sum(),
        ]
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


class DivergenceGuard:
    """Stops a run whose loss is no longer finite, naming the run (`run`, RunSpec.name), where, and the fix.

    On the CPU every step's loss is checked before the step spoils the weights: free there. On a
    GPU reading the loss is a host sync, so the epoch's running sum is checked every few steps,
    at the end of each epoch and before any checkpoint, so no checkpoint holds a diverged model.
    """

    def __init__(self, run: str, bf16: bool, device: torch.device):
        self.run = run
        self.each_step = device.type == "cpu"
        self.every = 1 if self.each_step else 25
        self.bf16_active = device.type == "cuda" and bf16

    def before_step(self, loss: torch.Tensor, epoch: int, batch: int) -> None:
        if self.each_step and not torch.isfinite(loss):
            raise TrainingDiverged(divergence_message(self.run, loss.item(), epoch, batch, self.bf16_active))

    def after_step(self, stats: EpochStats, epoch: int, batch: int) -> None:
        if (batch + 1) % self.every == 0:
            self.check(stats, epoch, batch)

    def check(self, stats: EpochStats, epoch: int, batch: int) -> None:
        if not stats.loss_is_finite():
            raise TrainingDiverged(divergence_message(self.run, stats.sums[0].item(), epoch, batch, self.bf16_active))
