"""A tiny synthetic Dataset built from DataFrames: 6 users, 60 items, ratings, unique titles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ulmrec.data.dataset import Dataset

NUM_ITEMS = 60
LENGTHS = [8, 5, 12, 25, 6, 5]


def make_dataset(lengths=LENGTHS, num_items=NUM_ITEMS, ratings=True, titles=True, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for u, n in enumerate(lengths):
        items = rng.choice(np.arange(1, num_items + 1), size=n, replace=False)
        for pos, item in enumerate(items):
            split = "test" if pos == n - 1 else "valid" if pos == n - 2 else "train"
            rating = float(1 + (u + pos) % 5) if ratings else None
            rows.append((u, int(item), pos, split, 1_600_000_000 + pos, rating, f"review {u}-{pos}"))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "position", "split", "timestamp", "rating", "review"])
    inter = inter.astype({"user_idx": "int32", "item_idx": "int32", "position": "int32", "rating": "Float32"})
    users = pd.DataFrame({"user_idx": np.arange(len(lengths), dtype="int32"),
                          "user_id": [f"U{u:03d}X" for u in range(len(lengths))]})
    items = pd.DataFrame({"item_idx": np.arange(1, num_items + 1, dtype="int32"),
                          "item_id": [f"B{i:04d}" for i in range(1, num_items + 1)],
                          "title": [f"Title-{i}-x" if titles else None for i in range(1, num_items + 1)]})
    return Dataset(inter, users, items)


def title(i: int) -> str:
    return f"Title-{i}-x"


@pytest.fixture
def make_ds():
    """The factory itself, for variants (no ratings, no titles, few items)."""
    return make_dataset


@pytest.fixture
def ds() -> Dataset:
    return make_dataset()


@pytest.fixture
def identities(ds) -> dict[int, str]:
    return {u: f"<a_{u}> <b_{u + 1}> <c_{u + 2}> <d_{u + 3}>" for u in range(ds.num_users)}


@pytest.fixture
def preferences(ds) -> dict[int, str]:
    return {u: f"The user {u} prefers things." for u in range(ds.num_users)}
