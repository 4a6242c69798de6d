"""The offline stand-in: deterministic, built from training titles, reviews and ratings."""

from __future__ import annotations

from pref_fixtures import make_dataset

from ulmrec.preferences.history import UserHistory, training_histories
from ulmrec.preferences.offline import OfflineExtractor


def h(u: int, titles, ratings=None, reviews=None) -> UserHistory:
    n = len(titles)
    return UserHistory(u, f"u{u}", tuple(titles), tuple(ratings or [None] * n), tuple(reviews or [None] * n))


def test_sentence_names_distinctive_words_brand_and_rating_tendency():
    users = [
        h(0, ["Devacurl One Condition 12 oz", "Devacurl No-Poo cleanser curl", "Devacurl Styling Cream curl"],
          [5.0, 5.0, 4.0], ["tames frizz nicely", "less frizz, great volume", None]),
        h(1, ["Nail polish red", "Nail polish blue", "Cotton pads"], [2.0, 2.0, 3.0]),
        h(2, ["Shampoo for dry hair", "Hair conditioner"]),
    ]
    ex = OfflineExtractor(keywords=3).fit(users)
    s0 = ex.sentence(users[0])
    assert s0.startswith("The user prefers ") and "curl" in s0
    assert "Devacurl" in s0 or "devacurl" in s0
    assert "their reviews mention frizz" in s0 and "highly (mean 4.7/5)" in s0
    s1 = ex.sentence(users[1])
    assert "polish" in s1 and "poorly (mean 2.3/5)" in s1
    assert "reviews" not in ex.sentence(users[2]) and "rate" not in ex.sentence(users[2])
    assert ex.sentence(h(3, [])) is None


def test_generic_words_are_not_interests():
    users = [h(0, ["Lotion 8 oz pack of 2", "Lotion 8 oz value pack"]), h(1, ["Soap bar"])]
    s = OfflineExtractor(keywords=3).fit(users).sentence(users[0])
    assert "lotion" in s and " oz" not in s and "pack" not in s and "value" not in s


def test_deterministic():
    histories = list(training_histories(make_dataset(n_users=8)))
    a = [OfflineExtractor(4).fit(histories).sentence(x) for x in histories]
    b = [OfflineExtractor(4).fit(list(reversed(histories))).sentence(x) for x in histories]
    assert a == b and all(a)
