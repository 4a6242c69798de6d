"""``ulmrec preferences``: the three modes end to end, the output contract, provenance, fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pref_fixtures import api_config, make_dataset

from ulmrec.cli import main
from ulmrec.config import load_config
from ulmrec.errors import ConfigError, DataError
from ulmrec.io import read_json
from ulmrec.pipeline import run_stage, stage_fingerprint
from ulmrec.preferences.local_server import LocalChatServer, Reply
from ulmrec.preferences.stage import STAGE


def with_source_preferences(run_dir: Path, users: list[int]) -> None:
    ds = make_dataset()
    ds.preferences = pd.DataFrame({"user_idx": np.array(users, dtype=np.int32),
                                   "preference": pd.array([f"The user prefers thing {u}." for u in users], "string"),
                                   "provenance": ["imported from /somewhere/beauty-ulmrec/preferences.jsonl.gz"] * len(users)})
    ds.save(run_dir / "data")


def output(run_dir: Path) -> tuple[pd.DataFrame, dict]:
    return (pd.read_parquet(run_dir / "preferences" / "preferences.parquet"),
            read_json(run_dir / "preferences" / "report.json"))


def test_import_mode_records_provenance_and_leakage_note(tmp_path):
    run_dir = tmp_path / "run"
    with_source_preferences(run_dir, [0, 1, 2, 4, 5])
    run_stage(STAGE, load_config([], [f"run_dir={run_dir}"]))
    frame, report = output(run_dir)
    assert list(frame.columns) == ["user_idx", "preference", "status", "source", "error"]
    assert frame["user_idx"].tolist() == list(range(6))
    assert frame["status"].tolist() == ["ok", "ok", "ok", "failed", "ok", "ok"]
    assert frame.loc[3, "error"] == "no imported preference for this user" and pd.isna(frame.loc[3, "preference"])
    assert frame.loc[0, "preference"] == "The user prefers thing 0."
    assert set(frame["source"]) == {"import:preferences.jsonl.gz"}
    assert report["ok"] == 5 and report["failed"] == 1
    assert "ALL of a user's reviews" in report["leakage_note"]
    assert report["import"]["provenance"] == ["imported from /somewhere/beauty-ulmrec/preferences.jsonl.gz"]
    assert report["leak_probe"]["test_users_checked"] == 5


def test_offline_fallback_fills_the_gaps(tmp_path):
    run_dir = tmp_path / "run"
    with_source_preferences(run_dir, [0, 1])
    run_stage(STAGE, load_config([], [f"run_dir={run_dir}", "preferences.fallback=offline"]))
    frame, report = output(run_dir)
    assert (frame["status"] == "ok").all()
    assert frame["source"].tolist() == ["import:preferences.jsonl.gz"] * 2 + ["offline:v1"] * 4
    assert report["fallback_offline_users"] == 4


def test_import_without_sentences_is_a_clear_error(run_dir):
    with pytest.raises(DataError, match="ships no preference sentences"):
        run_stage(STAGE, load_config([], [f"run_dir={run_dir}"]))


def test_import_from_a_jsonl_file(run_dir, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"user_id": "A001X", "preference": "The user prefers socks."}\n', encoding="utf-8")
    run_stage(STAGE, load_config([], [f"run_dir={run_dir}", f"preferences.import_path={path}"]))
    frame, _ = output(run_dir)
    assert frame.loc[1, "preference"] == "The user prefers socks." and frame.loc[1, "source"] == "import:mine.jsonl"
    assert (frame["status"] == "ok").sum() == 1


def test_offline_mode_is_deterministic(run_dir):
    cfg = load_config([], [f"run_dir={run_dir}", "preferences.mode=offline"])
    run_stage(STAGE, cfg)
    first, report = output(run_dir)
    run_stage(STAGE, cfg, force=True)
    second, _ = output(run_dir)
    pd.testing.assert_frame_equal(first, second)
    assert (first["status"] == "ok").all() and set(first["source"]) == {"offline:v1"}
    assert "offline_note" in report


def test_api_mode_writes_failures_and_report(run_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ULMREC_TEST_SECRET", "sk-very-secret-42")
    def plan(request, attempt):
        return Reply("status", status=500) if "U002" in json.dumps(request) else Reply()
    with LocalChatServer(plan) as server:
        run_stage(STAGE, api_config(run_dir, server.base_url, tmp_path / "c.sqlite", max_retries=1,
                                    api_key_env="ULMREC_TEST_SECRET"))
        assert set(server.authorization) == {"Bearer sk-very-secret-42"}
    frame, report = output(run_dir)
    assert frame["status"].tolist() == ["ok", "ok", "failed", "ok", "ok", "ok"]
    assert frame.loc[2, "error"].startswith("gave up after 2 attempts; last error: 500")
    assert set(frame["source"]) == {"api:local-test-model:v1"}
    api = report["api"]
    assert api["asked"] == 6 and api["requests"] == 7 and api["ok"] == 5 and api["prompt_kinds"] == {"reviews": 6}
    stored = "".join(p.read_text() for p in (run_dir / "preferences").glob("*.*") if p.suffix in (".json", ".yaml"))
    assert "ULMREC_TEST_SECRET" in stored and "sk-very-secret-42" not in stored  # the key is never written


def test_operational_settings_do_not_change_the_fingerprint(run_dir):
    def fp(*overrides):
        return stage_fingerprint(STAGE, load_config([], [f"run_dir={run_dir}", "preferences.mode=api", *overrides]),
                                 run_dir)
    base = fp()
    assert fp("preferences.concurrency=32", "preferences.timeout=5", "preferences.cache_path=/x.sqlite") == base
    assert fp("preferences.model=other") != base
    assert fp("preferences.prompt_version=v1", "preferences.max_reviews=3") != base


@pytest.mark.parametrize("override, match", [
    ("preferences.mode=chat", "not one of"),
    ("preferences.prompt_version=v9", "prompt_version"),
    ("preferences.concurrency=0", "concurrency must be >= 1"),
    ("preferences.timeout=0", "timeout must be > 0"),
    ("preferences.base_url=localhost:8000", "base_url must start with http"),
    ("preferences.temperature=3", "temperature"),
])
def test_bad_settings_are_rejected(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config([], [override])


def test_cli_on_the_sample_preset(tmp_path, capsys):
    """`ulmrec preferences -c sample` (import mode, the shipped GPT-3.5 sentences) works in seconds."""
    run_dir = tmp_path / "sample"
    assert main(["prepare", "-c", "sample", f"run_dir={run_dir}"]) == 0
    assert main(["preferences", "-c", "sample", f"run_dir={run_dir}"]) == 0
    frame, report = output(run_dir)
    users = pd.read_parquet(run_dir / "data" / "users.parquet")
    assert len(frame) == len(users) and report["ok"] > 0.99 * len(users)
    assert report["mode"] == "import" and "[preferences] done" in capsys.readouterr().out
