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


# ----------------------------------------------------------------------------- reliability (issue 14)
def _chain(calls):
    """Two toy stages: ``first`` writes first/a.txt, ``second`` reads it (an input inside the run directory)."""
    def build_first(cfg, run_dir, out):
        calls.append("first")
        (out / "a.txt").write_text("from first")

    def build_second(cfg, run_dir, out):
        calls.append("second")
        if getattr(cfg, "_fail_second", False):
            raise RuntimeError("killed")
        (out / "b.txt").write_text((Path(run_dir) / "first" / "a.txt").read_text())

    first = Stage("first", "first", "", params=lambda cfg: {"seed": cfg.seed}, inputs=lambda cfg, d: [],
                  build=build_first)
    second = Stage("second", "second", "", params=lambda cfg: {"seed": cfg.seed},
                   inputs=lambda cfg, d: [Path(d) / "first" / "a.txt"], build=build_second)
    return first, second


def test_moved_copied_or_respelled_run_dir_stays_current(tmp_path, monkeypatch):
    import shutil

    from ulmrec.pipeline import is_current

    calls = []
    first, second = _chain(calls)
    run = tmp_path / "run1"
    cfg = load_config([], [f"run_dir={run}"])
    run_stage(first, cfg)
    run_stage(second, cfg)
    assert calls == ["first", "second"]
    shutil.copytree(run, tmp_path / "run1copy", symlinks=True)  # cp -a
    shutil.move(str(run), str(tmp_path / "moved"))
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path)
    for spelled in (tmp_path / "run1copy", "run1copy", "a/../run1copy", tmp_path / "moved", "./moved/"):
        moved = load_config([], [f"run_dir={spelled}"])
        assert is_current(first, moved) and is_current(second, moved), spelled
        assert run_stage(second, moved)["skipped"] is True
    assert calls == ["first", "second"]
    assert "first/a.txt" in (tmp_path / "moved" / "second" / "stage.json").read_text()


def test_result_neutral_settings_are_out_of_every_fingerprint(tmp_path):
    """Threads and inference batch sizes never retrain a stage; every other setting (max_minutes included) does."""
    import json

    from ulmrec.config import RESULT_NEUTRAL
    from ulmrec.pipeline import available_stages, stage_params

    base = load_config([], [f"run_dir={tmp_path}"])
    changed = load_config([], [f"run_dir={tmp_path}", "retrieval.num_threads=3", "retrieval.eval_batch_size=7",
                               "index.threads=3", "index.encoder_batch_size=5", "ranker.num_threads=3",
                               "ranker.score_batch_size=9"])
    assert RESULT_NEUTRAL == {"retrieval.num_threads", "retrieval.eval_batch_size", "index.threads",
                                           "index.encoder_batch_size", "ranker.num_threads", "ranker.score_batch_size"}
    stages = {s.name: s for s in available_stages()}
    for stage in stages.values():
        assert stage_params(stage, base) == stage_params(stage, changed), stage.name
        text = json.dumps(stage_params(stage, base))
        for name in RESULT_NEUTRAL:
            assert "result-neutral" not in text
            if name.split(".")[0] in ("retrieval", "index") and stage.name in ("retrieval", "index"):
                assert f'"{name.split(".")[1]}"' not in text, (stage.name, name)
    capped = load_config([], [f"run_dir={tmp_path}", "retrieval.max_minutes=5"])
    assert stage_params(stages["retrieval"], capped) != stage_params(stages["retrieval"], base)
    assert base.retrieval.num_threads == 1  # the real config is untouched by the masking


def test_killed_force_run_is_not_skipped_afterwards(tmp_path, monkeypatch):
    import ulmrec.pipeline as pipeline

    calls = []
    first, second = _chain(calls)
    cfg = load_config([], [f"run_dir={tmp_path}"])
    monkeypatch.setattr(pipeline, "available_stages", lambda: [first, second])
    pipeline.run_all(cfg)
    assert calls == ["first", "second"]
    cfg._fail_second = True
    with pytest.raises(RuntimeError, match="killed"):
        pipeline.run_all(cfg, force=True)  # forced, and killed during the second stage
    assert calls == ["first", "second", "first", "second"]
    assert (tmp_path / "second" / "b.txt").exists()  # the old artifacts stay until replaced ...
    assert not pipeline.is_current(second, cfg)  # ... but are no longer current
    cfg._fail_second = False
    records = pipeline.run_all(cfg)  # no --force: the interrupted stage runs, the finished one is skipped
    assert [r["skipped"] for r in records] == [True, False]
    # a single forced stage is invalidated before it starts, too
    cfg._fail_second = True
    with pytest.raises(RuntimeError):
        run_stage(second, cfg, force=True)
    assert not pipeline.is_current(second, cfg)


def test_cp_a_of_a_real_run_dir_stays_current(tmp_path, capsys):
    """``cp -a run1 run1copy``: the copy's data and preferences stages are current (the latter reads data/)."""
    import subprocess

    run = tmp_path / "run1"
    assert main(["run", "--until", "preferences", f"run_dir={run}"]) == 0
    capsys.readouterr()
    subprocess.run(["cp", "-a", str(run), str(tmp_path / "run1copy")], check=True)
    assert main(["run", "--until", "preferences", f"run_dir={tmp_path / 'run1copy'}"]) == 0
    out = capsys.readouterr().out
    assert "[data] skipped (current)" in out and "[preferences] skipped (current)" in out, out


def test_scoring_only_settings_do_not_retrain_the_ranker_but_rescore(tmp_path):
    """ranker.merge_adapter changes how a finished adapter is scored: the evaluate stage's fingerprint, not the
    ranker stage's (changing it must not throw away an hour of training)."""
    from ulmrec.pipeline import available_stages, stage_params

    stages = {s.name: s for s in available_stages()}
    base = load_config([], [f"run_dir={tmp_path}"])
    merged = load_config([], [f"run_dir={tmp_path}", "ranker.merge_adapter=true"])
    assert stage_params(stages["ranker"], base) == stage_params(stages["ranker"], merged)
    assert stage_params(stages["evaluate"], base) != stage_params(stages["evaluate"], merged)
    lr = load_config([], [f"run_dir={tmp_path}", "ranker.lr=0.5"])
    assert stage_params(stages["ranker"], base) != stage_params(stages["ranker"], lr)


def test_status_says_what_a_run_would_do_and_why(tmp_path, capsys):
    """`ulmrec status`: current / stale (naming the changed setting) / to run / waiting, and reads only."""
    run = tmp_path / "run1"
    assert main(["status", f"run_dir={run}"]) == 0
    assert "does not exist" in capsys.readouterr().out and not run.exists()
    assert main(["run", "--until", "preferences", f"run_dir={run}"]) == 0
    capsys.readouterr()
    assert main(["status", f"run_dir={run}"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["data"] == "current" and rows["preferences"] == "current"
    assert rows["retrieval"] == "to" and rows["ranker"] == "waiting"  # "to run"; the ranker needs retrieval's output
    before = sorted(p.name for p in run.rglob("*"))
    assert main(["status", f"run_dir={run}", "data.k_core=3"]) == 0
    out = capsys.readouterr().out
    assert "data         stale    settings changed: k_core: 5 -> 3" in out, out
    assert "(after data reruns, if its output changes)" in out  # preferences reads data's output
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written
