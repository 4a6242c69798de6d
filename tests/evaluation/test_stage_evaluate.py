"""The evaluate stage on a tiny trained run: Rank / Overall side by side on the same users, resumable scoring."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import LETTERS, NOT_RETRIEVED, build_tiny_llama, make_run_dir, tiny_config
from ulmrec.evaluation.stage import (
    FUSED,
    LLAMAREC,
    RETRIEVER,
    SHUFFLED,
    ULMREC,
    ULMREC_UID,
    ZERO_SHOT,
    retriever_ranks,
)
from ulmrec.metrics import metrics_from_ranks
from ulmrec.pipeline import get_stage, run_stage


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    model = build_tiny_llama(tmp_path_factory.mktemp("tiny"))
    run_dir = make_run_dir(tmp_path_factory.mktemp("run"))
    cfg = tiny_config(run_dir, model, "evaluate.no_history=true", "evaluate.chunk_users=2")
    run_stage(get_stage("ranker"), cfg)
    record = run_stage(get_stage("evaluate"), cfg)
    return run_dir, cfg, model, record


def test_tables_side_by_side(evaluated):
    run_dir, _, _, _ = evaluated
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert list(res["models"]) == [RETRIEVER, ZERO_SHOT, LLAMAREC, ULMREC, FUSED, ULMREC_UID, SHUFFLED]
    n_users = 8
    assert res["test_users"] == n_users and res["rank_users"] == n_users - len(NOT_RETRIEVED)
    assert res["coverage"] == pytest.approx((n_users - len(NOT_RETRIEVED)) / n_users)
    ranks = pd.read_parquet(run_dir / "evaluate" / "ranks.parquet")
    assert sorted(ranks["user_idx"]) == [u for u in range(n_users) if u not in NOT_RETRIEVED]
    for name, entry in res["models"].items():
        r = ranks[name].to_numpy()
        assert ((r >= 0) & (r < LETTERS)).all()
        assert entry["Rank"] == pytest.approx(metrics_from_ranks(r, (5, 10)))
        for key, value in entry["Rank"].items():  # the users the retriever missed count as misses
            assert entry["Overall"][key] == pytest.approx(value * res["coverage"])
    # the fixture puts user u's target at candidate position u % LETTERS
    assert ranks[RETRIEVER].tolist() == [u % LETTERS for u in ranks["user_idx"]]
    md = (run_dir / "evaluate" / "results.md").read_text()
    assert "**Overall**" in md and "**Paired differences" in md and "**Predicted letters**" in md


def test_paired_intervals_letters_fusion_and_position_check(evaluated):
    run_dir, cfg, _, _ = evaluated
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    ranks = pd.read_parquet(run_dir / "evaluate" / "ranks.parquet")
    for name in (ZERO_SHOT, LLAMAREC, ULMREC, FUSED, SHUFFLED):
        d = res["paired"][f"{name} - {RETRIEVER}"]["NDCG@10"]
        assert d["lo"] <= d["mean"] <= d["hi"]
        per_user = np.where((ranks[name] >= 0) & (ranks[name] < 10), 1 / np.log2(ranks[name] + 2), 0)
        ref = np.where((ranks[RETRIEVER] >= 0) & (ranks[RETRIEVER] < 10), 1 / np.log2(ranks[RETRIEVER] + 2), 0)
        assert d["mean"] == pytest.approx(float(np.mean(per_user - ref)))
    assert f"{ULMREC} - {LLAMAREC}" in res["paired"]
    for name, counts in res["letter_histogram"].items():
        assert len(counts) == LETTERS and sum(counts) == res["scored_rank_users"], name
    assert (run_dir / "evaluate" / "letters.png").stat().st_size > 1000
    f = res["fusion"]
    assert f["weight"] in cfg.evaluate.fusion_grid and f["valid_users"] > 0
    if f["weight"] == 0:  # w = 0 is the LM's own order
        assert ranks[FUSED].tolist() == ranks[ULMREC].tolist()


def test_retriever_ranks_only_count_the_lettered_candidates():
    frame = pd.DataFrame({"candidates": [[5, 6, 7, 8], [1, 2, 3, 9]], "target": [7, 9]})
    assert retriever_ranks(frame, 3).tolist() == [2, -1]


def test_subset_and_resume(evaluated, monkeypatch):
    run_dir, cfg, model, _ = evaluated
    from ulmrec.config import load_config

    sub = load_config(None, [f"{k}={v}" for k, v in {"run_dir": run_dir, "ranker.model": model}.items()]
                      + [o for o in _overrides(cfg)] + ["evaluate.max_users=3", "evaluate.chunk_users=2"])
    calls = {"n": 0}
    from ulmrec.ranker import predict  # the ranker engine calls predict.score_samples through the module

    original = predict.score_samples

    def crash_on_second_chunk(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(predict, "score_samples", crash_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_stage(get_stage("evaluate"), sub)
    parts = run_dir / ".evaluate.partial" / "parts"
    assert len(list(parts.glob("*.npy"))) == 1
    monkeypatch.setattr(predict, "score_samples", original)
    run_stage(get_stage("evaluate"), sub)
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert res["subset"] and res["scored_rank_users"] == 3
    for entry in res["models"].values():
        for key, value in entry["Rank"].items():
            assert entry["Overall"][key] == pytest.approx(value * res["coverage"])
    assert np.isfinite(res["models"][ULMREC]["seconds_per_user"])


def _overrides(cfg) -> list[str]:
    return ["device=cpu", f"tasks.num_candidates={cfg.tasks.num_candidates}",
            f"retrieval.num_candidates={cfg.retrieval.num_candidates}", f"tasks.max_history={cfg.tasks.max_history}",
            f"ranker.max_steps={cfg.ranker.max_steps}", f"ranker.eval_every={cfg.ranker.eval_every}",
            f"ranker.batch_size={cfg.ranker.batch_size}", f"ranker.warmup_steps={cfg.ranker.warmup_steps}",
            f"ranker.num_threads={cfg.ranker.num_threads}", f"ranker.max_length={cfg.ranker.max_length}",
            "evaluate.no_history=true"]


def _scored_lists(run_dir):
    """(ranks.parquet, the dataset, the scored users, their lettered candidates, the retriever's scores of them)."""
    from ulmrec.data.dataset import Dataset

    ranks = pd.read_parquet(run_dir / "evaluate" / "ranks.parquet")
    cands = pd.read_parquet(run_dir / "retrieval" / "candidates_test.parquet").set_index("user_idx")
    users = ranks["user_idx"].tolist()
    lists = [[int(c) for c in cands.loc[u, "candidates"][:LETTERS]] for u in users]
    retr = np.array([cands.loc[u, "scores"][:LETTERS] for u in users], dtype=np.float64)
    return ranks, Dataset.load(run_dir), users, lists, retr


class _BrandEncoder:
    """A stand-in for the sentence encoder: a title's vector is its brand ("... by Brand k"), one-hot."""

    def __init__(self, *args, **kwargs):
        pass

    def encode(self, texts, desc="encode"):
        out = np.zeros((len(texts), 8), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, int(t.rsplit(" ", 1)[-1]) if t else 7] = 1.0
        return out


def test_title_similarity_rows_choose_their_weights_on_validation(evaluated, tmp_path, monkeypatch):
    """evaluate.title_similarity: "Retriever + title similarity" is the retriever's score + w x the max cosine
    of each candidate's title to the test history, w from the grid chosen on validation users; the row with
    ULMRec fuses both on the fusion users; both are paired with the retriever and with each other."""
    import shutil

    from ulmrec.config import load_config
    from ulmrec.evaluation import stats
    from ulmrec.evaluation.stage import FUSED_TITLE, TITLE
    from ulmrec.evaluation.title_signal import title_embeddings, title_similarity
    from ulmrec.indexing import titles
    from ulmrec.metrics import target_rank

    src, cfg, model, _ = evaluated
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("evaluate", ".evaluate.partial"))
    monkeypatch.setattr(titles, "TextEncoder", _BrandEncoder)
    sub = load_config(None, [f"run_dir={run_dir}", f"ranker.model={model}", *_overrides(cfg),
                             "evaluate.title_similarity=true", "evaluate.position_check=false"])
    run_stage(get_stage("evaluate"), sub)
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert list(res["models"])[-2:] == [TITLE, FUSED_TITLE]
    t = res["title_similarity"]
    assert t["weight"] in sub.evaluate.title_grid and t["valid_users"] == 8 - len(NOT_RETRIEVED)
    assert t["with_ulmrec"]["retriever_weight"] in sub.evaluate.fusion_grid
    assert t["with_ulmrec"]["title_weight"] in sub.evaluate.title_grid
    ranks, ds, users, lists, retr = _scored_lists(run_dir)
    sim = title_similarity(ds, users, lists, "test", title_embeddings(ds, encode=_BrandEncoder().encode),
                           sub.tasks.max_history)
    targets = [c.index(int(x)) for c, x in zip(lists, ranks["target"], strict=True)]
    expected = target_rank(stats.fuse(retr, sim, t["weight"]), np.array(targets), np.isfinite(retr)).numpy()
    assert ranks[TITLE].tolist() == expected.tolist()
    if t["weight"] == 0:
        assert ranks[TITLE].tolist() == ranks[RETRIEVER].tolist()
    for name in (TITLE, FUSED_TITLE):
        assert f"{name} - {RETRIEVER}" in res["paired"]
    assert f"{FUSED_TITLE} - {TITLE}" in res["paired"]
    assert TITLE not in res["letter_histogram"] and "_valid" not in res["fusion"]
    assert "Title similarity" in (run_dir / "evaluate" / "results.md").read_text()


