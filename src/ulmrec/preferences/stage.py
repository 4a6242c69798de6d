"""``ulmrec preferences``: one preference sentence per user (paper 4.2.2) -> ``<run_dir>/preferences/``.

``preferences.parquet`` (user_idx, preference, status, source, error) and ``report.json`` (counts, provenance,
errors, leakage probe). Modes: ``import`` (sentences shipped with the data, or a JSON-lines file), ``api`` (an
OpenAI-compatible server, cached in SQLite), ``offline`` (a deterministic keyword stand-in), ``titles`` (the
leak-free source for data without reviews: training-period titles only). ``report.json`` says what the sentences
may have seen (``provenance``, ``leak_free``); ``ulmrec audit`` measures it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path

from ulmrec import artifacts as art
from ulmrec.config import Config
from ulmrec.data.dataset import Dataset
from ulmrec.io import fingerprint, write_json, write_parquet
from ulmrec.preferences.cache import PreferenceCache
from ulmrec.preferences.history import UserHistory, training_histories
from ulmrec.preferences.importer import LEAKAGE_NOTE, from_dataset, from_jsonl
from ulmrec.preferences.offline import TITLES_PROVENANCE, TITLES_VERSION, OfflineExtractor, TitlesExtractor
from ulmrec.preferences.offline import VERSION as OFFLINE_SOURCE
from ulmrec.preferences.prompts import PROMPT_TEMPLATES
from ulmrec.preferences.table import PreferenceRecord, leak_probe, to_frame
from ulmrec.stage import Stage
from ulmrec.utils import cache_dir

log = logging.getLogger("ulmrec")

TRAIN_ONLY_NOTE = ("Built from training-period interactions only (no validation or test item's title, rating or "
                   "review reaches a prompt or the offline extractor).")


def cache_path(cfg: Config) -> Path:
    return Path(cfg.preferences.cache_path) if cfg.preferences.cache_path else cache_dir() / "preferences.sqlite"


def _params(cfg: Config) -> dict:
    """The output-deciding settings plus the versions of the code that writes sentences (offline extractor,
    prompt template text), so a change there re-runs the stage."""
    p = cfg.preferences
    params = {**p.output_params(), "offline_version": OFFLINE_SOURCE}
    if p.mode == "titles":
        params["titles_version"] = TITLES_VERSION
    if p.mode == "api":
        params["prompt_template"] = fingerprint(dataclasses.asdict(PROMPT_TEMPLATES[p.prompt_version]))
    return params


def _inputs(cfg: Config, run_dir: Path) -> list[Path]:
    files = [art.INTERACTIONS.path(run_dir), art.USERS.path(run_dir), art.ITEMS.path(run_dir)]
    p = cfg.preferences
    if p.mode == "import":
        src = Path(p.import_path) if p.import_path else art.SOURCE_PREFERENCES.path(run_dir)
        if src.exists():  # a missing file gets a clear error from the importer, not the pipeline's generic one
            files.append(src)
    return files


def _extract(extractor, histories: list[UserHistory], source: str) -> list[PreferenceRecord]:
    """One sentence per user from a fitted extractor (``None``: the user has no training interactions)."""
    extractor.fit(histories)
    out = []
    for h in histories:
        s = extractor.sentence(h)
        out.append(PreferenceRecord.ok(h.user_idx, s, source) if s else
                   PreferenceRecord.failed(h.user_idx, source, "no training interactions"))
    return out


def _offline(histories: list[UserHistory], keywords: int) -> list[PreferenceRecord]:
    return _extract(OfflineExtractor(keywords), histories, OFFLINE_SOURCE)


def _titles(histories: list[UserHistory], keywords: int, max_title_chars: int) -> list[PreferenceRecord]:
    return _extract(TitlesExtractor(keywords, max_title_chars), histories, TITLES_VERSION)


def _import(cfg: Config, ds: Dataset, run_dir: Path, histories: list[UserHistory], report: dict):
    p = cfg.preferences
    found, info = from_jsonl(p.import_path, ds) if p.import_path else from_dataset(ds, Path(run_dir) / art.DATA)
    default_source = Counter(r.source for r in found.values()).most_common(1)
    source = default_source[0][0] if default_source else "import"
    records = [found.get(h.user_idx) or PreferenceRecord.failed(h.user_idx, source, "no imported preference for this user")
               for h in histories]
    report["import"] = info
    report["leakage_note"] = LEAKAGE_NOTE
    log.warning("preferences: imported sentences are not known to be training-only (the shipped Beauty/Games ones "
                "see the test period; `ulmrec audit` measures it); preferences.mode=titles is leak-free")
    return records


def _api(cfg: Config, histories: list[UserHistory], report: dict) -> list[PreferenceRecord]:
    from ulmrec.preferences.openai_client import extract_with_api  # defers openai (0.5 s)

    p = cfg.preferences
    with PreferenceCache(cache_path(cfg)) as cache:
        records, stats = extract_with_api(histories, p, cache)
    report["api"] = {"base_url": p.base_url or "(openai SDK default)", "model": p.model,
                     "prompt_version": p.prompt_version, "concurrency": p.concurrency,
                     "cache": str(cache_path(cfg)), **stats.as_dict()}
    report["leakage_note"] = TRAIN_ONLY_NOTE
    return records


def _provenance(cfg: Config) -> tuple[str, bool | None]:
    """What the sentences may have seen: (label for the run and the audit's tables, leak-free or not)."""
    p = cfg.preferences
    if p.mode == "titles":
        return TITLES_PROVENANCE, True
    if p.mode in ("offline", "api"):
        return "leak-free: training-period interactions only", True
    if p.import_path:
        return f"imported from {p.import_path}: not known to be training-only", None
    return ("shipped with the data: not training-only (the Beauty/Games sentences match held-out items as often "
            "as training items; `ulmrec audit`)"), False


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    p = cfg.preferences
    ds = Dataset.load(run_dir)
    histories = list(training_histories(ds))
    report: dict = {"mode": p.mode, "users": ds.num_users,
                    "users_with_reviews": sum(h.has_reviews for h in histories),
                    "users_with_ratings": sum(h.has_ratings for h in histories)}
    if p.mode == "import":
        records = _import(cfg, ds, run_dir, histories, report)
    elif p.mode == "api":
        records = _api(cfg, histories, report)
    elif p.mode == "titles":
        records = _titles(histories, p.offline_keywords, p.max_title_chars)
        report["leakage_note"] = TRAIN_ONLY_NOTE
        report["titles_note"] = ("Leak-free source for data without training-period reviews: keywords and the "
                                 "favourite brand of the user's training titles plus their most recent training "
                                 "title; no rating, review, validation or test item is read.")
    else:
        records = _offline(histories, p.offline_keywords)
        report["leakage_note"] = TRAIN_ONLY_NOTE
        report["offline_note"] = ("A deterministic keyword summary (tf-idf title words, favourite brand, review "
                                  "words, mean rating), not an LLM's reading: a stand-in for the paper's sentences.")

    report["provenance"], report["leak_free"] = _provenance(cfg)
    failed = [r for r in records if r.status != "ok"]
    report["failure_reasons"] = dict(Counter(r.error for r in failed).most_common(10))
    if failed and p.fallback == "offline":
        stand_in = {r.user_idx: r for r in _offline(histories, p.offline_keywords)}
        records = [stand_in[r.user_idx] if r.status != "ok" else r for r in records]
        report["fallback_offline_users"] = len(failed)

    frame = to_frame(records)
    write_parquet(out / art.PREFERENCE_TABLE.name, frame)
    ok = int((frame["status"] == "ok").sum())
    report.update({"ok": ok, "failed": len(frame) - ok,
                   "sources": {str(k): int(v) for k, v in frame["source"].value_counts().items()},
                   "leak_probe": leak_probe(ds, frame)})
    write_json(out / art.PREFERENCE_REPORT.name, report)
    if len(frame) - ok:
        log.warning(f"preferences: %d of %d users have no preference (reasons in {art.PREFERENCE_REPORT.name})%s", len(frame) - ok,
                    len(frame), "; `ulmrec preferences --force` asks again only for them" if p.mode == "api" else "")
    return {"mode": p.mode, "users": len(frame), "ok": ok, "failed": len(frame) - ok, "sources": report["sources"]}


STAGE = Stage(
    name=art.PREFERENCES,
    command="preferences",
    help="one preference sentence per user: import, ask an OpenAI-compatible server, or offline stand-in",
    params=_params,
    inputs=_inputs,
    build=_build,
    reads=(art.INTERACTIONS, art.USERS, art.ITEMS, art.SOURCE_PREFERENCES),
    writes=(art.PREFERENCE_TABLE, art.PREFERENCE_REPORT),
    sources="preferences.import_path (mode=import), an OpenAI-compatible server and its SQLite cache (mode=api)",
)
