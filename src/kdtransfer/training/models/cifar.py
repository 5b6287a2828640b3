"""The paper's CNNs for 32x32 images: ResNet with the CIFAR stem, and VGG with batch norm.

Both name their stages so a feature-KD layer can be picked by module name: `layer1..layer4`
(ResNet, as in torchvision) and `stage1..stage5` (VGG). Stage outputs are the post-ReLU maps
at each resolution, before any down-sampling: for a 32x32 input, ResNet's layers give 32, 16,
8, 4 px and VGG's stages 32, 16, 8, 4, 2 px.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
VGG_CONVS_PER_STAGE = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
VGG_STAGE_WIDTHS = (1, 2, 4, 8, 8)  # multiples of `width`: 64-128-256-512-512 at width 64


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x):
        # Out-of-place ReLUs: a feature hook may hold a block's output while the next block runs.
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet-18/34 with the CIFAR stem (3x3 conv, stride 1, no max-pool), BasicBlocks,
    stages of width, 2·width, 4·width, 8·width channels (11.2M parameters at depth 18, width 64)."""

    feature_layout = "channels_first"

    def __init__(self, in_channels: int, num_classes: int, *, depth: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        channels = width
        for i, n_blocks in enumerate(RESNET_BLOCKS[depth]):
            out_channels, stride = width * 2**i, 1 if i == 0 else 2
            blocks = [BasicBlock(channels, out_channels, stride)]
            blocks += [BasicBlock(out_channels, out_channels, 1) for _ in range(n_blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            channels = out_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.pool(x).flatten(1))


class VGGCIFAR(nn.Module):
    """VGG-11/13/16/19 with batch norm for 32x32 inputs (the common CIFAR variant: one linear
    layer on the 512-d pooled features; 20.0M parameters for VGG-19 at width 64).

    `stageK` holds the max-pool that enters it (K > 1) and its conv-BN-ReLU layers, so its output
    is a full-resolution map. VGG's fifth max-pool is a global max-pool here: the same as the 2x2
    pool on the 2x2 map of a 32x32 input, and defined for any input of at least 16 px.
    """

    feature_layout = "channels_first"

    def __init__(self, in_channels: int, num_classes: int, *, depth: int, width: int):
        super().__init__()
        channels = in_channels
        for k, (n_convs, multiple) in enumerate(zip(VGG_CONVS_PER_STAGE[depth], VGG_STAGE_WIDTHS), start=1):
            layers: list[nn.Module] = [] if k == 1 else [nn.MaxPool2d(2)]
            for _ in range(n_convs):
                layers += [
                    nn.Conv2d(channels, width * multiple, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width * multiple),
                    nn.ReLU(),
                ]
                channels = width * multiple
            self.add_module(f"stage{k}", nn.Sequential(*layers))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.stage5(self.stage4(self.stage3(self.stage2(self.stage1(x)))))
        return self.fc(self.pool(x).flatten(1))
