"""``ulmrec recommend --user``: an original id or an ASCII user_idx, nothing else."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from ulmrec.errors import ConfigError
from ulmrec.ranker.recommend import find_user


@pytest.fixture
def ds():
    users = pd.DataFrame({"user_idx": range(20), "user_id": [f"A{i}" for i in range(19)] + ["٣"]})
    return SimpleNamespace(users=users, num_users=20)


def test_original_id_then_user_idx(ds):
    assert find_user(ds, "A7") == 7
    assert find_user(ds, "12") == 12
    assert find_user(ds, "٣") == 19  # an original id may be anything, it is matched first


@pytest.mark.parametrize("user", ["²", "١٢", "12 ", "-1", "20", "A99", ""])
def test_anything_else_is_a_clear_error(ds, user):
    with pytest.raises(ConfigError, match="no user"):
        find_user(ds, user)
