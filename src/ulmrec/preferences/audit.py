"""``ulmrec audit``: do a run's preference sentences (and user index) see the validation and test period?

Reads a prepared run directory (``data/`` via :class:`~ulmrec.data.dataset.Dataset`), the preference sentences
(``preferences/preferences.parquet`` when the preferences stage ran, else the data's own
``data/source_preferences.parquet``) and, for the prefix analysis, ``index/user_index.parquet`` and the data's
``reference_index.parquet`` when present. Writes ``<run_dir>/audit/leakage.json`` and ``leakage.md`` (atomically).

**Sentence matches.** For every user with a sentence, each of these items is checked against the sentence:
the validation item, the test item, and two nulls: random *training* items of the user (what a sentence made
from training data is expected to match) and random items the user *never touched* (chance). A match is

- ``bigram``: two adjacent content words of the item's title appear adjacently in the sentence's content words;
- ``novel_word``: a content word of the item's title that is in none of the user's *other* training titles
  appears in the sentence (a sentence built from training titles only cannot produce one for a held-out item,
  except by chance: the untouched null measures that chance);
- ``brand``: the item's brand (the items table's ``brand`` column; without one, the title's first content word,
  labelled as a proxy) appears in the sentence;
- ``category``: the item's finest category (``category`` / ``categories`` column) appears; skipped, and said so,
  when the items table has none.

Content words: lower-cased alphanumeric tokens of at least 3 characters, HTML entities decoded, English
function words and packaging/size filler removed (the offline extractor's list), a trailing plural "s" folded;
in a sentence, the framing words of the sentence templates (``TEMPLATE_WORDS``: "user", "prefers", "especially",
"recently", ...) are ignored too.
Each null is the user's mean over ``null_samples`` random items (fixed seed). Rates carry a bootstrap 95 %
interval over users; the paired differences (test - untouched, test - train, ...) a paired bootstrap interval.

**Index prefixes.** Users who share the first ``l`` index tokens (``l`` = 1..3): how often two of them have the
same test item, against the same rate over all pairs of users (chance), with the same figures for the
validation item and the last and first training items as the non-leaking comparison (similar users buy similar
things, so some lift is expected without any leak; a ``titles`` sentence quotes the last training title, so for
those the first is the cleaner control). Intervals: bootstrap over prefix groups.

**Ranker gains by sentence match.** When the run has been evaluated (``evaluate/ranks.parquet``), every row's
Rank NDCG@10 minus the retriever order's on the same users, within the groups of ``MATCH_GROUPS``: users whose
sentence matches their test item, the rest, and users whose sentence has a word of the test title that no
training title has. A row that reads the sentences and gains only where they name the test item gains from the
leak; rows that read no sentence (the retriever + title similarity, LlamaRec-style) are the control for users
whose test item simply resembles their history.
"""

from __future__ import annotations

import argparse
import html
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.artifacts import (
    INDEX,
    INDEX_REPORT,
    LEAKAGE,
    LEAKAGE_TABLE,
    PREFERENCE_REPORT,
    PREFERENCE_TABLE,
    RANKS,
    REFERENCE_INDEX,
    SOURCE_PREFERENCES,
    STAGE_RECORD,
    USER_INDEX,
)
from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError, DataError
from ulmrec.io import file_digest, read_json, write_json, write_text
from ulmrec.metrics import per_user_metrics
from ulmrec.preferences.offline import STOPWORDS
from ulmrec.preferences.table import read_ok_preferences

log = logging.getLogger("ulmrec")

VERSION = "audit:v1"
TARGETS = ("valid", "test", "train", "untouched")
_TOKEN = re.compile(r"[a-z0-9]+")
#: (first arm, second arm) of the paired differences reported.
PAIRS = (("test", "untouched"), ("valid", "untouched"), ("test", "train"), ("valid", "train"))
#: Training items whose sharing is the non-leaking comparison in the prefix analysis.
CONTROLS = ("last_train", "first_train")
#: The framing words of preference sentences ("The user prefers ..., especially from ...; most recently they
#: bought ...; their reviews mention ...; they rate their purchases highly"): ignored in a sentence, so that a
#: title that happens to contain "Especially" does not count as quoted.
TEMPLATE_WORDS = frozenset(("user", "prefer", "especially", "recently", "review", "mention", "rate", "purchase",
                            "highly", "moderately", "poorly", "mean"))


