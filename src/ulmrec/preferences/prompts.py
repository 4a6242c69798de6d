"""Prompt templates that ask an LLM for one preference sentence per user (paper 4.2.2).

The paper gives GPT-3.5-Turbo "the user's reviews" and gets back one sentence such as "The user prefers puzzle
and mystery games on Nintendo DS, with a specific interest in the Professor Layton series." (Figure 3); it
does not publish its prompt. Version ``v1`` below asks for exactly that kind of sentence.

Users with review text get their reviews (with titles and ratings). Users without any (the shared Beauty and
Games data carry no review text) get the titles of what they bought (and their ratings when known), and the
prompt says so plainly, so the model does not invent reviews. A template is never edited in place: a changed
prompt gets a new version, because the version is part of the cache key and of each sentence's ``source``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ulmrec.preferences.history import UserHistory


@dataclass(frozen=True)
class PromptTemplate:
    system: str
    with_reviews: str
    """Intro for users with review text; ``{items}`` is the numbered list."""
    titles_only: str
    """Intro for users without any review text; ``{items}`` is the numbered list, ``{rated}`` a note on ratings."""
    task: str
    """The request that closes every prompt."""


PROMPT_TEMPLATES: dict[str, PromptTemplate] = {
    "v1": PromptTemplate(
        system="You summarise a shopper's tastes for a recommender system. Answer with exactly one sentence.",
        with_reviews=("Below are the products a user bought, oldest first, with the rating they gave (out of 5) when "
                      "known and the review they wrote.\n\n{items}"),
        titles_only=("This user wrote no reviews, so their preferences can only be inferred from what they bought. "
                     "Below are the titles of the products they bought, oldest first{rated}.\n\n{items}"),
        task=("Write one sentence, starting with \"The user prefers\", that describes this user's preferences: the "
              "kinds of products, brands, features or qualities they like (and dislike, if it shows). Use only the "
              "information above."),
    ),
}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 3, 0)].rstrip() + "..."


def _rating(r: float) -> str:
    return f"{r:g}/5"


def build_messages(h: UserHistory, version: str = "v1", *, max_items: int = 20, max_review_chars: int = 500,
                   max_title_chars: int = 120) -> tuple[list[dict], str]:
    """The chat messages for one user and the prompt's kind ('reviews' or 'titles').

    Only the user's ``max_items`` most recent training interactions are shown; a review is cut to
    ``max_review_chars`` characters (0 leaves reviews out), a title to ``max_title_chars``.
    """
    tpl = PROMPT_TEMPLATES[version]
    start = max(len(h.titles) - max_items, 0)
    titles, ratings, reviews = h.titles[start:], h.ratings[start:], h.reviews[start:]
    use_reviews = max_review_chars > 0 and any(reviews)
    lines = []
    for i, (title, rating, review) in enumerate(zip(titles, ratings, reviews), 1):
        parts = [_cut(title, max_title_chars) or "(untitled product)"]
        if rating is not None:
            parts.append(f"rating {_rating(rating)}")
        if use_reviews:
            parts.append(f"review: {_cut(review, max_review_chars)}" if review else "no review")
        lines.append(f"({i}) " + " | ".join(parts))
    items = "\n".join(lines)
    if use_reviews:
        intro, kind = tpl.with_reviews.format(items=items), "reviews"
    else:
        rated = ", with the rating they gave (out of 5)" if any(r is not None for r in ratings) else ""
        intro, kind = tpl.titles_only.format(items=items, rated=rated), "titles"
    messages = [{"role": "system", "content": tpl.system}, {"role": "user", "content": f"{intro}\n\n{tpl.task}"}]
    return messages, kind


def prompt_hash(messages: list[dict]) -> str:
    """SHA-256 of the exact messages sent: part of the cache key, so a changed history asks again."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def clean_answer(text: str | None) -> str:
    """One tidy sentence from a model's answer: whitespace collapsed, wrapping quotes and a leading
    'Preference:' label removed. Returns '' when nothing is left (the caller treats that as an empty answer)."""
    if not text:
        return ""
    s = " ".join(text.split())
    for label in ("Preference:", "preference:", "Answer:", "Sentence:"):
        if s.startswith(label):
            s = s[len(label):].strip()
    while len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        s = s[1:-1].strip()
    return s
