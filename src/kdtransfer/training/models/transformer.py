"""The pre-norm transformer block shared by the ViT and the character transformer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        # keep: [n, t] True for real tokens; padding tokens are never attended to.
        mask = None if keep is None else keep[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.dropout(self.proj(out.transpose(1, 2).reshape(n, t, d)))


class TransformerBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)); output [n, tokens, dim]."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.mlp(self.norm2(x))


def add_transformer_trunk(
    model: nn.Module, *, dim: int, depth: int, heads: int, mlp_ratio: float, dropout: float, num_classes: int
) -> None:
    """The part after the embedding that the ViT and the character transformer share, created in
    one fixed order (the global RNG draws, hence the initial weights, depend on it): dropout,
    `depth` blocks, the final LayerNorm and the linear head."""
    model.dropout = nn.Dropout(dropout)
    model.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
    model.norm = nn.LayerNorm(dim)
    model.head = nn.Linear(dim, num_classes)
