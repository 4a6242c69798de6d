import numpy as np
import pytest
import torch
from torchmetrics.functional.retrieval import (
    retrieval_normalized_dcg,
    retrieval_recall,
    retrieval_reciprocal_rank,
)

from ulmrec.metrics import metrics_from_ranks, rank_and_overall, target_rank


def test_against_torchmetrics_on_random_rankings():
    gen = torch.Generator().manual_seed(0)
    B, C = 300, 20
    # torchmetrics 1.9 counts a relevant item only where its score is > 0, so the scores are made positive
    # (a monotone map: the ranking is unchanged)
    scores = torch.randn(B, C, generator=gen).softmax(-1)
    target = torch.randint(0, C, (B,), generator=gen)
    ranks = target_rank(scores, target)
    ours = metrics_from_ranks(ranks, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        rel = torch.zeros(B, C, dtype=torch.bool)
        rel[torch.arange(B), target] = True
        ndcg = torch.stack([retrieval_normalized_dcg(scores[b], rel[b], top_k=k) for b in range(B)]).mean()
        rec = torch.stack([retrieval_recall(scores[b], rel[b], top_k=k) for b in range(B)]).mean()
        mrr = torch.stack([retrieval_reciprocal_rank(scores[b], rel[b], top_k=k) for b in range(B)]).mean()
        assert ours[f"NDCG@{k}"] == pytest.approx(float(ndcg), abs=1e-6)
        assert ours[f"Recall@{k}"] == pytest.approx(float(rec), abs=1e-6)
        assert ours[f"MRR@{k}"] == pytest.approx(float(mrr), abs=1e-6)


def test_known_values():
    m = metrics_from_ranks([0, 1, 4, 9, -1], ks=(5,))
    assert m["Recall@5"] == pytest.approx(3 / 5)
    assert m["MRR@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 5)
    assert m["NDCG@5"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(6)) / 5)


def test_ties_are_pessimistic_and_padding_ignored():
    scores = torch.zeros(2, 4)
    assert target_rank(scores, torch.tensor([0, 3])).tolist() == [3, 3]
    valid = torch.tensor([[True, True, False, False]] * 2)
    assert target_rank(scores, torch.tensor([0, 1]), valid).tolist() == [1, 1]


def test_rank_vs_overall():
    ranks = np.array([0, 2, -1, -1])
    res = rank_and_overall(ranks, ks=(5,))
    assert res["coverage"] == 0.5 and res["rank_users"] == 2 and res["users"] == 4
    for key, v in res["Rank"].items():
        assert res["Overall"][key] == pytest.approx(v * res["coverage"])
