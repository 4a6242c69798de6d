"""NARM (Li et al., 2017): a GRU with a global (last state) and a local (attention over earlier states)
encoder, a paper Table 2 baseline.

For every position t: ``h_1..h_t = GRU(e_1..e_t)``; local weights ``a_tj = v^T sigmoid(A1 h_t + A2 h_j)`` for
j <= t (not normalised, as in the paper); ``c_t = [h_t ; sum_j a_tj h_j]``; the next item's score is
``e_i^T B c_t`` (bilinear decoder with the tied item embeddings) plus an item bias. Trained, like the other
causal retrievers here, with cross-entropy over all items at every position. Left padding is moved to the
right and packed before the GRU, so padding never enters the recurrent state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ulmrec.retrieval.base import PAD, SequentialRecommender
from ulmrec.retrieval.config import stage_setting


@dataclass
class NARMConfig:
    num_items: int
    """(int) Number of real items (ids 1..num_items; 0 is padding)."""
    hidden: int = stage_setting("hidden")
    """(int) Item embedding size and GRU state size."""
    layers: int = 1
    """(int) GRU layers (the paper uses one)."""
    dropout: float = stage_setting("dropout")
    """(float) Dropout on the item embeddings (the paper: 0.25)."""
    attn_dropout: float = stage_setting("attn_dropout")
    """(float) Dropout on the session representation c_t before the decoder (the paper: 0.5)."""


def _roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll each row of x (B, L, ...) left by shift[b] positions."""
    L = x.size(1)
    idx = (torch.arange(L, device=x.device)[None, :] + shift[:, None]) % L  # (B, L)
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x))


class NARM(SequentialRecommender):
    def __init__(self, cfg: NARMConfig):
        super().__init__()
        self.cfg = cfg
        self.num_items = cfg.num_items
        H = cfg.hidden
        self.item_embedding = nn.Embedding(cfg.num_items + 1, H)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(H, H, num_layers=cfg.layers, batch_first=True)
        self.a1 = nn.Linear(H, H, bias=False)
        self.a2 = nn.Linear(H, H, bias=False)
        self.v = nn.Linear(H, 1, bias=False)
        self.context_dropout = nn.Dropout(cfg.attn_dropout)
        self.decoder = nn.Linear(2 * H, H, bias=False)  # B in e_i^T B c_t
        self.item_bias = nn.Parameter(torch.zeros(cfg.num_items + 1))
        self.init_weights()

    def _gru(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Run the GRU over the real items only; x (B, L, H) left-padded -> states (B, L, H), 0 at padding."""
        B, L, _ = x.shape
        lengths = real.sum(1)
        pad = L - lengths
        packed = pack_padded_sequence(_roll_rows(x, pad), lengths.clamp(min=1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)  # right-padded
        return _roll_rows(out, -pad % L) * real[..., None]

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        real = items != PAD  # (B, L)
        h = self._gru(self.embed_dropout(self.item_embedding(items)), real)  # (B, L, H)
        L = items.size(1)
        allowed = torch.ones(L, L, dtype=torch.bool, device=items.device).tril() & real[:, None, :]  # (B, t, j)
        weights = self.v(torch.sigmoid(self.a1(h)[:, :, None] + self.a2(h)[:, None, :])).squeeze(-1)  # (B, L, L)
        local = (weights * allowed) @ h  # (B, L, H)
        return self.decoder(self.context_dropout(torch.cat([h, local], dim=-1)))  # (B, L, H)
