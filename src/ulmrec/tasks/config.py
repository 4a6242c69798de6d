"""Settings of the six alignment tasks (paper 4.2, Figures 2-7). Owned by the tasks package."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ulmrec.tasks.base import TASKS

MAX_LETTERS = 26

#: ``train_candidates`` modes that read the retriever's per-prefix candidates (retrieval/candidates_train.parquet).
RETRIEVER_MODES = ("retriever", "retriever_shuffled", "hard_negatives")
#: Modes whose candidates are always shuffled, with a random stream of their own per (task, user, position).
ALWAYS_SHUFFLED = ("retriever_shuffled", "hard_negatives")

#: Samples per user of each task by default: every training prefix for next-item prediction (LlamaRec),
#: one per user for each alignment task.
DEFAULT_RATIOS: dict[str, float] = {
    "next_item": math.inf,
    "index_to_preference": 1.0,
    "preference_to_index": 1.0,
    "history_to_index": 1.0,
    "rating": 1.0,
    "intent": 1.0,
    "letter_lookup": 0.0,  # beyond the paper: off unless a ratio is set
}


@dataclass
class TasksConfig:
    max_history: int = 20
    """(int) History titles shown in a prompt (paper 4.3: at most 20, the most recent)."""
    num_candidates: int = 20
    """(int) Candidates per ranking prompt, lettered A, B, ... (paper: 20, A..T; at most 26)."""
    enabled: list[str] = field(default_factory=lambda: list(TASKS))
    """(list[str]) Tasks switched on, any of next_item, index_to_preference, preference_to_index,
    history_to_index, rating, intent (paper Fig. 8 'w/o all-align' = [next_item]) and letter_lookup (beyond the
    paper; it only draws samples once tasks.ratios.letter_lookup > 0)."""
    ratios: dict[str, float] = field(default_factory=dict)
    """(dict[str, float]) Mixing ratio per task = samples drawn per user on average (2.5: two, and a third for
    half of the users; .inf: all of the user's distinct samples, e.g. every training prefix; 0: off). Keys left
    out keep their defaults (next_item .inf, letter_lookup 0, the others 1.0), so `tasks.ratios.rating=0` works
    alone. letter_lookup (beyond the paper): per user, that many training prefixes' candidate lists, each with one
    candidate drawn at random whose title is given and whose letter is the answer (it teaches which letter names
    which title, the step a letter ranker cannot rank by content without)."""
    max_samples: int = 0
    """(int) Total training-sample budget after mixing (0: no limit); each task keeps its share of the mix."""
    train_candidates: Literal["sampled", "retriever", "retriever_shuffled", "hard_negatives"] = "sampled"
    """(str) Training candidates of next_item and intent: 'sampled' = the target plus uniformly sampled items
    the user has not seen before it (LlamaRec); 'retriever' = the retriever's top candidates for that training
    prefix (retrieval/candidates_train.parquet); 'retriever_shuffled' = the same lists, always shuffled with a
    random stream per (task, user, position), so a prefix's order does not depend on which other samples are
    drawn; 'hard_negatives' = the target plus num_candidates-1 negatives drawn without replacement from the
    retriever's top hard_negative_pool for that prefix (target and seen items removed; topped up with uniform
    unseen items when the pool is short), shuffled the same way."""
    hard_negative_pool: int = 50
    """(int) 'hard_negatives': how many of the retriever's top candidates per training prefix the negatives
    are drawn from. candidates_train.parquet holds retrieval.num_candidates per prefix (20 by default), so a
    pool larger than that uses what the file has: raise retrieval.num_candidates for a real choice."""
    missing_target: Literal["replace", "skip"] = "replace"
    """(str) 'retriever' / 'retriever_shuffled' candidates without the target: 'replace' the lowest-ranked
    candidate by the target, or 'skip' that training prefix ('hard_negatives' always adds the target)."""
    exclude_user_items: bool = False
    """(bool) 'retriever' / 'retriever_shuffled' training lists (beyond the paper): drop the user's other
    training items from a prefix's retriever list before its top num_candidates are taken, then fill it up from
    the retriever's further ranks (what candidates_train.parquet holds beyond num_candidates: raise
    retrieval.num_candidates) and, when those run out, with uniform items the user never had. Evaluation lists
    hold none of the user's training items (the retriever excludes seen items); the training-prefix lists of a
    retriever trained on those very sequences hold the user's later items, which the user did buy, as negatives
    (of the lists holding the target: 1.2 on full Beauty, 1.3 on Games, 2.5 on the Beauty sample;
    benchmarks/results/train_list_user_items.md)."""
    shuffle_candidates: bool = True
    """(bool) Shuffle training candidates (for 'retriever' too: on training prefixes the retriever has seen
    the answer and ranks it first most of the time, which would teach 'answer A')."""
    prompt: Literal["full", "no_history", "no_index"] = "full"
    """(str) The next-item prompt: 'full' (user index + history + candidates, ULMRec), 'no_history' (user index
    + candidates, paper Table 4 ULMRec-uid) or 'no_index' (history + candidates, the LlamaRec-style ranker)."""
    candidate_format: Literal["letter_first", "letter_last"] = "letter_first"
    """(str) How every candidate pool (next_item, intent, letter_lookup, evaluation) shows the letters:
    'letter_first' = '(A) title' (the paper's Fig. 2, LlamaRec); 'letter_last' = 'title (A)' (beyond the paper:
    the letter token comes after its title, so it can attend to the title it names)."""
    identity: Literal["index", "reference", "numeric", "original"] = "index"
    """(str) The user's identity string (paper Fig. 9): 'index' = P-ID from index/user_index.parquet,
    'reference' = the authors' released P-ID (data/reference_index.parquet), 'numeric' = N-ID (user_idx + 1),
    'original' = O-ID (the dataset's user id)."""

    def __post_init__(self) -> None:
        if not 2 <= self.num_candidates <= MAX_LETTERS:
            raise ValueError(f"num_candidates must be between 2 and {MAX_LETTERS} (one letter A..Z each), "
                             f"got {self.num_candidates}")
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        if self.hard_negative_pool < 1:
            raise ValueError(f"hard_negative_pool must be >= 1, got {self.hard_negative_pool}")
        if self.train_candidates in ALWAYS_SHUFFLED and not self.shuffle_candidates:
            raise ValueError(f"shuffle_candidates=false contradicts train_candidates={self.train_candidates}, which "
                             "is always shuffled; use train_candidates=retriever to keep the retriever's order")
        if self.max_samples < 0:
            raise ValueError(f"max_samples must be >= 0 (0: no limit), got {self.max_samples}")
        unknown = sorted(set(self.enabled) - set(TASKS)) + sorted(set(self.ratios) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
        ratios = dict(DEFAULT_RATIOS)
        for name, value in self.ratios.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value) or value < 0:
                raise ValueError(f"ratios.{name} must be a number >= 0 (.inf: all), got {value!r}")
            ratios[name] = float(value)
        self.ratios = ratios
        self.enabled = [t for t in TASKS if t in self.enabled]

    def active(self) -> list[str]:
        """Enabled tasks with a ratio above 0, in :data:`TASKS` order."""
        return [t for t in self.enabled if self.ratios[t] > 0]
