"""Prompt building: reviews when there are any, titles (and ratings) otherwise, said plainly."""

from __future__ import annotations

import pytest
from pref_fixtures import make_dataset

from ulmrec.preferences.history import UserHistory, training_histories
from ulmrec.preferences.prompts import build_messages, clean_answer, prompt_hash


def history(reviews=True, ratings=True, n=3) -> UserHistory:
    return UserHistory(0, "A1", tuple(f"Title {i}" for i in range(n)),
                       tuple(float(4 + i % 2) if ratings else None for i in range(n)),
                       tuple(f"review number {i} " + "x" * 50 if reviews else None for i in range(n)))


def test_reviews_prompt_shows_titles_ratings_and_reviews():
    messages, kind = build_messages(history(), max_review_chars=30)
    user = messages[-1]["content"]
    assert kind == "reviews" and messages[0]["role"] == "system"
    assert "(1) Title 0 | rating 4/5 | review: review number 0" in user
    assert "(3) Title 2 | rating 4/5" in user and "x" * 30 not in user  # reviews are cut
    assert "wrote no reviews" not in user and "The user prefers" in user


def test_titles_only_prompt_says_there_are_no_reviews():
    messages, kind = build_messages(history(reviews=False))
    user = messages[-1]["content"]
    assert kind == "titles"
    assert "This user wrote no reviews" in user and "with the rating they gave" in user
    assert "(2) Title 1 | rating 5/5" in user and "review:" not in user

    messages, _ = build_messages(history(reviews=False, ratings=False))
    user = messages[-1]["content"]
    assert "rating" not in user and "(2) Title 1\n" in user


def test_zero_review_chars_means_titles_only():
    _, kind = build_messages(history(), max_review_chars=0)
    assert kind == "titles"


def test_only_the_most_recent_items_are_shown():
    user = build_messages(history(n=30), max_items=5)[0][-1]["content"]
    assert "Title 24" not in user and "(1) Title 25" in user and "(5) Title 29" in user


def test_prompt_hash_follows_the_messages():
    m1, _ = build_messages(history())
    m2, _ = build_messages(history(ratings=False))
    assert prompt_hash(m1) == prompt_hash(build_messages(history())[0])
    assert prompt_hash(m1) != prompt_hash(m2)


@pytest.mark.parametrize("raw, clean", [
    ('  "The user prefers tea."  ', "The user prefers tea."),
    ("Preference: The user\n prefers   tea.", "The user prefers tea."),
    ("", ""), (None, ""), ('""', ""),
])
def test_clean_answer(raw, clean):
    assert clean_answer(raw) == clean


def test_html_entities_in_titles_and_reviews_are_decoded():
    ds = make_dataset(n_users=1)
    ds.items.loc[0, "title"] = "Shampoo &amp; Conditioner 12&quot;"
    ds.interactions["review"] = ds.interactions["review"].astype(object).where(
        ds.interactions["position"] != 0, "Works &gt; expected").astype("string")
    h = next(iter(training_histories(ds)))
    assert h.titles[0] == 'Shampoo & Conditioner 12"' and h.reviews[0] == "Works > expected"