def content_words(text: str) -> list[str]:
    """The content words of ``text`` in order (see the module docstring)."""
    out = []
    for t in _TOKEN.findall(html.unescape(str(text or "")).lower()):
        if len(t) < 3 or t in STOPWORDS:
            continue
        if len(t) > 3 and t.endswith("s") and not t.endswith("ss"):
            t = t[:-1]
        out.append(t)
    return out


def _bigrams(words: list[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:], strict=False))


# ---------------------------------------------------------------------------------------------- inputs


def load_sentences(run_dir: Path, ds: Dataset) -> tuple[dict[int, str], dict]:
    """``({user_idx: sentence}, description)``: the preferences stage's ok rows, else the data's own file."""
    path = PREFERENCE_TABLE.path(run_dir)
    if path.exists():
        df = read_ok_preferences(path)
        report_path = PREFERENCE_REPORT.path(run_dir)
        report = read_json(report_path) if report_path.exists() else {}
        sources = ({str(k): int(v) for k, v in df["source"].value_counts().items()} if "source" in df.columns
                   else {})
        desc = {"file": PREFERENCE_TABLE.key, "mode": report.get("mode"), "sources": sources,
                "provenance": report.get("provenance") or provenance_of(report.get("mode"), sources)}
    elif ds.preferences is not None:
        df = ds.preferences
        prov = sorted(set(df["provenance"].astype(str))) if "provenance" in df.columns else []
        desc = {"file": SOURCE_PREFERENCES.key, "mode": "import (the data's own sentences)",
                "sources": {p: int((df["provenance"] == p).sum()) for p in prov} if prov else {},
                "provenance": "shipped with the data (" + "; ".join(prov) + "); not known to be training-only"}
    else:
        raise DataError("no preference sentences to audit (run `ulmrec preferences`, or use a source that ships "
                        "them)", PREFERENCE_TABLE.path(run_dir))
    df = df[df["preference"].notna()]
    text = df["preference"].astype(str).str.strip()
    keep = text.ne("").to_numpy()
    return dict(zip(df["user_idx"].to_numpy()[keep].astype(int), text[keep], strict=True)), desc


def provenance_of(mode: str | None, sources: dict) -> str:
    if mode in ("offline", "titles", "api"):
        return "leak-free: training-period " + ("titles only" if mode == "titles" else "interactions only")
    if mode == "import":
        return "imported (" + ", ".join(sources) + "); not known to be training-only"
    return "unknown"


def load_indices(run_dir: Path, ds: Dataset) -> dict[str, np.ndarray]:
    """``{name: codes}`` (one row of index tokens per user_idx, as an object array of tuples)."""
    out = {}
    path = USER_INDEX.path(run_dir)
    if path.exists():
        df = pd.read_parquet(path)
        col = "codes" if "codes" in df.columns else "tokens"
        if col not in df.columns or "user_idx" not in df.columns:
            raise DataError("columns user_idx and codes (or tokens) expected", path)
        out[f"{USER_INDEX.key} (this run's index; {index_provenance(run_dir)})"] = _by_user(df, col,
                                                                                                 ds.num_users)
    if ds.reference_index is not None:
        out[f"{REFERENCE_INDEX.key} (the authors' indices)"] = _by_user(ds.reference_index, "index",
                                                                            ds.num_users)
    return out


def index_provenance(run_dir: Path) -> str:
    """What the run's index was built from (its report.json) and whether its inputs are still the files there."""
    parts = []
    report = INDEX_REPORT.path(run_dir)
    if report.exists():
        src = read_json(report).get("users_per_source") or {}
        parts.append("built from " + ", ".join(f"{k} ({v} users)" for k, v in src.items()))
    record = run_dir / INDEX / STAGE_RECORD
    if record.exists():
        stale = [k for k, v in (read_json(record).get("inputs") or {}).items()
                 if not (run_dir / k).exists() or file_digest(run_dir / k) != v]
        parts.append(f"STALE: {', '.join(stale)} changed since it was built" if stale else "inputs current")
    return "; ".join(parts) or "provenance unknown"


