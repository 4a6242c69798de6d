import numpy as np
import pytest

from ulmrec.indexing.indexer import UserIndexer
from ulmrec.indexing.unique import collision_stats


def small(**kw):
    args = dict(levels=3, codebook_size=8, code_dim=4, hidden_dims=[16], epochs=6, batch_size=16, progress=False)
    return UserIndexer(**(args | kw))


def test_fit_transform_shapes_and_report(embeddings):
    review, ids, owners = embeddings
    ix = small().fit(review, ids, owners)
    codes = ix.transform(review, ids, owners)
    assert codes.shape == (60, 3) and codes.dtype == np.int64 and codes.min() >= 0 and codes.max() < 8
    assert collision_stats(codes)["collision_rate"] == 0.0
    r = ix.report_
    assert r["collisions_after"]["collision_rate"] == 0.0 and len(r["codebook"]) == 3
    assert all(1.0 <= c["perplexity"] <= 8.0 for c in r["codebook"])
    assert len(ix.history_) == 6 and np.isfinite(r["reconstruction_mse"])


def test_training_reduces_the_loss(embeddings):
    review, ids, owners = embeddings
    hist = small(epochs=20).fit(review, ids, owners).history_
    assert hist[-1]["loss"] < hist[0]["loss"]


def test_deterministic_for_a_seed(embeddings):
    review, ids, owners = embeddings
    a = small(seed=3).fit_transform(review, ids, owners)
    b = small(seed=3).fit_transform(review, ids, owners)
    c = small(seed=4).fit_transform(review, ids, owners)
    assert (a == b).all()
    assert not (a == c).all()


def test_users_with_one_review_or_none(embeddings):
    review, ids, owners = embeddings
    ix = small().fit(review, ids, owners)
    x = ix.pooled(review, ids, owners)
    np.testing.assert_allclose(x[0], ids[0], rtol=1e-6)  # no review: the ID embedding
    np.testing.assert_allclose(x[2], review[owners == 2][0], rtol=1e-6)  # one review: itself (alpha = 1)


def test_many_identical_users_get_distinct_indices():
    rng = np.random.default_rng(1)
    same = rng.normal(size=(1, 16)).astype(np.float32)
    ids = np.repeat(same, 200, 0)
    review = np.repeat(same, 400, 0)
    owners = np.repeat(np.arange(200), 2)
    ix = small(epochs=2)
    codes = ix.fit_transform(review, ids, owners)
    assert ix.report_["collisions_before"]["largest_group"] == 200
    assert collision_stats(codes)["collision_rate"] == 0.0


def test_empty_or_malformed_input_is_a_clear_error(embeddings):
    review, ids, owners = embeddings
    with pytest.raises(ValueError, match="no users"):
        small().fit(np.zeros((0, 16), np.float32), np.zeros((0, 16), np.float32), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="owners must lie"):
        small().fit(review, ids, owners + 100)
    with pytest.raises(ValueError, match="review_emb must be"):
        small().fit(review[:, :8], ids, owners)
    with pytest.raises(RuntimeError, match="not fitted"):
        small().transform(review, ids, owners)


def test_mean_pooling_keeps_A_at_zero(embeddings):
    review, ids, owners = embeddings
    ix = small(pooling="mean").fit(review, ids, owners)
    assert float(ix.pooling_.A.detach().abs().max()) == 0.0
    ix = small().fit(review, ids, owners)
    assert float(ix.pooling_.A.detach().abs().max()) > 0.0  # Eq. 1 is trained jointly


def test_sinkhorn_last_level_runs(embeddings):
    review, ids, owners = embeddings
    codes = small(sinkhorn_epsilon=0.003).fit_transform(review, ids, owners)
    assert collision_stats(codes)["collision_rate"] == 0.0


def test_save_and_load_give_the_same_codes(embeddings, tmp_path):
    review, ids, owners = embeddings
    ix = small().fit(review, ids, owners)
    ix.save(tmp_path / "m.safetensors")
    again = UserIndexer.load(tmp_path / "m.safetensors")
    assert (again.transform(review, ids, owners) == ix.transform(review, ids, owners)).all()


def test_resume_after_interruption_equals_an_uninterrupted_run(embeddings, tmp_path, monkeypatch):
    review, ids, owners = embeddings
    straight = small(epochs=6).fit(review, ids, owners)
    ref = straight.transform(review, ids, owners)

    calls = {"n": 0}
    real_save = UserIndexer._save_checkpoint

    def save_then_die(self, *a):
        real_save(self, *a)
        calls["n"] += 1
        raise KeyboardInterrupt

    monkeypatch.setattr(UserIndexer, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        small(epochs=6, checkpoint_dir=tmp_path, checkpoint_every=3).fit(review, ids, owners)
    monkeypatch.setattr(UserIndexer, "_save_checkpoint", real_save)
    resumed = small(epochs=6, checkpoint_dir=tmp_path, checkpoint_every=3).fit(review, ids, owners)
    assert calls["n"] == 1 and len(resumed.history_) == 6
    assert [h["loss"] for h in resumed.history_] == pytest.approx([h["loss"] for h in straight.history_])
    assert (resumed.transform(review, ids, owners) == ref).all()
