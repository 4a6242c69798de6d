"""Full-ranking evaluation and top-k candidate generation (paper 5.1.4: LRURec's top-20, history excluded).

Every user's next-item scores over all items are computed in batches of similar history length; the items
of the user's *whole* history (not only the last ``max_len`` the model reads) and the padding id are set to
-inf, then the target's rank over all items (``ulmrec.metrics.target_rank``, pessimistic ties)
and the top-k items are taken. Nothing of size users x items is ever held at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ulmrec.metrics import metrics_from_ranks, target_rank
from ulmrec.retrieval.base import SequentialRecommender
from ulmrec.retrieval.data import bucketed_batches, left_pad


def mask_history(scores: torch.Tensor, histories: Sequence[np.ndarray]) -> torch.Tensor:
    """Set each row's history items to -inf in place (B, N+1); padding (column 0) too."""
    full = left_pad(histories).to(scores.device)  # (B, longest history), 0 = padding
    scores.scatter_(1, full, float("-inf"))
    scores[:, 0] = float("-inf")
    return scores


@torch.no_grad()
def rank_next_items(model: SequentialRecommender, histories: Sequence[np.ndarray], targets: np.ndarray,
                    max_len: int, k: int = 20, batch_size: int = 1024, device: str = "cpu",
                    desc: str | None = None) -> dict[str, np.ndarray]:
    """Score every item for every history; return ``rank`` (target's 0-based rank over all non-history items),
    ``candidates`` (U, k) int32 in score order, ``scores`` (U, k) float32 and ``target_rank`` (U,) int32
    (the target's position among the candidates, -1 if not retrieved)."""
    was_training = model.training
    model.eval()
    n = len(histories)
    k = min(k, model.num_items)
    lengths = np.array([min(len(h), max_len) for h in histories])
    ranks = np.empty(n, dtype=np.int64)
    cands = np.empty((n, k), dtype=np.int32)
    cand_scores = np.empty((n, k), dtype=np.float32)
    batches = bucketed_batches(lengths, batch_size)
    for idx in tqdm(batches, desc=desc or "ranking", leave=False, disable=desc is None):
        hist = [histories[i] for i in idx]
        inputs = left_pad([h[-max_len:] for h in hist], max(1, int(lengths[idx].max()))).to(device)
        scores = mask_history(model.predict(inputs).float(), hist)  # (B, N+1)
        tgt = torch.as_tensor(targets[idx], device=device)
        ranks[idx] = target_rank(scores, tgt).cpu().numpy()
        top = scores.topk(k, dim=1)
        cands[idx] = top.indices.cpu().numpy()
        cand_scores[idx] = top.values.cpu().numpy()
    if was_training:
        model.train()
    hit = cands == targets[:, None]
    in_cands = np.where(hit.any(1), hit.argmax(1), -1).astype(np.int32)
    return {"rank": ranks, "candidates": cands, "scores": cand_scores, "target_rank": in_cands}


def candidates_frame(user_idx: np.ndarray, result: dict[str, np.ndarray], targets: np.ndarray,
                     position: np.ndarray | None = None) -> pd.DataFrame:
    """The ``candidates_<split>.parquet`` table of the artifact contract (docs/ARCHITECTURE.md)."""
    cols = {"user_idx": np.asarray(user_idx, dtype=np.int32)}
    if position is not None:
        cols["position"] = np.asarray(position, dtype=np.int32)
    cols.update({
        "candidates": list(result["candidates"].astype(np.int32)),
        "scores": list(result["scores"].astype(np.float32)),
        "target": np.asarray(targets, dtype=np.int32),
        "target_rank": result["target_rank"].astype(np.int32),
    })
    return pd.DataFrame(cols)


def full_ranking_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, float]:
    """MRR/NDCG/Recall at every k over all users (the retriever's own full-ranking numbers)."""
    return metrics_from_ranks(ranks, ks=list(ks))
