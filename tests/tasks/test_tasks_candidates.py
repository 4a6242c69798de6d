"""Training-candidate modes that read the retriever's lists: 'retriever_shuffled' and 'hard_negatives'."""

import logging

import numpy as np
import pandas as pd
import pytest

from ulmrec.config import load_config
from ulmrec.errors import ConfigError, DataError
from ulmrec.tasks import TasksConfig, build_training_samples, check_run_settings
from ulmrec.tasks.candidate_lists import hard_negative_candidates


def ranked_frame(ds, width=21, drop_target_for=(), rows_for=None, seed=0):
    """A candidates_train.parquet stand-in: per prefix, ``width`` unseen items in a random 'retriever order',
    the target at a random place among the first 20 unless dropped."""
    rng = np.random.default_rng(seed)
    rows = []
    for u, seq in enumerate(ds.train_sequences()):
        for p in range(1, len(seq)):
            if rows_for is not None and (u, p) not in rows_for:
                continue
            others = [i for i in range(1, ds.num_items + 1) if i not in set(seq[:p].tolist()) | {int(seq[p])}]
            cands = rng.choice(others, width, replace=False).tolist()
            if (u, p) not in drop_target_for:
                cands[int(rng.integers(0, 20))] = int(seq[p])
            rows.append((u, p, cands, int(seq[p])))
    return pd.DataFrame(rows, columns=["user_idx", "position", "candidates", "target"])


def by_prefix(samples):
    return {(s.task, s.user_idx, s.meta["position"]): s for s in samples}


def build(ds, identities, frame, seed=0, preferences=None, **settings):
    settings.setdefault("enabled", ["next_item"])
    return build_training_samples(ds, TasksConfig(**settings), identities=identities, preferences=preferences,
                                  seed=seed, train_candidates=frame)


# ----------------------------------------------------------------------------------------- retriever_shuffled
def test_retriever_shuffled_holds_the_retriever_lists_in_a_per_prefix_order(ds, identities):
    frame = ranked_frame(ds, drop_target_for={(0, 1)})
    lists = {(r.user_idx, r.position): list(r.candidates[:20]) for r in frame.itertuples()}
    samples, report = build(ds, identities, frame, train_candidates="retriever_shuffled")
    assert len(samples) == len(frame) and report["train_candidates"] == "retriever_shuffled"
    train = ds.train_sequences()
    moved = 0
    for s in samples:
        key = (s.user_idx, s.meta["position"])
        expected = lists[key] if key != (0, 1) else lists[key][:19] + [int(train[0][1])]  # 'replace'
        assert sorted(s.candidates) == sorted(expected)
        assert s.candidates[s.target] == int(train[s.user_idx][key[1]])
        moved += s.candidates != expected
    assert moved == len(samples)  # every list reordered (20! orders: none left as it was)
    assert report["not_rendered"] == {"next_item/target_not_retrieved_replace": 1}
    assert len({s.response for s in samples}) > 5


def test_retriever_shuffled_order_depends_only_on_seed_and_prefix(ds, identities):
    frame = ranked_frame(ds)
    some = {(1, 1), (2, 5), (3, 7), (3, 20)}
    full = by_prefix(build(ds, identities, frame, train_candidates="retriever_shuffled")[0])
    part = by_prefix(build(ds, identities, frame[[(u, p) in some for u, p in zip(frame.user_idx, frame.position)]],
                           train_candidates="retriever_shuffled")[0])
    assert sorted(k[1:] for k in part) == sorted(some)
    for key, s in part.items():
        assert s.candidates == full[key].candidates  # the same order, whatever else is drawn
    again = by_prefix(build(ds, identities, frame, train_candidates="retriever_shuffled")[0])
    assert {k: s.candidates for k, s in again.items()} == {k: s.candidates for k, s in full.items()}
    other = by_prefix(build(ds, identities, frame, seed=1, train_candidates="retriever_shuffled")[0])
    assert sum(other[k].candidates != s.candidates for k, s in full.items()) > len(full) // 2


