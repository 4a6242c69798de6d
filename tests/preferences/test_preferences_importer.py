"""Import of precomputed sentences: provenance kept, bad lines named by file and line."""

from __future__ import annotations

import gzip
import json

import pytest
from pref_fixtures import make_dataset

from ulmrec.errors import DataError
from ulmrec.preferences.importer import from_dataset, from_jsonl


def write_jsonl(path, rows, raw_lines=()):
    text = "".join(json.dumps(r) + "\n" for r in rows) + "".join(raw_lines)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_import_maps_ids_and_counts_what_it_skips(tmp_path):
    ds = make_dataset(n_users=4)
    path = write_jsonl(tmp_path / "prefs.jsonl.gz", [
        {"user_id": "A000X", "preference": "  The user prefers\n tea. "},
        {"user_id": "A002X", "preference": "The user prefers coffee."},
        {"user_id": "A003X", "preference": ""},
        {"user_id": "NOBODY", "preference": "x"},
    ], raw_lines=["\n"])
    found, info = from_jsonl(path, ds)
    assert {u: r.preference for u, r in found.items()} == {0: "The user prefers tea.", 2: "The user prefers coffee."}
    assert {r.source for r in found.values()} == {"import:prefs.jsonl.gz"}
    assert info["unknown_users_skipped"] == 1 and info["empty_sentences"] == 1
    assert info["provenance"] == [f"imported from {path}"]


@pytest.mark.parametrize("line, match", [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ('["a", "b"]', r"bad\.jsonl:2: expected a JSON object"),
    ('{"preference": "x"}', r"bad\.jsonl:2: field 'user_id'"),
    ('{"user_id": "A001X", "preference": 3}', r"bad\.jsonl:2: field 'preference': expected a string"),
    ('{"user_id": "A000X", "preference": "again"}', r"bad\.jsonl:2: field 'user_id': user 'A000X' appears a second"),
])
def test_bad_lines_are_named(tmp_path, line, match):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"user_id": "A000X", "preference": "p"}], raw_lines=[line + "\n"])
    with pytest.raises(DataError, match=match):
        from_jsonl(path, make_dataset(n_users=2))


def test_missing_file_and_missing_source_preferences(tmp_path):
    ds = make_dataset(n_users=2)
    with pytest.raises(DataError, match="preferences file not found"):
        from_jsonl(tmp_path / "nope.jsonl", ds)
    with pytest.raises(DataError, match="ships no preference sentences"):
        from_dataset(ds, tmp_path)
