"""A new setting must not make finished run directories stale or throw away a killed stage's checkpoints.

The golden file holds every stage's fingerprinted settings under the default config. It changes when a setting is
added, renamed, removed or gets another default: register an added setting in ``ulmrec.config.ADDED_SETTINGS`` with
the value that keeps the old behaviour (the golden file then stays as it is), or, where every existing run
directory *should* rebuild, regenerate it on purpose:

    ULMREC_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_fingerprint_stability.py
"""

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest

from ulmrec.config import ADDED_SETTINGS, RESULT_NEUTRAL, Config, load_config
from ulmrec.io import fingerprint, write_json
from ulmrec.pipeline import available_stages, is_current, run_stage
from ulmrec.stage import Stage, accepted_fingerprints, stage_fingerprint, stage_params
from ulmrec.tasks import TASKS

GOLDEN = Path(__file__).parent / "golden" / "stage_params_default.json"


def _default_params() -> dict:
    cfg = load_config([], ["run_dir=runs/golden"])
    return json.loads(json.dumps({s.name: stage_params(s, cfg) for s in available_stages()}, default=str))


def test_default_fingerprints_match_the_golden_file():
    now = _default_params()
    if os.environ.get("ULMREC_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    for stage, params in now.items():
        assert params == golden[stage], (
            f"stage {stage}: its fingerprinted settings under the default config changed, so every existing run "
            "directory would rebuild it. Register a new setting in ulmrec.config.ADDED_SETTINGS with the value "
            "that keeps the old behaviour, or regenerate the golden file on purpose (this file's docstring).")


def test_every_registered_setting_exists_and_added_tasks_are_tasks():
    cfg = Config()
    names = [n for added in ADDED_SETTINGS for n in added.settings]
    assert len(names) == len(set(names))
    for name in names:
        section, field_name = name.split(".", 1)
        assert field_name in {f.name for f in dataclasses.fields(getattr(cfg, section))}, name
    for added in ADDED_SETTINGS:
        assert set(added.tasks) <= set(TASKS)
        for task in added.tasks:
            assert cfg.tasks.ratios[task] == 0, "an added task must be off by default"


def test_registered_settings_are_left_out_at_their_legacy_value_only(tmp_path):
    stages = {s.name: s for s in available_stages()}
    base = load_config([], [f"run_dir={tmp_path}"])
    text = json.dumps(stage_params(stages["ranker"], base))
    for name in ("exclude_user_items", "candidate_format", "init_adapter", "residual_weight", "letter_lookup"):
        assert f'"{name}"' not in text, name
    assert '"train_candidates_folds"' not in json.dumps(stage_params(stages["retrieval"], base))
    for override in ("tasks.exclude_user_items=true", "tasks.candidate_format=letter_last",
                     "tasks.ratios.letter_lookup=1", "ranker.residual_weight=0.5"):
        changed = load_config([], [f"run_dir={tmp_path}", override])
        assert stage_params(stages["ranker"], changed) != stage_params(stages["ranker"], base), override
    assert base.tasks.enabled[-1] == "letter_lookup" and base.tasks.candidate_format == "letter_first"


def _tasks_stage(calls: list) -> Stage:
    def build(cfg, run_dir, out):
        calls.append(sorted(p.name for p in out.iterdir()))
        (out / "checkpoint").write_text("step 50")
        if getattr(cfg, "_fail", False):
            raise RuntimeError("killed")
        (out / "adapter.txt").write_text("trained")

    return Stage("toy", "toy", "", params=lambda cfg: {"ranker": dataclasses.asdict(cfg.ranker),
                                                       "tasks": dataclasses.asdict(cfg.tasks), "seed": cfg.seed},
                 inputs=lambda cfg, run_dir: [], build=build)


def _old_params(cfg: Config) -> dict:
    """The toy stage's settings as a version from before 04ddf57 fingerprinted them: no letter_lookup task, no
    candidate_format / exclude_user_items settings, every setting added before them written out."""
    tasks = dataclasses.asdict(cfg.tasks)
    tasks["enabled"].remove("letter_lookup")
    del tasks["ratios"]["letter_lookup"], tasks["candidate_format"], tasks["exclude_user_items"]
    ranker = {k: v for k, v in dataclasses.asdict(cfg.ranker).items() if f"ranker.{k}" not in RESULT_NEUTRAL}
    return {"params": json.loads(json.dumps({"ranker": ranker, "tasks": tasks,
                                             "seed": cfg.seed})), "inputs": {}}


def test_a_record_written_before_settings_were_added_stays_current(tmp_path):
    cfg = load_config([], [f"run_dir={tmp_path}"])
    calls = []
    stage = _tasks_stage(calls)
    old = _old_params(cfg)
    assert fingerprint(old) in accepted_fingerprints(stage, cfg, tmp_path)
    (tmp_path / "toy").mkdir()
    write_json(tmp_path / "toy" / "stage.json", {"stage": "toy", "fingerprint": fingerprint(old), **old})
    assert is_current(stage, cfg) and run_stage(stage, cfg)["skipped"] is True and calls == []
    # ... but not once a setting it lacked is away from its legacy value
    cfg2 = load_config([], [f"run_dir={tmp_path}", "tasks.exclude_user_items=true"])
    assert not is_current(stage, cfg2)


def test_a_checkpoint_written_before_settings_were_added_resumes(tmp_path, caplog):
    cfg = load_config([], [f"run_dir={tmp_path}"])
    partial = tmp_path / ".toy.partial"
    partial.mkdir()
    (partial / ".fingerprint").write_text(fingerprint(_old_params(cfg)))
    (partial / "checkpoint").write_text("step 50")
    calls = []
    with caplog.at_level(logging.INFO, logger="ulmrec"):
        run_stage(_tasks_stage(calls), cfg)
    assert "checkpoint" in calls[0], "the old checkpoint was thrown away"
    assert "resuming checkpoints written by an earlier version" in caplog.text
    assert (tmp_path / "toy" / "adapter.txt").exists() and not (tmp_path / "toy" / ".params.json").exists()


def test_a_checkpoint_made_with_other_settings_is_discarded_with_the_reason(tmp_path, caplog):
    calls = []
    stage = _tasks_stage(calls)
    cfg = load_config([], [f"run_dir={tmp_path}", "ranker.lr=0.001"])
    cfg._fail = True
    with pytest.raises(RuntimeError, match="killed"):
        run_stage(stage, cfg)
    assert (tmp_path / ".toy.partial" / "checkpoint").exists()
    cfg = load_config([], [f"run_dir={tmp_path}", "ranker.lr=0.002"])
    with caplog.at_level(logging.INFO, logger="ulmrec"):
        run_stage(stage, cfg)
    assert "checkpoint" not in calls[-1]
    assert "discarding the checkpoints" in caplog.text and "ranker.lr: 0.001 -> 0.002" in caplog.text
    # a finished stage rebuilt for a changed setting says which one
    caplog.clear()
    cfg = load_config([], [f"run_dir={tmp_path}", "ranker.lr=0.003"])
    with caplog.at_level(logging.INFO, logger="ulmrec"):
        run_stage(stage, cfg)
    assert "rebuilding (settings changed: ranker.lr: 0.002 -> 0.003)" in caplog.text


def test_resumed_and_fresh_stage_records_carry_todays_fingerprint(tmp_path):
    cfg = load_config([], [f"run_dir={tmp_path}"])
    calls = []
    stage = _tasks_stage(calls)
    rec = run_stage(stage, cfg)
    assert rec["fingerprint"] == fingerprint(stage_fingerprint(stage, cfg, tmp_path))
    assert rec["fingerprint"] == accepted_fingerprints(stage, cfg, tmp_path)[0]
