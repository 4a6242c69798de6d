"""ulmrec.evaluation.title_signal.text_similarity: candidates scored by their cosine to a text of the user."""

from __future__ import annotations

import numpy as np

from ulmrec.evaluation.title_signal import text_similarity


def test_text_similarity_is_the_cosine_to_each_rows_text():
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])  # unit rows, row 0 = padding

    def encode(texts):
        return np.array([[3.0, 0.0] if "x" in t else [0.0, 2.0] for t in texts])

    out = text_similarity(["x likes", None, "y", "  "], [[1, 2, 3], [1, 2], [1, 3], [2]], emb, encode)
    assert out.shape == (4, 3)
    assert np.allclose(out[0], [1.0, 0.0, 0.6])  # text 0 -> (1, 0)
    assert np.allclose(out[1, :2], 0.0) and np.isneginf(out[1, 2])  # no text: 0, -inf past the list
    assert np.allclose(out[2, :2], [0.0, 0.8])  # text 2 -> (0, 1)
    assert out[3, 0] == 0.0  # a blank text counts as none
