"""Multi-process training through accelerate (2 CPU processes, gloo), then `ulmrec train` completes the stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import build_tiny_llama, make_run_dir, tiny_config
from ulmrec.pipeline import get_stage, run_stage

pytestmark = pytest.mark.slow


def test_accelerate_two_processes_then_ulmrec_train(tmp_path):
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists() and shutil.which("accelerate") is None:
        pytest.skip("the accelerate launcher is not installed")
    run_dir, model = make_run_dir(tmp_path / "run"), build_tiny_llama(tmp_path / "model")
    overrides = [f"run_dir={run_dir}", f"ranker.model={model}", "device=cpu", "tasks.num_candidates=4",
                 "retrieval.num_candidates=6", "tasks.max_history=3", "ranker.max_steps=4", "ranker.eval_every=2",
                 "ranker.batch_size=2", "ranker.warmup_steps=1", "ranker.num_threads=1", "ranker.max_length=512"]
    cmd = [str(launcher if launcher.exists() else shutil.which("accelerate")), "launch", "--cpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ulmrec.ranker.launch",
           *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    partial = run_dir / ".ranker.partial"
    evals = [json.loads(x) for x in (partial / "train_log.jsonl").read_text().splitlines() if '"eval"' in x]
    assert [e["step"] for e in evals] == [0, 2, 4]  # step 0: the untuned model is validated too
    assert all(e["valid"]["users"] == 6 for e in evals)  # both processes' shares gathered
    cfg = tiny_config(run_dir, model)
    record = run_stage(get_stage("ranker"), cfg)
    assert record["summary"]["ulmrec"]["steps"] == 4
    assert (run_dir / "ranker" / "adapter" / "adapter_config.json").exists()
