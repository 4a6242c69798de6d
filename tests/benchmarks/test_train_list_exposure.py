"""benchmarks/train_list_exposure.py: the user's own items among a list's negatives."""

import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import train_list_exposure as tle  # noqa: E402


def test_user_items_count_the_users_other_training_items_in_the_top(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame({"user_idx": [0, 0, 0, 1, 1, 1, 0], "item_idx": [1, 2, 3, 4, 5, 6, 7],
                  "split": ["train", "train", "train", "train", "train", "train", "valid"]}).to_parquet(
        tmp_path / "data" / "interactions.parquet")
    mine = tle.training_items(tmp_path)
    assert mine == {0: {1, 2, 3}, 1: {4, 5, 6}}
    path = tmp_path / "c.parquet"
    pd.DataFrame({"user_idx": [0, 1, 1], "candidates": [[2, 3, 9, 8], [5, 9, 4, 6], [8, 9, 10, 11]],
                  "target": [2, 5, 12], "target_rank": [0, 0, -1]}).to_parquet(path)
    e = tle.exposure(path, n=3, mine=mine)
    # user 0: 3 is theirs (2 is the target); user 1: 4 is theirs within the top 3 (6 is beyond); row 3: none
    assert e["user_items"] == (1 + 1 + 0) / 3
    assert e["user_items_when_listed"] == 1.0 and e["lists_with_user_items_when_listed"] == 1.0
    assert e["in_top"] == 2 / 3
    assert "user_items" not in tle.exposure(path, n=3)
    assert "user's own items" in tle.markdown({"top": 3, "user_items": True, "runs": {"x": {s: e for s in ("train", "valid", "test")}}})
