import pandas as pd
import pytest

from ulmrec.errors import ConfigError, DataError
from ulmrec.tasks import (
    index_identities,
    load_preferences,
    numeric_identities,
    original_identities,
    preferences_from_frame,
    read_identities,
)
from ulmrec.tasks.inputs import Titles


def test_identity_variants(ds, tmp_path):
    assert numeric_identities(ds)[0] == "1"
    assert original_identities(ds)[2] == "U002X"
    frame = pd.DataFrame({"user_idx": [0, 1], "tokens": [["<a_1>", "<b_2>"], ["<a_3>", "<b_4>"]]})
    assert index_identities(frame) == {0: "<a_1> <b_2>", 1: "<a_3> <b_4>"}
    (tmp_path / "index").mkdir()
    frame.to_parquet(tmp_path / "index" / "user_index.parquet")
    assert read_identities("index", ds, tmp_path)[1] == "<a_3> <b_4>"
    assert read_identities("numeric", ds)[5] == "6"


def test_missing_identity_sources_are_config_errors(ds, tmp_path):
    with pytest.raises(ConfigError, match="run `ulmrec index`"):
        read_identities("index", ds, tmp_path)
    with pytest.raises(ConfigError, match="reference_index"):
        read_identities("reference", ds)


def test_bad_index_frame_names_the_field():
    with pytest.raises(DataError, match="field 'tokens'"):
        index_identities(pd.DataFrame({"user_idx": [0]}))
    with pytest.raises(DataError, match=":2: field 'tokens': empty user index"):
        index_identities(pd.DataFrame({"user_idx": [0, 1], "tokens": [["<a_1>"], []]}))


def test_preferences_keep_only_usable_sentences(ds, tmp_path):
    frame = pd.DataFrame({"user_idx": [0, 1, 2, 3], "preference": ["likes tea ", None, "  ", "likes cats"],
                          "status": ["ok", "failed", "ok", "failed"]})
    assert preferences_from_frame(frame) == {0: "likes tea"}
    assert load_preferences(ds, tmp_path) == {}
    (tmp_path / "preferences").mkdir()
    frame.to_parquet(tmp_path / "preferences" / "preferences.parquet")
    assert load_preferences(ds, tmp_path) == {0: "likes tea"}


def test_titles_cut_and_fallback(ds, make_ds):
    t = Titles(ds, lambda s: s[:7])
    assert t[3] == "Title-3"
    bare = Titles(make_ds(titles=False))
    assert bare[3] == "item B0003" and bare.untitled == {3}
