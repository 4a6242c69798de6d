"""Ingestion: any supported source -> raw tables -> :func:`preprocess` -> :class:`Dataset`."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from ulmrec.data.config import DataConfig
from ulmrec.data.dataset import Dataset
from ulmrec.data.preprocess import preprocess
from ulmrec.data.readers import (
    ErrorPolicy,
    read_amazon_meta,
    read_amazon_reviews,
    read_item_order,
    read_openp5,
    read_ratings_csv,
    read_recbole,
    read_timestamps,
    read_ulmrec,
)
from ulmrec.errors import ConfigError, DataError

log = logging.getLogger("ulmrec")


def sample_dir() -> Path:
    """The Beauty subset shipped inside the package (made by ``scripts/make_sample.py``)."""
    return Path(str(resources.files("ulmrec.data") / "sample"))


def source_files(cfg: DataConfig) -> list[Path]:
    """The files a source reads (their digests decide whether the data stage must run again)."""
    if cfg.source == "sample":
        return sorted(p for p in sample_dir().iterdir() if p.suffix in (".gz", ".jsonl"))
    if not cfg.path:
        raise ConfigError(f"data.path is required for data.source={cfg.source!r}")
    files = [Path(cfg.path)]
    if Path(cfg.path).is_dir():
        files = sorted(p for p in Path(cfg.path).iterdir() if p.is_file() and not p.name.endswith(".md"))
    for extra in (cfg.meta_path, cfg.timestamps_path, cfg.item_order_path):
        if extra:
            files.append(Path(extra))
    for f in files:
        if not f.exists():
            raise DataError("file not found", f)
    return files


def read_source(cfg: DataConfig) -> tuple[dict, ErrorPolicy]:
    policy = ErrorPolicy(cfg.on_error)
    src = cfg.source
    if src in ("sample", "ulmrec"):
        tables = read_ulmrec(sample_dir() if src == "sample" else cfg.path, policy)
    elif src == "openp5":
        tables = read_openp5(cfg.path, policy)
    elif src == "recbole":
        tables = read_recbole(cfg.path, policy)
    elif src in ("amazon2014", "amazon2018", "ratings2014"):
        raw = read_ratings_csv(cfg.path, policy) if src == "ratings2014" else read_amazon_reviews(cfg.path, policy)
        items = None
        if cfg.meta_path:
            items = read_amazon_meta(cfg.meta_path, policy, wanted=set(raw["item_id"].unique()))
        tables = {"raw": raw, "items": items, "preferences": None, "reference_index": None}
    else:  # pragma: no cover - the config type rejects it first
        raise ConfigError(f"unknown data.source {src!r}")
    if cfg.timestamps_path:
        ts = read_timestamps(cfg.timestamps_path, policy)
        raw = tables["raw"]
        keys = list(zip(raw["user_id"], raw["item_id"]))
        raw["timestamp"] = [ts.get(k) for k in keys]
        missing = int(raw["timestamp"].isna().sum())
        if missing:
            log.warning("%d of %d interactions have no timestamp in %s", missing, len(raw), cfg.timestamps_path)
    if cfg.item_order_path:
        rank = read_item_order(cfg.item_order_path, policy)
        raw = tables["raw"]
        raw["tie_rank"] = raw["item_id"].map(rank).fillna(len(rank)).astype("int64")
    if tables["raw"].empty:
        raise DataError("no interactions could be read", cfg.path or sample_dir())
    return tables, policy


def ingest(cfg: DataConfig) -> tuple[Dataset, dict]:
    """Read the configured source and preprocess it; return the dataset and a report."""
    tables, policy = read_source(cfg)
    if tables["items"] is None or tables["items"]["title"].notna().sum() == 0:
        if cfg.require_titles:
            raise DataError("the source has no item titles (the ranker needs them); give data.meta_path, or set "
                            "data.require_titles=false to continue without", cfg.path or "sample")
        log.warning("no item titles: the title filter is off")
        drop = False
    else:
        drop = cfg.drop_items_without_title
    ds, report = preprocess(tables["raw"], tables["items"], k=cfg.k_core, drop_items_without_title=drop,
                            preferences=tables["preferences"], reference_index=tables["reference_index"],
                            source=cfg.source)
    report["skipped_lines"] = policy.report()
    if report["skipped_lines"]:
        log.warning("skipped bad input lines: %s", report["skipped_lines"])
    return ds, report
