"""Intermediate feature maps by module name, for feature-map KD (hints, attention transfer).

Forward hooks on named submodules work on any nn.Module, timm models included. Maps come back
channels first: [n, c, h, w], [n, c, l] or [n, c]. Transformers output tokens [n, tokens, d];
a model says so with `feature_layout = "tokens"` (the factory sets it on timm models, whose
3-D outputs are tokens), and its 3-D maps are transposed to [n, d, tokens].
"""

from __future__ import annotations

import torch
from torch import nn

from kdtransfer.training.models.errors import ModelError


def _some_module_names(model: nn.Module, limit: int = 30) -> str:
    names = [name for name, _ in model.named_modules() if name and name.count(".") <= 1]
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


class FeatureTap:
    """Captures the named modules' outputs during forwards run inside `with tap:`.

    Outside the `with` block the hooks store nothing (an evaluation pass over the test split
    does not keep its maps alive).
    """

    def __init__(self, model: nn.Module, names: list[str], owner: str = "model"):
        modules = dict(model.named_modules())
        for name in names:
            if name not in modules or not name:
                raise ModelError(
                    f"the {owner} has no module named {name!r}; feature layers are module names such as: "
                    f"{_some_module_names(model)}"
                )
        self.names = list(names)
        self.tokens_last = getattr(model, "feature_layout", "channels_first") == "tokens"
        self.owner = owner
        self._capturing = False
        self._outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.names]

    def _hook(self, name: str):
        def store(module, inputs, output):
            if not self._capturing:
                return
            if not isinstance(output, torch.Tensor):
                raise ModelError(
                    f"{self.owner} module {name!r} outputs {type(output).__name__}, not a tensor; "
                    "pick a module whose output is a feature map"
                )
            self._outputs[name] = output

        return store

    def __enter__(self) -> "FeatureTap":
        self._outputs.clear()
        self._capturing = True
        return self

    def __exit__(self, *exc) -> bool:
        self._capturing = False
        return False

    def take(self) -> list[torch.Tensor]:
        """The maps of the last forward, in `names` order, channels first; forgets them."""
        missing = [name for name in self.names if name not in self._outputs]
        if missing:
            raise ModelError(
                f"{self.owner} module {missing[0]!r} did not run in the forward pass; pick a module on the path to "
                "the output"
            )
        maps = [self._outputs[name] for name in self.names]
        self._outputs.clear()
        return [m.transpose(1, 2) if self.tokens_last and m.dim() == 3 else m for m in maps]

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@torch.no_grad()
def feature_shapes(
    model: nn.Module, names: list[str], example: torch.Tensor, owner: str = "model"
) -> list[tuple[int, ...]]:
    """Per-sample shapes (channels first, no batch dimension) of the named maps, from one
    eval-mode forward of `example` (no dropout draws, no batch-norm statistics updated)."""
    tap = FeatureTap(model, names, owner)
    was_training = model.training
    model.eval()
    try:
        with tap:
            model(example)
        return [tuple(m.shape[1:]) for m in tap.take()]
    finally:
        tap.remove()
        model.train(was_training)
