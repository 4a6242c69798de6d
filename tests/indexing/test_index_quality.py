import itertools

import numpy as np
import pytest

from ulmrec.indexing.quality import codebook_usage, shared_code_similarity


def test_shared_code_similarity_matches_brute_force():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 5))
    codes = rng.integers(0, 3, size=(30, 2))
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for depth in (1, 2):
        shared = [e[i] @ e[j] for i, j in itertools.combinations(range(30), 2)
                  if (codes[i, :depth] == codes[j, :depth]).all()]
        every = [e[i] @ e[j] for i, j in itertools.combinations(range(30), 2)]
        s = shared_code_similarity(emb, codes, depth)
        assert s["shared_pairs"] == len(shared)
        assert s["mean_cosine_shared"] == pytest.approx(np.mean(shared))
        assert s["mean_cosine_random"] == pytest.approx(np.mean(every))


def test_perplexity_is_codebook_size_when_balanced_and_one_when_collapsed():
    balanced = np.repeat(np.arange(8), 3)[:, None]
    assert codebook_usage(balanced, 8)[0] == {"level": 1, "used": 8, "usage": 1.0, "perplexity": pytest.approx(8.0)}
    assert codebook_usage(np.zeros((5, 1), int), 8)[0]["perplexity"] == pytest.approx(1.0)
