"""benchmarks/letter_collapse.py: the constant-order control tells a letter prior from a ranker that reads titles."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import load_benchmark


def _write(run_dir, scores: np.ndarray, targets: np.ndarray) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "valid_ranks.json").write_text(json.dumps({
        "best_step": 50, "scores": scores.tolist(), "targets": targets.tolist(), "retriever_ranks": targets.tolist()}))


def test_chance_ndcg_of_20_candidates():
    mod = load_benchmark("letter_collapse")
    assert mod.chance_ndcg() == pytest.approx(0.2272, abs=1e-4)
    rng = np.random.default_rng(0)  # Monte Carlo: a random order of 20 with one relevant item
    ranks = rng.integers(0, 20, 200_000)
    mc = np.where(ranks < 10, 1 / np.log2(ranks + 2), 0).mean()
    assert mod.chance_ndcg() == pytest.approx(mc, abs=3e-3)


def test_a_letter_prior_equals_its_constant_order_and_a_reader_beats_it(tmp_path):
    mod = load_benchmark("letter_collapse")
    rng = np.random.default_rng(2)
    n, c = 300, 20
    targets = np.minimum(rng.geometric(0.25, n) - 1, c - 1)  # retriever order: targets crowd the first letters
    prior = -np.arange(c, dtype=float)  # A > B > ... with per-user noise too small to reorder anything
    _write(tmp_path / "prior", prior + rng.normal(0, 1e-3, (n, c)), targets)
    view = mod.validation_view(tmp_path / "prior")
    assert view["constant_order"][:3] == ["A", "B", "C"]
    assert view["NDCG@10"] == pytest.approx(view["constant_order_NDCG@10"])
    assert view["top1_hist"][0] == n
    oracle = np.tile(prior, (n, 1))
    oracle[np.arange(n), targets] = 10.0  # knows each user's item: far above its own mean order
    _write(tmp_path / "oracle", oracle, targets)
    view = mod.validation_view(tmp_path / "oracle")
    assert view["NDCG@10"] == pytest.approx(1.0)
    assert view["model_minus_constant"]["lo"] > 0.1


def test_missing_letter_scores_is_a_clear_error(tmp_path):
    mod = load_benchmark("letter_collapse")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "valid_ranks.json").write_text(json.dumps({"ranks": [0, 1]}))
    with pytest.raises(SystemExit, match="no letter scores"):
        mod.validation_view(tmp_path / "r")
