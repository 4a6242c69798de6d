"""A complete tiny run directory: the artifacts the ranker and evaluation stages read (ARCHITECTURE.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.io import write_parquet

LENGTHS = [7, 5, 9, 6, 5, 8, 6, 5]
NUM_ITEMS = 40
LETTERS = 4
NOT_RETRIEVED = {1, 5}  # users whose valid and test targets are left out of their candidates


def make_run_dir(run_dir: Path) -> Path:
    rng = np.random.default_rng(0)
    rows, seqs = [], []
    for u, n in enumerate(LENGTHS):
        items = rng.choice(np.arange(1, NUM_ITEMS + 1), size=n, replace=False)
        seqs.append(items)
        for pos, item in enumerate(items):
            split = "test" if pos == n - 1 else "valid" if pos == n - 2 else "train"
            rows.append((u, int(item), pos, split, 1_600_000_000 + pos, float(1 + (u + pos) % 5), f"review {u}-{pos}"))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "position", "split", "timestamp", "rating", "review"])
    inter = inter.astype({"user_idx": "int32", "item_idx": "int32", "position": "int32", "rating": "Float32"})
    users = pd.DataFrame({"user_idx": np.arange(len(LENGTHS), dtype="int32"),
                          "user_id": [f"U{u:03d}" for u in range(len(LENGTHS))]})
    items = pd.DataFrame({"item_idx": np.arange(1, NUM_ITEMS + 1, dtype="int32"),
                          "item_id": [f"B{i:04d}" for i in range(1, NUM_ITEMS + 1)],
                          "title": [f"Lipstick shade {i} by Brand {i % 7}" for i in range(1, NUM_ITEMS + 1)]})
    Dataset(inter, users, items).save(run_dir / "data")
    for split, back in (("valid", 2), ("test", 1)):
        recs = []
        for u, seq in enumerate(seqs):
            target = int(seq[-back])
            others = [int(i) for i in rng.permutation(np.arange(1, NUM_ITEMS + 1)) if i not in seq][:LETTERS + 2]
            cands = others if u in NOT_RETRIEVED else others[:u % LETTERS] + [target] + others[u % LETTERS:]
            cands = cands[:LETTERS + 2]
            rank = cands.index(target) if target in cands else -1
            recs.append({"user_idx": u, "candidates": cands, "scores": [float(-i) for i in range(len(cands))],
                         "target": target, "target_rank": rank})
        write_parquet(run_dir / "retrieval" / f"candidates_{split}.parquet", pd.DataFrame(recs))
    write_parquet(run_dir / "index" / "user_index.parquet", pd.DataFrame({
        "user_idx": np.arange(len(LENGTHS)), "user_id": users["user_id"],
        "codes": [[u, u + 1, u % 3, 7] for u in range(len(LENGTHS))],
        "tokens": [[f"<a_{u}>", f"<b_{u + 1}>", f"<c_{u % 3}>", "<d_7>"] for u in range(len(LENGTHS))]}))
    write_parquet(run_dir / "preferences" / "preferences.parquet", pd.DataFrame({
        "user_idx": np.arange(len(LENGTHS)), "preference": [f"Likes shade {u} lipstick." for u in range(len(LENGTHS))],
        "status": "ok", "source": "test", "error": None}))
    return run_dir


def tiny_config(run_dir: Path, model_dir: Path, *overrides: str):
    return load_config(None, [f"run_dir={run_dir}", f"ranker.model={model_dir}", "device=cpu",
                              f"tasks.num_candidates={LETTERS}", f"retrieval.num_candidates={LETTERS + 2}",
                              "tasks.max_history=3", "ranker.max_steps=4", "ranker.eval_every=2",
                              "ranker.batch_size=2", "ranker.warmup_steps=1", "ranker.num_threads=1",
                              "ranker.max_length=512", *overrides])
