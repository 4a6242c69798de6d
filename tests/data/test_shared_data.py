"""The paper's datasets, from the real shared files (skipped where ../shared/data is absent)."""

import numpy as np
import pytest

from ulmrec.data.config import DataConfig
from ulmrec.data.ingest import ingest


@pytest.fixture(scope="module")
def beauty(shared_data):
    ds, _ = ingest(DataConfig(source="ulmrec", path=str(shared_data / "beauty-ulmrec")))
    return ds


def test_beauty_table1(beauty):
    s = beauty.stats()
    assert (s["users"], s["items"], s["interactions"]) == (22332, 12086, 198215)
    assert s["mean_length"] == pytest.approx(8.87, abs=0.01)
    assert s["sparsity"] > 0.999


def test_games_table1(shared_data):
    ds, _ = ingest(DataConfig(source="ulmrec", path=str(shared_data / "games-ulmrec")))
    s = ds.stats()
    assert (s["users"], s["items"], s["interactions"]) == (15264, 7676, 147861)
    assert s["mean_length"] == pytest.approx(9.69, abs=0.01)
    assert s["sparsity"] == pytest.approx(0.998, abs=0.001)


def test_openp5_reproduces_the_paper_beauty_exactly(shared_data, beauty):
    """Title join + empty-title drop + 5-core re-run from the raw OpenP5 Beauty gives the authors' data: the
    same users, items and per-user item sets; with the real review dates and the authors' tie order (LlamaRec
    breaks same-day ties by its own hash-seeded item ids) also the identical sequences and splits."""
    ds, report = ingest(DataConfig(source="openp5", path=str(shared_data / "beauty-openp5")))
    assert (ds.num_users, ds.num_items, len(ds.interactions)) == (22332, 12086, 198215)
    assert report["dropped_items_without_title"] == 7
    assert ds.users["user_id"].tolist() == beauty.users["user_id"].tolist()
    assert ds.items["item_id"].tolist() == beauty.items["item_id"].tolist()
    assert all(sorted(a) == sorted(b) for a, b in zip(ds.sequences, beauty.sequences))

    exact, _ = ingest(DataConfig(
        source="openp5", path=str(shared_data / "beauty-openp5"),
        timestamps_path=str(shared_data / "beauty-timestamps-ticoserec" / "beauty_timestamps.jsonl.gz"),
        item_order_path=str(shared_data / "beauty-ulmrec" / "items.jsonl.gz")))
    assert all(np.array_equal(a, b) for a, b in zip(exact.sequences, beauty.sequences))
    assert np.array_equal(exact.valid_targets(), beauty.valid_targets())
    assert np.array_equal(exact.test_targets(), beauty.test_targets())
    assert exact.has_timestamps


def test_all_beauty_2018_has_text_ratings_times(shared_data):
    ds, report = ingest(DataConfig(source="amazon2018", path=str(shared_data / "all-beauty-2018" / "All_Beauty_5.json.gz"),
                                   require_titles=False))
    assert ds.has_reviews and ds.has_ratings and ds.has_timestamps
    assert report["raw_interactions"] == 5269
    assert ds.num_users > 0 and ds.num_items > 0
    # interactions of one user are in time order
    ts = ds.column("timestamp", 0)
    assert (np.diff(ts.astype(np.int64)) >= 0).all()
