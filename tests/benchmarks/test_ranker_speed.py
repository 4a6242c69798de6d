"""benchmarks/ranker_speed.py: the quality intervals it carries come from the lever benchmark, renamed, unchanged."""

from __future__ import annotations

import json

from helpers import load_benchmark


def test_quality_intervals_copy_the_lever_pairs_of_its_paths(tmp_path, monkeypatch):
    import sys

    mod = load_benchmark("ranker_speed")
    _common = sys.modules["_common"]  # loaded with the benchmark; quality_intervals reads RESULTS from it
    ci = {"mean": 0.0015, "lo": -0.0065, "hi": 0.0098, "n": 690}
    nr, skip = "retriever order + skip, index rows trained by non-ranking samples only", \
        "retriever order, only prefixes whose list holds the target"
    levers = {"paired": {f"{nr} - {skip}": {"NDCG@10": ci},
                         f"{nr} - Retriever order": {"NDCG@10": {**ci, "mean": -0.0121}},
                         "some other lever - Retriever order": {"NDCG@10": ci},
                         f"{skip} - {skip}": {"NDCG@10": {**ci, "mean": 0.0}}}}
    (tmp_path / "ranker_levers.json").write_text(json.dumps(levers))
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    out = mod.quality_intervals()
    assert set(out) == {f"{mod.QUALITY_ROWS[nr]} - {mod.QUALITY_ROWS[skip]}", f"{mod.QUALITY_ROWS[nr]} - Retriever order"}
    assert out[f"{mod.QUALITY_ROWS[nr]} - {mod.QUALITY_ROWS[skip]}"]["NDCG@10"] == ci
    monkeypatch.setattr(_common, "RESULTS", tmp_path / "none")
    assert mod.quality_intervals() == {}
