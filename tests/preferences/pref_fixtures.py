"""Helpers of the preferences tests: a tiny prepared run directory whose held-out rows carry marker strings."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset

USER_RE = re.compile(r"\bU(\d{3})\b")


def make_dataset(n_users: int = 6, n_items: int = 5, reviews: bool = True, ratings: bool = True) -> Dataset:
    """``n_users`` users with ``n_items`` interactions each (the last two held out). Every title names its user
    (``U007``) so a server can tell whose prompt it got; held-out titles and reviews carry HELDOUT markers."""
    rows, titles = [], []
    for u in range(n_users):
        for pos in range(n_items):
            split = "train" if pos < n_items - 2 else ("valid" if pos == n_items - 2 else "test")
            item = len(titles) + 1
            if split == "train":
                titles.append(f"Silky argan shampoo {pos} for U{u:03d}")
                review = f"trainreview{pos} lovely smell U{u:03d}"
            else:
                titles.append(f"HELDOUT{split.upper()}TITLE gadget U{u:03d}")
                review = f"HELDOUT{split.upper()}REVIEW U{u:03d}"
            rows.append({"user_idx": u, "item_idx": item, "position": pos, "split": split,
                         "timestamp": 1_000_000 + pos, "rating": float(1 + (u + pos) % 5) if ratings else None,
                         "review": review if reviews else None})
    inter = pd.DataFrame(rows)
    inter["user_idx"] = inter["user_idx"].astype(np.int32)
    inter["item_idx"] = inter["item_idx"].astype(np.int32)
    inter["position"] = inter["position"].astype(np.int32)
    inter["split"] = pd.Categorical(inter["split"], categories=["train", "valid", "test"])
    inter["timestamp"] = inter["timestamp"].astype("Int64")
    inter["rating"] = inter["rating"].astype("Float32")
    inter["review"] = inter["review"].astype("string")
    users = pd.DataFrame({"user_idx": np.arange(n_users, dtype=np.int32),
                          "user_id": [f"A{u:03d}X" for u in range(n_users)]})
    items = pd.DataFrame({"item_idx": np.arange(1, len(titles) + 1, dtype=np.int32),
                          "item_id": [f"B{i:05d}" for i in range(1, len(titles) + 1)],
                          "title": pd.array(titles, dtype="string")})
    return Dataset(inter, users, items)


def user_of(request: dict) -> int:
    """Which user a chat request is about (from the U### tag in its titles)."""
    text = " ".join(m["content"] for m in request["messages"])
    found = {int(x) for x in USER_RE.findall(text)}
    assert len(found) == 1, f"a prompt names {len(found)} users"
    return found.pop()


def fast_overrides(run_dir: Path, base_url: str, cache: Path, **extra) -> list[str]:
    """Settings that keep a test fast: tiny backoffs, short timeouts, no progress bar."""
    opts = {"run_dir": str(run_dir), "preferences.mode": "api", "preferences.base_url": base_url,
            "preferences.model": "local-test-model", "preferences.cache_path": str(cache),
            "preferences.backoff_base": 0.01, "preferences.backoff_max": 0.05, "preferences.timeout": 2.0,
            "preferences.max_retries": 3, "preferences.concurrency": 4, "preferences.progress": False}
    opts.update({f"preferences.{k}" if "." not in k and k != "run_dir" else k: v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in opts.items()]


def api_config(run_dir: Path, base_url: str, cache: Path, **extra):
    return load_config([], fast_overrides(run_dir, base_url, cache, **extra))
