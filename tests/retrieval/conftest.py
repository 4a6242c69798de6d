"""A tiny synthetic dataset with a learnable pattern: each user walks the item ring 1..N with a fixed stride."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ulmrec.data.dataset import Dataset


def ring_dataset(num_users: int = 60, num_items: int = 30, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(num_users):
        n = int(rng.integers(5, 12))
        start = int(rng.integers(0, num_items))
        stride = 1 + u % 2
        seq = [(start + stride * t) % num_items + 1 for t in range(n)]
        if len(set(seq)) < n:
            seq = [(start + t) % num_items + 1 for t in range(n)]
        for pos, item in enumerate(seq):
            split = "test" if pos == n - 1 else "valid" if pos == n - 2 else "train"
            rows.append((u, item, pos, split))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "position", "split"]).astype(
        {"user_idx": "int32", "item_idx": "int32", "position": "int32"})
    users = pd.DataFrame({"user_idx": np.arange(num_users, dtype=np.int32),
                          "user_id": [f"U{u}" for u in range(num_users)]})
    items = pd.DataFrame({"item_idx": np.arange(1, num_items + 1, dtype=np.int32),
                          "item_id": [f"I{i}" for i in range(1, num_items + 1)],
                          "title": [f"item {i}" for i in range(1, num_items + 1)]})
    return Dataset(inter, users, items)


@pytest.fixture
def ring() -> Dataset:
    return ring_dataset()


@pytest.fixture
def ring_run_dir(tmp_path, ring):
    ring.save(tmp_path / "data")
    return tmp_path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the cores)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
