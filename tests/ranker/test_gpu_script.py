"""benchmarks/ranker_gpu.py, the prepared one-GPU check, run on CPU with a tiny random model so it cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import LETTERS, build_tiny_llama, make_run_dir

REPO = Path(__file__).resolve().parents[2]


def test_gpu_script_runs_on_cpu_with_a_tiny_model(tmp_path):
    model = build_tiny_llama(tmp_path / "tiny")
    source = make_run_dir(tmp_path / "source")
    out = tmp_path / "results"
    cmd = [sys.executable, str(REPO / "benchmarks" / "ranker_gpu.py"), "--source", str(source), "--model", str(model),
           "--cpu-test", "--max-minutes", "0.5", "--run-dir", str(tmp_path / "run"), "--out", str(out),
           f"tasks.num_candidates={LETTERS}", f"retrieval.num_candidates={LETTERS + 2}", "tasks.max_history=3",
           "ranker.max_length=512", "tasks.identity=index"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "ranker_gpu.json").read_text())
    assert res["ranker"]["steps"] >= 1 and res["train_samples_per_s"] > 0
    assert res["results"]["scored_rank_users"] == res["results"]["rank_users"]  # every Rank test user scored
    assert "ULMRec" in res["results"]["models"] and res["qlora"]["skipped"]
    assert "QLoRA (nf4)" in (out / "ranker_gpu.md").read_text()
