"""Evaluation prompts: next-item prediction on the retriever's candidates for 'valid' or 'test'.

Candidates stay in retriever order (LlamaRec does not shuffle them either), and only the "Rank" users, whose
target is among the first ``num_candidates``, get a prompt; the others score 0 at every k <= 20 (paper 5.1.3:
Overall = Rank x coverage). Prompt variants: 'full' (ULMRec), 'no_history' (ULMRec-uid, paper Table 4) and
'no_index' (the LlamaRec-style baseline).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError, DataError
from ulmrec.tasks.base import Sample
from ulmrec.tasks.builders import Context, next_item_input, ranking_sample
from ulmrec.tasks.candidate_lists import check_candidates
from ulmrec.tasks.config import TasksConfig
from ulmrec.tasks.inputs import TitleFn, Titles, check_mapping
from ulmrec.tasks.templates import INSTRUCTIONS

PROMPT_VARIANTS = ("full", "no_history", "no_index")


def rank_users(candidates: pd.DataFrame, n: int) -> pd.DataFrame:
    """Rows whose target is among the first ``n`` candidates, sorted by user_idx."""
    hit = [int(t) in list(c[:n]) for c, t in zip(candidates["candidates"], candidates["target"], strict=True)]
    return candidates[np.asarray(hit, dtype=bool)].sort_values("user_idx", kind="stable")


def build_eval_samples(ds: Dataset, split: str, candidates: pd.DataFrame, cfg: TasksConfig, *,
                       identities: Mapping[int, str] | None = None, title_fn: TitleFn | None = None,
                       prompt: str | None = None, max_users: int = 0, seed: int = 0) -> list[Sample]:
    """One next-item prompt per Rank user of ``split`` ('valid' or 'test'), sorted by user_idx.

    ``candidates``: ``retrieval/candidates_{split}.parquet`` (user_idx, candidates, target, ...);
    ``prompt``: one of :data:`PROMPT_VARIANTS` (default ``cfg.prompt``); ``max_users`` > 0 keeps a fixed random subset
    of that many Rank users (drawn with ``seed``), e.g. the validation subset used while training.
    """
    prompt = prompt or cfg.prompt
    if prompt not in PROMPT_VARIANTS:
        raise ConfigError(f"unknown prompt {prompt!r}; one of {', '.join(PROMPT_VARIANTS)}")
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
    n = cfg.num_candidates
    check_candidates(candidates, n, f"candidates_{split}")
    identities = check_mapping("identities", identities)
    if prompt != "no_index" and not identities:
        raise ConfigError(f"the '{prompt}' prompt shows the user index, but no user identities were given")
    rows = rank_users(candidates, n)
    if max_users and len(rows) > max_users:
        keep = np.sort(np.random.default_rng([seed, 7]).choice(len(rows), max_users, replace=False))
        rows = rows.iloc[keep]
    truth = ds.valid_targets() if split == "valid" else ds.test_targets()
    ctx = Context(ds, cfg, Titles(ds, title_fn), identities, {})
    samples = []
    for row, u, cands, target in zip(rows.index, rows["user_idx"], rows["candidates"], rows["target"], strict=True):
        u, target, cands = int(u), int(target), [int(c) for c in cands[:n]]
        if not 0 <= u < ds.num_users or truth[u] != target:
            raise DataError(f"user {u}: target {target} is not the user's {split} item", f"candidates_{split}",
                            line=int(row) + 1, field="target")
        if prompt != "no_index" and u not in identities:
            raise DataError(f"user {u} has no identity string (tasks.identity)", f"candidates_{split}",
                            line=int(row) + 1, field="user_idx")
        history = ctx.titles.many(ds.history(u, split)[-cfg.max_history:])
        samples.append(ranking_sample("next_item", u, INSTRUCTIONS[f"next_item/{prompt}"],
                                      next_item_input(ctx, u, history, cands, prompt), cands, cands.index(target),
                                      split=split, prompt=prompt))
    return samples