def test_retriever_shuffled_skip_drops_prefixes_without_the_target(ds, identities):
    frame = ranked_frame(ds, drop_target_for={(0, 1), (2, 3)})
    samples, report = build(ds, identities, frame, train_candidates="retriever_shuffled", missing_target="skip")
    assert len(samples) == len(frame) - 2 == report["tasks"]["next_item"]["pool"]
    assert not {(s.user_idx, s.meta["position"]) for s in samples} & {(0, 1), (2, 3)}


# ----------------------------------------------------------------------------------------- hard_negatives
def test_hard_negatives_are_drawn_from_the_top_k_without_target_or_seen_items(make_ds, identities):
    ds = make_ds(num_items=150)  # room for 50 unseen candidates on every prefix
    frame = ranked_frame(ds, width=50, drop_target_for={(0, 1)})
    lists = {(r.user_idx, r.position): list(r.candidates) for r in frame.itertuples()}
    train = ds.train_sequences()
    for pool in (50, 25):
        samples, report = build(ds, identities, frame, train_candidates="hard_negatives", hard_negative_pool=pool)
        assert len(samples) == len(frame)  # a list without the target still gives a sample (the target is added)
        beyond_20 = 0
        for s in samples:
            key = (s.user_idx, s.meta["position"])
            target = int(train[key[0]][key[1]])
            negatives = [c for c in s.candidates if c != target]
            assert s.candidates[s.target] == target and len(negatives) == 19 == len(set(negatives))
            top = lists[key][:pool]
            assert set(negatives) <= set(top) - {target} - set(train[key[0]][:key[1]].tolist())
            beyond_20 += len(set(negatives) - set(lists[key][:20]))
        assert beyond_20 > 0  # the pool beyond the letters is used
        assert report["retrieved_prefixes"]["hard_negative_pool"] == pool
        assert report["retrieved_prefixes"]["pool_in_file"] == pool
        assert "next_item/hard_negatives_topped_up" not in report["not_rendered"]
        assert len({s.response for s in samples}) > 5  # shuffled: the target is not always A
    # deterministic given the seed, different with another seed
    a = by_prefix(build(ds, identities, frame, train_candidates="hard_negatives")[0])
    b = by_prefix(build(ds, identities, frame, train_candidates="hard_negatives")[0])
    c = by_prefix(build(ds, identities, frame, seed=3, train_candidates="hard_negatives")[0])
    assert {k: s.candidates for k, s in a.items()} == {k: s.candidates for k, s in b.items()}
    assert sum(set(c[k].candidates) != set(s.candidates) for k, s in a.items()) > len(a) // 2


def test_hard_negatives_use_what_the_file_holds_and_top_up_a_short_pool(ds, identities):
    frame = ranked_frame(ds, width=21)  # retrieval.num_candidates=21 < the default pool of 50
    samples, report = build(ds, identities, frame, train_candidates="hard_negatives")
    assert report["retrieved_prefixes"]["pool_in_file"] == 21 and report["retrieved_prefixes"]["hard_negative_pool"] == 50
    lists = {(r.user_idx, r.position): list(r.candidates) for r in frame.itertuples()}
    assert all(set(s.candidates) <= set(lists[(s.user_idx, s.meta["position"])]) for s in samples)

    samples, report = build(ds, identities, frame, train_candidates="hard_negatives", hard_negative_pool=5)
    train = ds.train_sequences()
    assert report["not_rendered"]["next_item/hard_negatives_topped_up"] == len(samples) == len(frame)
    for s in samples:
        u, p = s.user_idx, s.meta["position"]
        target = int(train[u][p])
        hard = set(lists[(u, p)][:5]) - {target}
        assert hard <= set(s.candidates)  # the whole short pool, then uniform unseen items
        assert len(set(s.candidates)) == 20 and not set(s.candidates) & set(train[u][:p].tolist())


