"""What every retriever shares: item scoring with tied embeddings, next-item training and prediction.

A retriever is an ``nn.Module`` that turns a left-padded batch of item ids ``(B, L)`` (0 = padding) into
one hidden state per position ``(B, L, D)`` with :meth:`SequentialRecommender.encode`; the state at the last
position scores the next item against every item embedding plus a per-item bias (tied embeddings, as in
LlamaRec's LRURec). Causal models (LRURec, SASRec, NARM) train with cross-entropy over all items at every
non-padding position; BERT4Rec overrides :meth:`loss` and :meth:`predict` with its cloze objective.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


def truncated_normal_(t: torch.Tensor, std: float = 0.02) -> torch.Tensor:
    """In-place truncated normal within two standard deviations (the BERT/LRURec initialisation)."""
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2 * std, b=2 * std)


class SequentialRecommender(nn.Module):
    """Base for next-item retrievers: ``item_embedding`` (``num_items + 1`` rows or more) and ``item_bias``."""

    num_items: int
    item_embedding: nn.Embedding
    item_bias: nn.Parameter

    def encode(self, items: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """(B, L) left-padded item ids -> (B, L, D) hidden states; position t sees items[:, :t+1]."""
        raise NotImplementedError

    length_groups: int = 4
    """Training forward passes split each batch into this many groups of similar length (see encode_grouped)."""

    def encode_grouped(self, items: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``encode`` for a batch of mixed lengths, run on ``length_groups`` row groups of similar length,
        each cut to its own longest sequence, and put back together (B, L, D), zeros at padding.

        The batch stays a uniformly random one, so the loss is unchanged (every model here gives the same
        states whatever the left padding, tested), but the encoder no longer works on columns that are
        padding for most rows: on Beauty (mean length 8.9, max 50) this is most of the encoder's cost.
        ``lengths`` (default: the real items per row) are the columns each row needs from the right, e.g. one
        more when a padding input predicts the first item (``first_target``)."""
        groups = min(self.length_groups, items.size(0))
        if groups <= 1:
            return self.encode(items)
        if lengths is None:
            lengths = (items != PAD).sum(1)
        order = torch.argsort(lengths)
        out = None
        for rows in order.chunk(groups):
            width = max(1, int(lengths[rows].max()))
            hidden = self.encode(items[rows, -width:])  # (b, width, D)
            if out is None:
                out = hidden.new_zeros(*items.shape, hidden.size(-1))
            out[rows, -width:] = hidden
        return out

    def item_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., num_items + 1) logits; column 0 (padding) is -inf."""
        weight = self.item_embedding.weight[: self.num_items + 1]
        scores = hidden @ weight.T + self.item_bias
        scores[..., PAD] = float("-inf")
        return scores

    def loss(self, window: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over all items at every non-padding position of a left-padded window (B, W):
        inputs ``window[:, :-1]``, labels ``window[:, 1:]``."""
        inputs, labels = window[:, :-1], window[:, 1:]
        keep = labels != PAD  # a padding input with a real label: the first item, from an empty history
        hidden = self.encode_grouped(inputs, lengths=keep.sum(1))  # (B, L, D)
        logits = self.item_scores(hidden[keep])  # (P, N+1), P = real positions only
        return F.cross_entropy(logits, labels[keep])

    def predict(self, history: torch.Tensor) -> torch.Tensor:
        """(B, L) left-padded histories -> (B, num_items + 1) next-item scores."""
        return self.item_scores(self.encode(history)[:, -1])

    def init_weights(self, std: float = 0.02) -> None:
        """Truncated normal for every weight and bias (LlamaRec's LRURec recipe) except LayerNorms, the
        output item bias (zeros) and recurrence parameters ``*_log`` (they keep their own initialisation)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                if "norm" in name or name.endswith("_log") or name == "item_bias":
                    continue
                truncated_normal_(p, std)


def right_aligned_positions(items: torch.Tensor, max_len: int) -> torch.Tensor:
    """Position ids for a left-padded (B, L) batch such that the last column is always ``max_len - 1``."""
    L = items.size(1)
    return torch.arange(max_len - L, max_len, device=items.device).clamp(min=0).expand_as(items)


def causal_padding_mask(items: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean attention mask (B, 1, L, L), True = may attend: non-padding keys (causal: at or before the
    query), plus the diagonal so a padding query is never left with nothing to attend to."""
    L = items.size(1)
    keys = (items != PAD)[:, None, None, :]  # (B, 1, 1, L)
    eye = torch.eye(L, dtype=torch.bool, device=items.device)
    allowed = keys | eye
    if causal:
        allowed = allowed & torch.ones(L, L, dtype=torch.bool, device=items.device).tril()
    return allowed


def gelu_ffn(d_model: int, dropout: float) -> nn.Sequential:
    """The 4x position-wise feed-forward block of BERT/LRURec (without its residual)."""
    return nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))
