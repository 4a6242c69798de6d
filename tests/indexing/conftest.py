"""Fixtures of the indexing tests: small random embeddings and a tiny prepared dataset on disk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ulmrec.data.dataset import Dataset


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def embeddings():
    """60 users in 3 clusters, 0..4 reviews each (users 0 and 1: none; user 2: one), dim 16."""
    rng = np.random.default_rng(0)
    centres = unit_rows(rng, 3, 16)
    counts = rng.integers(1, 5, size=60)
    counts[:2], counts[2] = 0, 1
    owners = np.repeat(np.arange(60), counts)
    review = centres[owners % 3] + 0.1 * rng.normal(size=(len(owners), 16)).astype(np.float32)
    ids = unit_rows(rng, 60, 16)
    return review.astype(np.float32), ids, owners


def _tiny_dataset(reviews: bool = True, preferences: bool = False, users: int = 12) -> Dataset:
    """``users`` users with 5 interactions each (3 train, valid, test); review text on every interaction."""
    rows = []
    for u in range(users):
        for pos in range(5):
            item = 1 + (u + pos) % 7
            split = "train" if pos < 3 else ("valid" if pos == 3 else "test")
            text = f"user {u} {split} review: {'lipstick' if u % 2 else 'shampoo'} number {pos}" if reviews else None
            rows.append((u, item, pos, split, None, None, text))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "position", "split", "timestamp", "rating", "review"])
    inter = inter.astype({"user_idx": "int32", "item_idx": "int32", "position": "int32", "split": "string",
                          "review": "string"})
    ds = Dataset(inter, pd.DataFrame({"user_idx": np.arange(users, dtype=np.int32),
                               "user_id": [f"A{u:05d}X" for u in range(users)]}),
                 pd.DataFrame({"item_idx": range(1, 8), "item_id": [f"I{i}" for i in range(1, 8)],
                               "title": [f"Title {i}" for i in range(1, 8)]}))
    if preferences:
        ds.preferences = pd.DataFrame({"user_idx": range(users), "preference": [f"likes thing {u}" for u in range(users)],
                                       "provenance": "test"})
    return ds


@pytest.fixture
def tiny_dataset():
    """Factory: ``tiny_dataset(reviews=True, preferences=False, users=12)`` -> Dataset."""
    return _tiny_dataset


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Embedding caches of tests go to a temporary directory, never the user's cache."""
    monkeypatch.setenv("ULMREC_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread is faster than two on a shared CPU (and the stage's default)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
