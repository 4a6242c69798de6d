"""The stage's output table, ``preferences.parquet``: one row per user, a sentence or a recorded failure."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ulmrec.data.dataset import Dataset
from ulmrec.errors import DataError


def read_ok_preferences(path) -> pd.DataFrame:
    """The successful rows of a ``preferences.parquet`` (columns user_idx, preference, ...); a file without
    those two columns is a DataError naming it."""
    df = pd.read_parquet(path)
    missing = {"user_idx", "preference"} - set(df.columns)
    if missing:
        raise DataError(f"columns {sorted(missing)} missing", path)
    return df[df["status"] == "ok"] if "status" in df.columns else df


@dataclass
class PreferenceRecord:
    user_idx: int
    preference: str | None
    """The sentence; None when no preference could be had."""
    status: str
    """'ok' or 'failed'."""
    source: str
    """Where it came from: 'import:<file>', 'api:<model>:<prompt version>' or 'offline:<version>'."""
    error: str | None = None
    """Why it failed (None when ok)."""

    @classmethod
    def ok(cls, user_idx: int, preference: str, source: str) -> PreferenceRecord:
        return cls(user_idx, preference, "ok", source, None)

    @classmethod
    def failed(cls, user_idx: int, source: str, error: str) -> PreferenceRecord:
        return cls(user_idx, None, "failed", source, error)


def to_frame(records: list[PreferenceRecord]) -> pd.DataFrame:
    records = sorted(records, key=lambda r: r.user_idx)
    return pd.DataFrame({
        "user_idx": np.array([r.user_idx for r in records], dtype=np.int32),
        "preference": pd.array([r.preference for r in records], dtype="string"),
        "status": pd.array([r.status for r in records], dtype="string"),
        "source": pd.array([r.source for r in records], dtype="string"),
        "error": pd.array([r.error for r in records], dtype="string"),
    })


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", html.unescape(text).lower())


def _quotes(preference: str, title: str, n: int) -> bool | None:
    head = _words(title)[:n]
    if len(head) < n:
        return None
    return f" {' '.join(head)} " in f" {' '.join(_words(preference))} "


def leak_probe(ds: Dataset, frame: pd.DataFrame, n_words: int = 3) -> dict:
    """How often a user's sentence quotes the first ``n_words`` words of their *test* item's title, next to how
    often it quotes those of their *first training* item. A sentence made from training data only should quote
    the test title no more often than chance; a much higher rate points at leaked held-out reviews."""
    ok = frame[frame["status"] == "ok"]
    seqs, titles = ds.sequences, ds.titles
    hits = {"test": [], "first_train": []}
    for u, pref in zip(ok["user_idx"].to_numpy(), ok["preference"].to_numpy(dtype=object)):
        seq = seqs[int(u)]
        if len(seq) < 3:
            continue
        for name, item in (("test", seq[-1]), ("first_train", seq[0])):
            q = _quotes(pref, str(titles[item]), n_words)
            if q is not None:
                hits[name].append(q)
    return {"n_words": n_words,
            **{f"{k}_title_quoted_rate": round(float(np.mean(v)), 5) if v else None for k, v in hits.items()},
            **{f"{k}_users_checked": len(v) for k, v in hits.items()}}
