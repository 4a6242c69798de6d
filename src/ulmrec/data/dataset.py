"""The one internal format every stage reads (written by ``ulmrec prepare`` into ``<run_dir>/data/``).

Files:

- ``interactions.parquet``: one row per interaction, sorted by (user_idx, position):
  ``user_idx`` (int32, 0..U-1), ``item_idx`` (int32, 1..N; 0 is reserved for padding), ``position``
  (int32, 0-based chronological rank within the user), ``split`` ('train' | 'valid' | 'test', leave-one-out:
  the last interaction is test, the one before valid), ``timestamp`` (int64 unix seconds, nullable),
  ``rating`` (float32, nullable), ``review`` (string, nullable).
- ``users.parquet``: ``user_idx``, ``user_id`` (the original id string, e.g. the reviewerID).
- ``items.parquet``: ``item_idx``, ``item_id`` (the original id, e.g. the ASIN), ``title``.
- ``source_preferences.parquet`` (when the source ships them): ``user_idx``, ``preference``, ``provenance``.
- ``reference_index.parquet`` (when the source ships them): ``user_idx``, ``index`` (list of 4 tokens).
- ``stats.json``: users, items, interactions, mean length, sparsity, what preprocessing dropped.

Ids are assigned in sorted order of the original ids (users and items alike), so the same input always gives
the same ids (REFERENCE.md, "Deterministic preprocessing").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.artifacts import DATA, DATA_STATS, INTERACTIONS, ITEMS, REFERENCE_INDEX, SOURCE_PREFERENCES, USERS
from ulmrec.errors import DataError
from ulmrec.io import write_json, write_parquet

PAD = 0


@dataclass
class Dataset:
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    preferences: pd.DataFrame | None = None
    reference_index: pd.DataFrame | None = None

    # ---------------------------------------------------------------- sizes
    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        """Number of real items; item ids run 1..num_items (0 is padding)."""
        return len(self.items)

    @property
    def has_timestamps(self) -> bool:
        return "timestamp" in self.interactions and self.interactions["timestamp"].notna().any()

    @property
    def has_ratings(self) -> bool:
        return "rating" in self.interactions and self.interactions["rating"].notna().any()

    @property
    def has_reviews(self) -> bool:
        return "review" in self.interactions and self.interactions["review"].fillna("").str.strip().ne("").any()

    # ---------------------------------------------------------------- sequences
    @cached_property
    def _offsets(self) -> np.ndarray:
        counts = np.bincount(self.interactions["user_idx"].to_numpy(), minlength=self.num_users)
        return np.concatenate([[0], np.cumsum(counts)])

    def sequence(self, user_idx: int) -> np.ndarray:
        """The user's full chronological item sequence (train + valid + test)."""
        o = self._offsets
        return self.interactions["item_idx"].to_numpy()[o[user_idx]:o[user_idx + 1]]

    @cached_property
    def sequences(self) -> list[np.ndarray]:
        items = self.interactions["item_idx"].to_numpy()
        o = self._offsets
        return [items[o[u]:o[u + 1]] for u in range(self.num_users)]

    def train_sequences(self) -> list[np.ndarray]:
        """Training part of each sequence (all but the last two)."""
        return [s[:-2] for s in self.sequences]

    def valid_targets(self) -> np.ndarray:
        return np.array([s[-2] for s in self.sequences], dtype=np.int64)

    def test_targets(self) -> np.ndarray:
        return np.array([s[-1] for s in self.sequences], dtype=np.int64)

    def history(self, user_idx: int, split: str) -> np.ndarray:
        """What the model may see when predicting ``split``'s target: train for valid, train+valid for test."""
        s = self.sequences[user_idx]
        return {"valid": s[:-2], "test": s[:-1], "train": s[:-2]}[split]

    def column(self, name: str, user_idx: int) -> np.ndarray:
        o = self._offsets
        return self.interactions[name].to_numpy()[o[user_idx]:o[user_idx + 1]]

    @cached_property
    def titles(self) -> np.ndarray:
        """``titles[item_idx]`` (index 0 is the empty padding title)."""
        t = np.empty(self.num_items + 1, dtype=object)
        t[0] = ""
        t[self.items["item_idx"].to_numpy()] = self.items["title"].fillna("").to_numpy()
        return t

    # ---------------------------------------------------------------- stats
    def stats(self) -> dict:
        n = len(self.interactions)
        lengths = np.diff(self._offsets)
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": n,
            "mean_length": round(float(lengths.mean()), 4) if len(lengths) else 0.0,
            "min_length": int(lengths.min()) if len(lengths) else 0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "sparsity": round(1.0 - n / (self.num_users * self.num_items), 6) if n else 1.0,
            "has_timestamps": bool(self.has_timestamps),
            "has_ratings": bool(self.has_ratings),
            "has_reviews": bool(self.has_reviews),
            "has_preferences": self.preferences is not None,
        }

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path, extra_stats: dict | None = None) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_parquet(d / INTERACTIONS.name, self.interactions)
        write_parquet(d / USERS.name, self.users)
        write_parquet(d / ITEMS.name, self.items)
        if self.preferences is not None:
            write_parquet(d / SOURCE_PREFERENCES.name, self.preferences)
        if self.reference_index is not None:
            write_parquet(d / REFERENCE_INDEX.name, self.reference_index)
        write_json(d / DATA_STATS.name, {**self.stats(), **(extra_stats or {})})

    @classmethod
    def load(cls, directory: str | Path) -> Dataset:
        """Load ``<run_dir>/data`` (or any directory written by :meth:`save`)."""
        d = Path(directory)
        if INTERACTIONS.path(d).exists():
            d = d / DATA
        if not (d / INTERACTIONS.name).exists():
            raise DataError(f"no prepared dataset here ({INTERACTIONS.name} missing); run `ulmrec prepare`", d)
        opt = {}
        for artifact, attr in ((SOURCE_PREFERENCES, "preferences"), (REFERENCE_INDEX, "reference_index")):
            if (d / artifact.name).exists():
                opt[attr] = pd.read_parquet(d / artifact.name)
        return cls(pd.read_parquet(d / INTERACTIONS.name), pd.read_parquet(d / USERS.name),
                   pd.read_parquet(d / ITEMS.name), **opt)
