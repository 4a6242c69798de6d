import numpy as np
import pandas as pd
import pytest

from ulmrec.data.preprocess import k_core, preprocess
from ulmrec.errors import DataError


def _raw(rows):
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df["order"] = np.arange(len(df))
    return df


def test_k_core_is_iterative():
    # item 'x' has 2 users; removing it drops user 'c' below k=2, which drops item 'y' below k=2 ...
    rows = [("a", "p", 1), ("a", "q", 2), ("b", "p", 1), ("b", "q", 2), ("c", "x", 1), ("c", "y", 2),
            ("d", "y", 1), ("d", "x", 2), ("e", "x", 3)]
    kept, rounds = k_core(_raw(rows), 2)
    assert set(kept["user_id"]) == {"a", "b", "c", "d"}
    kept3, _ = k_core(_raw(rows), 3)
    assert kept3.empty


def test_ids_sorted_deterministic_and_split():
    rows = [(u, i, t) for u in ("u2", "u1") for t, i in enumerate(("i3", "i1", "i2"))]
    items = pd.DataFrame({"item_id": ["i1", "i2", "i3"], "title": ["one", "two", "three"]})
    ds, report = preprocess(_raw(rows), items, k=1)
    assert ds.users["user_id"].tolist() == ["u1", "u2"]
    assert ds.items["item_id"].tolist() == ["i1", "i2", "i3"]
    assert ds.items["item_idx"].tolist() == [1, 2, 3]
    # chronological: i3, i1, i2 -> 3, 1, 2
    assert ds.sequences[0].tolist() == [3, 1, 2]
    assert ds.interactions.query("user_idx == 0")["split"].tolist() == ["train", "valid", "test"]
    # shuffled input rows give the same dataset
    shuffled = _raw(rows).sample(frac=1, random_state=1)
    ds2, _ = preprocess(shuffled.assign(order=np.arange(len(shuffled))), items, k=1)
    assert [s.tolist() for s in ds2.sequences] == [s.tolist() for s in ds.sequences]


def test_ties_keep_source_order_and_tie_rank():
    rows = [("u", "b", 5), ("u", "a", 5), ("u", "c", 1)]
    items = pd.DataFrame({"item_id": list("abc"), "title": list("ABC")})
    ds, _ = preprocess(_raw(rows), items, k=1)
    assert ds.titles[ds.sequences[0]].tolist() == ["C", "B", "A"]
    raw = _raw(rows).assign(tie_rank=[1, 0, 2])
    ds, _ = preprocess(raw, items, k=1)
    assert ds.titles[ds.sequences[0]].tolist() == ["C", "A", "B"]


def test_title_filter_then_k_core():
    rows = [(u, i, t) for u in ("u1", "u2") for t, i in enumerate(("a", "b", "c"))]
    items = pd.DataFrame({"item_id": ["a", "b", "c"], "title": ["A", "  ", None]})
    ds, report = preprocess(_raw(rows), items, k=1)
    assert ds.items["item_id"].tolist() == ["a"]
    assert report["dropped_items_without_title"] == 2
    with pytest.raises(DataError, match="no interactions left"):
        preprocess(_raw(rows), items, k=2)


def test_duplicates_keep_first():
    rows = [("u", "a", 1), ("u", "b", 2), ("u", "a", 3)]
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]})
    ds, report = preprocess(_raw(rows), items, k=1)
    assert report["dropped_duplicate_pairs"] == 1
    assert ds.titles[ds.sequences[0]].tolist() == ["A", "B"]
