import numpy as np
import pytest

from ulmrec.config import load_config
from ulmrec.errors import ConfigError


def test_defaults_are_the_papers():
    ic = load_config().index
    assert (ic.levels, ic.codebook_size, ic.code_dim, ic.beta) == (4, 256, 32, 0.25)


@pytest.mark.parametrize("override, message", [
    ("index.levels=0", "levels must be >= 1"),
    ("index.levels=27", "<= 26"),
    ("index.lr=0", "lr must be > 0"),
    ("index.hidden_dims=[64, 0]", "positive widths"),
    ("index.text_source=bert", "not one of"),
    ("index.sinkhorn_epsilon=0", None),  # fine while sinkhorn is off
])
def test_bad_settings_are_rejected(override, message):
    if message is None:
        load_config(overrides=[override])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


def test_sinkhorn_needs_a_positive_epsilon():
    with pytest.raises(ConfigError, match="sinkhorn_epsilon"):
        load_config(overrides=["index.sinkhorn=true", "index.sinkhorn_epsilon=0"])


def test_public_api_is_importable_lazily():
    import ulmrec.indexing as indexing

    assert indexing.UserIndexer.__name__ == "UserIndexer"
    assert indexing.index_tokens(np.array([[1, 2]])) == [["<a_1>", "<b_2>"]]
