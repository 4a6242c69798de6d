"""Moved to :mod:`ulmrec.metrics` (a ground-level module: retrieval and the ranker use it too)."""

from ulmrec.metrics import *  # noqa: F401,F403
from ulmrec.metrics import format_table, metrics_from_ranks, per_user_metrics, rank_and_overall, target_rank  # noqa: F401
