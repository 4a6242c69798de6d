"""benchmarks/title_likelihood.py: the LM's title likelihood beside the retriever, choices on validation only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import LETTERS, load_benchmark, make_run_dir
from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.tasks import build_eval_samples


def _fake_scores(mod, run, tag, informative: bool, n_users):
    """Saved chunks as `score` writes them: an informative LM puts the target first, another one is noise."""
    rng = np.random.default_rng(0)
    for split in ("valid", "test"):
        sub = mod.subset(run, split, n_users[split], LETTERS)
        out = mod.tag_dir(run, tag) / split
        out.mkdir(parents=True, exist_ok=True)
        s = rng.normal(size=sub["candidates"].shape)
        if informative:
            s[np.arange(len(s)), sub["targets"]] += 50.0
        np.savez(out / "chunk-000000.npz", users=sub["users"], seconds=1.0, pmi=s, cond=s - 1.0)


def test_test_users_are_the_evaluate_stages_subset(tmp_path):
    """The test draw is build_eval_samples' (seed 42, the evaluate stage's max_users), so rows pair with the
    evaluate stage's runs; validation users are a draw of their own."""
    mod = load_benchmark("title_likelihood")
    run = make_run_dir(tmp_path)
    sub = mod.subset(run, "test", 3, LETTERS)
    cfg = load_config(None, [f"run_dir={run}", f"tasks.num_candidates={LETTERS}", "tasks.identity=index"])
    cands = pd.read_parquet(run / "retrieval" / "candidates_test.parquet")
    samples = build_eval_samples(Dataset.load(run / "data"), "test", cands, cfg.tasks, prompt="no_index",
                                 max_users=3, seed=42)
    assert sub["users"].tolist() == [s.user_idx for s in samples]
    assert sub["candidates"].tolist() == [s.candidates for s in samples]
    assert sub["targets"].tolist() == [s.target for s in samples]
    assert sub["coverage"] == pytest.approx(6 / 8)


def test_report_pairs_every_row_and_chooses_on_validation(tmp_path, monkeypatch):
    mod = load_benchmark("title_likelihood")
    run = make_run_dir(tmp_path)
    monkeypatch.setattr(mod, "subset", lambda r, split, n, c=LETTERS, f=mod.subset: f(r, split, n, LETTERS))
    import ulmrec.indexing.titles as ts

    monkeypatch.setattr(ts, "TextEncoder", lambda *a, **k: type("E", (), {"encode": lambda self, t: np.eye(len(t))})())
    n_users = {"valid": 0, "test": 0}
    _fake_scores(mod, run, "zero-shot", informative=False, n_users=n_users)
    _fake_scores(mod, run, "tuned", informative=True, n_users=n_users)
    (mod.tag_dir(run, "tuned") / "train.json").write_text(
        '{"steps": 1, "batch_size": 2, "lr": 0.001, "lora_layers": 8, "lora_targets": ["q_proj"], "seconds": 1.0, '
        '"seconds_per_sample": 0.5, "log": []}')
    _fake_scores(mod, run, "listwise", informative=False, n_users=n_users)
    (mod.tag_dir(run, "listwise") / "train.json").write_text(
        '{"steps": 3, "batch_size": 4, "lr": 0.001, "lora_layers": 8, "lora_targets": ["q_proj"], "seconds": 6.0, '
        '"seconds_per_sample": 0.5, "objective": "listwise", "temperature": 20, "signal": "pmi", "candidates": 20, '
        '"samples_retriever": {"retrieved": 0.4, "target_first": 0.1}, "log": [{"step": 1, "loss": 3.0, "top1": 0.0}, '
        '{"step": 2, "loss": 2.0, "top1": 0.5}, {"step": 3, "loss": 1.0, "top1": 1.0}]}')
    _fake_scores(mod, run, "every", informative=False, n_users=n_users)
    (mod.tag_dir(run, "every") / "train.json").write_text(
        '{"steps": 2, "batch_size": 8, "lr": 0.001, "history": 10, "lora_layers": 8, "lora_targets": ["q_proj"], '
        '"seconds": 4.0, "seconds_per_sample": 0.25, "objective": "every-title", "log": []}')
    r = mod.measure(run, n_users, history=3, tags=["zero-shot", "tuned", "listwise", "every"])
    t = r["test"]
    alone, fused, both = mod.names("tuned")
    # the informative LM alone and fused ranks every target first; its weight came from validation users
    assert t["models"][alone]["Rank"]["NDCG@10"] == pytest.approx(1.0)
    assert t["picks"]["lm"]["tuned"]["fused"]["w_lm"] > 0 and t["models"][fused]["Rank"]["NDCG@10"] == pytest.approx(1.0)
    assert t["models"][mod.RETRIEVER]["Rank"]["NDCG@10"] < 1.0
    for a, b in mod.pairs(["zero-shot", "tuned"]):
        assert f"{a} - {b}" in t["paired"] and f"{a} - {b}" in r["valid"]["paired"]
    assert f"{fused} - Retriever + LM title likelihood (zero-shot)" in t["paired"]
    for m in t["models"].values():  # Overall = Rank x coverage
        assert m["Overall"]["NDCG@10"] == pytest.approx(m["Rank"]["NDCG@10"] * t["coverage"])
    md = mod.markdown({"args": {"max_title_tokens": 12, "history": 3}, "datasets": {"tiny": r},
                       "load_before": (0.0,), "load_after": (0.0,)})
    assert "LM title likelihood alone (tuned)" in md and "validation users" in md
    assert "Tuning `tuned`: 1 steps x 2 next-title pairs" in md
    assert ("Tuning `listwise`: 3 steps x 4 training prefixes, each a softmax over the retriever's top 20 of `pmi` / 20"
            in md) and "the true next item in the last slot where the retriever missed it: it listed 40% of the prefixes drawn" in md and "(0.500 s per prefix)" in md
    assert "(0.500 s per prefix); over the first / last 3 steps: loss 2.000 / 2.000, true item first in 50.0% / 50.0%" in md
    assert "Tuning `tuned`: 1 steps x 2 next-title pairs, lr 0.001, LoRA r 8 on q_proj of the top 8 layers, 1 s of one core (0.500 s per pair)." in md
    assert ("Tuning `every`: 2 steps x 8 windows of a user's last 11 training titles, the loss on every title after "
            "the window's first") in md and "(0.250 s per window)" in md
    png = tmp_path / "forest.png"
    mod.plot({"datasets": {"tiny": r}}, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="run `score --tag other` first"):
        mod.load_scores(run, "valid", np.array([0, 2]), "other")


