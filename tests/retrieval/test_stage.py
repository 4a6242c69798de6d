"""``ulmrec retrieve`` end to end on a tiny dataset: artifacts follow docs/ARCHITECTURE.md."""

from __future__ import annotations

import io

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


def test_cross_fitted_training_candidates(ring, tmp_path):
    """train_candidates_folds=2: every training prefix listed by a retriever that never trained on its user;
    validation/test candidates and the full retriever unchanged; the default stays out of the fingerprint."""
    from ulmrec.pipeline import stage_fingerprint
    from ulmrec.retrieval.stage import user_folds

    lists = {}
    for folds in (1, 2):
        run_dir = tmp_path / f"k{folds}"
        ring.save(run_dir / "data")
        cfg = load_config(overrides=[f"run_dir={run_dir}", "retrieval.epochs=3", "retrieval.train_candidates=true",
                                     f"retrieval.train_candidates_folds={folds}", *TINY])
        run_stage(get_stage("retrieve"), cfg)
        out = run_dir / "retrieval"
        assert not list(out.glob("checkpoints*"))
        lists[folds] = {f: pd.read_parquet(out / f"candidates_{f}.parquet") for f in ("train", "valid", "test")}
        lists[folds]["model"] = (out / "model.safetensors").read_bytes()
        lists[folds]["metrics"] = read_json(out / "metrics.json")["train"]
    for split in ("valid", "test"):
        pd.testing.assert_frame_equal(lists[1][split], lists[2][split])
    assert lists[1]["model"] == lists[2]["model"]
    one, two = lists[1]["train"], lists[2]["train"]
    assert list(one.columns) == list(two.columns)
    assert (one[["user_idx", "position", "target"]].to_numpy() == two[["user_idx", "position", "target"]].to_numpy()).all()
    assert not all(np.array_equal(a, b) for a, b in zip(one["candidates"], two["candidates"], strict=True))
    by_fold = lists[2]["metrics"]["by_fold"]
    fold = user_folds(ring.num_users, 2, 42)
    assert sorted(np.bincount(fold).tolist()) == sorted([ring.num_users // 2, ring.num_users - ring.num_users // 2])
    assert sum(v["train_users"] for v in by_fold.values()) == ring.num_users  # each user trains exactly one fold
    assert sum(v["prefixes"] for v in by_fold.values()) == len(two)
    # every fold's lists equal what a retriever trained on the other fold's users alone writes
    from ulmrec.retrieval.data import train_prefixes
    from ulmrec.retrieval.models import build_model
    from ulmrec.retrieval.train import Trainer
    from ulmrec.utils import seed_everything

    cfg = load_config(overrides=[f"run_dir={tmp_path / 'k2'}", "retrieval.epochs=3", *TINY])
    seed_everything(cfg.seed + 1)
    model = build_model(cfg.retrieval, ring.num_items)
    keep = np.flatnonzero(fold != 0)
    from ulmrec.retrieval.data import training_windows

    vh, vt = split_histories(ring, "valid")
    trainer = Trainer(model, cfg.retrieval, tmp_path / "ck", seed=cfg.seed + 1, progress=False)
    trainer.fit(training_windows([ring.train_sequences()[u] for u in keep], 8), [vh[u] for u in keep], vt[keep])
    users, _, hist, targets = train_prefixes(ring)
    rows = np.flatnonzero(fold[users] == 0)
    res = rank_next_items(trainer.load_best(), [hist[i] for i in rows], targets[rows], 8, k=5)
    assert np.array_equal(np.stack(two["candidates"].to_numpy())[rows], res["candidates"])
    # folds=1 is left out of the fingerprint: run directories made before the setting stay current
    base = load_config(overrides=[f"run_dir={tmp_path / 'k1'}", "retrieval.train_candidates=true", *TINY])
    assert "train_candidates_folds" not in stage_fingerprint(get_stage("retrieve"), base, tmp_path / "k1")["params"]
    from ulmrec.errors import ConfigError

    with pytest.raises(ConfigError, match="train_candidates_folds must be >= 1"):
        load_config(overrides=["retrieval.train_candidates_folds=0"])


def test_turning_on_training_lists_reuses_the_trained_retriever(ring, tmp_path, monkeypatch):
    """Only retrieval.train_candidates changed: the stage lists the training prefixes with the retriever it trained
    before (no training; the same weights, log and validation/test lists, the record says so); a changed training
    setting trains again."""
    import ulmrec.retrieval.stage as stage

    ring.save(tmp_path / "data")
    base = [f"run_dir={tmp_path}", "retrieval.epochs=2", *TINY]
    run_stage(get_stage("retrieve"), load_config(overrides=base))
    out = tmp_path / "retrieval"
    before = {n: (out / n).read_bytes() for n in ("model.safetensors", "train_log.json", "candidates_valid.parquet",
                                                  "candidates_test.parquet")}
    trained = read_json(out / "metrics.json")["training"]
    assert not (out / "candidates_train.parquet").exists()
    monkeypatch.setattr(stage, "fit_retriever", lambda *a, **k: pytest.fail("trained again"))
    rec = run_stage(get_stage("retrieve"), load_config(overrides=[*base, "retrieval.train_candidates=true"]))
    assert rec["skipped"] is False and "earlier run" in rec["summary"]["reused"]
    assert rec["summary"]["epochs"] == trained["epochs"]
    for name, data in before.items():
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(io.BytesIO(data)))
        else:
            assert (out / name).read_bytes() == data, name
    train = pd.read_parquet(out / "candidates_train.parquet")
    assert len(train) == read_json(out / "metrics.json")["train"]["prefixes"] > 0
    with pytest.raises(pytest.fail.Exception, match="trained again"):  # another training setting: trains
        run_stage(get_stage("retrieve"), load_config(overrides=[*base, "retrieval.train_candidates=true",
                                                                "retrieval.lr=0.01"]))
