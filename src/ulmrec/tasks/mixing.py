"""Training data: the enabled tasks, mixed by ratio, cut to a budget and shuffled (paper 4.2: "shuffling the
task data and randomly selecting samples from each task according to specified proportions").

Each task's random choices come from their own stream (``seed``, task number), so switching one task off
(the ablations of paper Fig. 8) leaves the samples of the others unchanged unless a ``max_samples`` budget
shares them out again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ulmrec.artifacts import USER_INDEX, candidates
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError
from ulmrec.tasks.base import TASKS, Sample
from ulmrec.tasks.builders import TASK_SPECS, Context
from ulmrec.tasks.candidate_lists import TrainCandidates
from ulmrec.tasks.config import RETRIEVER_MODES, TasksConfig
from ulmrec.tasks.inputs import TitleFn, Titles, check_mapping

log = logging.getLogger("ulmrec")

RANKING_TASKS = ("next_item", "intent", "letter_lookup")

MISSING = {
    "identity": f"no user identities were given (tasks.identity=index needs {USER_INDEX.key})",
    "preference": "no user preferences were given (run `ulmrec preferences`, or use a source that ships them)",
    "rating": "the dataset has no ratings",
}


def task_needs(name: str, cfg: TasksConfig) -> tuple[str, ...]:
    """Inputs task ``name`` needs under ``cfg`` (the LlamaRec-style next-item prompt needs no identity)."""
    if name == "next_item" and cfg.prompt == "no_index":
        return ()
    return TASK_SPECS[name].needs


def validate(cfg: TasksConfig, ds: Dataset, train_candidates: pd.DataFrame | None = None) -> None:
    """Settings that cannot work with this data: raised as ConfigError before any sample is built."""
    if not isinstance(cfg, TasksConfig):
        raise ConfigError(f"expected a TasksConfig, got {type(cfg).__name__}")
    ranking = [t for t in cfg.active() if t in RANKING_TASKS]
    if ranking and ds.num_items < cfg.num_candidates:
        raise ConfigError(f"tasks.num_candidates={cfg.num_candidates} letters, but the dataset has only "
                          f"{ds.num_items} items; lower tasks.num_candidates")
    if ranking and cfg.train_candidates in RETRIEVER_MODES and train_candidates is None:
        raise ConfigError(f"tasks.train_candidates={cfg.train_candidates} needs the retriever's candidates for "
                          f"every training prefix ({candidates('train').key}); none were given")


def check_run_settings(cfg) -> None:
    """Cross-stage settings of a whole ``ulmrec.config.Config``, checked before training starts: the retriever
    must hand over at least as many candidates as there are letters, and write training candidates when the
    tasks read them."""
    tasks, retrieval = cfg.tasks, cfg.retrieval
    if retrieval.num_candidates < tasks.num_candidates:
        raise ConfigError(f"tasks.num_candidates={tasks.num_candidates} letters but retrieval.num_candidates="
                          f"{retrieval.num_candidates} candidates; raise retrieval.num_candidates or lower the letters")
    ranking = [t for t in tasks.active() if t in RANKING_TASKS]
    if ranking and tasks.train_candidates in RETRIEVER_MODES and not getattr(retrieval, "train_candidates", False):
        raise ConfigError(f"tasks.train_candidates={tasks.train_candidates} needs retrieval.train_candidates=true "
                          f"({candidates('train').name})")
    if ranking and tasks.train_candidates == "hard_negatives" and retrieval.num_candidates < tasks.hard_negative_pool:
        log.warning("tasks: hard_negative_pool=%d but retrieval.num_candidates=%d: the negatives are drawn from the "
                    "retriever's top %d (raise retrieval.num_candidates for a larger pool)", tasks.hard_negative_pool,
                    retrieval.num_candidates, retrieval.num_candidates)


def draw_count(ratio: float, pool: int, rng: np.random.Generator) -> int:
    """Samples of one user: ``floor(ratio)`` plus one more with probability ``frac(ratio)``, at most ``pool``."""
    if math.isinf(ratio):
        return pool
    k = int(ratio) + int(rng.random() < ratio - int(ratio))
    return min(k, pool)


def select(ctx: Context, name: str, ratio: float, rng: np.random.Generator) -> tuple[list[tuple[int, int]], dict]:
    """The (user, position) slots of one task and its counts."""
    spec, needs = TASK_SPECS[name], task_needs(name, ctx.cfg)
    slots: list[tuple[int, int]] = []
    pool_size = users = without_input = 0
    for u in range(ctx.ds.num_users):
        pool = spec.pool(ctx, u)
        if not pool:
            continue
        if ("identity" in needs and u not in ctx.identities) or ("preference" in needs and u not in ctx.preferences):
            without_input += 1
            continue
        pool_size += len(pool)
        k = draw_count(ratio, len(pool), rng)
        if k == 0:
            continue
        picked = rng.choice(pool, size=k, replace=False).tolist() if spec.random_pick else pool[:k]
        slots.extend((u, int(p)) for p in picked)
        users += 1
    return slots, {"pool": pool_size, "users": users, "users_without_input": without_input, "selected": len(slots)}


def apply_budget(slots: dict[str, list], budget: int, seed: int) -> dict[str, list]:
    """Cut the mix to ``budget`` samples, each task keeping its share (largest remainder)."""
    total = sum(len(s) for s in slots.values())
    if not budget or total <= budget:
        return slots
    exact = {t: len(s) * budget / total for t, s in slots.items()}
    quota = {t: int(x) for t, x in exact.items()}
    for t in sorted(exact, key=lambda t: (quota[t] - exact[t], TASKS.index(t)))[:budget - sum(quota.values())]:
        quota[t] += 1
    out = {}
    for t, s in slots.items():
        keep = np.sort(np.random.default_rng([seed, TASKS.index(t), 2]).choice(len(s), quota[t], replace=False))
        out[t] = [s[i] for i in keep]
    return out


def build_training_samples(ds: Dataset, cfg: TasksConfig, *, identities: Mapping[int, str] | None = None,
                           preferences: Mapping[int, str] | None = None, seed: int = 0,
                           title_fn: TitleFn | None = None,
                           train_candidates: pd.DataFrame | None = None) -> tuple[list[Sample], dict]:
    """All enabled tasks, mixed, budgeted and shuffled by ``seed``. Returns ``(samples, report)``.

    ``identities`` / ``preferences``: ``{user_idx: str}``; ``title_fn`` cuts a title (default: kept);
    ``train_candidates``: the retriever's per-prefix candidates (``tasks.train_candidates`` one of
    :data:`~ulmrec.tasks.config.RETRIEVER_MODES`).
    A task whose inputs are missing is skipped with one logged message and ``status: skipped`` in the report.
    """
    validate(cfg, ds, train_candidates)
    identities, preferences = check_mapping("identities", identities), check_mapping("preferences", preferences)
    retrieved = None
    if cfg.train_candidates in RETRIEVER_MODES and train_candidates is not None:
        hard = cfg.train_candidates == "hard_negatives"
        exclude = cfg.exclude_user_items and not hard
        # 'hard_negatives' reads a pool beyond the letters; with exclusion everything the file holds is kept, so the
        # ranks beyond num_candidates refill the list
        keep = cfg.hard_negative_pool if hard else (1 << 30 if exclude else None)
        retrieved = TrainCandidates(train_candidates, ds, cfg.num_candidates, keep=keep, exclude_user_items=exclude)
    ctx = Context(ds, cfg, Titles(ds, title_fn), identities, preferences, retrieved, seed=seed)

    report: dict = {"tasks": {}, "seed": seed, "train_candidates": cfg.train_candidates}
    if retrieved is not None:
        report["retrieved_prefixes"] = {"lists": len(retrieved), "with_target": len(retrieved.hits),
                                        "missing_target": cfg.missing_target}
        if cfg.train_candidates == "hard_negatives":  # K in effect: what the file holds, at most the setting
            report["retrieved_prefixes"].update(hard_negative_pool=cfg.hard_negative_pool,
                                                pool_in_file=retrieved.list_length)
    slots: dict[str, list[tuple[int, int]]] = {}
    for k, name in enumerate(TASKS):
        entry = report["tasks"][name] = {"status": "off", "ratio": cfg.ratios[name], "samples": 0}
        if name not in cfg.active():
            continue
        missing = [MISSING[n] for n in task_needs(name, cfg)
                   if {"identity": not identities, "preference": not preferences, "rating": not ds.has_ratings}[n]]
        if missing:
            entry.update(status="skipped", reason="; ".join(missing))
            log.warning("tasks: skipping '%s': %s", name, entry["reason"])
            continue
        slots[name], counts = select(ctx, name, cfg.ratios[name], np.random.default_rng([seed, k]))
        entry.update(status="ok", **counts)

    slots = apply_budget(slots, cfg.max_samples, seed)
    samples: list[Sample] = []
    with tqdm(total=sum(len(s) for s in slots.values()), desc="tasks", unit="sample", leave=False) as bar:
        for name, chosen in slots.items():
            rng = np.random.default_rng([seed, TASKS.index(name), 1])
            render = TASK_SPECS[name].render
            made = 0
            for i, (u, p) in enumerate(chosen):
                if (s := render(ctx, u, p, rng)) is not None:
                    samples.append(s)
                    made += 1
                if i % 1000 == 999:
                    bar.update(1000)
            bar.update(len(chosen) % 1000)
            report["tasks"][name]["samples"] = made
    if not samples:
        reasons = {t: e.get("reason", e["status"]) for t, e in report["tasks"].items()}
        raise ConfigError(f"no training samples: every task is off, skipped or empty ({reasons})")
    order = np.random.default_rng([seed, 1000]).permutation(len(samples))
    samples = [samples[i] for i in order]
    report.update(total=len(samples), not_rendered=ctx.counts, untitled_items=len(ctx.titles.untitled))
    log.info("tasks: %d training samples (%s)", len(samples),
             ", ".join(f"{t} {e['samples']}" for t, e in report["tasks"].items() if e["status"] == "ok"))
    return samples, report
