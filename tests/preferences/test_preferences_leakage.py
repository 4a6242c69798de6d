"""No validation or test interaction (title, rating or review) reaches a prompt or an offline sentence."""

from __future__ import annotations

import json

import pandas as pd
from pref_fixtures import api_config, make_dataset

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.pipeline import run_stage
from ulmrec.preferences.history import training_histories
from ulmrec.preferences.local_server import LocalChatServer
from ulmrec.preferences.stage import STAGE


def test_histories_hold_training_rows_only():
    ds = make_dataset(n_users=5, n_items=6)
    for h in training_histories(ds):
        assert len(h.titles) == 4 == len(h.reviews) == len(h.ratings)
        assert not any("HELDOUT" in t for t in h.titles + tuple(r or "" for r in h.reviews))
        train = ds.interactions[(ds.interactions["user_idx"] == h.user_idx) & (ds.interactions["split"] == "train")]
        assert list(h.ratings) == [float(r) for r in train["rating"]]


def test_no_heldout_text_reaches_a_prompt(run_dir, tmp_path):
    with LocalChatServer() as server:
        run_stage(STAGE, api_config(run_dir, server.base_url, tmp_path / "c.sqlite", max_reviews=100))
        sent = json.dumps(server.requests)
    ds = Dataset.load(run_dir)
    assert server.count == ds.num_users
    assert "HELDOUT" not in sent
    # ... while every training title and review is there (so the check above can fail)
    train = ds.interactions[ds.interactions["split"] == "train"]
    for item, review in zip(train["item_idx"], train["review"]):
        assert ds.titles[item] in sent and review in sent


def test_held_out_ratings_do_not_reach_a_prompt(tmp_path):
    """Held-out interactions get a rating (5) no training row has; no prompt may show it."""
    ds = make_dataset(n_users=4)
    ds.interactions["rating"] = ds.interactions["rating"].where(ds.interactions["split"] == "train", 5.0).where(
        ds.interactions["split"] != "train", 2.0)
    ds.save(tmp_path / "run" / "data")
    with LocalChatServer() as server:
        run_stage(STAGE, api_config(tmp_path / "run", server.base_url, tmp_path / "c.sqlite"))
        sent = json.dumps(server.requests)
    assert "rating 2/5" in sent and "5/5" not in sent


def test_offline_sentences_use_training_rows_only(run_dir):
    cfg = load_config([], [f"run_dir={run_dir}", "preferences.mode=offline", "preferences.offline_keywords=50"])
    run_stage(STAGE, cfg)
    frame = pd.read_parquet(run_dir / "preferences" / "preferences.parquet")
    text = " ".join(frame["preference"]).lower()
    assert "heldout" not in text
    assert "argan" in text and "trainreview" in text  # training words do get through
