"""Which texts describe each user (paper 4.1: "their reviews W_u = [w_1, ..., w_n]").

Only training-period text is used (``split == 'train'``): no review of the validation or test item.
Where a user has no such review (the shared Beauty and Games have no review text at all), a fallback is used,
per user, in this order: the user's preference sentence from the preferences stage
(``<run_dir>/preferences/preferences.parquet``, rows with status 'ok'), else the one shipped with the data
(``data/source_preferences.parquet``), else the titles of the user's training items (each title one text),
else nothing (the user is then indexed from the ID alone).
Every run logs, loudly, how many users got each source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.artifacts import DATA, PREFERENCE_TABLE, SOURCE_PREFERENCES
from ulmrec.data.dataset import Dataset
from ulmrec.errors import DataError
from ulmrec.preferences.table import read_ok_preferences

log = logging.getLogger("ulmrec")

#: Sources in fallback order for ``text_source='auto'``.
SOURCES = ("reviews", "preferences", "source_preferences", "titles", "none")


@dataclass
class UserTexts:
    """Texts grouped by user: ``texts[r]`` belongs to user ``owners[r]``; ``source[u]`` says where u's came from."""

    texts: list[str]
    owners: np.ndarray
    source: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)


def load_preferences(run_dir: str | Path | None, ds: Dataset) -> list[tuple[str, dict[int, str]]]:
    """Preference sentences by source, in order of preference: ``[("preferences", {user_idx: sentence}),
    ("source_preferences", {...})]``: the preferences stage's successful rows, then the data's own file."""
    out = []
    path = PREFERENCE_TABLE.path(run_dir) if run_dir is not None else None
    if path is not None and path.exists():
        out.append(("preferences", _as_map(read_ok_preferences(path))))
    elif run_dir is not None:
        log.warning("index: %s does not exist (preferences stage not run); using the data's own preference "
                    "sentences where there are any", path)
    if ds.preferences is not None:
        out.append(("source_preferences", _as_map(ds.preferences)))
    return out


def _as_map(df: pd.DataFrame) -> dict[int, str]:
    df = df[df["preference"].notna()]
    text = df["preference"].astype(str).str.strip()
    keep = text.ne("")
    return dict(zip(df["user_idx"][keep].astype(int), text[keep], strict=True))


def collect_user_texts(ds: Dataset, text_source: str = "auto", run_dir: str | Path | None = None) -> UserTexts:
    """The texts of every user under ``text_source``: 'auto' (reviews, then the fallbacks), 'reviews',
    'preferences' (then titles) or 'titles'."""
    inter = ds.interactions
    train = inter[inter["split"] == "train"]
    per_user: list[list[str]] = [[] for _ in range(ds.num_users)]
    source = np.full(ds.num_users, "none", dtype=object)

    if text_source in ("auto", "reviews"):
        if text_source == "reviews" and not ds.has_reviews:
            raise DataError("the dataset has no review text; use index.text_source=auto (falls back to "
                            "preferences, then titles) or preferences/titles", Path(run_dir or ".") / DATA)
        if "review" in train.columns:
            rev = train[train["review"].notna()]
            text = rev["review"].astype(str).str.strip()
            rev, text = rev[text.ne("")], text[text.ne("")]
            for u, t in zip(rev["user_idx"].to_numpy(), text, strict=True):
                per_user[u].append(t)
                source[u] = "reviews"

    if text_source in ("auto", "preferences"):
        found = 0
        for where, prefs in load_preferences(run_dir, ds):
            for u, t in prefs.items():
                if 0 <= u < ds.num_users and not per_user[u]:
                    per_user[u].append(t)
                    source[u] = where
                    found += 1
        if text_source == "preferences" and not found:
            log.warning("index: no preference sentences found (neither the preferences stage's output nor %s)",
                        SOURCE_PREFERENCES.key)

    if text_source in ("auto", "preferences", "titles"):
        titles = ds.titles
        for u, i in zip(train["user_idx"].to_numpy(), train["item_idx"].to_numpy(), strict=True):
            if source[u] in ("none", "titles"):
                t = str(titles[i] or "").strip()
                if t:
                    per_user[u].append(t)
                    source[u] = "titles"

    texts = [t for ts in per_user for t in ts]
    owners = np.repeat(np.arange(ds.num_users, dtype=np.int64), [len(ts) for ts in per_user])
    counts = {s: int((source == s).sum()) for s in SOURCES}
    counts = {s: c for s, c in counts.items() if c}
    report_sources(counts, ds.num_users, text_source)
    return UserTexts(texts, owners, source, counts)


def report_sources(counts: dict[str, int], num_users: int, text_source: str) -> None:
    parts = ", ".join(f"{s}: {c}" for s, c in counts.items())
    if counts.get("reviews", 0) == num_users:
        log.info("index: text source = training reviews for all %d users", num_users)
        return
    banner = "=" * 78
    log.warning("%s\nindex: text_source=%s; NOT every user has training reviews. Users per source: %s\n"
                "(preferences = preferences stage, source_preferences = sentences shipped with the data, "
                "titles = training-history titles, none = user ID only)\n%s", banner, text_source, parts, banner)
