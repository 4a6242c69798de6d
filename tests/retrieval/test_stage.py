"""``ulmrec retrieve`` end to end on a tiny dataset: artifacts follow docs/ARCHITECTURE.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ulmrec.config import load_config
from ulmrec.io import read_json
from ulmrec.pipeline import get_stage, run_stage
from ulmrec.retrieval.candidates import rank_next_items
from ulmrec.retrieval.data import split_histories
from ulmrec.retrieval.models import load_retriever


@pytest.mark.parametrize("model", ["lrurec", "bert4rec"])
def test_stage_writes_the_contract(ring_run_dir, ring, model):
    cfg = load_config(overrides=[f"run_dir={ring_run_dir}", "device=cpu", f"retrieval.model={model}",
                                 "retrieval.epochs=2", "retrieval.max_len=8", "retrieval.hidden=16",
                                 "retrieval.num_candidates=5", "retrieval.train_candidates=true"])
    rec = run_stage(get_stage("retrieve"), cfg)
    out = ring_run_dir / "retrieval"
    for name in ("model.safetensors", "model.yaml", "candidates_valid.parquet", "candidates_test.parquet",
                 "candidates_train.parquet", "metrics.json", "train_log.json"):
        assert (out / name).exists(), name
    assert not (out / "checkpoints").exists()
    metrics = read_json(out / "metrics.json")
    assert {"valid", "test", "training"} <= metrics.keys() and "Recall@20" in metrics["test"]

    test = pd.read_parquet(out / "candidates_test.parquet")
    assert list(test.columns) == ["user_idx", "candidates", "scores", "target", "target_rank"]
    assert len(test) == ring.num_users and all(len(c) == 5 for c in test["candidates"])
    for row in test.itertuples():
        seq = ring.sequences[row.user_idx]
        assert row.target == seq[-1]
        assert not set(row.candidates) & set(seq[:-1])  # history (train + valid) excluded
        assert row.target_rank == (list(row.candidates).index(row.target) if row.target in row.candidates else -1)
        assert np.all(np.diff(row.scores) <= 0)
    assert metrics["test"]["coverage"] == pytest.approx((test["target_rank"] >= 0).mean())
    train = pd.read_parquet(out / "candidates_train.parquet")
    assert "position" in train.columns and len(train) == sum(len(s) - 3 for s in ring.sequences)

    # the saved model reproduces the written candidates
    model_back = load_retriever(out)
    hist, targets = split_histories(ring, "valid")
    res = rank_next_items(model_back, hist, targets, max_len=8, k=5)
    valid = pd.read_parquet(out / "candidates_valid.parquet")
    assert np.array_equal(np.stack(valid["candidates"].to_numpy()), res["candidates"])
    assert rec["summary"]["model"] == model
    assert run_stage(get_stage("retrieve"), cfg)["skipped"] is True


def test_too_short_histories_are_a_clear_error(tmp_path, ring):
    from ulmrec.errors import DataError

    inter = ring.interactions
    keep = ~((inter["user_idx"] == 3) & (inter["position"] < inter.groupby("user_idx")["position"].transform("max") - 1))
    ring.interactions = inter[keep].reset_index(drop=True)
    ring.save(tmp_path / "data")
    cfg = load_config(overrides=[f"run_dir={tmp_path}", "device=cpu", "retrieval.epochs=1"])
    with pytest.raises(DataError, match="user_idx 3"):
        run_stage(get_stage("retrieve"), cfg)


@pytest.mark.slow
def test_sample_preset_end_to_end(tmp_path):
    """The embedded sample through prepare + retrieve with a short budget: candidates for every user."""
    cfg = load_config(["sample"], [f"run_dir={tmp_path}", "device=cpu", "retrieval.epochs=3"])
    run_stage(get_stage("prepare"), cfg)
    run_stage(get_stage("retrieve"), cfg)
    test = pd.read_parquet(tmp_path / "retrieval" / "candidates_test.parquet")
    metrics = read_json(tmp_path / "retrieval" / "metrics.json")
    assert len(test) == metrics["users"] and metrics["test"]["Recall@20"] > 0.05


TINY = ["device=cpu", "retrieval.max_len=8", "retrieval.hidden=16", "retrieval.num_candidates=5"]


def test_same_seed_same_artifacts_on_cpu(ring, tmp_path):
    """Two runs with the same seed write byte-identical model and candidates (no wall clock in the budget)."""
    digests = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        ring.save(run_dir / "data")
        cfg = load_config(overrides=[f"run_dir={run_dir}", "retrieval.epochs=3", *TINY])
        run_stage(get_stage("retrieve"), cfg)
        out = run_dir / "retrieval"
        digests.append({f: (out / f).read_bytes() for f in ("model.safetensors", "candidates_valid.parquet",
                                                            "candidates_test.parquet")})
    assert digests[0] == digests[1]


def test_wall_clock_cap_is_loud_and_recorded(ring, tmp_path, caplog):
    ring.save(tmp_path / "data")
    cfg = load_config(overrides=[f"run_dir={tmp_path}", "retrieval.epochs=1000", "retrieval.max_minutes=0.0001", *TINY])
    with caplog.at_level("WARNING", logger="ulmrec"):
        rec = run_stage(get_stage("retrieve"), cfg)
    assert "CUT SHORT BY THE WALL CLOCK" in caplog.text
    assert rec["summary"]["cut_by_wall_clock"] is True and rec["summary"]["stopped"] == "time"
    assert read_json(tmp_path / "retrieval" / "metrics.json")["training"]["cut_by_wall_clock"] is True
    uncapped = load_config(overrides=[f"run_dir={tmp_path}", "retrieval.epochs=2", *TINY])
    rec = run_stage(get_stage("retrieve"), uncapped)
    assert rec["summary"]["stopped"] == "epochs" and "cut_by_wall_clock" not in rec["summary"]
