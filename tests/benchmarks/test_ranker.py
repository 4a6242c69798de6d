"""benchmarks/ranker.py --add-pairs: paired differences a finished run did not make, from its ranks.parquet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import load_benchmark
from ulmrec.evaluation.stats import paired_bootstrap
from ulmrec.metrics import metrics_from_ranks

SAVED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "ranker_games.json"


def test_add_pairs_computes_the_stages_bootstrap_from_the_runs_ranks(tmp_path, monkeypatch):
    mod = load_benchmark("ranker")
    common = sys.modules["_common"]
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    out = json.loads(SAVED.read_text())
    rng = np.random.default_rng(0)
    ranks = pd.DataFrame({"user_idx": np.arange(300), "ULMRec": rng.integers(-1, 20, 300),
                          "New row": rng.integers(-1, 6, 300)})
    for row in ("ULMRec", "New row"):  # the saved rows are these users' rows
        out["results"]["models"][row] = {"Rank": metrics_from_ranks(ranks[row].to_numpy(), [5, 10]),
                                         "Overall": metrics_from_ranks(ranks[row].to_numpy(), [5, 10]),
                                         "seconds_per_user": 0.0}
    (tmp_path / "results" / "ranker_games.json").write_text(json.dumps(out))
    (tmp_path / "run" / "evaluate").mkdir(parents=True)
    ranks.to_parquet(tmp_path / "run" / "evaluate" / "ranks.parquet")
    args = argparse.Namespace(dataset="games", name="", run_dir=str(tmp_path / "run"), add_pairs=["New row - ULMRec"])
    assert mod.add_pairs(args) == 0
    got = json.loads((tmp_path / "results" / "ranker_games.json").read_text())
    metrics = list(next(iter(out["results"]["paired"].values())))
    expected = paired_bootstrap(ranks["New row"].to_numpy(), ranks["ULMRec"].to_numpy(), metrics, 2000, 42)
    assert list(got["results"]["paired"]["New row - ULMRec"]) == metrics
    for m in metrics:
        assert got["results"]["paired"]["New row - ULMRec"][m] == pytest.approx(expected[m]), m
    assert set(out["results"]["paired"]) < set(got["results"]["paired"])
    assert "New row - ULMRec" in got["provenance"]
    assert "| New row - ULMRec |" in (tmp_path / "results" / "ranker_games.md").read_text()
    # another run's ranks: refused
    ranks.assign(**{"New row": ranks["ULMRec"]}).to_parquet(tmp_path / "run" / "evaluate" / "ranks.parquet")
    with pytest.raises(SystemExit, match="not the saved result's run"):
        mod.add_pairs(args)
