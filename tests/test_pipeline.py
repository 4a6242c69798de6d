"""Stages skip current work, re-run on changed inputs, and never leave half-written artifacts."""

from pathlib import Path

import pytest

from ulmrec.cli import main
from ulmrec.config import load_config
from ulmrec.pipeline import Stage, run_stage


def _stage(calls, fail=False):
    def build(cfg, run_dir, out):
        calls.append(1)
        (out / "a.txt").write_text("partial")
        if fail:
            raise RuntimeError("boom")
        return {"n": len(calls)}

    return Stage("toy", "toy", "a toy stage", params=lambda cfg: {"seed": cfg.seed},
                 inputs=lambda cfg, run_dir: [Path(cfg.run_dir) / "in.txt"], build=build)


def test_skip_rerun_and_atomicity(tmp_path):
    cfg = load_config([], [f"run_dir={tmp_path}"])
    (tmp_path / "in.txt").write_text("v1")
    calls = []
    assert run_stage(_stage(calls), cfg)["skipped"] is False
    assert run_stage(_stage(calls), cfg)["skipped"] is True
    assert len(calls) == 1
    (tmp_path / "in.txt").write_text("v2")  # changed input -> runs again
    run_stage(_stage(calls), cfg)
    assert len(calls) == 2
    cfg.seed = 1  # changed setting -> runs again
    run_stage(_stage(calls), cfg)
    assert len(calls) == 3
    # a failing run leaves the finished artifacts as they were
    cfg.seed = 2
    with pytest.raises(RuntimeError):
        run_stage(_stage(calls, fail=True), cfg)
    assert (tmp_path / "toy" / "stage.json").exists()
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["a.txt", "config.yaml", "stage.json"]
    assert not (tmp_path / "toy" / ".fingerprint").exists()


def test_missing_input_is_clear(tmp_path):
    cfg = load_config([], [f"run_dir={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="needs .*in.txt"):
        run_stage(_stage([]), cfg)


def test_cli_prepare_sample_twice(tmp_path, capsys):
    assert main(["prepare", f"run_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "[data] done" in out and '"users": 1709' in out
    assert main(["prepare", f"run_dir={tmp_path}"]) == 0
    assert "[data] skipped (current)" in capsys.readouterr().out
    assert (tmp_path / "data" / "config.yaml").exists()


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text('{"reviewerID": "u", "asin": "i", "unixReviewTime": 1}\n{oops\n')
    code = main(["prepare", f"run_dir={tmp_path}/run", "data.source=amazon2018", f"data.path={bad}"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: malformed" in err
    assert not (tmp_path / "run" / "data").exists()


def test_run_checks_every_stage_before_any_work(tmp_path, monkeypatch):
    """A setting the ranker would reject (here: QLoRA on a machine without CUDA) stops `ulmrec run` before
    the data stage writes anything, instead of after hours of retrieval training."""
    import torch

    from ulmrec.errors import ConfigError
    from ulmrec.pipeline import run_all

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config([], [f"run_dir={tmp_path}", "ranker.quantization=nf4"])
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        run_all(cfg)
    assert not (tmp_path / "data").exists() and not (tmp_path / ".data.partial").exists()
    # stopping before the ranker skips its check
    records = run_all(cfg, until="data")
    assert [r["stage"] for r in records] == ["data"] and (tmp_path / "data" / "stage.json").exists()
