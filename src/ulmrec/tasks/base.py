"""The instruction sample every alignment task produces (paper 4.2, Figures 2-7).

A task builder turns a :class:`~ulmrec.data.dataset.Dataset` (plus preferences, user indices and candidates)
into :class:`Sample` records; the ranker only formats, tokenizes and trains on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The paper's six alignment tasks (4.2.1-4.2.6).
PAPER_TASKS = ("next_item", "index_to_preference", "preference_to_index", "history_to_index", "rating", "intent")
#: Every task a mix can draw from: the paper's six, then ``letter_lookup`` (beyond the paper, off by default:
#: its ratio is 0): a candidate list and one candidate's title, answered with that candidate's letter.
TASKS = (*PAPER_TASKS, "letter_lookup")


@dataclass
class Sample:
    task: str
    """One of :data:`TASKS`."""
    user_idx: int
    instruction: str
    """The '### Instruction:' text."""
    input: str
    """The '### Input:' text."""
    response: str
    """The supervised answer: a letter for ranking tasks, index tokens, a preference sentence or a rating."""
    candidates: list[int] | None = None
    """Ranking tasks: item_idx of the candidates in letter order (A, B, ...)."""
    target: int | None = None
    """Ranking tasks: position of the true item in ``candidates`` (None when it is not among them)."""
    meta: dict = field(default_factory=dict)
    """Provenance: ``split`` ('train' / 'valid' / 'test'), ``position`` (the sample's position in the user's
    sequence, see :mod:`ulmrec.tasks.builders`), ``prompt`` (next-item variant), ``teacher`` (training ranking
    samples on retriever candidates: the retriever's score of each candidate, letter order)."""
