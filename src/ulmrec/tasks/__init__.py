"""Alignment tasks (paper 4.2, Figures 2-7): instruction samples the ranker trains and is evaluated on.

    samples, report = build_training_samples(ds, cfg.tasks, identities=ids, preferences=prefs, seed=cfg.seed)
    prompt, response = format_example(samples[0])
    test = build_eval_samples(ds, "test", candidates_test, cfg.tasks, identities=ids)
"""

import importlib

# Imported lazily (PEP 562): `ulmrec.config` imports `ulmrec.tasks.config`, and every CLI start would otherwise
# pay for pandas and the builders.
_WHERE = {
    "TASKS": "base", "Sample": "base", "TasksConfig": "config",
    "PROMPT_VARIANTS": "eval_samples", "build_eval_samples": "eval_samples", "rank_users": "eval_samples",
    "index_identities": "inputs", "read_identities": "inputs", "load_preferences": "inputs",
    "numeric_identities": "inputs", "original_identities": "inputs", "preferences_from_frame": "inputs",
    "build_training_samples": "mixing", "check_run_settings": "mixing", "validate": "mixing",
    "INSTRUCTIONS": "templates", "format_example": "templates", "format_prompt": "templates", "letters": "templates",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"ulmrec.tasks.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ulmrec.tasks' has no attribute {name!r}")


__all__ = [
    "INSTRUCTIONS", "PROMPT_VARIANTS", "TASKS", "Sample", "TasksConfig", "build_eval_samples", "build_training_samples", "check_run_settings",
    "format_example", "format_prompt", "index_identities", "letters", "read_identities", "load_preferences",
    "numeric_identities", "original_identities", "preferences_from_frame", "rank_users", "validate",
]
