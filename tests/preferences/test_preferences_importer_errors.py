"""A bad preferences file is a one-line DataError naming the file and line (no RecursionError, no decode error)."""

from __future__ import annotations

import gzip
from types import SimpleNamespace

import pandas as pd
import pytest

from ulmrec.errors import DataError
from ulmrec.preferences.importer import from_jsonl

DS = SimpleNamespace(users=pd.DataFrame({"user_idx": [0, 1], "user_id": ["u0", "u1"]}))
GOOD = b'{"user_id": "u0", "preference": "likes soap"}\n'


@pytest.mark.parametrize("bad, expected", [
    (b'{"user_id": ' + b"[" * 100_000 + b"\n", ":2: not valid JSON (nested too deeply)"),
    (b'{"user_id": "u1", "preference": "caf\xe9"}\n', ":2: not valid UTF-8"),
    (b'{"user_id": "u1",\n', ":2: not valid JSON"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_bad_line_names_file_and_line(tmp_path, bad, expected, gz):
    path = tmp_path / ("p.jsonl.gz" if gz else "p.jsonl")
    path.write_bytes(gzip.compress(GOOD + bad) if gz else GOOD + bad)
    with pytest.raises(DataError) as err:
        from_jsonl(path, DS)
    assert str(err.value).startswith(f"{path}{expected}")


def test_good_file(tmp_path):
    (tmp_path / "p.jsonl").write_bytes(GOOD + b"\n")
    found, info = from_jsonl(tmp_path / "p.jsonl", DS)
    assert found[0].preference == "likes soap" and info["unknown_users_skipped"] == 0
