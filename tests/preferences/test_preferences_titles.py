"""``preferences.mode=titles``: the leak-free source. No validation or test title (nor any rating or review)
can reach a sentence, the run says so, and the audit sees no leak in it."""

from __future__ import annotations

import json

import pandas as pd
from pref_fixtures import make_dataset

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.pipeline import run_stage
from ulmrec.preferences.audit import TEMPLATE_WORDS, audit_run, content_words
from ulmrec.preferences.history import training_histories
from ulmrec.preferences.offline import TITLES_PROVENANCE, TITLES_VERSION, TitlesExtractor
from ulmrec.preferences.stage import STAGE, _params


def _titles_run(run_dir, *extra):
    cfg = load_config([], [f"run_dir={run_dir}", "preferences.mode=titles", *extra])
    run_stage(STAGE, cfg)
    frame = pd.read_parquet(run_dir / "preferences" / "preferences.parquet")
    report = json.loads((run_dir / "preferences" / "report.json").read_text())
    return frame, report


def test_no_heldout_title_rating_or_review_reaches_a_sentence(run_dir):
    frame, report = _titles_run(run_dir, "preferences.offline_keywords=50")
    assert (frame["status"] == "ok").all() and set(frame["source"]) == {TITLES_VERSION}
    text = " ".join(frame["preference"]).lower()
    assert "heldout" not in text and "gadget" not in text
    assert "trainreview" not in text and "/5" not in text  # titles only: no review word, no rating
    assert "argan" in text and "silky" in text  # training titles do get through (so the checks above can fail)
    assert report["provenance"] == TITLES_PROVENANCE == "leak-free: training-period titles only"
    assert report["leak_free"] is True


def test_every_sentence_word_comes_from_the_users_training_titles(run_dir):
    """Stronger than looking for markers: every content word of a sentence is a word of that user's own
    training titles (or a word of the sentence template)."""
    frame, _ = _titles_run(run_dir)
    ds = Dataset.load(run_dir)
    for u, sentence in zip(frame["user_idx"], frame["preference"], strict=True):
        seq = ds.sequences[int(u)]
        allowed = {w for i in seq[:-2] for w in content_words(ds.titles[i])}
        words = set(content_words(sentence)) - TEMPLATE_WORDS
        assert words and words <= allowed, (sentence, words - allowed)
        heldout = {w for i in seq[-2:] for w in content_words(ds.titles[i])} - allowed
        assert heldout and not words & heldout


def test_titles_extractor_quotes_the_most_recent_training_title():
    ds = make_dataset(n_users=3)
    hs = list(training_histories(ds))
    ex = TitlesExtractor(keywords=2, max_title_chars=15).fit(hs)
    s = ex.sentence(hs[1])
    assert s.startswith("The user prefers ") and s.endswith(".")
    assert "most recently they bought Silky argan..." in s  # the last training title, cut at a word
    assert ex.sentence(hs[1]) == s  # deterministic


def test_titles_mode_has_its_own_fingerprint(run_dir):
    base = [f"run_dir={run_dir}"]
    titles = _params(load_config([], [*base, "preferences.mode=titles"]))
    offline = _params(load_config([], [*base, "preferences.mode=offline"]))
    assert titles != offline and titles["titles_version"] == TITLES_VERSION
    longer = _params(load_config([], [*base, "preferences.mode=titles", "preferences.max_title_chars=50"]))
    assert longer != titles  # the quoted title's cut changes the output


def test_import_report_says_the_shipped_sentences_are_not_leak_free(tmp_path):
    ds = make_dataset(n_users=4)
    ds.preferences = pd.DataFrame({"user_idx": range(4), "preference": "The user prefers gadgets.",
                                   "provenance": "imported from x.jsonl"})
    ds.save(tmp_path / "run" / "data")
    run_stage(STAGE, load_config([], [f"run_dir={tmp_path / 'run'}"]))
    report = json.loads((tmp_path / "run" / "preferences" / "report.json").read_text())
    assert report["leak_free"] is False and report["provenance"].startswith("shipped with the data")


def test_audit_of_a_titles_run_finds_no_heldout_word(run_dir):
    _titles_run(run_dir)
    res = audit_run(run_dir, n_boot=50)
    assert res["sentences"]["provenance"] == TITLES_PROVENANCE
    rates = res["matches"]["matchers"]["novel_word"]["rates"]
    assert rates["test"]["rate"] == 0.0 and rates["valid"]["rate"] == 0.0
    assert rates["train"]["rate"] == 0.0  # every fixture title shares its words with the user's other titles
    assert res["matches"]["matchers"]["bigram"]["rates"]["train"]["rate"] > 0.5
    assert TITLES_PROVENANCE in (run_dir / "audit" / "leakage.md").read_text()
