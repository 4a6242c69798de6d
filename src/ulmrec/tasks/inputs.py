"""What the task builders read besides the dataset: user identities, preferences, display titles.

User identities are a plain mapping ``{user_idx: str}`` so the index variants of paper Fig. 9 are one call:
P-ID (the RQ-VAE tokens ``<a_1> <b_2> <c_3> <d_4>``), N-ID (``user_idx + 1``) and O-ID (the original user id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from ulmrec.artifacts import PREFERENCE_TABLE, REFERENCE_INDEX, SOURCE_PREFERENCES, USER_INDEX
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError, DataError

log = logging.getLogger("ulmrec")

TitleFn = Callable[[str], str]


def numeric_identities(ds: Dataset) -> dict[int, str]:
    """N-ID: ``'1'``, ``'2'``, ... (user_idx + 1, like conventional numerical ids)."""
    return {u: str(u + 1) for u in range(ds.num_users)}


def original_identities(ds: Dataset) -> dict[int, str]:
    """O-ID: the dataset's own user id, e.g. ``'A1GNV0RA0EQSS'``."""
    return dict(zip(ds.users["user_idx"].astype(int), ds.users["user_id"].astype(str), strict=True))


def index_identities(frame: pd.DataFrame, column: str = "tokens", source: str = USER_INDEX.name) -> dict[int, str]:
    """P-ID: a frame with ``user_idx`` and a list of index tokens per user -> ``{user_idx: '<a_1> <b_2> ...'}``."""
    for name in ("user_idx", column):
        if name not in frame:
            raise DataError(f"missing column (columns: {', '.join(map(str, frame.columns))})", source, field=name)
    out = {}
    for row, (u, tokens) in enumerate(zip(frame["user_idx"], frame[column], strict=True)):
        if tokens is None or len(tokens) == 0:
            raise DataError("empty user index", source, line=row + 1, field=column)
        out[int(u)] = " ".join(str(t) for t in tokens)
    return out


def read_identities(kind: str, ds: Dataset, run_dir: str | Path | None = None) -> dict[int, str]:
    """The identity strings of ``tasks.identity``: 'index' reads ``<run_dir>/index/user_index.parquet``,
    'reference' the authors' indices shipped with the data, 'numeric' / 'original' need nothing else."""
    if kind == "numeric":
        return numeric_identities(ds)
    if kind == "original":
        return original_identities(ds)
    if kind == "reference":
        if ds.reference_index is None:
            raise ConfigError(f"tasks.identity=reference, but this dataset ships no {REFERENCE_INDEX.name} "
                              "(only the 'ulmrec' source has the authors' indices); use identity=index")
        return index_identities(ds.reference_index, "index", REFERENCE_INDEX.key)
    if kind == "index":
        path = USER_INDEX.path(run_dir or ".")
        if not path.exists():
            raise ConfigError(f"tasks.identity=index needs {path}; run `ulmrec index` first")
        return index_identities(pd.read_parquet(path), "tokens", str(path))
    raise ConfigError(f"unknown tasks.identity {kind!r}; one of index, reference, numeric, original")


def preferences_from_frame(frame: pd.DataFrame, source: str = "preferences") -> dict[int, str]:
    """``{user_idx: sentence}`` from a frame with ``user_idx``, ``preference`` (and optionally ``status``);
    failed, null and blank sentences are left out."""
    for name in ("user_idx", "preference"):
        if name not in frame:
            raise DataError(f"missing column (columns: {', '.join(map(str, frame.columns))})", source, field=name)
    if "status" in frame:
        frame = frame[frame["status"].astype(str) == "ok"]
    out = {}
    for u, p in zip(frame["user_idx"], frame["preference"], strict=True):
        if isinstance(p, str) and p.strip():
            out[int(u)] = p.strip()
    return out


def load_preferences(ds: Dataset, run_dir: str | Path | None = None) -> dict[int, str]:
    """``<run_dir>/preferences/preferences.parquet`` when the preferences stage ran, else the preferences the
    source shipped (``data/source_preferences.parquet``), else ``{}`` (the preference tasks are then skipped)."""
    path = PREFERENCE_TABLE.path(run_dir or ".")
    if run_dir is not None and path.exists():
        return preferences_from_frame(pd.read_parquet(path), str(path))
    if ds.preferences is not None:
        return preferences_from_frame(ds.preferences, SOURCE_PREFERENCES.key)
    return {}


class Titles:
    """Display titles: ``titles[item_idx]`` after the optional ``title_fn`` (e.g. the ranker's cut to 32
    tokens), computed once per item. An item without a title is shown by its original id."""

    def __init__(self, ds: Dataset, title_fn: TitleFn | None = None):
        self._raw = ds.titles
        self._ids = dict(zip(ds.items["item_idx"].astype(int), ds.items["item_id"].astype(str), strict=True))
        self._fn = title_fn
        self._cache: dict[int, str] = {}
        self.untitled: set[int] = set()

    def __getitem__(self, item: int) -> str:
        item = int(item)
        if item not in self._cache:
            title = self._raw[item]
            if not isinstance(title, str) or not title.strip():
                self.untitled.add(item)
                title = f"item {self._ids.get(item, item)}"
            title = " ".join(title.split())
            self._cache[item] = self._fn(title) if self._fn is not None else title
        return self._cache[item]

    def many(self, items) -> list[str]:
        return [self[i] for i in items]


def check_mapping(name: str, mapping: Mapping[int, str] | None) -> dict[int, str]:
    """Accept ``None`` (= nothing known) or a mapping ``{user_idx: str}``; keys are made ``int``."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{name} must be a mapping {{user_idx: str}}, got {type(mapping).__name__}")
    return {int(k): str(v) for k, v in mapping.items() if v is not None and str(v).strip()}
