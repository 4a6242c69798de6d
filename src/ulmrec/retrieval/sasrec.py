"""SASRec (Kang and McAuley, 2018): causal self-attention over the item sequence, a paper Table 2 baseline.

Item embeddings plus learned positions (right-aligned, so the most recent item always has position
``max_len - 1``), then ``blocks`` Transformer blocks (causal multi-head attention and a 4x GELU feed-forward,
each with residual and LayerNorm), scored against the tied item embeddings with a per-item bias and trained
with cross-entropy over all items at every position (the LlamaRec/LRURec setting, rather than the original
paper's one sampled negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ulmrec.retrieval.base import (
    SequentialRecommender,
    causal_padding_mask,
    gelu_ffn,
    right_aligned_positions,
)
from ulmrec.retrieval.config import stage_setting


@dataclass
class SASRecConfig:
    num_items: int
    """(int) Number of real items (ids 1..num_items; 0 is padding)."""
    max_len: int = stage_setting("max_len")
    """(int) Longest input sequence (number of position embeddings)."""
    hidden: int = stage_setting("hidden")
    """(int) Model width."""
    blocks: int = stage_setting("blocks")
    """(int) Transformer blocks."""
    heads: int = stage_setting("heads")
    """(int) Attention heads."""
    dropout: float = stage_setting("dropout")
    """(float) Dropout on embeddings and feed-forward outputs."""
    attn_dropout: float = stage_setting("attn_dropout")
    """(float) Dropout on attention weights."""

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


class SelfAttention(nn.Module):
    """Multi-head self-attention with an explicit boolean mask (B, 1, L, L), True = may attend."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, L, D/h)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class TransformerBlock(nn.Module):
    """Post-LN Transformer block (BERT layout): LN(x + drop(attn(x))), then LN(x + ffn(x))."""

    def __init__(self, hidden: int, heads: int, dropout: float, attn_dropout: float):
        super().__init__()
        self.attn = SelfAttention(hidden, heads, attn_dropout)
        self.attn_norm = nn.LayerNorm(hidden)
        self.ffn = gelu_ffn(hidden, dropout)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, mask)))
        return self.ffn_norm(x + self.ffn(x))


class SASRec(SequentialRecommender):
    def __init__(self, cfg: SASRecConfig):
        super().__init__()
        self.cfg = cfg
        self.num_items = cfg.num_items
        self.item_embedding = nn.Embedding(cfg.num_items + 1, cfg.hidden)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden)
        self.embed_norm = nn.LayerNorm(cfg.hidden)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.hidden, cfg.heads, cfg.dropout, cfg.attn_dropout)
                                    for _ in range(cfg.blocks))
        self.item_bias = nn.Parameter(torch.zeros(cfg.num_items + 1))
        self.init_weights()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        items = items[:, -self.cfg.max_len:]
        x = self.item_embedding(items) + self.position_embedding(right_aligned_positions(items, self.cfg.max_len))
        x = self.embed_dropout(self.embed_norm(x))  # (B, L, d)
        mask = causal_padding_mask(items, causal=True)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)
        return x

