"""Eq. 1: attention over a user's review embeddings, queried by the embedding of the user's original ID.

    alpha_i = softmax_i(e_{w_i}^T A e_{o_u}),    x_u = sum_i alpha_i e_{w_i}

Reviews are given flat: ``review_emb`` (R, d) with ``owners`` (R,) naming the user of each row, so users may
have any number of reviews. A user with none is represented by the ID embedding itself (x_u = e_o).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ReviewAttentionPooling(nn.Module):
    """Eq. 1 with one learnable bilinear matrix ``A`` (d, d), trained jointly with the RQ-VAE.

    ``A`` starts at zero, i.e. as the plain mean of the reviews; training moves it where the reconstruction
    and quantization losses want the attention to go.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.A = nn.Parameter(torch.zeros(dim, dim))

    def forward(self, review_emb: torch.Tensor, owners: torch.Tensor, id_emb: torch.Tensor) -> torch.Tensor:
        """``review_emb`` (R, d), ``owners`` (R,) in 0..B-1, ``id_emb`` (B, d) -> ``x`` (B, d)."""
        num_users = id_emb.shape[0]
        if review_emb.shape[0] == 0:
            return id_emb
        scores = ((review_emb @ self.A) * id_emb[owners]).sum(-1)  # (R,)  e_w^T A e_o
        top = torch.full((num_users,), float("-inf"), dtype=scores.dtype, device=scores.device)
        top = top.scatter_reduce(0, owners, scores, reduce="amax", include_self=True)
        ex = torch.exp(scores - top[owners])  # (R,)
        denom = torch.zeros(num_users, dtype=ex.dtype, device=ex.device).index_add(0, owners, ex)
        alpha = ex / denom[owners]  # (R,) softmax within each user
        x = torch.zeros_like(id_emb).index_add(0, owners, alpha[:, None] * review_emb)  # (B, d)
        has_reviews = torch.zeros(num_users, dtype=torch.bool, device=id_emb.device)
        has_reviews[owners] = True
        return torch.where(has_reviews[:, None], x, id_emb)


class RaggedReviews:
    """Users' reviews in CSR layout, to gather the rows of a batch of users quickly."""

    def __init__(self, review_emb: np.ndarray, owners: np.ndarray, num_users: int, device: str = "cpu"):
        owners = np.asarray(owners, dtype=np.int64)
        order = np.argsort(owners, kind="stable")
        self.emb = torch.as_tensor(np.asarray(review_emb, dtype=np.float32)[order], device=device)
        counts = np.bincount(owners, minlength=num_users)
        self.counts = torch.as_tensor(counts, device=device)
        self.starts = torch.as_tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), device=device)

    def batch(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of ``users`` (B,): ``(emb (R', d), local_owner (R',) in 0..B-1)``."""
        lens = self.counts[users]  # (B,)
        local = torch.repeat_interleave(torch.arange(len(users), device=users.device), lens)  # (R',)
        first = torch.cumsum(lens, 0) - lens  # (B,) offset of each user's first row in the batch
        rows = self.starts[users][local] + torch.arange(len(local), device=users.device) - first[local]
        return self.emb[rows], local
