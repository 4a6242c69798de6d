"""``ulmrec prepare``: ingest + preprocess into ``<run_dir>/data/`` (see :mod:`ulmrec.data.dataset`)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ulmrec import artifacts as art
from ulmrec.config import Config
from ulmrec.data.ingest import ingest, source_files
from ulmrec.stage import Stage

log = logging.getLogger("ulmrec")


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    ds, report = ingest(cfg.data)
    ds.save(out, extra_stats={"preprocessing": report})
    stats = ds.stats()
    log.info("data: %d users, %d items, %d interactions, mean length %.2f, sparsity %.4f%%", stats["users"],
             stats["items"], stats["interactions"], stats["mean_length"], 100 * stats["sparsity"])
    return stats


STAGE = Stage(
    name=art.DATA,
    command="prepare",
    help="ingest and preprocess the data (title filter, k-core, leave-one-out split)",
    params=lambda cfg: dataclasses.asdict(cfg.data),
    inputs=lambda cfg, run_dir: source_files(cfg.data),
    build=_build,
    writes=(art.INTERACTIONS, art.USERS, art.ITEMS, art.SOURCE_PREFERENCES, art.REFERENCE_INDEX, art.DATA_STATS),
    sources="the source files of data.source (data.path, data.meta_path, ...; the embedded sample by default)",
)
