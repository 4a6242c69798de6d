"""Prompt templates of the six tasks (paper Figures 2-7) in LlamaRec's Alpaca-style prompt format.

A prompt is ``### Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n### Response:\\n`` and the model is
supervised on the response text only (a letter, index tokens, a preference sentence or a rating like ``4.0``).
Input fields are written ``Name: value`` and separated by ``;\\n``, as in the authors' release
(Palpitate18/ULMRec config.py: ``'User ID: {}; \\n User history: {}; \\n Candidate pool: {}'``) and Figure 6;
history items are numbered ``(1) title``, candidates lettered ``(A) title``, one per line.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

from ulmrec.tasks.base import Sample

LETTERS = string.ascii_uppercase

#: The '### Instruction:' text of each task; the next-item variants are keyed next_item/<prompt>.
INSTRUCTIONS = {
    # Fig. 2 (the authors' release, config.py llm_system_template_traintest)
    "next_item/full": "Given user index, user history in chronological order and candidate items, recommend an "
                      "item from the candidate pool with its index letter for this user.",
    # Table 4, ULMRec-uid: the user index replaces the history
    "next_item/no_history": "Given user index and candidate items, recommend an item from the candidate pool "
                            "with its index letter for this user.",
    # LlamaRec (Yueeeeeeee/LlamaRec config.py llm_system_template)
    "next_item/no_index": "Given user history in chronological order, recommend an item from the candidate pool "
                          "with its index letter.",
    "index_to_preference": "Given user index, predict the user's preference.",  # Fig. 3
    "preference_to_index": "Given user's preference, predict the user index.",  # Fig. 4
    "history_to_index": "Given user's history in chronological order, predict the user index.",  # Fig. 5
    "rating": "Given user index and preferences, predict the user's rating of the last item of user history "
              "out of 5.",  # Fig. 6
    "rating/no_preference": "Given user index, predict the user's rating of the last item of user history "
                            "out of 5.",
    "intent": "Given user's preference and candidate items, recommend an item from the candidate pool with its "
              "index letter for this user.",  # Fig. 7
    # beyond the paper (tasks.ratios.letter_lookup): which letter names a given title
    "letter_lookup": "Given candidate items and the title of one of them, answer with that item's index letter in "
                     "the candidate pool.",
}

PROMPT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"


def format_prompt(sample: Sample) -> str:
    """Everything the model reads, up to and including ``### Response:\\n``."""
    return PROMPT.format(instruction=sample.instruction, input=sample.input)


def format_example(sample: Sample) -> tuple[str, str]:
    """``(prompt, response)``: the ranker tokenizes both and computes the loss on the response only."""
    return format_prompt(sample), sample.response


def letters(n: int) -> list[str]:
    """The first ``n`` candidate letters: ``['A', 'B', ...]``."""
    if not 1 <= n <= len(LETTERS):
        raise ValueError(f"between 1 and {len(LETTERS)} letters, asked for {n}")
    return list(LETTERS[:n])


def history_text(titles: Sequence[str], ratings: Sequence[float | None] | None = None) -> str:
    """``(1) title\\n(2) title ...``; with ``ratings``, ``(Rating: 5.0)`` after each title whose rating is given."""
    lines = []
    for i, title in enumerate(titles):
        line = f"({i + 1}) {title}"
        if ratings is not None and ratings[i] is not None:
            line += f" (Rating: {rating_text(ratings[i])})"
        lines.append(line)
    return "\n".join(lines)


#: How a candidate line shows its letter: before the title (the paper's Fig. 2) or after it (beyond the paper).
CANDIDATE_FORMATS = ("letter_first", "letter_last")


def candidates_text(titles: Sequence[str], fmt: str = "letter_first") -> str:
    """``(A) title\\n(B) title ...`` (``letter_first``, the paper) or ``title (A)\\ntitle (B) ...``
    (``letter_last``: the letter token comes after, and can attend to, its title)."""
    if fmt == "letter_first":
        return "\n".join(f"({LETTERS[i]}) {t}" for i, t in enumerate(titles))
    if fmt == "letter_last":
        return "\n".join(f"{t} ({LETTERS[i]})" for i, t in enumerate(titles))
    raise ValueError(f"candidate format must be one of {', '.join(CANDIDATE_FORMATS)}, got {fmt!r}")


def rating_text(rating: float) -> str:
    """``4`` -> ``'4.0'`` (Fig. 6)."""
    return f"{float(rating):.1f}"


def fields(*pairs: tuple[str, str]) -> str:
    """``fields(('User ID', '<a_1> ...'), ('Preference', '...'))`` -> ``'User ID: <a_1> ...;\\nPreference: ...'``."""
    return ";\n".join(f"{name}: {value}" for name, value in pairs)
