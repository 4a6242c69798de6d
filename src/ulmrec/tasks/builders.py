"""The six alignment tasks (paper 4.2.1-4.2.6, Figures 2-7): one :class:`Task` each.

A task offers, per user, a *pool* of distinct samples, each named by a position in the user's training
sequence (``pool``), and turns one position into a :class:`Sample` (``render``). Mixing
(:mod:`ulmrec.tasks.mixing`) decides how many positions of each pool are used. Only training items are ever
shown or asked for: the validation and test items stay unseen.

| task | position p of the training sequence s means | pool order |
|---|---|---|
| next_item | history s[:p] (last ``max_history``), target s[p], p >= 1 | any (drawn at random) |
| index_to_preference, preference_to_index | one sample per user | - |
| history_to_index | history s[:p+1] | most recent first |
| rating | history s[:p+1] with ratings, the rating of s[p] hidden and asked for | most recent first |
| intent | target s[p] among candidates, p >= 1 | most recent first |
| letter_lookup (beyond the paper) | the candidate list of next_item's prefix p, one candidate's title asked for | any (drawn at random) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ulmrec.data.dataset import Dataset
from ulmrec.tasks.base import TASKS, Sample
from ulmrec.tasks.candidate_lists import (
    TrainCandidates,
    hard_negative_candidates,
    place_target,
    prefix_rng,
    sample_candidates,
    top_up,
)
from ulmrec.tasks.config import ALWAYS_SHUFFLED, RETRIEVER_MODES, TasksConfig
from ulmrec.tasks.inputs import Titles
from ulmrec.tasks.templates import INSTRUCTIONS, LETTERS, candidates_text, fields, history_text, rating_text


@dataclass
class Context:
    """Everything a builder reads. ``identities`` / ``preferences`` map user_idx -> string (users missing
    from them get no sample of a task that needs them)."""

    ds: Dataset
    cfg: TasksConfig
    titles: Titles
    identities: dict[int, str]
    preferences: dict[int, str]
    train_candidates: TrainCandidates | None = None
    counts: dict[str, int] = field(default_factory=dict)
    """Renders that produced nothing, or were changed, by reason (e.g. 'next_item/target_not_retrieved_skip')."""
    seed: int = 0
    """Seed of the per-prefix random streams ('retriever_shuffled', 'hard_negatives')."""

    def __post_init__(self) -> None:
        self.train = self.ds.train_sequences()
        self._ratings: list[np.ndarray] | None = None
        self._retrieved = None
        if self.train_candidates is not None:  # 'skip': only prefixes whose list holds the target are offered
            skip = self.cfg.missing_target == "skip" and self.cfg.train_candidates != "hard_negatives"
            self._retrieved = self.train_candidates.users_positions(skip)

    def history(self, u: int, end: int) -> list[str]:
        """Titles of training items s[:end], the last ``max_history`` of them."""
        seq = self.train[u][:end]
        return self.titles.many(seq[-self.cfg.max_history:])

    def ratings(self, u: int) -> np.ndarray:
        """The user's ratings (float, NaN where unknown), training part."""
        if self._ratings is None:
            col = pd.to_numeric(self.ds.interactions["rating"], errors="coerce").astype("float64").to_numpy()
            offsets = np.concatenate([[0], np.cumsum([len(s) for s in self.ds.sequences])])
            self._ratings = [col[offsets[v]:offsets[v + 1]][:-2] for v in range(self.ds.num_users)]
        return self._ratings[u]

    def retrieved_positions(self, u: int) -> set[int] | None:
        return None if self._retrieved is None else self._retrieved.get(u, set())

    def preference(self, u: int) -> str:
        """The preference as an input field (a final period dropped before the ';', as in Figs. 6-7)."""
        return self.preferences[u].rstrip().rstrip(".")

    def skip(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def teacher(self, u: int, p: int, cands: list[int]) -> dict:
        """``{"teacher": scores}``: the retriever's score of every candidate of the prefix (letter order), the
        soft targets of ``ranker.distill_weight``; ``{}`` without retriever candidates or when one is unscored."""
        if self.train_candidates is None:
            return {}
        scores = self.train_candidates.scores_of(u, p, cands)
        return {} if scores is None else {"teacher": scores}

    def candidates(self, task: str, u: int, p: int, rng: np.random.Generator) -> tuple[list[int], int] | None:
        """(candidates in letter order, index of the target) for predicting s[p], or ``None``."""
        seq, n, target = self.train[u], self.cfg.num_candidates, int(self.train[u][p])
        mode = self.cfg.train_candidates
        # next_item: LlamaRec excludes what the user saw before the target; intent reads a preference drawn
        # from the whole history, so every training item of the user is excluded
        seen = seq[:p] if task in ("next_item", "letter_lookup") else seq
        if mode in ALWAYS_SHUFFLED:
            rng = prefix_rng(self.seed, TASKS.index(task), u, p)
        if mode in RETRIEVER_MODES:
            cands = self.train_candidates.get(u, p)
            if cands is None:
                self.skip(f"{task}/prefix_not_retrieved")
                return None
            if mode == "hard_negatives":
                got = hard_negative_candidates(rng, target, cands, seen, self.ds.num_items, n,
                                               self.cfg.hard_negative_pool)
                if got is None:
                    self.skip(f"{task}/too_few_unseen_items")
                    return None
                cands, uniform = got
                if uniform:
                    self.skip(f"{task}/hard_negatives_topped_up")
            else:
                cands = cands[:n]
                if len(cands) < n:  # tasks.exclude_user_items took more than the file holds beyond n
                    cands, _ = top_up(rng, cands, seq, self.ds.num_items, n)
                    self.skip(f"{task}/topped_up_after_exclusion")
                    if len(cands) < n:
                        return None
                if target not in cands:
                    self.skip(f"{task}/target_not_retrieved_{self.cfg.missing_target}")
                cands = place_target(cands, target, self.cfg.missing_target)
                if cands is None:
                    return None
        else:
            cands = sample_candidates(rng, target, seen, self.ds.num_items, n)
            if cands is None:
                self.skip(f"{task}/too_few_unseen_items")
                return None
        if self.cfg.shuffle_candidates:  # always true for ALWAYS_SHUFFLED (TasksConfig checks)
            rng.shuffle(cands)
        return cands, cands.index(target)


def ranking_sample(task: str, u: int, instruction: str, input_: str, cands: list[int], target: int,
                   **meta) -> Sample:
    return Sample(task=task, user_idx=u, instruction=instruction, input=input_, response=LETTERS[target],
                  candidates=cands, target=target, meta=meta)


def next_item_input(ctx: Context, u: int, history: list[str], cands: list[int], prompt: str) -> str:
    """Fig. 2 (``full``) and its two variants (``no_history``: Table 4; ``no_index``: LlamaRec)."""
    parts = []
    if prompt != "no_index":
        parts.append(("User ID", ctx.identities[u]))
    if prompt != "no_history":
        parts.append(("User history", history_text(history)))
    parts.append(("Candidate pool", candidates_text(ctx.titles.many(cands), ctx.cfg.candidate_format)))
    return fields(*parts)


@dataclass(frozen=True)
class Task:
    name: str
    needs: tuple[str, ...]
    """Inputs the task cannot do without: 'identity', 'preference', 'rating'."""
    pool: Callable[[Context, int], list[int]]
    render: Callable[[Context, int, int, np.random.Generator], Sample | None]
    random_pick: bool = False
    """Draw positions from the pool at random (else take the first ones: most recent first)."""


# ---------------------------------------------------------------- 4.2.1 next-item prediction (Fig. 2)
def _next_item_pool(ctx: Context, u: int) -> list[int]:
    positions = range(1, len(ctx.train[u]))
    allowed = ctx.retrieved_positions(u)
    return [p for p in positions if allowed is None or p in allowed]


def _next_item(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample | None:
    got = ctx.candidates("next_item", u, p, rng)
    if got is None:
        return None
    cands, target = got
    prompt = ctx.cfg.prompt
    return ranking_sample("next_item", u, INSTRUCTIONS[f"next_item/{prompt}"],
                          next_item_input(ctx, u, ctx.history(u, p), cands, prompt), cands, target,
                          position=p, split="train", prompt=prompt, **ctx.teacher(u, p, cands))


# ---------------------------------------------------------------- 4.2.2 / 4.2.3 index <-> preference (Fig. 3, 4)
def _one_per_user(ctx: Context, u: int) -> list[int]:
    return [len(ctx.train[u]) - 1] if len(ctx.train[u]) else []


def _index_to_preference(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample:
    return Sample("index_to_preference", u, INSTRUCTIONS["index_to_preference"],
                  fields(("User ID", ctx.identities[u])), ctx.preferences[u], meta={"split": "train"})


def _preference_to_index(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample:
    return Sample("preference_to_index", u, INSTRUCTIONS["preference_to_index"],
                  fields(("Preference", ctx.preference(u))), ctx.identities[u], meta={"split": "train"})


# ---------------------------------------------------------------- 4.2.4 history -> index (Fig. 5)
def _recent_first(ctx: Context, u: int) -> list[int]:
    return list(range(len(ctx.train[u]) - 1, -1, -1))


def _history_to_index(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample:
    return Sample("history_to_index", u, INSTRUCTIONS["history_to_index"],
                  fields(("User history", history_text(ctx.history(u, p + 1)))), ctx.identities[u],
                  meta={"position": p, "split": "train"})


# ---------------------------------------------------------------- 4.2.5 rating prediction (Fig. 6)
def _rating_pool(ctx: Context, u: int) -> list[int]:
    r = ctx.ratings(u)
    return [p for p in range(len(r) - 1, -1, -1) if not np.isnan(r[p])]


def _rating(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample:
    start = max(0, p + 1 - ctx.cfg.max_history)
    r = ctx.ratings(u)[start:p + 1]
    shown = [None if np.isnan(x) else float(x) for x in r[:-1]] + [None]  # the last rating is the answer
    parts = [("User ID", ctx.identities[u])]
    instruction = INSTRUCTIONS["rating/no_preference"]
    if u in ctx.preferences:  # Fig. 6 shows the preference; a user without one still has ratings to learn
        parts.append(("Preference", ctx.preference(u)))
        instruction = INSTRUCTIONS["rating"]
    parts.append(("User history", history_text(ctx.history(u, p + 1), shown)))
    return Sample("rating", u, instruction, fields(*parts), rating_text(r[-1]), meta={"position": p, "split": "train"})


# ---------------------------------------------------------------- 4.2.6 intent-based item prediction (Fig. 7)
def _intent_pool(ctx: Context, u: int) -> list[int]:
    return _next_item_pool(ctx, u)[::-1]


def _intent(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample | None:
    got = ctx.candidates("intent", u, p, rng)
    if got is None:
        return None
    cands, target = got
    input_ = fields(("Preference", ctx.preference(u)),
                    ("Candidate pool", candidates_text(ctx.titles.many(cands), ctx.cfg.candidate_format)))
    return ranking_sample("intent", u, INSTRUCTIONS["intent"], input_, cands, target, position=p, split="train",
                          **ctx.teacher(u, p, cands))


# ---------------------------------------------------------------- beyond the paper: letter lookup
def lookup_sample(u: int, cands: list[int], titles: list[str], probe: int, fmt: str = "letter_first",
                  **meta) -> Sample:
    """Candidate pool (letter order) + the title of candidate ``probe``; the answer is its letter. Nothing about
    the user is shown: the sample teaches the binding of letters to titles that ranking by letter relies on."""
    input_ = fields(("Candidate pool", candidates_text(titles, fmt)), ("Item", titles[probe]))
    return ranking_sample("letter_lookup", u, INSTRUCTIONS["letter_lookup"], input_, cands, probe, **meta)


def _letter_lookup(ctx: Context, u: int, p: int, rng: np.random.Generator) -> Sample | None:
    got = ctx.candidates("letter_lookup", u, p, rng)
    if got is None:
        return None
    cands, _ = got
    probe = int(rng.integers(len(cands)))  # every letter equally likely, whatever the list's order
    return lookup_sample(u, cands, ctx.titles.many(cands), probe, ctx.cfg.candidate_format, position=p, split="train")


TASK_SPECS: dict[str, Task] = {t.name: t for t in (
    Task("next_item", ("identity",), _next_item_pool, _next_item, random_pick=True),
    Task("index_to_preference", ("identity", "preference"), _one_per_user, _index_to_preference),
    Task("preference_to_index", ("identity", "preference"), _one_per_user, _preference_to_index),
    Task("history_to_index", ("identity",), _recent_first, _history_to_index),
    Task("rating", ("identity", "rating"), _rating_pool, _rating),
    Task("intent", ("preference",), _intent_pool, _intent),
    Task("letter_lookup", (), _next_item_pool, _letter_lookup, random_pick=True),
)}
