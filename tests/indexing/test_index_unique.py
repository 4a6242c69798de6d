import numpy as np
import pytest

from ulmrec.indexing.unique import collision_stats, index_tokens, resolve_collisions


def _setup(codes, levels=3, k=8, d=4, seed=0):
    rng = np.random.default_rng(seed)
    books = rng.normal(size=(levels, k, d))
    residuals = rng.normal(size=(len(codes), levels, d))
    return np.array(codes), residuals, books


def test_tokens_follow_the_paper_format():
    assert index_tokens(np.array([[167, 199, 126, 240]])) == [["<a_167>", "<b_199>", "<c_126>", "<d_240>"]]


def test_collision_stats_counts_shared_indices():
    s = collision_stats(np.array([[1, 2], [1, 2], [1, 3], [1, 2]]))
    assert s["unique_indices"] == 2 and s["users_in_collisions"] == 3 and s["largest_group"] == 3
    assert s["collision_rate"] == pytest.approx(0.5)


def test_users_without_collision_keep_their_index():
    codes, res, books = _setup([[0, 1, 2], [0, 1, 2], [3, 4, 5], [0, 1, 3]])
    new, info = resolve_collisions(codes, res, books)
    assert collision_stats(new)["collision_rate"] == 0.0
    assert (new[2] == [3, 4, 5]).all() and (new[3] == [0, 1, 3]).all()
    assert info["moved"] == 1 and info["moved_at_level"] == [0, 0, 1]
    moved = 0 if (new[1] == [0, 1, 2]).all() else 1
    assert (new[moved][:2] == [0, 1]).all() and new[moved][2] not in (2, 3)  # nearest free last-level code


def test_many_identical_users_overflow_into_higher_levels():
    # 300 users on one index: a last-level subtree holds only 8, so most must change level 2 or level 1
    codes, res, books = _setup([[1, 1, 1]] * 300)
    res[:] = res[0]  # identical users: identical residuals too
    new, info = resolve_collisions(codes, res, books)
    assert collision_stats(new)["collision_rate"] == 0.0
    assert info["moved"] == 299 and info["moved_at_level"][1] > 0 and info["moved_at_level"][0] > 0
    again, _ = resolve_collisions(codes, res, books)
    assert (again == new).all()  # deterministic
    assert (new[:, 0] == 1).sum() == 64  # the level-1 subtree is filled before anyone leaves it


def test_more_users_than_indices_is_a_clear_error():
    codes, res, books = _setup([[0, 0]] * 5, levels=2, k=2)
    with pytest.raises(ValueError, match="cannot have unique indices"):
        resolve_collisions(codes, res, books)
