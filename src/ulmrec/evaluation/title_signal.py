"""Title similarity to the user's history: a training-free content score for the retriever's candidates.

Every item title is embedded once with a sentence encoder (``evaluate.title_encoder``, all-MiniLM-L6-v2 by
default, the index stage's encoder); a candidate's score is the cosine similarity of its title to the user's last
``history`` history titles (the most similar one, ``max``; or the mean history vector, ``mean``). The retriever
(LRURec) sees item ids only, so this is signal from the text that the retriever cannot have; the evaluation's
"Retriever + title similarity" row (beyond the paper, no LLM) shows how much of it a ranker could add, and
"ULMRec + retriever + title similarity" whether the LLM adds anything beyond it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ulmrec.data.dataset import Dataset
from ulmrec.indexing.encoder import TextEncoder

HOW = ("max", "mean")


def title_embeddings(ds: Dataset, encoder: str = "all-MiniLM-L6-v2",
                     encode: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
    """``(num_items + 1, dim)`` float64 unit rows per item_idx (row 0, the padding item, is zero)."""
    if encode is None:
        encode = TextEncoder(encoder).encode  # loads sentence-transformers on first use
    emb = np.asarray(encode([str(t) for t in ds.titles]), dtype=np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    emb[0] = 0.0
    return emb


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
        h = emb[np.asarray(ds.history(int(u), split)[-history:], dtype=np.int64)]
        e = emb[np.asarray(cands, dtype=np.int64)]
        if not len(h):
            out[i, :len(e)] = 0.0
        elif how == "max":
            out[i, :len(e)] = (e @ h.T).max(1)
        else:
            m = h.mean(0)
            out[i, :len(e)] = e @ (m / max(float(np.linalg.norm(m)), 1e-12))
    return out


def text_similarity(texts: Sequence[str | None], candidates: Sequence[Sequence[int]], emb: np.ndarray,
                    encode: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``(N, C)``: each candidate's cosine similarity to the text of its row (e.g. the user's preference sentence),
    embedded with ``encode`` (the encoder of ``emb``); 0 for a row without text, ``-inf`` past a shorter list."""
    width = max((len(c) for c in candidates), default=0)
    out = np.full((len(candidates), width), -np.inf)
    have = [i for i, t in enumerate(texts) if t and str(t).strip()]
    vec = np.zeros((len(candidates), emb.shape[1]))
    if have:
        e = np.asarray(encode([str(texts[i]) for i in have]), dtype=np.float64)
        vec[have] = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    for i, cands in enumerate(candidates):
        out[i, :len(cands)] = emb[np.asarray(cands, dtype=np.int64)] @ vec[i]
    return out
