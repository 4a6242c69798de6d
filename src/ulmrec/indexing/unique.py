"""Unique user indices: collision statistics, a deterministic resolution step, and the token format.

Residual quantization alone lets two users share all their codes (LC-Rec reports collision rates near 0.3).
This project guarantees uniqueness (REFERENCE.md, "Uniqueness is guaranteed"): in every group of users that
share a full index, the user closest to the shared code (smallest final residual, then lowest user_idx) keeps
it; every other user moves, in that order, to the nearest free index: first another code on the last level
under the same prefix, and only when all of those are taken, a different code one level up (the nearest one
whose subtree still has room), descending greedily to the nearest free leaf. Nobody who did not collide
moves, and the result depends only on the inputs.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def index_tokens(codes: np.ndarray) -> list[list[str]]:
    """``codes`` (U, L) -> ``[["<a_167>", "<b_199>", ...], ...]`` (paper 4.1 format; level l is letter l)."""
    letters = [chr(ord("a") + level) for level in range(codes.shape[1])]
    return [[f"<{letters[level]}_{int(c)}>" for level, c in enumerate(row)] for row in codes]


def collision_stats(codes: np.ndarray) -> dict:
    """How many users share their full index with another user."""
    n = int(codes.shape[0])
    if n == 0:
        return {"users": 0, "unique_indices": 0, "collision_rate": 0.0, "users_in_collisions": 0,
                "largest_group": 0}
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    group = counts[inverse.reshape(-1)]
    return {"users": n, "unique_indices": int(len(counts)), "collision_rate": 1.0 - len(counts) / n,
            "users_in_collisions": int((group > 1).sum()), "largest_group": int(counts.max())}


def resolve_collisions(codes: np.ndarray, residuals: np.ndarray, codebooks: np.ndarray) -> tuple[np.ndarray, dict]:
    """Make every row of ``codes`` (U, L) unique.

    ``residuals`` (U, L, D): the residual each level quantized (r_l); ``codebooks`` (L, K, D).
    Returns the new codes and ``{"moved": n, "moved_at_level": [n per level of the first changed code]}``.
    """
    codes = np.asarray(codes, dtype=np.int64).copy()
    num_users, levels = codes.shape
    k = codebooks.shape[1]
    if num_users > k ** levels:
        raise ValueError(f"{num_users} users cannot have unique indices with {levels} levels of {k} codes "
                         f"({k ** levels} indices); raise index.codebook_size or index.levels")
    residuals = np.asarray(residuals, dtype=np.float64)
    books = np.asarray(codebooks, dtype=np.float64)
    final_err = np.linalg.norm(residuals[:, -1] - books[levels - 1][codes[:, -1]], axis=1)
    order = np.lexsort((np.arange(num_users), final_err, *codes.T[::-1]))  # by index, then error, then id
    capacity = [k ** (levels - d) for d in range(levels + 1)]  # leaves under a prefix of length d

    used: Counter = Counter()  # prefix tuple -> occupied leaves below it
    movers = []
    seen: set[tuple] = set()
    for u in order:
        key = tuple(codes[u])
        if key in seen:
            movers.append(u)
        else:
            seen.add(key)
            _occupy(used, key)

    moved_at = [0] * levels
    for u in movers:
        key = tuple(codes[u])
        depth = next(d for d in range(levels - 1, -1, -1) if used[key[:d]] < capacity[d])
        prefix = list(key[:depth])
        r = residuals[u, depth]
        for level in range(depth, levels):
            dist = ((books[level] - r) ** 2).sum(1)  # (K,)
            for c in np.argsort(dist, kind="stable"):
                if used[(*prefix, int(c))] < capacity[level + 1]:
                    break
            prefix.append(int(c))
            r = r - books[level][c]
        codes[u] = prefix
        _occupy(used, tuple(prefix))
        moved_at[depth] += 1
    return codes, {"moved": len(movers), "moved_at_level": moved_at}


def _occupy(used: Counter, key: tuple) -> None:
    for d in range(len(key) + 1):
        used[key[:d]] += 1
