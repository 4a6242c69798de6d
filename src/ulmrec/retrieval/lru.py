"""LRURec: the linear recurrent unit retriever that gives ULMRec its top-20 candidates (paper 4.3, 5.1.4).

Each block is a linear recurrence with a complex diagonal transition (Orvieto et al., 2023; Yue et al.,
"Linear Recurrent Units for Sequential Recommendation", 2024):

    h_t = lambda * h_{t-1} + gamma * (B x_t),   lambda = exp(-exp(nu) + i exp(theta)),   y_t = Re(C h_t)

with the "ring" initialisation |lambda| in [r_min, r_max] and gamma = sqrt(1 - |lambda|^2), followed by
``LayerNorm(dropout(y) + x)`` and a 4x GELU feed-forward block with its own residual and LayerNorm (the layout
of LlamaRec's ``model/lru.py``). Scores are ``h @ E^T + bias`` with the item embeddings E tied to the input.

Complex numbers are kept as (real, imaginary) pairs of real tensors: ``B`` is a real ``Linear(d, 2H)`` giving
the real and imaginary parts of ``B x`` (x is real), and ``Re(C h) = C_r h_r - C_i h_i`` is a real
``Linear(2H, d)`` on ``[h_r, h_i]``; the two parameterisations are the same function class.

The recurrence over time is a parallel (Hillis-Steele) scan in ceil(log2 L) steps:
``h <- h + lambda^(2^k) * shift(h, 2^k)``. Left padding never leaks because the scan input ``gamma * B x`` is
zeroed at padding positions, so every real position starts from h = 0 exactly as a sequential loop over its
real items would (``tests/retrieval/test_lru.py`` checks forward and gradients against such a loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ulmrec.retrieval.base import PAD, SequentialRecommender, gelu_ffn
from ulmrec.retrieval.config import stage_setting


@dataclass
class LRURecConfig:
    num_items: int
    """(int) Number of real items (ids 1..num_items; 0 is padding)."""
    hidden: int = stage_setting("hidden")
    """(int) Embedding and model width d; the recurrent state has 2d complex channels."""
    blocks: int = stage_setting("blocks")
    """(int) Number of LRU blocks."""
    dropout: float = stage_setting("dropout")
    """(float) Dropout on the embeddings and in the feed-forward blocks."""
    attn_dropout: float = stage_setting("attn_dropout")
    """(float) Dropout on the recurrent layer's output (LlamaRec's ``bert_attn_dropout``)."""
    r_min: float = 0.8
    """(float) Smallest initial |lambda| (ring initialisation)."""
    r_max: float = 0.99
    """(float) Largest initial |lambda|."""

    def __post_init__(self) -> None:
        if self.num_items < 1 or self.hidden < 1 or self.blocks < 1:
            raise ValueError("num_items, hidden and blocks must be >= 1")
        if not 0.0 < self.r_min < self.r_max < 1.0:
            raise ValueError(f"need 0 < r_min < r_max < 1, got {self.r_min}, {self.r_max}")


class LRULayer(nn.Module):
    """One linear recurrent layer with residual and LayerNorm: (B, L, d) -> (B, L, d)."""

    def __init__(self, d_model: int, dropout: float, r_min: float = 0.8, r_max: float = 0.99):
        super().__init__()
        self.state = 2 * d_model  # H complex channels
        u1, u2 = torch.rand(self.state), torch.rand(self.state)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(u2 * 2 * math.pi)
        modulus = torch.exp(-torch.exp(nu_log))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)))
        self.in_proj = nn.Linear(d_model, 2 * self.state)  # real and imaginary parts of B x
        self.out_proj = nn.Linear(2 * self.state, d_model)  # Re(C h) from [h_r, h_i]
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def transition(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts of lambda ** steps, each (H,)."""
        modulus = torch.exp(-steps * torch.exp(self.nu_log))
        angle = steps * torch.exp(self.theta_log)
        return modulus * torch.cos(angle), modulus * torch.sin(angle)

    def scan(self, real: torch.Tensor, imag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Parallel prefix scan of h_t = lambda h_{t-1} + u_t over dim 1 of (B, L, H) real/imag parts."""
        L = real.size(1)
        step = 1
        while step < L:
            a, b = self.transition(step)
            prev_r = F.pad(real[:, :-step], (0, 0, step, 0))  # h_{t - step}, zeros before the start
            prev_i = F.pad(imag[:, :-step], (0, 0, step, 0))
            real, imag = real + a * prev_r - b * prev_i, imag + a * prev_i + b * prev_r
            step *= 2
        return real, imag

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, d), mask (B, L) True at real items."""
        u = self.in_proj(x) * torch.exp(self.gamma_log).repeat(2)  # (B, L, 2H)
        u = u * mask[..., None]  # padding contributes nothing to the state
        real, imag = self.scan(*u.split(self.state, dim=-1))  # (B, L, H) each
        y = self.out_proj(torch.cat([real, imag], dim=-1))  # (B, L, d)
        return self.norm(self.dropout(y) + x)


class LRUBlock(nn.Module):
    def __init__(self, cfg: LRURecConfig):
        super().__init__()
        self.lru = LRULayer(cfg.hidden, cfg.attn_dropout, cfg.r_min, cfg.r_max)
        self.ffn = gelu_ffn(cfg.hidden, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.lru(x, mask)
        return self.norm(self.ffn(x) + x)


class LRURec(SequentialRecommender):
    """LRURec with tied item embeddings and a per-item output bias."""

    def __init__(self, cfg: LRURecConfig):
        super().__init__()
        self.cfg = cfg
        self.num_items = cfg.num_items
        self.item_embedding = nn.Embedding(cfg.num_items + 1, cfg.hidden)
        self.embed_norm = nn.LayerNorm(cfg.hidden)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(LRUBlock(cfg) for _ in range(cfg.blocks))
        self.item_bias = nn.Parameter(torch.zeros(cfg.num_items + 1))
        self.init_weights()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        mask = items != PAD  # (B, L)
        x = self.embed_norm(self.embed_dropout(self.item_embedding(items)))  # (B, L, d)
        for block in self.blocks:
            x = block(x, mask)
        return x