def test_title_likelihood_rows_choose_their_weights_on_validation(evaluated, tmp_path, monkeypatch):
    """evaluate.title_likelihood: "Retriever + LM title likelihood" is the retriever's score + w x the untuned
    LM's pmi of each candidate's title after the test history (ulmrec.ranker.likelihood), w chosen on validation
    users; with the title similarity a three-term row; both paired with the retriever and with the similarity
    row; the settings leave the stage's fingerprint while the rows are off."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulmrec.config import load_config
    from ulmrec.evaluation import stats
    from ulmrec.evaluation.stage import FUSED_TITLE, LIKELIHOOD, LIKELIHOOD_TITLE, TITLE, _params
    from ulmrec.indexing import titles
    from ulmrec.metrics import target_rank
    from ulmrec.ranker.likelihood import TitleLikelihood

    src, cfg, model, _ = evaluated
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("evaluate", ".evaluate.partial"))
    monkeypatch.setattr(titles, "TextEncoder", _BrandEncoder)
    sub = load_config(None, [f"run_dir={run_dir}", f"ranker.model={model}", *_overrides(cfg),
                             "evaluate.title_similarity=true", "evaluate.title_likelihood=true",
                             "evaluate.likelihood_signal=pmi", "evaluate.likelihood_grid=[0, 1, 100]",
                             "evaluate.position_check=false"])
    run_stage(get_stage("evaluate"), sub)
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert list(res["models"])[-2:] == [LIKELIHOOD, LIKELIHOOD_TITLE]
    t = res["title_likelihood"]
    assert t["signal"] == "pmi" and t["weight"] in (0, 1, 100) and t["valid_users"] == 8 - len(NOT_RETRIEVED)
    assert set(t["valid_NDCG@10_by_weight"]) == {"0.0", "1.0", "100.0"}
    ranks, ds, users, lists, retr = _scored_lists(run_dir)
    lm = AutoModelForCausalLM.from_pretrained(str(model)).eval()
    pmi = TitleLikelihood(lm, AutoTokenizer.from_pretrained(str(model)), ds, history=sub.tasks.max_history,
                          max_title_tokens=sub.evaluate.likelihood_title_tokens).score(users, lists, "test",
                                                                                       progress=False)["pmi"]
    targets = np.array([c.index(int(x)) for c, x in zip(lists, ranks["target"], strict=True)])
    expected = target_rank(stats.fuse(retr, pmi, t["weight"]), targets, np.isfinite(retr)).numpy()
    assert ranks[LIKELIHOOD].tolist() == expected.tolist()
    assert t["with_title_similarity"]["likelihood_weight"] in (0, 1, 100)
    for name in (LIKELIHOOD, LIKELIHOOD_TITLE):
        assert f"{name} - {RETRIEVER}" in res["paired"] and f"{name} - {TITLE}" in res["paired"]
    # the LM read as a language model vs read through the letters, each fused the same way
    assert f"{LIKELIHOOD} - {FUSED}" in res["paired"] and f"{LIKELIHOOD_TITLE} - {FUSED_TITLE}" in res["paired"]
    assert LIKELIHOOD not in res["letter_histogram"]
    assert "LM title likelihood" in (run_dir / "evaluate" / "results.md").read_text()
    # off: no likelihood key in the fingerprint's settings (earlier run directories stay current); on: all of them
    assert not any("likelihood" in k for k in _params(cfg)["evaluate"])
    assert {"title_likelihood", "likelihood_signal", "likelihood_grid"} <= set(_params(sub)["evaluate"])



def test_a_tuned_title_lm_is_trained_on_training_titles_saved_and_read_back(evaluated, tmp_path, monkeypatch):
    """evaluate.likelihood_tuning_steps: the title-likelihood rows read the LM after its LoRA was tuned on every
    title of training windows; the adapter is saved in the stage's folder, the rows equal a fresh scorer over that
    adapter, and a second call with the same settings loads it instead of training again."""
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import ulmrec.evaluation.stage as stage
    import ulmrec.ranker.likelihood as likelihood
    from ulmrec.config import load_config
    from ulmrec.evaluation import stats
    from ulmrec.evaluation.stage import LIKELIHOOD, _params, _tune_title_lm
    from ulmrec.metrics import target_rank
    from ulmrec.ranker.engine import Ranker

    src, cfg, model, _ = evaluated
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("evaluate", ".evaluate.partial"))
    sub = load_config(None, [f"run_dir={run_dir}", f"ranker.model={model}", *_overrides(cfg),
                             "evaluate.title_likelihood=true", "evaluate.likelihood_tuning_steps=4",
                             "evaluate.likelihood_tuning_lr=0.01", "evaluate.likelihood_grid=[0, 1, 100]",
                             "evaluate.likelihood_signal=pmi", "evaluate.position_check=false"])
    assert {"likelihood_tuning_steps", "likelihood_tuning_lr"} <= set(_params(sub)["evaluate"])
    run_stage(get_stage("evaluate"), sub)
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    t = res["title_likelihood"]
    assert t["tuning"]["settings"]["steps"] == 4 and len(t["tuning"]["log"]) == 4
    adapter = run_dir / "evaluate" / "title_lm" / "adapter"
    assert (adapter / "adapter_config.json").exists()
    assert "LoRA tuned for 4 x 8 windows" in (run_dir / "evaluate" / "results.md").read_text()
    ranks, ds, users, lists, retr = _scored_lists(run_dir)
    lm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(model)), str(adapter)).eval()
    assert any(p.abs().sum() > 0 for n, p in lm.named_parameters() if "lora_B" in n)  # it did move
    pmi = likelihood.TitleLikelihood(lm, AutoTokenizer.from_pretrained(str(model)), ds, history=sub.tasks.max_history,
                                     max_title_tokens=sub.evaluate.likelihood_title_tokens).score(
        users, lists, "test", progress=False)["pmi"]
    targets = np.array([c.index(int(x)) for c, x in zip(lists, ranks["target"], strict=True)])
    expected = target_rank(stats.fuse(retr, pmi, t["weight"]), targets, np.isfinite(retr)).numpy()
    assert ranks[LIKELIHOOD].tolist() == expected.tolist()
    # the same settings again: the saved adapter is loaded, nothing trains
    monkeypatch.setattr(stage, "train_title_lm", lambda *a, **k: pytest.fail("trained again"))
    fresh = Ranker.build(sub.ranker, (), "cpu")
    info = _tune_title_lm(sub, fresh, ds, run_dir / "evaluate")
    assert info["settings"] == t["tuning"]["settings"]
    saved = dict(lm.named_parameters())
    for n, p in fresh.model.named_parameters():
        if "lora_" in n:
            assert torch.allclose(p.float(), saved[n].float()), n


def test_auto_signal_is_chosen_on_validation_and_an_earlier_adapter_is_read(evaluated, tmp_path):
    """evaluate.likelihood_signal=auto scores cond and pmi in one pass and keeps the one whose fused row is better
    on the validation users (a tie: pmi); evaluate.likelihood_adapter reads a title LM tuned earlier (its
    train.json describes it in results.md), the adapter's weights are part of the stage's inputs, and a folder
    without an adapter is a one-line error naming the setting."""
    import shutil

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulmrec.config import load_config
    from ulmrec.errors import ConfigError
    from ulmrec.evaluation import stats
    from ulmrec.evaluation.stage import LIKELIHOOD, _inputs, _params, _tune_title_lm
    from ulmrec.metrics import target_rank
    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.likelihood import TitleLikelihood

    src, cfg, model, _ = evaluated
    run_dir = tmp_path / "run"
    shutil.copytree(src, run_dir, ignore=shutil.ignore_patterns("evaluate", ".evaluate.partial"))
    base = [f"run_dir={run_dir}", f"ranker.model={model}", *_overrides(cfg), "evaluate.title_likelihood=true",
            "evaluate.likelihood_grid=[0, 1, 100]", "evaluate.position_check=false"]
    # an adapter tuned elsewhere (here: the stage's own tuning, 2 steps, into another folder)
    tuner = load_config(None, [*base, "evaluate.likelihood_tuning_steps=2", "evaluate.likelihood_tuning_lr=0.05"])
    from ulmrec.data.dataset import Dataset

    _tune_title_lm(tuner, Ranker.build(tuner.ranker, (), "cpu"), Dataset.load(run_dir), tmp_path / "elsewhere")
    folder = tmp_path / "elsewhere" / "title_lm"
    sub = load_config(None, [*base, f"evaluate.likelihood_adapter={folder}"])
    assert sub.evaluate.likelihood_signal == "auto" and "likelihood_adapter" in _params(sub)["evaluate"]
    assert folder / "adapter" in _inputs(sub, run_dir)
    run_stage(get_stage("evaluate"), sub)
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    t = res["title_likelihood"]
    by = t["valid_NDCG@10_by_signal"]
    assert set(by) == {"cond", "pmi"}
    assert t["signal"] == ("cond" if by["cond"] > by["pmi"] else "pmi")
    assert t["tuning"]["adapter"] == str(folder) and t["tuning"]["settings"]["steps"] == 2
    md = (run_dir / "evaluate" / "results.md").read_text()
    assert f"the LoRA of `{folder}` (2 steps x 8" in md and "chosen on validation over `cond` N@10" in md
    # the rows equal a fresh scorer over that adapter with the chosen signal and weight
    ranks, ds, users, lists, retr = _scored_lists(run_dir)
    lm = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(model)), str(folder / "adapter")).eval()
    score = TitleLikelihood(lm, AutoTokenizer.from_pretrained(str(model)), ds, history=sub.tasks.max_history,
                            max_title_tokens=sub.evaluate.likelihood_title_tokens).score(
        users, lists, "test", progress=False)[t["signal"]]
    targets = np.array([c.index(int(x)) for c, x in zip(lists, ranks["target"], strict=True)])
    expected = target_rank(stats.fuse(retr, score, t["weight"]), targets, np.isfinite(retr)).numpy()
    assert ranks[LIKELIHOOD].tolist() == expected.tolist()
    # off: the setting leaves the fingerprint; a folder without an adapter: a clear error
    assert "likelihood_adapter" not in _params(load_config(None, base))["evaluate"]
    with pytest.raises(ConfigError, match=r"evaluate\.likelihood_adapter: .*adapter_config\.json not found"):
        _inputs(load_config(None, [*base, f"evaluate.likelihood_adapter={tmp_path}"]), run_dir)
    with pytest.raises(Exception, match="likelihood_adapter and evaluate.likelihood_tuning_steps"):
        load_config(None, [*base, f"evaluate.likelihood_adapter={folder}", "evaluate.likelihood_tuning_steps=1"])
