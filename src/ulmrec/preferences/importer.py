"""Import precomputed preference sentences, keeping a record of where each came from.

Two inputs: the sentences the data source shipped (``data/source_preferences.parquet``, written by
``ulmrec prepare``; the shared ``*-ulmrec`` data carry the authors' GPT-3.5 sentences), or any JSON-lines file
(optionally gzipped) of ``{"user_id": ..., "preference": ...}`` keyed by the original user id.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ulmrec.artifacts import SOURCE_PREFERENCES
from ulmrec.data.dataset import Dataset
from ulmrec.data.readers import iter_lines
from ulmrec.errors import DataError
from ulmrec.preferences.table import PreferenceRecord

log = logging.getLogger("ulmrec")

#: What the report says about imported sentences. Which reviews they were made from is outside this project's
#: control; for the authors' release the data's SOURCE.md documents the likely answer.
LEAKAGE_NOTE = ("Imported sentences were written outside this project, so which reviews they were made from "
                "cannot be checked here. The authors' GPT-3.5 sentences (shipped with the *-ulmrec data) were made "
                "from ALL of a user's reviews, including those of the validation and test items: they match the "
                "held-out items as often as the training items (`ulmrec audit`, benchmarks/results/leakage_*.md), "
                "so results that use them see the test period. For sentences made from training data only, use "
                "preferences.mode=titles (no reviews in the data), offline or api.")


def _source_name(provenance: str) -> str:
    path = provenance.removeprefix("imported from ").strip()
    return f"import:{Path(path).name or path}"


def from_dataset(ds: Dataset, data_dir: Path) -> tuple[dict[int, PreferenceRecord], dict]:
    """The sentences in ``data/source_preferences.parquet`` (user_idx, preference, provenance)."""
    if ds.preferences is None:
        raise DataError(f"this dataset ships no preference sentences ({SOURCE_PREFERENCES.name} is missing); give "
                        "preferences.import_path=<file.jsonl>, or use preferences.mode=api or offline", data_dir)
    found: dict[int, PreferenceRecord] = {}
    prov = ds.preferences.get("provenance")
    provenance = (prov.astype(str).to_numpy() if prov is not None else ["imported from the data source"] * len(ds.preferences))
    for u, pref, p in zip(ds.preferences["user_idx"].to_numpy(), ds.preferences["preference"].to_numpy(dtype=object),
                          provenance):
        if isinstance(pref, str) and pref.strip():
            found[int(u)] = PreferenceRecord.ok(int(u), " ".join(pref.split()), _source_name(p))
    info = {"file": str(data_dir / SOURCE_PREFERENCES.name), "provenance": sorted(set(map(str, provenance))),
            "rows": int(len(ds.preferences))}
    return found, info


def from_jsonl(path: str | Path, ds: Dataset) -> tuple[dict[int, PreferenceRecord], dict]:
    """Sentences from a JSON-lines file keyed by original user id. A malformed line is an error naming the file
    and line; users the dataset does not know are counted and skipped; an empty sentence counts as missing."""
    path = Path(path)
    if not path.exists():
        raise DataError("preferences file not found", path)
    idx_of = dict(zip(ds.users["user_id"].astype(str), ds.users["user_idx"].astype(int)))
    source = f"import:{path.name}"
    found: dict[int, PreferenceRecord] = {}
    seen: set[int] = set()
    unknown = empty = 0
    for lineno, line in iter_lines(path):  # UTF-8 and gzip errors name the line
        try:
            obj = json.loads(line)
        except RecursionError:
            raise DataError("not valid JSON (nested too deeply)", path, lineno) from None
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON ({err.msg})", path, lineno) from err
        if not isinstance(obj, dict):
            raise DataError("expected a JSON object {\"user_id\": ..., \"preference\": ...}", path, lineno)
        if not isinstance(obj.get("user_id"), str | int) or isinstance(obj.get("user_id"), bool):
            raise DataError("missing or not a string", path, lineno, "user_id")
        pref = obj.get("preference")
        if pref is not None and not isinstance(pref, str):
            raise DataError(f"expected a string, got {type(pref).__name__}", path, lineno, "preference")
        u = idx_of.get(str(obj["user_id"]))
        if u is None:
            unknown += 1
            continue
        if u in seen:
            raise DataError(f"user {obj['user_id']!r} appears a second time", path, lineno, "user_id")
        seen.add(u)
        if not pref or not pref.strip():
            empty += 1
            continue
        found[u] = PreferenceRecord.ok(u, " ".join(pref.split()), source)
    if unknown:
        log.warning("%s: %d users are not in this dataset (skipped)", path, unknown)
    info = {"file": str(path), "provenance": [f"imported from {path}"], "unknown_users_skipped": unknown,
            "empty_sentences": empty}
    return found, info
