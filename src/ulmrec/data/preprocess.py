"""Preprocessing (paper 5.1.1, LlamaRec recipe; REFERENCE.md "Decisions"): drop items without a title,
iterative k-core on users and items, deterministic ids, stable chronological order, leave-one-out split.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ulmrec.data.dataset import Dataset
from ulmrec.errors import DataError

log = logging.getLogger("ulmrec")


def k_core(pairs: pd.DataFrame, k: int) -> tuple[pd.DataFrame, int]:
    """Iteratively drop users and items with fewer than ``k`` interactions; return (kept rows, rounds)."""
    rounds = 0
    while True:
        rounds += 1
        ucount = pairs["user_id"].map(pairs["user_id"].value_counts())
        icount = pairs["item_id"].map(pairs["item_id"].value_counts())
        keep = (ucount >= k) & (icount >= k)
        if keep.all():
            return pairs, rounds
        pairs = pairs[keep]


def preprocess(raw: pd.DataFrame, items: pd.DataFrame | None, *, k: int = 5,
               drop_items_without_title: bool = True, preferences: pd.DataFrame | None = None,
               reference_index: pd.DataFrame | None = None, source: str = "") -> tuple[Dataset, dict]:
    """Turn raw interactions into a :class:`Dataset`.

    ``raw`` has columns ``user_id``, ``item_id`` (strings) and ``order`` (the row's position in the source,
    used to keep ties stable), and optionally ``timestamp``, ``rating``, ``review``. ``items`` has
    ``item_id`` and ``title``. Returns the dataset and a report of what was dropped.
    """
    report: dict = {"source": source, "raw_interactions": int(len(raw)),
                    "raw_users": int(raw["user_id"].nunique()), "raw_items": int(raw["item_id"].nunique())}
    df = raw.copy()
    for col in ("timestamp", "rating", "review"):
        if col not in df:
            df[col] = pd.NA
    df["timestamp"] = df["timestamp"].astype("Int64")
    df["rating"] = df["rating"].astype("Float32")
    df["review"] = df["review"].astype("string")

    # Chronological, stable: by timestamp where known, then by the tie-break rank if given, then source order.
    tie = ["tie_rank"] if "tie_rank" in df else []
    sort_cols = ["user_id", "timestamp", *tie, "order"] if df["timestamp"].notna().any() else ["user_id", "order"]
    df = df.sort_values(sort_cols, kind="stable", na_position="last")

    before = len(df)
    df = df.drop_duplicates(["user_id", "item_id"], keep="first")
    report["dropped_duplicate_pairs"] = before - len(df)

    if items is None:
        items = pd.DataFrame({"item_id": df["item_id"].unique(), "title": pd.NA})
    items = items.drop_duplicates("item_id", keep="first")
    titles = df["item_id"].map(items.set_index("item_id")["title"])
    if drop_items_without_title:
        has_title = titles.notna() & titles.astype("string").str.strip().ne("")
        report["dropped_items_without_title"] = int(df.loc[~has_title, "item_id"].nunique())
        report["dropped_interactions_without_title"] = int((~has_title).sum())
        df = df[has_title.to_numpy()]

    df, rounds = k_core(df, k)
    report["k_core"] = k
    report["k_core_rounds"] = rounds
    if df.empty:
        raise DataError(f"no interactions left after title filter and {k}-core "
                        f"({report['raw_interactions']} raw interactions); lower data.k_core or check the input")

    user_ids = np.sort(df["user_id"].unique())
    item_ids = np.sort(df["item_id"].unique())
    umap = pd.Series(np.arange(len(user_ids), dtype=np.int32), index=user_ids)
    imap = pd.Series(np.arange(1, len(item_ids) + 1, dtype=np.int32), index=item_ids)

    df = df.assign(user_idx=df["user_id"].map(umap).astype(np.int32),
                   item_idx=df["item_id"].map(imap).astype(np.int32))
    # keep chronological order within user; order users by their new index
    df = df.sort_values(["user_idx"], kind="stable")
    df["position"] = df.groupby("user_idx").cumcount().astype(np.int32)
    length = df.groupby("user_idx")["item_idx"].transform("size")
    split = np.where(df["position"] == length - 1, "test", np.where(df["position"] == length - 2, "valid", "train"))
    df["split"] = pd.Categorical(split, categories=["train", "valid", "test"])
    inter = df[["user_idx", "item_idx", "position", "split", "timestamp", "rating", "review"]].reset_index(drop=True)

    users = pd.DataFrame({"user_idx": np.arange(len(user_ids), dtype=np.int32), "user_id": user_ids.astype(str)})
    it = pd.DataFrame({"item_idx": np.arange(1, len(item_ids) + 1, dtype=np.int32), "item_id": item_ids.astype(str)})
    it = it.merge(items[["item_id", "title"]], on="item_id", how="left")
    it["title"] = it["title"].astype("string")

    prefs = None
    if preferences is not None:
        p = preferences[preferences["user_id"].isin(umap.index)]
        prefs = pd.DataFrame({"user_idx": p["user_id"].map(umap).astype(np.int32).to_numpy(),
                              "preference": p["preference"].astype("string").to_numpy(),
                              "provenance": p.get("provenance", pd.Series([source] * len(p))).astype(str).to_numpy()})
        prefs = prefs.sort_values("user_idx").reset_index(drop=True)
        report["users_with_source_preference"] = int(len(prefs))
    ref = None
    if reference_index is not None:
        r = reference_index[reference_index["user_id"].isin(umap.index)]
        ref = pd.DataFrame({"user_idx": r["user_id"].map(umap).astype(np.int32).to_numpy(),
                            "index": r["index"].to_numpy()}).sort_values("user_idx").reset_index(drop=True)
    ds = Dataset(inter, users, it, prefs, ref)
    report.update({"dropped_users": report["raw_users"] - ds.num_users,
                   "dropped_items": report["raw_items"] - ds.num_items})
    return ds, report
