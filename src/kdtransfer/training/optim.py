"""The optimizer and the lr schedule of a recipe; SGD with momentum written out.

Why not torch.optim.SGD: constructing any torch.optim optimizer imports torch._dynamo (about
1.4 s), which on the embedded default's small runs is most of each job. This is the same
update as torch.optim.SGD (PyTorch's momentum/dampening=0/weight-decay/nesterov formulation;
a test checks they agree), with state_dict/load_state_dict for checkpoints. Every
hyper-parameter comes from the recipe (the schema's defaults filled in): none has a default here.
"""

from __future__ import annotations

import math

import torch

from kdtransfer.spec import Recipe


class SGD:
    def __init__(self, params, *, lr: float, momentum: float, weight_decay: float, nesterov: bool):
        self.params = [p for p in params if p.requires_grad]
        self.param_groups = [{"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "nesterov": nesterov}]
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(self.params)

    @torch.no_grad()
    def step(self) -> None:
        g = self.param_groups[0]
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            d_p = p.grad
            if g["weight_decay"]:
                d_p = d_p.add(p, alpha=g["weight_decay"])
            if g["momentum"]:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = self.momentum_buffers[i] = d_p.clone().detach()
                else:
                    buf.mul_(g["momentum"]).add_(d_p)
                d_p = d_p.add(buf, alpha=g["momentum"]) if g["nesterov"] else buf
            p.add_(d_p, alpha=-g["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict:
        return {"param_groups": [dict(g) for g in self.param_groups], "momentum_buffers": list(self.momentum_buffers)}

    def load_state_dict(self, state: dict) -> None:
        """Checkpoints are read onto the CPU: each momentum buffer goes back to its parameter's
        device (as torch.optim's optimizers do), else a resumed GPU run would fail at its first step."""
        self.param_groups = [dict(g) for g in state["param_groups"]]
        self.momentum_buffers = [
            None if buf is None else buf.to(p.device)
            for buf, p in zip(state["momentum_buffers"], self.params, strict=True)
        ]


class LRSchedule:
    """Linear warm-up, then cosine decay to 0 (or constant), stepped once per batch."""

    def __init__(self, optimizer, base_lr: float, total_steps: int, warmup_steps: int, kind: str):
        self.optimizer, self.base_lr, self.total, self.warmup, self.kind = (
            optimizer,
            base_lr,
            total_steps,
            warmup_steps,
            kind,
        )
        self.step_count = 0
        self._apply()

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _apply(self) -> None:
        for g in self.optimizer.param_groups:
            g["lr"] = self.base_lr * self.factor(self.step_count)

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        self._apply()


def make_optimizer(params, recipe: Recipe, steps_per_epoch: int):
    """(optimizer, per-step lr schedule) of a recipe, over `params`."""
    params = list(params)
    if recipe.optimizer == "sgd":
        opt = SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov
        )
    elif recipe.optimizer == "adamw":  # torch.optim imports torch._dynamo: only when asked for
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; valid: sgd, adamw")
    schedule = LRSchedule(
        opt, recipe.lr, recipe.epochs * steps_per_epoch, int(recipe.warmup_epochs * steps_per_epoch), recipe.schedule
    )
    return opt, schedule
