"""Measures of an index: codebook use and perplexity per level, and whether shared codes mean similar users."""

from __future__ import annotations

import numpy as np


def codebook_usage(codes: np.ndarray, codebook_size: int) -> list[dict]:
    """Per level: codes used, the fraction of the codebook used, and perplexity exp(H(code distribution))
    (codebook_size when perfectly balanced, 1 when every user has the same code)."""
    out = []
    for level in range(codes.shape[1]):
        counts = np.bincount(codes[:, level], minlength=codebook_size)
        p = counts[counts > 0] / max(counts.sum(), 1)
        out.append({"level": level + 1, "used": int((counts > 0).sum()),
                    "usage": float((counts > 0).mean()), "perplexity": float(np.exp(-(p * np.log(p)).sum()))})
    return out


def _pair_cosine_sum(e: np.ndarray) -> float:
    s = e.sum(0)
    return float(s @ s - (e * e).sum())  # sum over ordered pairs i != j of cos(e_i, e_j)


def shared_code_similarity(emb: np.ndarray, codes: np.ndarray, depth: int) -> dict:
    """Mean cosine similarity of ``emb`` over pairs of users who share their first ``depth`` codes, next to the
    mean over all pairs of users (what random pairs give). Exact (no sampling): for a group with embeddings E,
    the sum over pairs is (||sum E||^2 - sum ||e||^2) / 2."""
    e = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    n = len(e)
    all_pairs = n * (n - 1)
    random = _pair_cosine_sum(e) / all_pairs if all_pairs else float("nan")
    _, group = np.unique(codes[:, :depth], axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    total, pairs = 0.0, 0
    for members in np.split(order, bounds):
        m = len(members)
        if m > 1:
            total += _pair_cosine_sum(e[members])
            pairs += m * (m - 1)
    shared = total / pairs if pairs else float("nan")
    return {"depth": depth, "shared_pairs": pairs // 2, "mean_cosine_shared": shared,
            "mean_cosine_random": random, "lift": shared - random}