def test_preference_rows_pair_with_their_lm_and_split_by_sentence_match(tmp_path, monkeypatch):
    """A ``+preference`` tag reads the same LM (base_tag), pairs each of its rows with that LM's, and the test
    gains are split by whether the user's sentence matches the test item."""
    mod = load_benchmark("title_likelihood")
    assert mod.base_tag("zero-shot+preference") == "zero-shot" and mod.base_tag("tuned") == "tuned"
    run = make_run_dir(tmp_path)
    monkeypatch.setattr(mod, "subset", lambda r, split, n, c=LETTERS, f=mod.subset: f(r, split, n, LETTERS))
    import ulmrec.indexing.titles as ts

    monkeypatch.setattr(ts, "TextEncoder", lambda *a, **k: type("E", (), {"encode": lambda self, t: np.array(
        [[len(x), x.count("a") + 1.0, x.count("e") + 1.0] for x in t])})())
    n_users = {"valid": 0, "test": 0}
    _fake_scores(mod, run, "zero-shot", informative=False, n_users=n_users)
    _fake_scores(mod, run, "zero-shot+preference", informative=True, n_users=n_users)
    (mod.tag_dir(run, "zero-shot+preference") / "preferences.json").write_text(
        '{"file": "preferences/preferences.parquet", "provenance": "test sentences"}')
    first = int(mod.subset(run, "test", 0)["users"][0])  # this user's sentence names their test item
    ds = Dataset.load(run / "data")
    prefs = pd.read_parquet(run / "preferences" / "preferences.parquet")
    prefs["preference"] = "Prefers quiet evenings."  # matches no title
    prefs.loc[prefs["user_idx"] == first, "preference"] = f"Likes {ds.titles[int(ds.sequences[first][-1])]}."
    prefs.to_parquet(run / "preferences" / "preferences.parquet")
    tags = ["zero-shot", "zero-shot+preference"]
    r = mod.measure(run, n_users, history=3, tags=tags)
    t = r["test"]
    fused = mod.names("zero-shot+preference")[1]
    assert f"{fused} - {mod.names('zero-shot')[1]}" in t["paired"] and f"{fused} - {mod.PSIM}" in t["paired"]
    assert mod.PSIM in t["models"] and f"{mod.PSIM} - {mod.RETRIEVER}" in r["valid"]["paired"]
    bm = t["by_sentence_match"]
    assert sum(g["users"] for g in bm["groups"].values()) == t["users"] == bm["users"]
    assert bm["matched_users"] == bm["groups"]["sentence matches the test item"]["users"] >= 1
    assert bm["groups"]["no match"]["users"] >= 1
    assert bm["groups"]["sentence has a test-title word no training title has"]["users"] <= bm["matched_users"]
    for g in (g for g in bm["groups"].values() if g["users"]):
        for key in (f"{fused} - {mod.RETRIEVER}", f"{mod.PSIM} - {mod.RETRIEVER}", f"{mod.SIM} - {mod.RETRIEVER}"):
            assert key in g["paired"]
    md = mod.markdown({"args": {"max_title_tokens": 12, "history": 3}, "datasets": {"tiny": r},
                       "load_before": (0.0,), "load_after": (0.0,)})
    assert "test sentences" in md and "Rows tagged `+preference`" in md and "sentence matches the test item" in md
