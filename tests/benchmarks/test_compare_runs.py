"""benchmarks/compare_runs.py: two run directories are called identical only when every artifact is."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from helpers import load_benchmark


def _run(root, ranks: bytes, lora: float, ndcg: float):
    for rel in ("retrieval/candidates_valid.parquet", "retrieval/candidates_test.parquet",
                "retrieval/model.safetensors", "index/user_index.parquet"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"same")
    (root / "evaluate").mkdir(exist_ok=True)
    (root / "evaluate" / "ranks.parquet").write_bytes(ranks)
    (root / "evaluate" / "results.json").write_text(json.dumps({"models": {"ULMRec": {"Rank": {"NDCG@10": ndcg}}}}))
    for d in ("ranker/adapter", "ranker/llamarec/adapter"):
        (root / d).mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.full((2,), lora)}, str(root / d / "adapter_model.safetensors"))
    for s in ("retrieval", "ranker", "evaluate"):
        (root / s / "stage.json").write_text(json.dumps({"seconds": 1.5}))
    return root


def test_identical_only_when_every_artifact_is(tmp_path, monkeypatch):
    mod = load_benchmark("compare_runs")
    saved = {}
    monkeypatch.setattr(mod, "save", lambda name, result, md: saved.update(name=name, result=result, md=md))
    a = _run(tmp_path / "a", b"r1", 0.5, 0.4)
    b = _run(tmp_path / "b", b"r1", 0.5, 0.4)
    assert mod.main([f"x={a}", f"y={b}", "--made-by", "y=an older commit", "--out", "t"]) == 0
    assert saved["result"]["identical"] is True and "Identical: **yes**" in saved["md"]
    assert "an older commit" in saved["md"] and "| ranker | 1.5 | 1.5 |" in saved["md"]
    c = _run(tmp_path / "c", b"r1", 0.6, 0.4)  # one adapter tensor differs
    mod.main([f"x={a}", f"y={c}", "--out", "t"])
    assert saved["result"]["identical"] is False and "DIFFERENT" in saved["md"]
    d = _run(tmp_path / "d", b"r2", 0.5, 0.4)  # the ranks file differs
    mod.main([f"x={a}", f"y={d}", "--out", "t"])
    assert saved["result"]["identical"] is False
