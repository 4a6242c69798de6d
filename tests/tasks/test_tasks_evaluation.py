import numpy as np
import pandas as pd
import pytest

from ulmrec.errors import ConfigError, DataError
from ulmrec.tasks import TasksConfig, build_eval_samples, rank_users
from ulmrec.tasks.templates import LETTERS


def eval_frame(ds, split, hit_users=(0, 2, 3, 5)):
    """Retriever output for ``split``: 20 candidates in score order; the target at rank u for hit users."""
    targets = ds.valid_targets() if split == "valid" else ds.test_targets()
    rows = []
    for u in range(ds.num_users):
        history = set(ds.history(u, split).tolist())
        others = [i for i in range(1, ds.num_items + 1) if i not in history and i != targets[u]][:20]
        rank = -1
        if u in hit_users:
            rank = u
            others[rank] = int(targets[u])
        rows.append((u, others, [1.0 - 0.01 * i for i in range(20)], int(targets[u]), rank))
    return pd.DataFrame(rows, columns=["user_idx", "candidates", "scores", "target", "target_rank"])


@pytest.mark.parametrize("split", ["valid", "test"])
def test_rank_users_in_retriever_order(ds, identities, split):
    frame = eval_frame(ds, split)
    samples = build_eval_samples(ds, split, frame, TasksConfig(), identities=identities)
    assert [s.user_idx for s in samples] == [0, 2, 3, 5]
    for s in samples:
        row = frame.iloc[s.user_idx]
        assert s.candidates == list(row.candidates) and s.target == s.user_idx  # not shuffled
        assert s.response == LETTERS[s.user_idx] and s.meta["split"] == split
        history = ds.history(s.user_idx, split)[-20:]
        shown = "\n".join(f"({i + 1}) Title-{item}-x" for i, item in enumerate(history))
        assert s.input == (f"User ID: {identities[s.user_idx]};\nUser history: {shown};\nCandidate pool: "
                           + "\n".join(f"({LETTERS[i]}) Title-{c}-x" for i, c in enumerate(row.candidates)))


def test_test_history_includes_the_valid_item(ds, identities):
    s = build_eval_samples(ds, "test", eval_frame(ds, "test"), TasksConfig(), identities=identities)[0]
    assert f"Title-{ds.valid_targets()[0]}-x;\nCandidate pool" in s.input


def test_prompt_variants(ds, identities):
    frame = eval_frame(ds, "test")
    uid = build_eval_samples(ds, "test", frame, TasksConfig(), identities=identities, prompt="no_history")
    assert all("User history" not in s.input and s.input.startswith("User ID: ") for s in uid)
    assert uid[0].instruction.startswith("Given user index and candidate items")
    llamarec = build_eval_samples(ds, "test", frame, TasksConfig(prompt="no_index"))
    assert all(s.input.startswith("User history: (1) ") for s in llamarec)
    assert llamarec[0].instruction == ("Given user history in chronological order, recommend an item from the "
                                       "candidate pool with its index letter.")


def test_fixed_subset(ds, identities):
    frame = eval_frame(ds, "valid", hit_users=range(6))
    a = build_eval_samples(ds, "valid", frame, TasksConfig(), identities=identities, max_users=3, seed=1)
    b = build_eval_samples(ds, "valid", frame, TasksConfig(), identities=identities, max_users=3, seed=1)
    assert [s.user_idx for s in a] == [s.user_idx for s in b] and len(a) == 3
    assert [s.user_idx for s in a] == sorted(s.user_idx for s in a)


def test_fewer_letters_than_candidates_uses_the_top(ds, identities):
    frame = eval_frame(ds, "test")
    samples = build_eval_samples(ds, "test", frame, TasksConfig(num_candidates=4), identities=identities)
    assert [s.user_idx for s in samples] == [0, 2, 3]  # user 5's target is 6th: not among the top 4
    assert all(len(s.candidates) == 4 for s in samples) and "(E)" not in samples[0].input


def test_bad_inputs(ds, identities):
    frame = eval_frame(ds, "test")
    short = frame.assign(candidates=frame["candidates"].map(lambda c: c[:5]))
    with pytest.raises(ConfigError, match="5 candidates but tasks.num_candidates=20"):
        build_eval_samples(ds, "test", short, TasksConfig(), identities=identities)
    with pytest.raises(DataError, match="target .* is not the user's valid item"):
        build_eval_samples(ds, "valid", frame, TasksConfig(), identities=identities)
    with pytest.raises(ConfigError, match="no user identities"):
        build_eval_samples(ds, "test", frame, TasksConfig())
    with pytest.raises(DataError, match="user 2 has no identity"):
        build_eval_samples(ds, "test", frame, TasksConfig(), identities={0: "x"})
    with pytest.raises(DataError, match="field 'target'"):
        build_eval_samples(ds, "test", frame.drop(columns="target"), TasksConfig(), identities=identities)
    with pytest.raises(ConfigError, match="split"):
        build_eval_samples(ds, "train", frame, TasksConfig(), identities=identities)


def test_rank_users():
    frame = pd.DataFrame({"user_idx": [2, 0, 1], "candidates": [[1, 2], [3, 4], [5, 6]], "target": [2, 9, 5]})
    assert rank_users(frame, 2)["user_idx"].tolist() == [1, 2]
    assert rank_users(frame, 1)["user_idx"].tolist() == [1]
    assert np.array_equal(rank_users(frame.iloc[:0], 2)["user_idx"].to_numpy(), np.array([], dtype=int))
