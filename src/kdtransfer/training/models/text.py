"""Character-level classifiers for int64 token inputs [n, L], where 0 is padding.

Zeros anywhere in a row are padding: both models first move a row's real tokens to the front
(order kept), so left-, right- or mixed padding give the same result, and extra padding
columns change nothing.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kdtransfer.training.models.transformer import add_transformer_trunk


def left_align(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens with each row's real tokens first, lengths >= 1). A row of only padding keeps
    length 1 (one padding token, whose embedding is zero) so that it still has an output."""
    order = torch.argsort((tokens == 0).to(torch.int8), dim=1, stable=True)
    tokens = tokens.gather(1, order)
    return tokens, (tokens != 0).sum(1).clamp(min=1)


class GRUEncoder(nn.Module):
    """A GRU over the real tokens only (packed): output [n, L, hidden·directions], zero at padding."""

    def __init__(self, embed_dim: int, hidden: int, layers: int, bidirectional: bool, dropout: float):
        super().__init__()
        self.gru = nn.GRU(
            embed_dim,
            hidden,
            layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Packing needs the lengths on the CPU (one small copy per batch on CUDA).
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class CharGRU(nn.Module):
    """Embedding (`embed`), GRU (`encoder`, output [n, L, hidden·directions]), linear `head` on
    the final states: the forward direction's at the last real token, the backward one's at the
    first."""

    feature_layout = "tokens"

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        embed_dim: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        dropout: float,
    ):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.encoder = GRUEncoder(embed_dim, hidden, layers, bool(bidirectional), dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens, lengths = left_align(tokens)
        states = self.encoder(self.embed(tokens), lengths)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        last = states[rows, lengths - 1, : self.hidden]
        if states.shape[2] == self.hidden:
            return self.head(last)
        return self.head(torch.cat([last, states[:, 0, self.hidden :]], dim=1))


class CharTransformer(nn.Module):
    """Token + learned position embedding, `depth` pre-norm blocks (`blocks.0`, ..., output
    [n, L, dim]) attending to real tokens only, LayerNorm, mean over the real tokens, `head`."""

    feature_layout = "tokens"

    def __init__(
        self,
        vocab_size: int,
        max_length: int,
        num_classes: int,
        *,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        dropout: float,
    ):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.pos_embed = nn.Parameter(torch.zeros(1, max_length, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        add_transformer_trunk(
            self, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout, num_classes=num_classes
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens, lengths = left_align(tokens)
        length = tokens.shape[1]
        if length > self.pos_embed.shape[1]:
            raise ValueError(f"token rows of length {length} exceed the model's max length {self.pos_embed.shape[1]}")
        keep = torch.arange(length, device=tokens.device)[None, :] < lengths[:, None]
        x = self.dropout(self.embed(tokens) + self.pos_embed[:, :length])
        for block in self.blocks:
            x = block(x, keep)
        x = self.norm(x)
        weights = keep.to(x.dtype)[:, :, None]
        return self.head((x * weights).sum(1) / weights.sum(1))
