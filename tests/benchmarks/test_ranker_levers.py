"""benchmarks/ranker_levers.py's fusion column: w chosen on one half of the validation users, reported on the other."""

from __future__ import annotations

import numpy as np

from helpers import load_benchmark


def _module():
    return load_benchmark("ranker_levers")


def _scored(lm: np.ndarray, retr: np.ndarray, targets: np.ndarray) -> dict:
    return {"scores": lm.tolist(), "retriever_scores": retr.tolist(), "targets": targets.tolist()}


def test_fusion_row_halves_the_users_and_pairs_against_the_retriever():
    mod = _module()
    rng = np.random.default_rng(1)
    n, c = 200, 20
    retr = np.sort(rng.random((n, c)), axis=1)[:, ::-1].copy()  # retriever order: descending scores
    targets = rng.integers(0, c, n)
    retr_ranks = targets.copy()  # letters are in retriever order, so the target's rank is its letter
    # an LM that knows the answer: the fused order beats the retriever's with any weight the grid offers
    oracle = np.full((n, c), -5.0)
    oracle[np.arange(n), targets] = 5.0
    row = mod.fusion_row(_scored(oracle, retr, targets), retr_ranks.tolist())
    assert row["choose_users"] == 100 and row["report_users"] == 100
    assert row["vs_retriever"]["lo"] > 0 and row["weight"] < 10
    # an LM that scores every letter the same: any weight > 0 gives the retriever's order, w = 0 only ties
    noise = np.zeros((n, c))
    row = mod.fusion_row(_scored(noise, retr, targets), retr_ranks.tolist())
    assert row["weight"] > 0 and abs(row["vs_retriever"]["mean"]) < 1e-9


def test_stopped_curve_reads_the_unfinished_stage_log(tmp_path):
    import json

    import pytest

    mod = _module()
    log = tmp_path / ".ranker.partial" / "train_log.jsonl"
    log.parent.mkdir()
    rows = [{"event": "eval", "step": 0, "valid": {"NDCG@10": 0.28, "users": 100}},
            {"event": "train", "step": 10, "loss": 2.0},
            {"event": "eval", "step": 150, "valid": {"NDCG@10": 0.19, "users": 100}},
            {"event": "train", "step": 160, "loss": 1.9}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert mod.stopped_curve(tmp_path) == {"evals": [[0, 0.28], [150, 0.19]], "selection_users": 100, "last_step": 160}
    with pytest.raises(SystemExit, match="no unfinished ranker stage"):
        mod.stopped_curve(tmp_path / "missing")


def test_title_lm_levers_need_the_title_lm_and_get_its_path(tmp_path):
    import pytest

    mod = _module()
    levers = {k: v for k, v in mod.LEVERS.items() if k.startswith("from the every-title LM")}
    assert len(levers) == 3
    plain = {mod.SKIP_RECIPE: mod.LEVERS[mod.SKIP_RECIPE]}
    assert mod.with_title_lm(plain, None) == plain  # nothing to fill: no --title-lm needed
    with pytest.raises(SystemExit, match="need --title-lm"):
        mod.with_title_lm(levers, None)
    with pytest.raises(SystemExit, match="no adapter/ there"):
        mod.with_title_lm(levers, tmp_path)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    filled = mod.with_title_lm(levers, tmp_path)
    for over in filled.values():
        assert f"ranker.init_adapter={tmp_path.resolve()}" in over and not any("{" in o for o in over)
