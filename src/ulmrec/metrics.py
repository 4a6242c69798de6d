"""Ranking metrics for single-target next-item prediction (paper 5.1.3), vectorised.

Everything starts from the 0-based rank of the target in a user's ranked list (``-1`` = the target is not in
the list, e.g. not retrieved). With one relevant item, at cut-off k:

- MRR@k    = 1 / (rank + 1)            if rank < k else 0
- NDCG@k   = 1 / log2(rank + 2)        if rank < k else 0   (the ideal DCG is 1)
- Recall@k = 1                         if rank < k else 0

"Rank" metrics average over the users whose target is among the candidates; "Overall" metrics average over
all users, a target that was not retrieved counting 0, so Overall = Rank x coverage (paper Table 2).

Ties: the target's rank counts every other candidate whose score is greater *or equal*, so constant or
tied scores never flatter a model (a pessimistic tie rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

METRICS = ("MRR", "NDCG", "Recall")


def target_rank(scores: torch.Tensor | np.ndarray, target: torch.Tensor | np.ndarray,
                valid: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """0-based rank of ``target`` in each row of ``scores`` (B, C); -1 where ``target`` is -1.

    ``valid`` (B, C) bool masks out candidates that are not there (padding); they never outrank the target.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    target = torch.as_tensor(target, dtype=torch.long)
    missing = target < 0
    t = target.clamp(min=0)
    tscore = scores.gather(1, t[:, None])  # (B, 1)
    ahead = scores >= tscore
    if valid is not None:
        ahead &= torch.as_tensor(valid, dtype=torch.bool)
    ahead.scatter_(1, t[:, None], False)
    rank = ahead.sum(1)
    rank[missing] = -1
    return rank


def _rank_array(ranks: torch.Tensor | np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(ranks, torch.Tensor):
        return ranks.detach().cpu().numpy().astype(np.float64)
    return np.array(ranks, dtype=np.float64).reshape(-1)


def per_user_metrics(ranks: torch.Tensor | np.ndarray | Sequence[int], ks: Iterable[int] = (5, 10)) -> dict[str, np.ndarray]:
    """Per-user MRR@k, NDCG@k, Recall@k (float64 arrays, one value per given rank; -1 = miss, scoring 0)."""
    r = _rank_array(ranks)
    safe = np.maximum(r, 0.0)  # misses are masked below; this only keeps 1/0 out of the arithmetic
    hit_any = r >= 0
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = hit_any & (r < k)
        out[f"MRR@{k}"] = np.where(hit, 1.0 / (safe + 1), 0.0)
        out[f"NDCG@{k}"] = np.where(hit, 1.0 / np.log2(safe + 2), 0.0)
        out[f"Recall@{k}"] = hit.astype(np.float64)
    return out


def metrics_from_ranks(ranks: torch.Tensor | np.ndarray | Sequence[int], ks: Iterable[int] = (5, 10)) -> dict[str, float]:
    """Mean MRR@k, NDCG@k, Recall@k over all given ranks (-1 = miss)."""
    ks = list(ks)
    values = per_user_metrics(ranks, ks)
    if not len(next(iter(values.values()), ())):
        return {f"{m}@{k}": float("nan") for k in ks for m in METRICS}
    return {name: float(v.mean()) for name, v in values.items()}


def rank_and_overall(ranks_in_candidates: np.ndarray | torch.Tensor, ks: Iterable[int] = (5, 10)) -> dict[str, dict[str, float]]:
    """Paper Table 2: ``ranks_in_candidates`` has one entry per user (all users), the target's rank in the
    ranker's order, or -1 when the retriever did not retrieve it.

    Returns ``{"Rank": ..., "Overall": ..., "coverage": ..., "users": ..., "rank_users": ...}``.
    """
    r = np.asarray(ranks_in_candidates)
    retrieved = r >= 0
    ks = list(ks)
    return {
        "Rank": metrics_from_ranks(r[retrieved], ks),
        "Overall": metrics_from_ranks(r, ks),
        "coverage": float(retrieved.mean()) if len(r) else float("nan"),
        "users": int(len(r)),
        "rank_users": int(retrieved.sum()),
    }


def format_table(rows: dict[str, dict[str, float]], ks: Iterable[int] = (5, 10), digits: int = 4) -> str:
    """A Markdown table: one row per model, columns M@k N@k R@k in the paper's order."""
    ks = list(ks)
    cols = [(f"{m}@{k}", f"{m[0]}@{k}") for k in ks for m in METRICS]
    lines = ["| model | " + " | ".join(c for _, c in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, vals in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{vals.get(key, float('nan')):.{digits}f}" for key, _ in cols) + " |")
    return "\n".join(lines)
