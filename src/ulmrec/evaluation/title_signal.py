"""Title similarity to the user's history: a training-free content score for the retriever's candidates
(the embeddings and the score live in :mod:`ulmrec.indexing.titles`, ground for the ranker's teacher too).

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

from ulmrec.indexing.titles import HOW, title_embeddings, title_similarity

__all__ = ["HOW", "text_similarity", "title_embeddings", "title_similarity"]


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
