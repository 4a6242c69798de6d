"""Every user error is one line on stderr naming the file, line and field (or the setting), exit code 2, no
traceback and nothing written; anything else is a one-line internal error with a bug-report hint (traceback with -v)."""

from __future__ import annotations

import errno
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ulmrec.cli import main


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("ulmrec:")]
    assert len(lines) == 1, err
    return lines[0]


def _jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _ulmrec_timestamps_short(d: Path):
    _jsonl(d / "sequences.jsonl", [{"user_id": "u1", "item_ids": ["a", "b", "c"], "timestamps": [1, 2, 3]},
                                   {"user_id": "u2", "item_ids": ["a", "b", "c"], "timestamps": [1, 2]}])
    _jsonl(d / "items.jsonl", [{"item_id": i, "title": i} for i in "abc"])
    return ["data.source=ulmrec", f"data.path={d}"], f"{d / 'sequences.jsonl'}:2: field 'timestamps': 2 timestamps for 3"


def _recbole_inter(d: Path):
    (d / "ds.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ta\t1\nu1\tb\t2\n")


def _recbole_item_without_item_id(d: Path):
    _recbole_inter(d)
    (d / "ds.item").write_text("iid:token\ttitle:token_seq\na\tA\n")
    return ["data.source=recbole", f"data.path={d}"], f"{d / 'ds.item'}:1: field 'item_id': header lacks item_id"


def _recbole_item_non_utf8_header(d: Path):
    _recbole_inter(d)
    (d / "ds.item").write_bytes(b"item_id:token\tti\xfftle:token_seq\na\tA\n")
    return ["data.source=recbole", f"data.path={d}"], f"{d / 'ds.item'}:1: header is not valid UTF-8"


def _openp5(d: Path, lookup: str, to_int: str):
    (d / "user_sequence.txt").write_text("u1 1 2 3\nu2 1 2 3\n")
    (d / "products_lookup.csv").write_text(lookup)
    (d / "item_id_to_int.json").write_text(to_int)
    return ["data.source=openp5", f"data.path={d}"]


def _openp5_lookup_bad_row(d: Path):
    args = _openp5(d, ",global_product_id,name\n0,1,A\n1,2,B,extra\n", '{"1": 1, "2": 2}')
    return args, f"{d / 'products_lookup.csv'}:3: expected 3 comma-separated fields, got 4"


def _openp5_lookup_bad_quote(d: Path):
    args = _openp5(d, ',global_product_id,name\n0,1,"A"x\n', '{"1": 1}')
    return args, f"{d / 'products_lookup.csv'}:2: not valid CSV"


def _openp5_lookup_non_integer_id(d: Path):
    args = _openp5(d, ",global_product_id,name\n0,1,A\n1,two,B\n", '{"1": 1}')
    return args, f"{d / 'products_lookup.csv'}:3: field 'global_product_id': expected an integer, got 'two'"


def _openp5_non_integer_to_int(d: Path):
    args = _openp5(d, ",global_product_id,name\n0,1,A\n", '{\n  "1": 1,\n  "2": "x"\n}')
    return args, f"{d / 'item_id_to_int.json'}:3: field '2': expected an integer, got 'x'"


def _deeply_nested_json_line(d: Path):
    path = d / "reviews.json"
    path.write_text('{"reviewerID": "u", "asin": "i", "unixReviewTime": 1}\n' + "[" * 100_000 + "\n")
    return ["data.source=amazon2018", f"data.path={path}"], f"{path}:2: malformed record (nested too deeply)"


def _deeply_nested_gzip_sequences(d: Path):
    with gzip.open(d / "sequences.jsonl.gz", "wt") as f:
        f.write('{"user_id": ' + "[" * 100_000 + "\n")
    _jsonl(d / "items.jsonl", [{"item_id": "a", "title": "A"}])
    return ["data.source=ulmrec", f"data.path={d}"], f"{d / 'sequences.jsonl.gz'}:1: malformed record (nested too deeply)"


BAD_DATA = [_ulmrec_timestamps_short, _recbole_item_without_item_id, _recbole_item_non_utf8_header,
            _openp5_lookup_bad_row, _openp5_lookup_bad_quote, _openp5_lookup_non_integer_id, _openp5_non_integer_to_int,
            _deeply_nested_json_line, _deeply_nested_gzip_sequences]


@pytest.mark.parametrize("make", BAD_DATA, ids=[f.__name__.strip("_") for f in BAD_DATA])
def test_bad_data_is_one_line_exit_2_nothing_written(tmp_path, capsys, make):
    src = tmp_path / "src"
    src.mkdir()
    args, expected = make(src)
    run = tmp_path / "run"
    assert main(["prepare", f"run_dir={run}", "data.k_core=1", *args]) == 2
    line = _one_error_line(capsys)
    assert expected in line, line
    assert not (run / "data").exists() and not (run / ".data.partial").exists()


@pytest.mark.parametrize("override, expected", [
    ("seed=-1", "seed must be an integer from 0 to 4294967295"),
    ("seed=4294967296", "seed must be an integer from 0 to 4294967295"),
    ("run_dir=", "run_dir must not be empty"),
    ("run_dir=' '", "run_dir must not be empty"),
])
def test_bad_top_level_settings(tmp_path, capsys, monkeypatch, override, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["prepare", override]) == 2
    assert expected in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even ./data or a run directory


def test_run_dir_under_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["prepare", f"run_dir={tmp_path / 'afile' / 'run'}"]) == 2
    line = _one_error_line(capsys)
    assert "run_dir=" in line and "cannot create the directory" in line and "Not a directory" in line


def test_run_dir_on_a_read_only_file_system(tmp_path, capsys, monkeypatch):
    """Simulated (the tests may run as root, for whom a read-only mode bit is no obstacle)."""
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["prepare", f"run_dir={tmp_path / 'ro' / 'run'}"]) == 2
    line = _one_error_line(capsys)
    assert "run_dir=" in line and "Read-only file system" in line


def test_os_error_during_a_stage_is_one_line(tmp_path, capsys, monkeypatch):
    from ulmrec.data import stage as data_stage

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / ".data.partial" / "x"))

    monkeypatch.setattr(data_stage.STAGE, "build", full)
    assert main(["prepare", f"run_dir={tmp_path / 'run'}"]) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line and ".data.partial" in line
    assert not (tmp_path / "run" / "data").exists()


def test_internal_error_is_one_line_with_a_bug_hint_and_traceback_with_v(tmp_path, capsys, monkeypatch):
    from ulmrec.data import stage as data_stage

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(data_stage.STAGE, "build", bug)
    assert main(["prepare", f"run_dir={tmp_path / 'run'}"]) == 1
    line = _one_error_line(capsys)
    assert "internal error: ZeroDivisionError" in line and "bug" in line and "-v" in line
    with pytest.raises(ZeroDivisionError):
        main(["prepare", "-v", f"run_dir={tmp_path / 'run'}"])


@pytest.mark.parametrize("top", ["-3", "0", "١٢", "²", "x"])
def test_recommend_top_must_be_a_positive_ascii_number(tmp_path, capsys, top):
    assert main(["recommend", "--user", "0", "--top", top, f"run_dir={tmp_path}"]) == 2
    assert "--top must be a whole number >= 1" in _one_error_line(capsys)


def test_user_error_in_a_real_process_prints_exactly_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ulmrec.cli", "prepare", f"run_dir={tmp_path}", "seed=-1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("ulmrec: error: "), proc.stderr