def test_hard_negatives_for_intent_exclude_every_training_item(make_ds, identities, preferences):
    ds = make_ds(num_items=150)
    frame = ranked_frame(ds, width=50)
    samples, _ = build(ds, identities, frame, preferences=preferences, enabled=["intent"],
                       ratios={"intent": float("inf")}, train_candidates="hard_negatives")
    train = ds.train_sequences()
    assert len(samples) == len(frame)  # every prefix, so later training items are in the retriever's lists
    for s in samples:
        target = int(train[s.user_idx][s.meta["position"]])
        assert not (set(s.candidates) - {target}) & set(train[s.user_idx].tolist())


def test_hard_negative_candidates_unit():
    rng = np.random.default_rng(0)
    cands, uniform = hard_negative_candidates(rng, 7, [7, 1, 2, 3, 4, 5], seen=[1], num_items=10, n=3, pool=6)
    assert cands[0] == 7 and set(cands[1:]) <= {2, 3, 4, 5} and len(set(cands)) == 3 and uniform == 0
    cands, uniform = hard_negative_candidates(rng, 7, [7, 1, 2], seen=[1], num_items=10, n=5, pool=3)
    assert cands[:2] == [7, 2] and uniform == 3 and len(set(cands)) == 5 and 1 not in cands
    assert hard_negative_candidates(rng, 7, [7, 1, 2], seen=[1, 3, 4, 5, 6], num_items=8, n=5, pool=3) is None


