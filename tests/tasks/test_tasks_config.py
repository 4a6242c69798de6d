import math

import pytest

from ulmrec.config import load_config
from ulmrec.errors import ConfigError
from ulmrec.tasks import PAPER_TASKS, TASKS, TasksConfig


def test_defaults_cover_every_task():
    cfg = TasksConfig()
    assert cfg.active() == list(PAPER_TASKS)  # letter_lookup (beyond the paper) is enabled with ratio 0
    assert cfg.enabled == list(TASKS) and cfg.ratios["letter_lookup"] == 0
    assert math.isinf(cfg.ratios["next_item"]) and cfg.ratios["rating"] == 1.0


def test_partial_ratios_keep_the_other_defaults():
    cfg = load_config(overrides=["tasks.ratios.rating=0", "tasks.ratios.intent=0.5"]).tasks
    assert cfg.ratios["rating"] == 0 and cfg.ratios["intent"] == 0.5
    assert cfg.ratios["history_to_index"] == 1.0 and math.isinf(cfg.ratios["next_item"])
    assert "rating" not in cfg.active() and "intent" in cfg.active()


def test_enabled_switches_tasks_off():
    cfg = load_config(overrides=["tasks.enabled=[next_item]"]).tasks
    assert cfg.active() == ["next_item"]


@pytest.mark.parametrize("override, words", [
    ("tasks.num_candidates=27", "between 2 and 26"),
    ("tasks.num_candidates=1", "between 2 and 26"),
    ("tasks.enabled=[next_item, ranking]", "unknown task(s) ranking"),
    ("tasks.ratios.nextitem=1", "unknown task(s) nextitem"),
    ("tasks.ratios.rating=-1", "ratios.rating must be a number >= 0"),
    ("tasks.max_history=0", "max_history"),
    ("tasks.train_candidates=random", "not one of"),
    ("tasks.prompt=short", "not one of"),
])
def test_bad_settings_are_config_errors(override, words):
    with pytest.raises(ConfigError, match=None) as err:
        load_config(overrides=[override])
    assert words in str(err.value)


def test_cross_stage_settings():
    from ulmrec.tasks import check_run_settings

    check_run_settings(load_config())
    with pytest.raises(ConfigError, match="retrieval.num_candidates=10"):
        check_run_settings(load_config(overrides=["retrieval.num_candidates=10"]))
    with pytest.raises(ConfigError, match="retrieval.train_candidates=true"):
        check_run_settings(load_config(overrides=["tasks.train_candidates=retriever"]))
    check_run_settings(load_config(overrides=["tasks.train_candidates=retriever", "retrieval.train_candidates=true"]))
