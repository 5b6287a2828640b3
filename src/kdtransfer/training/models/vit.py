"""A small Vision Transformer for any [channels, height, width] input: CIFAR images (4x4
patches) or log-mel spectrograms [1, n_mels, frames] (rectangular patches)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdtransfer.training.models.transformer import add_transformer_trunk


class ViT(nn.Module):
    """Patch embedding, learned position embedding, `depth` pre-norm blocks (`blocks.0`, ...,
    each output [n, tokens, dim]), final LayerNorm, linear head.

    An input whose height or width is not a multiple of the patch is zero-padded at the bottom
    and right (no input is cropped away; zero is the mean of standardised data). `pool="cls"`
    (default) classifies from a learned class token prepended to the patches (ViT, DeiT);
    `pool="mean"` from the mean of the patch tokens, without a class token.
    """

    feature_layout = "tokens"

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        patch_size: int | list[int],
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
        pool: str,
    ):
        super().__init__()
        ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
        channels, height, width = input_shape
        rows, cols = math.ceil(height / ph), math.ceil(width / pw)
        self.padding = (0, cols * pw - width, 0, rows * ph - height)  # F.pad order: left, right, top, bottom
        self.patch_embed = nn.Conv2d(channels, dim, (ph, pw), stride=(ph, pw))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, rows * cols + (pool == "cls"), dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        add_transformer_trunk(
            self, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout, num_classes=num_classes
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # [n, patches, dim]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.dropout(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(x[:, 0] if self.cls_token is not None else x.mean(1))
