from __future__ import annotations

import numpy as np
import torch

from ulmrec.retrieval.base import SequentialRecommender
from ulmrec.retrieval.candidates import candidates_frame, rank_next_items


class FixedScores(SequentialRecommender):
    """Scores item i with a fixed value, whatever the history."""

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.num_items = len(values) - 1
        self.values = values

    def predict(self, history: torch.Tensor) -> torch.Tensor:
        s = self.values.expand(history.size(0), -1).clone()
        s[:, 0] = float("-inf")
        return s


def test_history_masked_and_ranks_match_brute_force():
    rng = np.random.default_rng(0)
    values = torch.tensor(rng.normal(size=31), dtype=torch.float32)
    model = FixedScores(values)
    histories = [rng.choice(np.arange(1, 31), size=int(n), replace=False) for n in rng.integers(1, 60 // 3, 40)]
    targets = np.array([rng.choice(np.setdiff1d(np.arange(1, 31), h)) for h in histories])
    res = rank_next_items(model, histories, targets, max_len=5, k=7, batch_size=8)
    for u, h in enumerate(histories):
        allowed = np.setdiff1d(np.arange(1, 31), h)
        order = allowed[np.argsort(-values.numpy()[allowed], kind="stable")]
        assert res["candidates"][u].tolist() == order[:7].tolist()  # history never among the candidates
        assert res["rank"][u] == int(np.where(order == targets[u])[0][0])
        expected = res["rank"][u] if res["rank"][u] < 7 else -1
        assert res["target_rank"][u] == expected
        np.testing.assert_allclose(res["scores"][u], values.numpy()[order[:7]])
    df = candidates_frame(np.arange(40), res, targets)
    assert list(df.columns) == ["user_idx", "candidates", "scores", "target", "target_rank"]
    assert df["target_rank"].dtype == np.int32 and len(df["candidates"][0]) == 7
