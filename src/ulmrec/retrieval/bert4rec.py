"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained to fill in masked items (cloze), a
paper Table 2 baseline.

Training replaces each real item of a sequence by a ``[mask]`` token (id ``num_items + 1``) with probability
``mask_prob`` (at least one per sequence) and predicts the masked items with cross-entropy over all items.
At prediction time ``[mask]`` is appended after the history and the state at that position scores the next
item. Shares the Transformer block of :mod:`ulmrec.retrieval.sasrec`, without the causal mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ulmrec.retrieval.base import PAD, SequentialRecommender, causal_padding_mask, right_aligned_positions
from ulmrec.retrieval.config import stage_setting
from ulmrec.retrieval.sasrec import TransformerBlock


@dataclass
class BERT4RecConfig:
    num_items: int
    """(int) Number of real items (ids 1..num_items; 0 is padding, num_items + 1 the mask token)."""
    max_len: int = stage_setting("max_len")
    """(int) Longest input sequence, the appended mask token included."""
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
    mask_prob: float = stage_setting("mask_prob")
    """(float) Probability that a training item is replaced by the mask token (LlamaRec's bert_mask_prob)."""

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")


class BERT4Rec(SequentialRecommender):
    def __init__(self, cfg: BERT4RecConfig):
        super().__init__()
        self.cfg = cfg
        self.num_items = cfg.num_items
        self.mask_id = cfg.num_items + 1
        self.item_embedding = nn.Embedding(cfg.num_items + 2, cfg.hidden)  # + padding and mask token
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.hidden)
        self.embed_norm = nn.LayerNorm(cfg.hidden)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.hidden, cfg.heads, cfg.dropout, cfg.attn_dropout)
                                    for _ in range(cfg.blocks))
        self.item_bias = nn.Parameter(torch.zeros(cfg.num_items + 1))
        self.init_weights()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        x = self.item_embedding(items) + self.position_embedding(right_aligned_positions(items, self.cfg.max_len))
        x = self.embed_dropout(self.embed_norm(x))  # (B, L, d)
        mask = causal_padding_mask(items, causal=False)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)
        return x

    def loss(self, window: torch.Tensor) -> torch.Tensor:
        """Cloze objective on the last ``max_len`` items of each left-padded window (B, W)."""
        items = window[:, -self.cfg.max_len:]
        real = items != PAD
        masked = (torch.rand(items.shape, device=items.device) < self.cfg.mask_prob) & real
        none = ~masked.any(1)
        masked[none, -1] = True  # every sequence predicts at least one item (its last one)
        inputs = items.masked_fill(masked, self.mask_id)
        hidden = self.encode_grouped(inputs)
        return F.cross_entropy(self.item_scores(hidden[masked]), items[masked])

    def predict(self, history: torch.Tensor) -> torch.Tensor:
        history = history[:, -(self.cfg.max_len - 1):] if self.cfg.max_len > 1 else history[:, :0]
        query = torch.full((history.size(0), 1), self.mask_id, dtype=history.dtype, device=history.device)
        return self.item_scores(self.encode(torch.cat([history, query], dim=1))[:, -1])
