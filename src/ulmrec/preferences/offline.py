"""A deterministic preference sentence that needs no server: a keyword summary, not an LLM's reading.

This is a stand-in for the paper's GPT-3.5 sentences (4.2.2) when no server is at hand (tests, CI, the sample
pipeline, air-gapped machines). It reads only the user's training interactions and writes, for example (three
Devacurl titles with two short reviews and ratings 5, 5, 4)::

    The user prefers devacurl, curl and cleanser products; their reviews mention frizz, nicely and tames; they
    rate their purchases highly (mean 4.7/5).

How: the words of the user's training titles are scored by tf-idf (tf = how many of the user's titles contain
the word, idf over all users' training titles), and the top ``keywords`` name their interests; a title's
first word that starts at least two and at least 40 % of the user's titles is named as the favourite brand;
the same tf-idf over review text gives what their reviews mention; the mean rating gives their tendency. The
same input always gives the same sentence (ties are broken alphabetically).

What it cannot do: understand anything. It does not know that "Professor Layton" is a puzzle series or that a
review is negative; it only surfaces frequent distinctive words. Expect alignment tasks trained on these
sentences to learn less than on LLM-written ones.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from ulmrec.preferences.history import UserHistory

VERSION = "offline:v1"

#: Common English function words (kept here rather than imported: scikit-learn costs ~2 s at CLI start).
_ENGLISH = frozenset("""
a about above after again against all almost also am among an and any are around as at be because been before
being below between both but by can cannot could did do does doing done down during each either else enough etc
ever every few for from further had has have having he her here hers herself him himself his how however i if
in into is it its itself just least less many may me might mine more most much must my myself neither never no
nor not now of off often on once only or other others our ours ourselves out over own per quite rather same
several she should since so some such than that the their theirs them themselves then there these they this
those though through thus to too toward under until up upon us very via was we were what whatever when where
whether which while who whom whose why will with within without would yet you your yours yourself yourselves
""".split())

#: Words that say nothing about taste in product titles and reviews (sizes, packaging, filler).
_GENERIC = frozenset("""
oz ounce ounces fl ml mg lb lbs pound pounds inch inches count pack packs pcs piece pieces set sets size sizes
new value bonus kit total gift free pc item items product products bottle bottles tube jar edition version
black white color colors colour assorted mini travel large small medium regular original professional
one two three four five six ultimate bundle combo amazon great good best really like love just use used using
bought buy buying works work worked nice little lot well get got make makes made would will also much even
""".split())
_STOP = _ENGLISH | _GENERIC
#: Function words and filler the extractor (and the leakage audit) ignore.
STOPWORDS = _STOP
_TOKEN = re.compile(r"[a-z][a-z'&-]*[a-z]")


def _tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if len(t) >= 3 and t not in _STOP]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


class OfflineExtractor:
    """``OfflineExtractor(keywords=3).fit(histories).sentence(history)``."""

    def __init__(self, keywords: int = 3):
        self.keywords = keywords

    def fit(self, histories: list[UserHistory]) -> OfflineExtractor:
        """Learn document frequencies (a 'document' is one user's training titles, or reviews)."""
        self.title_df_, self.review_df_ = Counter(), Counter()
        self.n_users_ = len(histories)
        for h in histories:
            self.title_df_.update({w for t in h.titles for w in _tokens(t)})
            self.review_df_.update({w for r in h.reviews if r for w in _tokens(r)})
        return self

    def _top(self, texts: list[str], df: Counter, k: int) -> list[str]:
        tf = Counter(w for text in texts for w in set(_tokens(text)))
        idf = {w: math.log((1 + self.n_users_) / (1 + df.get(w, 0))) + 1.0 for w in tf}
        ranked = sorted(tf, key=lambda w: (-tf[w] * idf[w], w))
        return ranked[:k]

    def _brand(self, titles: tuple[str, ...]) -> str | None:
        first = Counter(t.split()[0] for t in titles if t.split())
        if not first:
            return None
        word, n = min(first.items(), key=lambda kv: (-kv[1], kv[0]))
        if n >= 2 and n >= 0.4 * len(titles) and word.lower() not in _STOP and re.search(r"[A-Za-z]{2}", word):
            return word.strip(",.;:-")
        return None

    def sentence(self, h: UserHistory) -> str | None:
        """The user's sentence, or None when they have no training interaction at all."""
        if not h.titles:
            return None
        words = self._top(list(h.titles), self.title_df_, self.keywords)
        brand = self._brand(h.titles)
        if words:
            s = f"The user prefers {_join(words)} products"
        else:
            s = "The user prefers products like " + h.titles[-1]
        if brand and brand.lower() not in words:
            s += f", especially from {brand}"
        reviews = [r for r in h.reviews if r]
        if reviews:
            mentioned = self._top(reviews, self.review_df_, self.keywords)
            if mentioned:
                s += f"; their reviews mention {_join(mentioned)}"
        ratings = [r for r in h.ratings if r is not None]
        if ratings:
            mean = sum(ratings) / len(ratings)
            tendency = "highly" if mean >= 4.25 else "moderately" if mean >= 3.0 else "poorly"
            s += f"; they rate their purchases {tendency} (mean {mean:.1f}/5)"
        return s + "."


TITLES_VERSION = "titles:v1"
#: The provenance every ``preferences.mode=titles`` run carries (report.json, the audit's tables).
TITLES_PROVENANCE = "leak-free: training-period titles only"


def titles_only(h: UserHistory) -> UserHistory:
    """``h`` with its reviews and ratings removed: only the training-period titles remain."""
    return UserHistory(h.user_idx, h.user_id, h.titles, (None,) * len(h.titles), (None,) * len(h.titles))


class TitlesExtractor:
    """The leak-free sentence for data without training-period reviews (``preferences.mode=titles``).

    Built from the user's training-period titles and nothing else (no rating, no review, no validation or test
    item): the offline extractor's title keywords and favourite brand, then the most recent training title,
    e.g. *The user prefers shellac, cnd and polish products, especially from CND; most recently they bought CND
    Shellac Power Polish, Romantique.* Deterministic; ``max_title_chars`` cuts the quoted title."""

    def __init__(self, keywords: int = 3, max_title_chars: int = 120):
        self.keywords, self.max_title_chars = keywords, max_title_chars

    def fit(self, histories: list[UserHistory]) -> TitlesExtractor:
        self.offline_ = OfflineExtractor(self.keywords).fit([titles_only(h) for h in histories])
        return self

    def sentence(self, h: UserHistory) -> str | None:
        h = titles_only(h)
        s = self.offline_.sentence(h)
        if s is None:
            return None
        if s.startswith("The user prefers products like "):  # no keyword: the sentence already quotes the title
            return s
        last = h.titles[-1].rstrip(". ")
        if len(last) > self.max_title_chars:
            return f"{s[:-1]}; most recently they bought {last[: self.max_title_chars].rsplit(' ', 1)[0]}..."
        return f"{s[:-1]}; most recently they bought {last}."