# ----------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("overrides, words", [
    (["tasks.hard_negative_pool=0"], "hard_negative_pool must be >= 1"),
    (["tasks.train_candidates=hard_negatives", "tasks.shuffle_candidates=false"], "always shuffled"),
    (["tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=false"], "always shuffled"),
])
def test_bad_settings(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert words in str(err.value)


@pytest.mark.parametrize("mode", ["retriever_shuffled", "hard_negatives"])
def test_retriever_modes_share_the_checks(make_ds, identities, mode, caplog):
    with pytest.raises(ConfigError, match=f"tasks.train_candidates={mode} needs retrieval.train_candidates=true"):
        check_run_settings(load_config(overrides=[f"tasks.train_candidates={mode}"]))
    with pytest.raises(ConfigError, match=f"tasks.train_candidates={mode} needs .*candidates_train.parquet"):
        build_training_samples(make_ds(), TasksConfig(train_candidates=mode), identities=identities)
    with caplog.at_level(logging.WARNING, logger="ulmrec"):
        check_run_settings(load_config(overrides=[f"tasks.train_candidates={mode}", "retrieval.train_candidates=true"]))
    warned = "negatives are drawn from the retriever's top 20" in caplog.text
    assert warned == (mode == "hard_negatives")
    frame = ranked_frame(make_ds())
    frame["candidates"] = frame["candidates"].map(lambda c: c[:10])
    with pytest.raises(ConfigError, match="10 candidates but tasks.num_candidates=20"):
        build_training_samples(make_ds(), TasksConfig(train_candidates=mode), identities=identities,
                               train_candidates=frame)


# ----------------------------------------------------------------------------------------- teacher scores
@pytest.mark.parametrize("mode", ["retriever", "retriever_shuffled"])
def test_teacher_scores_follow_the_letters(ds, identities, mode):
    frame = ranked_frame(ds, drop_target_for={(0, 1)})
    frame["scores"] = [list(np.linspace(5.0, 0.0, len(c)) + u) for u, c in zip(frame.user_idx, frame.candidates)]
    score = {(r.user_idx, r.position): dict(zip(r.candidates, r.scores)) for r in frame.itertuples()}
    samples, _ = build(ds, identities, frame, train_candidates=mode, shuffle_candidates=mode != "retriever",
                       enabled=["next_item", "intent"], preferences={u: "likes soap." for u in range(ds.num_users)})
    assert {s.task for s in samples} == {"next_item", "intent"}
    for s in samples:
        key = (s.user_idx, s.meta["position"])
        if key == (0, 1) and s.task == "next_item":  # 'replace': the target was not retrieved, so it has no score
            assert "teacher" not in s.meta
            continue
        assert s.meta["teacher"] == [score[key][c] for c in s.candidates]
    if mode == "retriever":  # retriever order: the scores descend with the letters
        assert all(s.meta["teacher"] == sorted(s.meta["teacher"], reverse=True) for s in samples if "teacher" in s.meta)
    no_scores, _ = build(ds, identities, frame.drop(columns="scores"), train_candidates=mode,
                         shuffle_candidates=mode != "retriever")
    assert not any("teacher" in s.meta for s in no_scores)


def test_scores_must_match_the_candidates(ds, identities):
    frame = ranked_frame(ds)
    frame["scores"] = [[0.0] * 3 for _ in range(len(frame))]
    with pytest.raises(DataError, match="scores"):
        build(ds, identities, frame, train_candidates="retriever")


# ----------------------------------------------------------------------------------------- exclude_user_items
def frame_with_later_items(ds, width):
    """Per prefix: the user's later training items first (what a retriever that memorised the sequence
    lists), then the target, then unseen items, ``width`` in all, with descending scores."""
    rng = np.random.default_rng(3)
    rows = []
    for u, seq in enumerate(ds.train_sequences()):
        mine = set(seq.tolist())
        for p in range(1, len(seq)):
            later = [int(i) for i in seq[p + 1:p + 4]]
            free = [i for i in range(1, ds.num_items + 1) if i not in mine]
            rest = rng.choice(free, width - len(later) - 1, replace=False).tolist()
            cands = later + [int(seq[p])] + rest
            rows.append((u, p, cands, int(seq[p]), list(np.linspace(9.0, 0.0, width))))
    return pd.DataFrame(rows, columns=["user_idx", "position", "candidates", "target", "scores"])


@pytest.mark.parametrize("width", [25, 20])
def test_exclude_user_items_drops_the_users_later_items_and_refills(ds, identities, width):
    frame = frame_with_later_items(ds, width)
    lists = {(r.user_idx, r.position): list(r.candidates) for r in frame.itertuples()}
    train = ds.train_sequences()
    kept, _ = build(ds, identities, frame, train_candidates="retriever", shuffle_candidates=False)
    assert any(set(s.candidates) & (set(train[s.user_idx].tolist()) - {s.candidates[s.target]}) for s in kept)
    samples, report = build(ds, identities, frame, train_candidates="retriever", shuffle_candidates=False,
                            exclude_user_items=True)
    assert len(samples) == len(frame)
    topped = 0
    for s in samples:
        key = (s.user_idx, s.meta["position"])
        mine = set(train[s.user_idx].tolist())
        target = int(train[s.user_idx][key[1]])
        assert len(s.candidates) == 20 == len(set(s.candidates)) and s.candidates[s.target] == target
        assert not (set(s.candidates) - {target}) & mine  # none of the user's other items
        ranked = [c for c in lists[key] if c == target or c not in mine]
        assert s.candidates[:min(20, len(ranked))] == ranked[:20]  # retriever order, refilled from beyond 20
        if len(ranked) < 20:
            topped += 1
            assert "teacher" not in s.meta  # uniform fill-ins have no retriever score
        else:
            assert s.meta["teacher"] == sorted(s.meta["teacher"], reverse=True)
    excluded_some = sum(len([c for c in lists[k] if c in set(train[k[0]].tolist()) - {int(train[k[0]][k[1]])}]) > 0
                        for k in lists)
    assert excluded_some > 0
    if width == 20:
        assert topped == excluded_some
        assert report["not_rendered"]["next_item/topped_up_after_exclusion"] == topped
    else:
        assert topped == 0
