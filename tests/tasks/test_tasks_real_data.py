"""The task builders on real data: the embedded Beauty sample (always there) and full Beauty (shared data)."""

import pytest

from ulmrec.data.config import DataConfig
from ulmrec.data.ingest import ingest
from ulmrec.tasks import (
    PAPER_TASKS,
    TasksConfig,
    build_training_samples,
    format_prompt,
    load_preferences,
    read_identities,
)


def build(ds, **settings):
    ids = read_identities("reference", ds)
    return build_training_samples(ds, TasksConfig(identity="reference", **settings), identities=ids,
                                  preferences=load_preferences(ds), seed=42)


def test_embedded_sample_all_tasks():
    ds, _ = ingest(DataConfig(source="sample"))
    samples, report = build(ds)
    assert report["tasks"]["rating"]["status"] == "skipped"  # the sample has no ratings
    assert report["tasks"]["next_item"]["samples"] == sum(len(s) - 1 for s in ds.train_sequences())
    assert {s.task for s in samples} == set(PAPER_TASKS) - {"rating"}
    for s in samples[:200]:
        assert format_prompt(s).count("### ") == 3 and s.response
        if s.candidates is not None:
            assert len(set(s.candidates)) == 20


@pytest.mark.shared_data
def test_full_beauty_budget(shared_data):
    ds, _ = ingest(DataConfig(source="ulmrec", path=str(shared_data / "beauty-ulmrec")))
    samples, report = build(ds, max_samples=300)
    assert len(samples) == 300
    # ~131k next-item prefixes (LlamaRec) of ~241k in the mix keep their share of the budget
    assert report["tasks"]["next_item"]["pool"] == 131219
    assert 150 <= report["tasks"]["next_item"]["samples"] <= 190
