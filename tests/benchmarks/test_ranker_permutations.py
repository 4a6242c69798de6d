"""benchmarks/ranker_permutations.py: letter scores of shown orders averaged back onto the candidates."""

from __future__ import annotations

import numpy as np

from helpers import load_benchmark


def _module():
    return load_benchmark("ranker_permutations")


def _shown(per_item: np.ndarray, per_letter: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Scores of a model that adds a per-candidate (content) and a per-letter (position) term."""
    return per_item[np.arange(len(perm))[:, None], perm] + per_letter[None, :]


def _users(seed: int, n: int, c: int, orders: int):
    """Targets, descending retriever scores, and the identity order followed by ``orders - 1`` random ones."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, c, n)
    retr = np.sort(rng.random((n, c)), axis=1)[:, ::-1].copy()
    perms = [np.tile(np.arange(c), (n, 1))] + [np.stack([rng.permutation(c) for _ in range(n)]) for _ in range(orders - 1)]
    return rng, targets, retr, perms


def _saved(shown, perms, targets, retr) -> dict:
    return {"shown": [s.tolist() for s in shown], "perms": [p.tolist() for p in perms], "targets": targets.tolist(),
            "retriever_scores": retr.tolist(), "best_step": 0}


def test_log_softmax_rows_keeps_missing_candidates_out():
    mod = _module()
    s = np.array([[1.0, 2.0, -np.inf], [0.0, 0.0, 0.0]])
    out = mod.log_softmax_rows(s)
    assert np.isneginf(out[0, 2])
    np.testing.assert_allclose(np.exp(out[0, :2]).sum(), 1.0)
    np.testing.assert_allclose(out[1], np.log(np.full(3, 1 / 3)))


def test_average_orders_maps_scores_back_and_cancels_a_position_prior():
    mod = _module()
    rng = np.random.default_rng(0)
    n, c = 30, 5
    content = rng.normal(size=(n, c))
    prior = np.array([4.0, 2.0, 1.0, 0.5, 0.0])  # letter A strongly preferred
    # every cyclic shift once: each candidate is shown at every letter, so the letter term cancels exactly
    perms = [np.tile(np.roll(np.arange(c), k), (n, 1)) for k in range(c)]
    shown = [_shown(content, prior, p) for p in perms]
    avg = mod.average_orders(shown, perms)
    # what is left orders the candidates by their content term alone
    np.testing.assert_array_equal(np.argsort(-avg, axis=1), np.argsort(-content, axis=1))
    # one order (the identity) keeps the prior: candidate 0 wins far more often than its content says
    one = mod.log_softmax_rows(shown[0])
    assert (one.argmax(1) == 0).mean() > (content.argmax(1) == 0).mean()
    # a content-only model is left as it is (up to the log-softmax's per-row constant)
    flat = [_shown(content, np.zeros(c), p) for p in perms]
    np.testing.assert_allclose(mod.average_orders(flat, perms), mod.log_softmax_rows(content), atol=1e-12)


def test_analyse_pairs_every_row_on_the_same_users():
    mod = _module()
    n, c = 120, 20
    _, targets, retr, perms = _users(2, n, c, 4)
    content = np.full((n, c), -3.0)
    content[np.arange(n), targets] = 3.0  # the LM's content term knows the answer
    prior = np.linspace(6.0, 0.0, c)  # and a strong position prior that hides it in one order
    out = mod.analyse(_saved([_shown(content, prior, p) for p in perms], perms, targets, retr))
    mean, one = out["mean of 4 orders"], out["one order"]
    assert out["users"] == n and mean["fused"]["held_users"] == n // 2
    assert mean["valid"]["NDCG@10"] > one["valid"]["NDCG@10"]
    assert mean["vs_retriever"]["lo"] > 0 and out["mean_vs_one"]["lo"] > 0
    assert one["top1_A"] > mean["top1_A"]
    # the random-order reference: every rank equally likely, i.e. the mean NDCG@10 of ranks 0..C-1 once each
    from ulmrec.metrics import metrics_from_ranks

    assert abs(out["random_order_NDCG@10"] - metrics_from_ranks(np.arange(c), (10,))["NDCG@10"]) < 1e-12


def _no_prior(targets, retr, perms):
    """saved(content): the scores of an LM without a position prior, shown in every order of ``perms``."""
    c = retr.shape[1]
    return lambda content: _saved([_shown(content, np.zeros(c), p) for p in perms], perms, targets, retr)


def _knows(targets, c: int) -> np.ndarray:
    """Content scores that put every user's target first."""
    knows = np.full((len(targets), c), -3.0)
    knows[np.arange(len(targets)), targets] = 3.0
    return knows


def test_paired_rows_pair_every_row_with_the_retriever_and_the_zero_shot_row():
    mod = _module()
    n, c = 80, 20
    rng, targets, retr, perms = _users(3, n, c, 2)
    saved, knows = _no_prior(targets, retr, perms), _knows(targets, c)
    adapters = {mod.ZERO_SHOT: mod.analyse(saved(rng.normal(size=(n, c)))), "tuned": mod.analyse(saved(knows))}
    paired = mod.paired_rows(adapters)
    for key in (mod.ZERO_SHOT, "tuned"):
        for row in ("one order", "mean of 2 orders"):
            assert f"{key}, {row} - Retriever order" in paired
            assert f"{key}, {row} + retriever (fused) - Retriever order" in paired
    vs_zero = paired[f"tuned, one order - {mod.ZERO_SHOT}, one order"]["NDCG@10"]
    assert vs_zero["lo"] > 0 and adapters["tuned"]["one order"]["vs_zero_shot"] == vs_zero
    assert not any(k.startswith(f"{mod.ZERO_SHOT}, one order - {mod.ZERO_SHOT}") for k in paired)


def test_paired_rows_pair_later_adapters_with_the_first_one():
    mod = _module()
    n, c = 80, 20
    rng, targets, retr, perms = _users(4, n, c, 2)
    saved, knows = _no_prior(targets, retr, perms), _knows(targets, c)
    adapters = {mod.ZERO_SHOT: mod.analyse(saved(rng.normal(size=(n, c)))), "first": mod.analyse(saved(rng.normal(size=(n, c)))),
                "better": mod.analyse(saved(knows))}
    paired = mod.paired_rows(adapters)
    d = paired["better, mean of 2 orders - first, mean of 2 orders"]["NDCG@10"]
    assert d["lo"] > 0 and adapters["better"]["mean of 2 orders"]["vs_first"] == d
    assert "vs_first" not in adapters["first"]["one order"] and "vs_first" not in adapters[mod.ZERO_SHOT]["one order"]
    text = mod.markdown({"adapters": adapters, "orders": 2, "preferences": "none", "scored_now": 0,
                         "loadavg_before": [0, 0, 0], "loadavg_after": [0, 0, 0]})
    assert "Minus the first adapter (first), same scoring" in text and "better, mean of 2 orders +" in text
