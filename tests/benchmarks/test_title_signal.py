"""benchmarks/title_signal.py: title similarity to the history, alone and fused with the retriever."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import LETTERS, load_benchmark, make_run_dir


def test_similarity_is_the_cosine_to_the_history_titles():
    mod = load_benchmark("title_signal")

    class DS:
        def history(self, u, split):
            assert split == "valid"
            return np.array([1, 2, 3])

    emb = np.array([[0, 0], [1, 0], [0, 1], [1, 0], [np.sqrt(0.5), np.sqrt(0.5)]], dtype=np.float64)
    rows = pd.DataFrame({"user_idx": [0], "candidates": [[2, 4]]})
    sims = mod.similarity_scores(DS(), rows, emb, history=2)  # the last two history items: 2 and 3
    assert np.allclose(sims["max"], [[1.0, np.sqrt(0.5)]])
    mean = np.array([0.5, 0.5]) / np.linalg.norm([0.5, 0.5])
    assert np.allclose(sims["mean"], [[emb[2] @ mean, emb[4] @ mean]])


def test_measure_reads_validation_users_only_and_pairs_every_row(tmp_path):
    """Every Rank user of the validation split, the retriever order from the candidate file's scores, w from
    the grid chosen on one half and reported on the other (a fake encoder: every title its own direction)."""
    mod = load_benchmark("title_signal")
    run = make_run_dir(tmp_path)
    cands = pd.read_parquet(run / "retrieval" / "candidates_valid.parquet")

    def encode(titles):  # one direction per title: only an item is similar to itself
        return np.eye(len(titles))

    r = mod.measure("tiny", run, history=3, n_candidates=LETTERS, encode=encode)
    hit = [int(t) in list(c[:LETTERS]) for c, t in zip(cands["candidates"], cands["target"], strict=True)]
    assert r["valid_rank_users"] == sum(hit)
    ranks = [list(c[:LETTERS]).index(int(t)) for c, t, h in zip(cands["candidates"], cands["target"], hit, strict=True) if h]
    expected = np.mean([1 / np.log2(k + 2) for k in ranks])
    assert np.isclose(r["retriever_order"]["NDCG@10"], expected)
    for s in ("max", "mean"):
        v = r["signals"][s]
        assert v["choose_users"] + v["report_users"] == r["valid_rank_users"]
        assert v["fusion_weight"] in mod.GRID
        assert np.isclose(v["alone_vs_retriever"]["b"], expected)
