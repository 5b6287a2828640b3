"""One model factory: small built-ins by name, and any timm model as `timm:<name>`."""

from __future__ import annotations

import torch
from torch import nn

from kdtransfer.catalog import BUILTIN_MODELS, TIMM_PREFIX


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: list[int] | int = 64, dropout: float = 0.0):
        super().__init__()
        hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


def _conv_stack(conv, bn, pool, in_ch: int, channels: list[int]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for c in channels:
        layers += [conv(in_ch, c, 3, padding=1, bias=False), bn(c), nn.ReLU(), pool(2)]
        in_ch = c
    return nn.Sequential(*layers), in_ch


class CNN1d(nn.Module):
    """A small 1-D CNN for signals shaped [batch, channels, length]."""

    def __init__(self, in_channels: int, num_classes: int, channels: list[int] = (16, 32, 32), pooled: int = 4):
        super().__init__()
        self.features, width = _conv_stack(nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, in_channels, list(channels))
        # Pool to a small fixed length, not to 1: position matters in these signals.
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(pooled), nn.Flatten(), nn.Linear(width * pooled, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class CNN2d(nn.Module):
    """A small 2-D CNN for images shaped [batch, channels, height, width]."""

    def __init__(self, in_channels: int, num_classes: int, channels: list[int] = (16, 32), pooled: int = 4):
        super().__init__()
        self.features, width = _conv_stack(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, in_channels, list(channels))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(pooled), nn.Flatten(), nn.Linear(width * pooled * pooled, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


def _mlp(input_shape, num_classes, **kw):
    n = 1
    for d in input_shape:
        n *= d
    return MLP(n, num_classes, **kw)


_BUILDERS = {
    "mlp": _mlp,
    "cnn1d": lambda input_shape, num_classes, **kw: CNN1d(input_shape[0], num_classes, **kw),
    "cnn2d": lambda input_shape, num_classes, **kw: CNN2d(input_shape[0], num_classes, **kw),
}
assert set(_BUILDERS) == set(BUILTIN_MODELS), "kdtransfer.catalog.BUILTIN_MODELS is out of date"


class ModelError(ValueError):
    pass


def create_model(arch: str, input_shape: tuple[int, ...], num_classes: int, **kwargs) -> nn.Module:
    """Build a freshly initialised model. Seed the global torch RNG first for a fixed init."""
    if arch.startswith(TIMM_PREFIX):
        import timm

        name = arch[len(TIMM_PREFIX):]
        if not timm.is_model(name):
            raise ModelError(f"unknown timm model {name!r} (from arch {arch!r}); see timm.list_models()")
        # pretrained=False always: a run never downloads weights, and teachers are trained here.
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0], **kwargs)
    if arch not in _BUILDERS:
        raise ModelError(f"unknown model {arch!r}; built-ins: {', '.join(sorted(_BUILDERS))}, or timm:<name>")
    try:
        return _BUILDERS[arch](tuple(input_shape), num_classes, **kwargs)
    except TypeError as exc:
        raise ModelError(f"model {arch!r} rejected its options {kwargs}: {exc}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def state_fingerprint(model: nn.Module) -> str:
    """A short hash of all weights, to check that two runs started from the same init."""
    import hashlib

    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
