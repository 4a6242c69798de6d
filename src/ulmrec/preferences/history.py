"""What a preference may be built from: each user's training-period interactions, nothing else.

This is the one place where the preferences stage reads interactions, and it keeps only ``split == 'train'``
rows, so no validation or test item (its title, rating or review) can reach a prompt or the offline
extractor (REFERENCE.md, "Decisions": no leakage).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ulmrec.data.dataset import Dataset


@dataclass(frozen=True)
class UserHistory:
    """One user's training interactions in chronological order (whitespace collapsed, HTML entities such as
    ``&amp;`` decoded)."""

    user_idx: int
    user_id: str
    titles: tuple[str, ...]
    ratings: tuple[float | None, ...]
    reviews: tuple[str | None, ...]

    @property
    def has_reviews(self) -> bool:
        return any(r for r in self.reviews)

    @property
    def has_ratings(self) -> bool:
        return any(r is not None for r in self.ratings)


def _clean_text(values: pd.Series) -> list[str | None]:
    out = []
    for v in values.astype("string").to_numpy(dtype=object, na_value=None):
        v = " ".join(html.unescape(v).split()) if isinstance(v, str) else None
        out.append(v or None)
    return out


def training_histories(ds: Dataset) -> Iterator[UserHistory]:
    """Yield every user's :class:`UserHistory`, in ``user_idx`` order (users with no training row get an empty
    history)."""
    inter = ds.interactions
    train = inter[(inter["split"] == "train").to_numpy()].sort_values(["user_idx", "position"], kind="stable")
    users = train["user_idx"].to_numpy()
    titles = ds.titles[train["item_idx"].to_numpy()]
    titles = [" ".join(html.unescape(str(t)).split()) for t in titles]  # Amazon titles carry &amp; &quot;
    rating_col = train["rating"] if "rating" in train else pd.Series([pd.NA] * len(train))
    ratings = [None if pd.isna(r) else float(r) for r in rating_col.to_numpy(dtype=object)]
    review_col = train["review"] if "review" in train else pd.Series([pd.NA] * len(train))
    reviews = _clean_text(review_col)
    bounds = np.searchsorted(users, np.arange(ds.num_users + 1))
    user_ids = ds.users.sort_values("user_idx")["user_id"].astype(str).to_numpy()
    for u in range(ds.num_users):
        a, b = bounds[u], bounds[u + 1]
        yield UserHistory(u, str(user_ids[u]), tuple(titles[a:b]), tuple(ratings[a:b]), tuple(reviews[a:b]))
