"""The small built-ins of the embedded default experiment: an MLP, a 1-D CNN and a 2-D CNN."""

from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    feature_layout = "channels_first"

    def __init__(self, in_features: int, num_classes: int, *, hidden: list[int] | int, dropout: float):
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

    feature_layout = "channels_first"

    def __init__(self, in_channels: int, num_classes: int, *, channels: list[int], pooled: int):
        super().__init__()
        self.features, width = _conv_stack(nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, in_channels, list(channels))
        # Pool to a small fixed length, not to 1: position matters in these signals.
        self.head = nn.Sequential(nn.AdaptiveAvgPool1d(pooled), nn.Flatten(), nn.Linear(width * pooled, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class CNN2d(nn.Module):
    """A small 2-D CNN for images shaped [batch, channels, height, width]."""

    feature_layout = "channels_first"

    def __init__(self, in_channels: int, num_classes: int, *, channels: list[int], pooled: int):
        super().__init__()
        self.features, width = _conv_stack(nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, in_channels, list(channels))
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(pooled), nn.Flatten(), nn.Linear(width * pooled * pooled, num_classes)
        )

    def forward(self, x):
        return self.head(self.features(x))
