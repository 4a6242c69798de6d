"""Alignment tasks (paper 4.2, Figures 2-7): instruction samples the ranker trains and is evaluated on.

    samples, report = build_training_samples(ds, cfg.tasks, identities=ids, preferences=prefs, seed=cfg.seed)
    prompt, response = format_example(samples[0])
    test = build_eval_samples(ds, "test", candidates_test, cfg.tasks, identities=ids)
"""

from ulmrec.tasks.base import PAPER_TASKS, TASKS, Sample
from ulmrec.tasks.config import TasksConfig
from ulmrec.tasks.eval_samples import PROMPT_VARIANTS, build_eval_samples, rank_users
from ulmrec.tasks.inputs import (
    index_identities,
    load_preferences,
    numeric_identities,
    original_identities,
    preferences_from_frame,
    read_identities,
)
from ulmrec.tasks.mixing import build_training_samples, check_run_settings, validate
from ulmrec.tasks.templates import INSTRUCTIONS, format_example, format_prompt, letters

__all__ = [
    "INSTRUCTIONS", "PAPER_TASKS", "PROMPT_VARIANTS", "TASKS", "Sample", "TasksConfig", "build_eval_samples", "build_training_samples", "check_run_settings",
    "format_example", "format_prompt", "index_identities", "letters", "read_identities", "load_preferences",
    "numeric_identities", "original_identities", "preferences_from_frame", "rank_users", "validate",
]