def _by_user(df: pd.DataFrame, col: str, n: int) -> np.ndarray:
    codes = np.empty(n, dtype=object)
    codes[:] = None
    for u, row in zip(df["user_idx"].to_numpy(), df[col].to_numpy(), strict=True):
        if 0 <= int(u) < n and row is not None:
            codes[int(u)] = tuple(str(x) for x in row)
    return codes


# ---------------------------------------------------------------------------------------------- statistics


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator, n_boot: int = 1000) -> tuple[float, float]:
    """Percentile 95 % interval of the mean of ``values`` (rows resampled with replacement)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // n)
    for a in range(0, n_boot, step):
        b = min(n_boot, a + step)
        means[a:b] = values[rng.integers(0, n, size=(b - a, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _ratio_ci(num: np.ndarray, den: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap replicates of sum(num)/sum(den) over rows (groups); ``num`` may be 2-D (rows x series)."""
    g = len(den)
    out = np.empty((n_boot,) + num.shape[1:])
    step = max(1, 2_000_000 // max(g, 1))
    for a in range(0, n_boot, step):
        b = min(n_boot, a + step)
        idx = rng.integers(0, g, size=(b - a, g))
        d = den[idx].sum(axis=1)
        out[a:b] = num[idx].sum(axis=1) / np.maximum(d, 1)[..., None] if num.ndim == 2 else \
            num[idx].sum(axis=1) / np.maximum(d, 1)
    return out


# ---------------------------------------------------------------------------------------------- sentence audit


class _Items:
    """Per-item content words, bigrams, brand and category (computed once)."""

    def __init__(self, ds: Dataset):
        items = ds.items.sort_values("item_idx")
        n = ds.num_items + 1
        self.words: list[set[str]] = [set() for _ in range(n)]
        self.bigrams: list[set[tuple[str, str]]] = [set() for _ in range(n)]
        for i, t in zip(items["item_idx"].to_numpy(), ds.titles[items["item_idx"].to_numpy()], strict=True):
            w = content_words(t)
            self.words[i], self.bigrams[i] = set(w), _bigrams(w)
        self.brand: list[tuple[str, ...]] = [()] * n
        if "brand" in items.columns:
            self.brand_kind = "brand column of the items table"
            for i, b in zip(items["item_idx"].to_numpy(), items["brand"].to_numpy(dtype=object), strict=True):
                self.brand[i] = tuple(content_words(b)) if isinstance(b, str) else ()
        else:
            self.brand_kind = "proxy: the title's first word (the items table has no brand column)"
            for i, t in zip(items["item_idx"].to_numpy(), ds.titles[items["item_idx"].to_numpy()], strict=True):
                first = _TOKEN.findall(html.unescape(str(t or "")).lower())[:1]
                w = content_words(first[0]) if first else []
                self.brand[i] = tuple(w)
        cat_col = next((c for c in ("category", "categories") if c in items.columns), None)
        self.category: list[tuple[str, ...]] | None = None
        self.category_kind = (f"the finest entry of the items table's {cat_col!r} column" if cat_col else
                              "not available: the items table has no category column")
        if cat_col:
            self.category = [()] * n
            for i, c in zip(items["item_idx"].to_numpy(), items[cat_col].to_numpy(dtype=object), strict=True):
                if c is not None and not isinstance(c, str):
                    c = list(c)
                    while c and not isinstance(c[-1], str):  # nested lists (Amazon 2014): the last path
                        c = list(c[-1]) if c[-1] is not None else []
                    c = c[-1] if c else None
                self.category[i] = tuple(content_words(c)) if isinstance(c, str) else ()


def _phrase_in(phrase: tuple[str, ...], words: list[str]) -> bool:
    k = len(phrase)
    if not k:
        return False
    return any(tuple(words[j:j + k]) == phrase for j in range(len(words) - k + 1))


def _item_hits(items: _Items, i: int, words_list: list[str], s_words: set, s_bi: set, df: Counter,
               own: bool) -> dict[str, bool]:
    """Whether a sentence (its content words ``words_list``, as a set ``s_words``, and bigrams ``s_bi``) matches
    item ``i`` by each matcher; ``df``: word counts over the user's training titles, ``own``: whether ``i`` is one
    of them."""
    hit = {"bigram": bool(items.bigrams[i] & s_bi),
           "novel_word": any(w in s_words and df[w] - own == 0 for w in items.words[i]),
           "brand": _phrase_in(items.brand[i], words_list)}
    if items.category is not None:
        hit["category"] = _phrase_in(items.category[i], words_list)
    return hit


def held_out_matches(ds: Dataset, sentences: dict[int, str], users, split: str = "test") -> dict[str, np.ndarray]:
    """``{matcher: (len(users),) bool}``: whether each user's sentence matches their ``split`` item (the last item
    for 'test', the one before for 'valid') by the audit's matchers (module docstring), plus ``any``. Users
    without a sentence match nothing. Used to split a ranker's gain into users whose sentence names the held-out
    item and the rest."""
    items = _Items(ds)
    pos = {"test": -1, "valid": -2}[split]
    out: dict[str, list[bool]] = {}
    for u in users:
        seq = ds.sequences[int(u)]
        train = [int(i) for i in seq[:-2]]
        words_list = [w for w in content_words(sentences.get(int(u), "")) if w not in TEMPLATE_WORDS]
        df = Counter(w for i in train for w in items.words[i])
        target = int(seq[pos])
        hit = _item_hits(items, target, words_list, set(words_list), _bigrams(words_list), df, target in train)
        hit["any"] = any(hit.values())
        for m, v in hit.items():
            out.setdefault(m, []).append(bool(v))
    return {m: np.array(v, dtype=bool) for m, v in out.items()}


#: how a ranker's test users are split by their sentence: (group name, matcher of held_out_matches, matched?)
MATCH_GROUPS = (("sentence matches the test item", "any", True), ("no match", "any", False),
                ("sentence has a test-title word no training title has", "novel_word", True))


def match_groups(matches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{group: bool per user}`` of :data:`MATCH_GROUPS`, from :func:`held_out_matches`' result."""
    return {name: (matches[m] if matched else ~matches[m]) for name, m, matched in MATCH_GROUPS}


def ranker_gains(run_dir: Path, ds: Dataset, sentences: dict[int, str], seed: int = 0, n_boot: int = 1000,
                 reference: str = "Retriever order") -> dict | None:
    """Each row of ``evaluate/ranks.parquet`` minus ``reference`` (Rank NDCG@10, same users), per group of
    :func:`match_groups`, with bootstrap 95 % intervals; ``None`` when the run has not been evaluated."""
    path = RANKS.path(run_dir)
    if not path.exists():
        return None
    ranks = pd.read_parquet(path)
    if reference not in ranks.columns:
        return None
    users = ranks["user_idx"].to_numpy(np.int64)
    groups = match_groups(held_out_matches(ds, sentences, users))
    ndcg = {c: per_user_metrics(ranks[c].to_numpy(np.int64), (10,))["NDCG@10"]
            for c in ranks.columns if c not in ("user_idx", "target")}
    rng = np.random.default_rng(seed)
    out: dict = {"file": RANKS.key, "users": len(users), "reference": reference, "groups": {}}
    for name, sel in groups.items():
        rows = {}
        for col, v in ndcg.items():
            if col == reference:
                continue
            d = v[sel] - ndcg[reference][sel]
            rows[col] = {"diff": float(d.mean()) if sel.any() else float("nan"), "ci95": list(bootstrap_ci(d, rng, n_boot))}
        out["groups"][name] = {"users": int(sel.sum()), "rows": rows}
    return out


def sentence_matches(ds: Dataset, sentences: dict[int, str], seed: int = 0, null_samples: int = 5,
                     n_boot: int = 1000) -> dict:
    """The sentence-match audit (module docstring): rates per matcher and target, paired differences."""
    rng = np.random.default_rng(seed)
    items = _Items(ds)
    matchers = ["bigram", "novel_word", "brand"] + (["category"] if items.category is not None else [])
    users = sorted(u for u in sentences if 0 <= u < ds.num_users and len(ds.sequences[u]) >= 3)
    vals = {m: {t: np.zeros(len(users)) for t in TARGETS} for m in matchers}
    n_items = ds.num_items
    for r, u in enumerate(users):
        seq = ds.sequences[u]
        train = [int(i) for i in seq[:-2]]
        words_list = [w for w in content_words(sentences[u]) if w not in TEMPLATE_WORDS]
        s_words, s_bi = set(words_list), _bigrams(words_list)
        df = Counter(w for i in train for w in items.words[i])
        seen = set(int(i) for i in seq)
        k = min(null_samples, len(train))
        train_draw = [train[j] for j in rng.choice(len(train), size=k, replace=False)] if k else []
        untouched = []
        while len(untouched) < null_samples and len(seen) < n_items:
            i = int(rng.integers(1, n_items + 1))
            if i not in seen:
                untouched.append(i)
        draws = {"valid": [int(seq[-2])], "test": [int(seq[-1])], "train": train_draw, "untouched": untouched}
        for t, its in draws.items():
            if not its:
                continue
            hit = dict.fromkeys(matchers, 0)
            for i in its:
                for m, v in _item_hits(items, i, words_list, s_words, s_bi, df, i in train).items():
                    hit[m] += v
            for m in matchers:
                vals[m][t][r] = hit[m] / len(its)
    out: dict = {"users_checked": len(users), "null_samples": null_samples, "brand": items.brand_kind,
                 "category": items.category_kind, "matchers": {}}
    for m in matchers:
        rates = {}
        for t in TARGETS:
            lo, hi = bootstrap_ci(vals[m][t], rng, n_boot)
            rates[t] = {"rate": float(vals[m][t].mean()) if users else float("nan"), "ci95": [lo, hi]}
        diffs = {}
        for a, b in PAIRS:
            d = vals[m][a] - vals[m][b]
            lo, hi = bootstrap_ci(d, rng, n_boot)
            diffs[f"{a}-{b}"] = {"diff": float(d.mean()) if users else float("nan"), "ci95": [lo, hi]}
        out["matchers"][m] = {"rates": rates, "differences": diffs}
    return out


# ---------------------------------------------------------------------------------------------- prefix audit


def prefix_sharing(ds: Dataset, codes: np.ndarray, seed: int = 0, n_boot: int = 1000, levels: int = 3) -> dict:
    """How often users sharing an index prefix share their test / validation / last and first training item,
    vs chance (all pairs of users). The training items are the non-leaking comparison; the last one is also
    what a ``titles`` sentence quotes, so the first one is the cleaner control there."""
    rng = np.random.default_rng(seed)
    have = np.array([c is not None for c in codes])
    users = np.flatnonzero(have)
    seqs = ds.sequences
    targets = {"test": np.array([seqs[u][-1] for u in users]), "valid": np.array([seqs[u][-2] for u in users]),
               "last_train": np.array([seqs[u][-3] for u in users]),
               "first_train": np.array([seqs[u][0] for u in users])}
    names = list(targets)

    def pairs_same(keys: np.ndarray) -> int:
        _, c = np.unique(keys, return_counts=True)
        return int((c * (c - 1) // 2).sum())

    n = len(users)
    total_pairs = n * (n - 1) // 2
    chance = {t: pairs_same(v) / max(total_pairs, 1) for t, v in targets.items()}
    out: dict = {"users": int(n), "chance": chance, "levels": {}}
    depth = min(levels, min((len(codes[u]) for u in users), default=0))
    for lvl in range(1, depth + 1):
        prefix = np.array(["\x1f".join(codes[u][:lvl]) for u in users], dtype=object)
        _, group = np.unique(prefix, return_inverse=True)
        sizes = np.bincount(group)
        den = sizes * (sizes - 1) // 2
        keep = den > 0
        num = np.zeros((len(sizes), len(names)))
        for j, t in enumerate(names):
            # pairs of users in the same group with the same item: count (group, item) cells
            key = group.astype(np.int64) * (ds.num_items + 1) + targets[t]
            cells, cnt = np.unique(key, return_counts=True)
            np.add.at(num[:, j], cells // (ds.num_items + 1), cnt * (cnt - 1) // 2)
        num, den_k = num[keep], den[keep]
        reps = _ratio_ci(num, den_k, rng, n_boot)  # (n_boot, targets)
        point = num.sum(axis=0) / max(den_k.sum(), 1)
        res = {"groups": int(len(sizes)), "groups_with_pairs": int(keep.sum()), "pairs": int(den_k.sum()),
               "targets": {}}
        for j, t in enumerate(names):
            lift = reps[:, j] / chance[t] if chance[t] else np.full(n_boot, np.nan)
            res["targets"][t] = {"rate": float(point[j]), "ci95": _pct(reps[:, j]),
                                 "lift": float(point[j] / chance[t]) if chance[t] else None, "lift_ci95": _pct(lift)}
        for t in ("test", "valid"):
            for c in CONTROLS:
                if not (chance[t] and chance[c]):
                    res[f"lift_{t}-lift_{c}"] = {"diff": None, "ci95": [float("nan"), float("nan")]}
                    continue
                a = reps[:, names.index(t)] / chance[t]
                b = reps[:, names.index(c)] / chance[c]
                pa = point[names.index(t)] / chance[t] - point[names.index(c)] / chance[c]
                res[f"lift_{t}-lift_{c}"] = {"diff": float(pa), "ci95": _pct(a - b)}
        out["levels"][str(lvl)] = res
    return out


def _pct(x: np.ndarray) -> list[float]:
    x = x[np.isfinite(x)]
    return [float(v) for v in np.percentile(x, [2.5, 97.5])] if len(x) else [float("nan"), float("nan")]


# ---------------------------------------------------------------------------------------------- report


def audit_run(run_dir: str | Path, seed: int = 0, null_samples: int = 5, n_boot: int = 1000,
              label: str | None = None) -> dict:
    """Run the whole audit on ``run_dir`` and write ``<run_dir>/audit/leakage.{json,md}``; returns the result."""
    run_dir = Path(run_dir)
    ds = Dataset.load(run_dir)
    sentences, desc = load_sentences(run_dir, ds)
    log.info("audit: %d users with a sentence (%s)", len(sentences), desc["file"])
    result: dict = {"version": VERSION, "run_dir": str(run_dir), "label": label or run_dir.name,
                    "dataset": {"users": ds.num_users, "items": ds.num_items,
                                "has_reviews": bool(ds.has_reviews), "has_ratings": bool(ds.has_ratings)},
                    "sentences": desc, "seed": seed, "bootstrap_resamples": n_boot,
                    "matches": sentence_matches(ds, sentences, seed, null_samples, n_boot)}
    indices = load_indices(run_dir, ds)
    if indices:
        result["prefix_sharing"] = {name: prefix_sharing(ds, c, seed, n_boot) for name, c in indices.items()}
    else:
        result["prefix_sharing"] = None
        result["prefix_sharing_skipped"] = (f"no index: neither {USER_INDEX.key} (run `ulmrec index`) "
                                            f"nor {REFERENCE_INDEX.key}")
    result["ranker_gains"] = ranker_gains(run_dir, ds, sentences, seed, n_boot)
    write_json(LEAKAGE.path(run_dir), result)
    write_text(LEAKAGE_TABLE.path(run_dir), to_markdown(result))
    return result


def _p(x: float) -> str:
    return f"{100 * x:.2f}"


def _ci(c: list[float]) -> str:
    return f"[{_p(c[0])}, {_p(c[1])}]"


MATCHER_TEXT = {"bigram": "title bigram", "novel_word": "title word in no other training title",
                "brand": "brand", "category": "fine category"}


def to_markdown(result: dict, level: int = 2) -> str:
    h = "#" * level
    m = result["matches"]
    s = result["sentences"]
    lines = [f"{h} {result['label']}: preference-sentence leakage audit", "",
             f"Sentences: `{s['file']}`; provenance: **{s['provenance']}**. Users checked: {m['users_checked']} of "
             f"{result['dataset']['users']}. Nulls: the mean over {m['null_samples']} random training items of the "
             f"user and {m['null_samples']} random items the user never touched. Brand: {m['brand']}. Category: "
             f"{m['category']}.", "",
             "Share of users (%) whose sentence matches the item, bootstrap 95 % interval over users:", "",
             "| match | validation item | test item | training item (null) | untouched item (null) | "
             "test - untouched | test - training |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in m["matchers"].items():
        rt, df = r["rates"], r["differences"]
        cells = [f"{_p(rt[t]['rate'])} {_ci(rt[t]['ci95'])}" for t in TARGETS]
        cells += [f"{_p(df[k]['diff'])} {_ci(df[k]['ci95'])}" for k in ("test-untouched", "test-train")]
        lines.append(f"| {MATCHER_TEXT.get(name, name)} | " + " | ".join(cells) + " |")
    lines += ["", "Percentages; differences in percentage points (paired over users)."]
    g = result.get("ranker_gains")
    if g:
        groups = g["groups"]
        lines += ["", f"{h}# Ranker gains by whether the sentence names the test item", "",
                  f"Rank NDCG@10 of each evaluated row minus the {g['reference'].lower()}'s, on the same users "
                  f"(`{g['file']}`, {g['users']} users), bootstrap 95 % intervals. A row that reads the sentences and "
                  "gains only where they name the test item gains from the leak; rows that read none are the control.",
                  "", "| row | " + " | ".join(f"{k} ({v['users']} users)" for k, v in groups.items()) + " |",
                  "|---|" + "---:|" * len(groups)]
        for row in next(iter(groups.values()))["rows"]:
            cells = []
            for v in groups.values():
                r = v["rows"][row]
                cells.append("" if not v["users"] else
                             f"{r['diff']:+.4f} [{r['ci95'][0]:+.4f}, {r['ci95'][1]:+.4f}]")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    ps = result.get("prefix_sharing")
    if not ps:
        lines += ["", f"Index prefixes: skipped ({result.get('prefix_sharing_skipped')})."]
        return "\n".join(lines) + "\n"
    for name, r in ps.items():
        ch = r["chance"]
        lines += ["", f"{h}# Users sharing an index prefix: `{name}`", "",
                  f"Pairs of users with the same item, per 10,000 pairs; chance (all {r['users']} users' pairs): "
                  f"test {1e4 * ch['test']:.2f}, validation {1e4 * ch['valid']:.2f}, last training "
                  f"{1e4 * ch['last_train']:.2f}, first training {1e4 * ch['first_train']:.2f}. Lift = rate / "
                  "chance; bootstrap 95 % intervals over prefix groups.", "",
                  "| prefix | groups (with pairs) | pairs | same test item: rate, lift | same validation item | "
                  "same last training item | same first training item | lift test - lift last training | "
                  "lift test - lift first training |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for lvl, x in r["levels"].items():
            t = x["targets"]

            def cell(k: str, t=t) -> str:
                lift = t[k]["lift"]
                return (f"{1e4 * t[k]['rate']:.2f}, x{lift:.2f} [{t[k]['lift_ci95'][0]:.2f}, "
                        f"{t[k]['lift_ci95'][1]:.2f}]" if lift is not None else f"{1e4 * t[k]['rate']:.2f}")
            diffs = []
            for c in CONTROLS:
                d = x[f"lift_test-lift_{c}"]
                diffs.append("n/a" if d["diff"] is None else
                             f"{d['diff']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]")
            lines.append(f"| {lvl} token{'s' if lvl != '1' else ''} | {x['groups']} ({x['groups_with_pairs']}) | "
                         f"{x['pairs']} | {cell('test')} | {cell('valid')} | {cell('last_train')} | "
                         f"{cell('first_train')} | {' | '.join(diffs)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], metavar="PRESET_OR_YAML",
                   help="preset name or YAML file (for run_dir); repeatable")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings on top, e.g. run_dir=runs/beauty")
    p.add_argument("--null-samples", type=int, default=5, help="random items per user in each null (default 5)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's seed)")


def main(args: argparse.Namespace) -> int:
    if args.null_samples < 1 or args.bootstrap < 10:
        raise ConfigError("--null-samples must be >= 1 and --bootstrap >= 10")
    cfg = load_config(args.config, args.overrides)
    seed = cfg.seed if args.seed is None else args.seed
    result = audit_run(cfg.run_dir, seed=seed, null_samples=args.null_samples, n_boot=args.bootstrap)
    print(to_markdown(result))
    print(f"written: {LEAKAGE.path(cfg.run_dir)} and {LEAKAGE_TABLE.name}")
    return 0
