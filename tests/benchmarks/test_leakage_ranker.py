"""benchmarks/leakage_ranker.py pairs the shipped and leak-free arms user by user (issue #13)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import load_benchmark
from ulmrec.io import write_json

REPO = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("leakage_ranker")


def _arm(root: Path, name: str, users, cols: dict) -> Path:
    run = root / name
    (run / "evaluate").mkdir(parents=True)
    pd.DataFrame({"user_idx": users, "target": 1, **cols}).to_parquet(run / "evaluate" / "ranks.parquet")
    write_json(run / "evaluate" / "results.json", {"preferences": name})
    return run


def test_pairs_the_arms_and_refuses_different_users(monkeypatch, tmp_path):
    mod = _module()
    monkeypatch.setattr(mod, "REPO", tmp_path)
    rng = np.random.default_rng(0)
    n = 300
    retr = rng.integers(0, 20, n)
    good = np.where(rng.random(n) < 0.5, 0, retr)  # the shipped arm ranks half of the targets first
    shipped = _arm(tmp_path, "shipped", np.arange(n), {"Retriever order": retr, "LlamaRec-style": retr,
                                                      "Zero-shot (untuned LM)": retr, "ULMRec": good,
                                                      "ULMRec + retriever": good})
    free = _arm(tmp_path, "free", np.arange(n), {"Retriever order": retr, "ULMRec": retr,
                                                 "ULMRec + retriever": retr})
    ab = mod.table(shipped, free, n_boot=200)
    d = ab["paired"]["ULMRec, shipped sentences - ULMRec, leak-free sentences"]["NDCG@10"]
    assert ab["users"] == n and d["lo"] > 0  # a planted gain of the shipped arm is found
    same = ab["paired"]["ULMRec, leak-free sentences - LlamaRec-style"]["NDCG@10"]
    assert same["mean"] == 0 and same["lo"] == 0 and same["hi"] == 0
    assert "above" in mod.verdict(ab) and "not distinguishable" in mod.verdict(ab)
    other = _arm(tmp_path, "other", np.arange(1, n + 1), {"Retriever order": retr, "ULMRec": retr,
                                                          "ULMRec + retriever": retr})
    with pytest.raises(SystemExit, match="different users"):
        mod.table(shipped, other, n_boot=10)
