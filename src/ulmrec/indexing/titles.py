"""Item-title embeddings and a candidate's title similarity to a user's history (a training-free content score).

Every item title is embedded once with a sentence encoder (all-MiniLM-L6-v2 by default, the index stage's
encoder); a candidate's score is the cosine similarity of its title to the user's last ``history`` titles (the
most similar one, ``max``; or the mean history vector, ``mean``). Ground for two later stages: the ranker's
distillation teacher (``ranker.distill_title_weight``) and the evaluation's "Retriever + title similarity" row
(:mod:`ulmrec.evaluation.title_signal`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ulmrec.data.dataset import Dataset
from ulmrec.indexing.encoder import TextEncoder

HOW = ("max", "mean")


def title_embeddings(ds: Dataset, encoder: str = "all-MiniLM-L6-v2",
                     encode: Callable[[list[str]], np.ndarray] | None = None,
                     setting: str = "evaluate.title_encoder") -> np.ndarray:
    """``(num_items + 1, dim)`` float64 unit rows per item_idx (row 0, the padding item, is zero); ``setting``
    names the encoder's setting in the error when it cannot be loaded."""
    if encode is None:
        encode = TextEncoder(encoder, setting=setting).encode  # loads sentence-transformers on first use
    emb = np.asarray(encode([str(t) for t in ds.titles]), dtype=np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    emb[0] = 0.0
    return emb


def similarity_to(emb: np.ndarray, history: Sequence[int], cands: Sequence[int], how: str = "max") -> np.ndarray:
    """``(len(cands),)``: each candidate's cosine similarity to the ``history`` items' titles (0 without one)."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    h = emb[np.asarray(history, dtype=np.int64)]
    e = emb[np.asarray(cands, dtype=np.int64)]
    if not len(h):
        return np.zeros(len(e))
    if how == "max":
        return (e @ h.T).max(1)
    m = h.mean(0)
    return e @ (m / max(float(np.linalg.norm(m)), 1e-12))


def title_similarity(ds: Dataset, users: Sequence[int], candidates: Sequence[Sequence[int]], split: str,
                     emb: np.ndarray, history: int, how: str = "max") -> np.ndarray:
    """``(N, C)``: each candidate's cosine similarity to user ``users[i]``'s last ``history`` titles of what the
    model may see for ``split`` (``Dataset.history``); ``-inf`` past a shorter list."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, got {how!r}")
    if history < 1:
        raise ValueError(f"history must be >= 1, got {history}")
    width = max((len(c) for c in candidates), default=0)
    out = np.full((len(users), width), -np.inf)
    for i, (u, cands) in enumerate(zip(users, candidates, strict=True)):
        out[i, :len(cands)] = similarity_to(emb, ds.history(int(u), split)[-history:], cands, how)
    return out
