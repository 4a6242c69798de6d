import logging
import math

import numpy as np
import pandas as pd
import pytest

from ulmrec.errors import ConfigError
from ulmrec.tasks import TASKS, TasksConfig, build_training_samples, format_prompt
from ulmrec.tasks.templates import LETTERS

ALL = dict(enabled=list(TASKS))


def build(ds, identities, preferences, seed=0, **settings):
    return build_training_samples(ds, TasksConfig(**settings), identities=identities, preferences=preferences,
                                  seed=seed)


def by_task(samples):
    out = {}
    for s in samples:
        out.setdefault(s.task, []).append(s)
    return out


def test_default_mix_counts(ds, identities, preferences):
    samples, report = build(ds, identities, preferences)
    train_lengths = [len(s) for s in ds.train_sequences()]
    tasks = by_task(samples)
    assert len(tasks["next_item"]) == sum(n - 1 for n in train_lengths)  # every prefix (LlamaRec)
    for name in ("index_to_preference", "preference_to_index", "history_to_index", "rating", "intent"):
        assert len(tasks[name]) == ds.num_users, name
        assert report["tasks"][name]["status"] == "ok"
    assert report["total"] == len(samples)
    assert report["tasks"]["history_to_index"]["pool"] == sum(train_lengths)


def test_next_item_sample(ds, identities, preferences):
    samples, _ = build(ds, identities, preferences, max_history=4)
    train = ds.train_sequences()
    for s in by_task(samples)["next_item"]:
        p, seq = s.meta["position"], train[s.user_idx]
        assert len(s.candidates) == 20 == len(set(s.candidates))
        assert s.candidates[s.target] == seq[p] and s.response == LETTERS[s.target]
        assert not set(s.candidates) & set(seq[:p].tolist())  # nothing the user saw before the target
        assert all(1 <= c <= ds.num_items for c in s.candidates)
        shown = [f"({i + 1}) Title-{item}-x" for i, item in enumerate(seq[:p][-4:])]
        assert f"User history: {chr(10).join(shown)};\n" in s.input
        assert s.input.startswith(f"User ID: {identities[s.user_idx]};\n")
        assert f"({s.response}) Title-{seq[p]}-x" in s.input
        assert format_prompt(s).startswith("### Instruction:\nGiven user index, user history")


def test_no_valid_or_test_item_is_shown_or_asked(ds, identities, preferences):
    samples, _ = build(ds, identities, preferences)
    held_out = {u: {int(s[-1]), int(s[-2])} for u, s in enumerate(ds.sequences)}
    for s in samples:
        if s.task in ("next_item", "intent"):
            assert s.candidates[s.target] not in held_out[s.user_idx]
        if s.task in ("next_item", "history_to_index", "rating"):
            history = s.input.split("User history: ")[1].split(";\nCandidate pool")[0]
            for item in held_out[s.user_idx]:
                assert f"Title-{item}-x" not in history


def test_candidates_are_shuffled(ds, identities, preferences):
    samples, _ = build(ds, identities, preferences, enabled=["next_item"])
    targets = [s.target for s in samples]
    assert len(set(targets)) > 5  # the answer is not always in the same slot


def test_alignment_samples(ds, identities, preferences):
    samples, _ = build(ds, identities, preferences)
    tasks = by_task(samples)
    s = next(x for x in tasks["index_to_preference"] if x.user_idx == 2)
    assert s.input == f"User ID: {identities[2]}" and s.response == preferences[2]
    s = next(x for x in tasks["preference_to_index"] if x.user_idx == 2)
    assert s.input == "Preference: The user 2 prefers things" and s.response == identities[2]
    s = next(x for x in tasks["history_to_index"] if x.user_idx == 3)
    train = ds.train_sequences()[3]  # 23 training items: the last 20 are shown
    assert s.input.startswith(f"User history: (1) Title-{train[3]}-x\n")
    assert s.input.endswith(f"(20) Title-{train[-1]}-x") and s.response == identities[3]


def test_rating_hides_the_last_rating(ds, identities, preferences):
    samples, _ = build(ds, identities, preferences)
    s = next(x for x in samples if x.task == "rating" and x.user_idx == 0)
    ratings = ds.column("rating", 0)[:-2].astype(float)
    train = ds.train_sequences()[0]
    assert s.response == f"{ratings[-1]:.1f}"
    assert s.input.startswith(f"User ID: {identities[0]};\nPreference: The user 0 prefers things;\nUser history: ")
    assert f"(1) Title-{train[0]}-x (Rating: {ratings[0]:.1f})\n" in s.input
    assert s.input.endswith(f"({len(train)}) Title-{train[-1]}-x")  # no rating after the last title
    assert "out of 5" in s.instruction


def test_intent_excludes_every_training_item(ds, identities, preferences):
    samples, _ = build(ds, identities, preferences, enabled=["intent"], ratios={"intent": math.inf})
    train = ds.train_sequences()
    for s in samples:
        target = s.candidates[s.target]
        assert target == train[s.user_idx][s.meta["position"]]
        assert not (set(s.candidates) - {target}) & set(train[s.user_idx].tolist())
        assert s.input.startswith(f"Preference: The user {s.user_idx} prefers things;\nCandidate pool: (A) ")


def test_ratios(ds, identities, preferences):
    samples, report = build(ds, identities, preferences, ratios={"next_item": 2, "history_to_index": 2.0,
                                                                 "rating": 0, "intent": 0.5})
    tasks = by_task(samples)
    assert len(tasks["next_item"]) == 2 * ds.num_users  # every user has >= 2 prefixes
    assert len(tasks["history_to_index"]) == 2 * ds.num_users
    positions = {(s.user_idx, s.meta["position"]) for s in tasks["history_to_index"]}
    for u, seq in enumerate(ds.train_sequences()):  # the two most recent prefixes
        assert {(u, len(seq) - 1), (u, len(seq) - 2)} <= positions
    assert "rating" not in tasks and report["tasks"]["rating"]["status"] == "off"
    assert 0 < len(tasks["intent"]) < ds.num_users


def test_budget_keeps_the_shares(ds, identities, preferences):
    full, _ = build(ds, identities, preferences)
    cut, report = build(ds, identities, preferences, max_samples=30)
    assert len(cut) == 30 == report["total"]
    n_full, n_cut = by_task(full), by_task(cut)
    for name in n_full:
        share = len(n_full[name]) * 30 / len(full)
        assert math.floor(share) <= len(n_cut[name]) <= math.ceil(share), name


def test_deterministic_by_seed(ds, identities, preferences):
    a, _ = build(ds, identities, preferences, seed=3)
    b, _ = build(ds, identities, preferences, seed=3)
    c, _ = build(ds, identities, preferences, seed=4)
    assert [format_prompt(s) + s.response for s in a] == [format_prompt(s) + s.response for s in b]
    assert [format_prompt(s) for s in a] != [format_prompt(s) for s in c]


def test_switching_a_task_off_leaves_the_others_unchanged(ds, identities, preferences):
    every, _ = build(ds, identities, preferences, seed=5)
    fewer, _ = build(ds, identities, preferences, seed=5, enabled=["next_item", "intent"])
    key = lambda s: (s.task, s.user_idx, s.meta.get("position"))  # noqa: E731
    kept = sorted((key(s), s.input) for s in every if s.task in ("next_item", "intent"))
    assert kept == sorted((key(s), s.input) for s in fewer)


def test_missing_inputs_skip_tasks_with_a_message(make_ds, identities, preferences, caplog):
    ds = make_ds(ratings=False)
    with caplog.at_level(logging.WARNING, logger="ulmrec"):
        samples, report = build_training_samples(ds, TasksConfig(), identities=identities, preferences=None)
    assert report["tasks"]["rating"] == {"status": "skipped", "ratio": 1.0, "samples": 0,
                                         "reason": "the dataset has no ratings"}
    for name in ("index_to_preference", "preference_to_index", "intent"):
        assert report["tasks"][name]["status"] == "skipped"
        assert "no user preferences" in report["tasks"][name]["reason"]
    assert {s.task for s in samples} == {"next_item", "history_to_index"}
    messages = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(messages) == 4  # one message per skipped task
    assert "tasks: skipping 'rating': the dataset has no ratings" in messages


def test_users_without_a_preference_or_index(ds, identities, preferences):
    prefs = {u: p for u, p in preferences.items() if u != 1}
    ids = {u: i for u, i in identities.items() if u != 2}
    samples, report = build_training_samples(ds, TasksConfig(), identities=ids, preferences=prefs)
    assert report["tasks"]["preference_to_index"]["users_without_input"] == 2
    assert report["tasks"]["intent"]["users_without_input"] == 1
    assert not any(s.user_idx == 2 and s.task == "next_item" for s in samples)
    rating_1 = next(s for s in samples if s.task == "rating" and s.user_idx == 1)
    assert "Preference" not in rating_1.input and "and preferences" not in rating_1.instruction


def test_llamarec_prompt_needs_no_index(ds):
    samples, report = build_training_samples(ds, TasksConfig(prompt="no_index"))
    assert {s.task for s in samples} == {"next_item"}
    assert samples[0].instruction.startswith("Given user history in chronological order, recommend")
    assert samples[0].input.startswith("User history: (1) ")
    assert report["tasks"]["history_to_index"]["status"] == "skipped"


def test_no_history_prompt(ds, identities):
    samples, _ = build_training_samples(ds, TasksConfig(prompt="no_history", enabled=["next_item"]),
                                        identities=identities)
    assert all(s.input.startswith("User ID: ") and "User history" not in s.input for s in samples)


def test_title_fn_is_applied(ds, identities, preferences):
    samples, _ = build_training_samples(ds, TasksConfig(enabled=["history_to_index"]), identities=identities,
                                        title_fn=lambda t: t.upper())
    assert "TITLE-" in samples[0].input and "Title-" not in samples[0].input


def test_settings_that_cannot_work_fail_before_any_work(make_ds, identities):
    with pytest.raises(ConfigError, match="only 15 items"):
        build_training_samples(make_ds(lengths=[5, 5, 5], num_items=15), TasksConfig(), identities=identities)
    with pytest.raises(ConfigError, match="candidates_train.parquet"):
        build_training_samples(make_ds(), TasksConfig(train_candidates="retriever"), identities=identities)
    with pytest.raises(ConfigError, match="no training samples"):
        build_training_samples(make_ds(), TasksConfig(enabled=["rating", "intent"]), identities=None)


def test_small_catalogue_skips_prefixes_without_enough_unseen_items(make_ds, identities):
    ds = make_ds(lengths=[20, 5], num_items=22)
    samples, report = build_training_samples(ds, TasksConfig(enabled=["next_item"]), identities=identities)
    assert report["not_rendered"]["next_item/too_few_unseen_items"] > 0
    assert all(len(set(s.candidates)) == 20 for s in samples)


def retriever_frame(ds, drop_target_for=(), rows_for=None):
    rng = np.random.default_rng(0)
    rows = []
    for u, seq in enumerate(ds.train_sequences()):
        for p in range(1, len(seq)):
            if rows_for is not None and (u, p) not in rows_for:
                continue
            others = [i for i in range(1, ds.num_items + 1) if i not in set(seq[:p].tolist()) | {int(seq[p])}]
            cands = rng.choice(others, 21, replace=False).tolist()
            rank = -1
            if (u, p) not in drop_target_for:
                rank = int(rng.integers(0, 20))
                cands[rank] = int(seq[p])
            rows.append((u, p, cands, [0.0] * 21, int(seq[p]), rank))
    return pd.DataFrame(rows, columns=["user_idx", "position", "candidates", "scores", "target", "target_rank"])


def test_retriever_candidates(ds, identities):
    frame = retriever_frame(ds, drop_target_for={(0, 1), (0, 2)})
    cfg = TasksConfig(enabled=["next_item"], train_candidates="retriever", shuffle_candidates=False)
    samples, report = build_training_samples(ds, cfg, identities=identities, train_candidates=frame)
    lists = {(r.user_idx, r.position): list(r.candidates[:20]) for r in frame.itertuples()}
    train = ds.train_sequences()
    assert len(samples) == len(frame)
    for s in samples:
        key = (s.user_idx, s.meta["position"])
        if key in {(0, 1), (0, 2)}:  # 'replace': the lowest-ranked candidate gives way to the target
            assert s.candidates == lists[key][:19] + [int(train[0][key[1]])] and s.response == "T"
        else:
            assert s.candidates == lists[key]  # retriever order kept when not shuffled
    assert report["not_rendered"] == {"next_item/target_not_retrieved_replace": 2}

    skip = TasksConfig(enabled=["next_item"], train_candidates="retriever", missing_target="skip")
    samples, report = build_training_samples(ds, skip, identities=identities, train_candidates=frame)
    assert len(samples) == len(frame) - 2 == report["tasks"]["next_item"]["pool"]  # never offered
    assert not {(s.user_idx, s.meta["position"]) for s in samples} & {(0, 1), (0, 2)}
    assert report["retrieved_prefixes"] == {"lists": len(frame), "with_target": len(frame) - 2,
                                            "missing_target": "skip"}


def test_retriever_candidates_matched_by_target_and_limited_to_retrieved_prefixes(ds, identities):
    frame = retriever_frame(ds, rows_for={(1, 1), (1, 2), (3, 7)}).drop(columns="position")
    cfg = TasksConfig(enabled=["next_item"], train_candidates="retriever")
    samples, report = build_training_samples(ds, cfg, identities=identities, train_candidates=frame)
    assert sorted((s.user_idx, s.meta["position"]) for s in samples) == [(1, 1), (1, 2), (3, 7)]
    assert report["tasks"]["next_item"]["pool"] == 3


def test_retriever_lists_shorter_than_the_letters(ds, identities):
    frame = retriever_frame(ds)
    frame["candidates"] = frame["candidates"].map(lambda c: c[:10])
    with pytest.raises(ConfigError, match="10 candidates but tasks.num_candidates=20"):
        build_training_samples(ds, TasksConfig(train_candidates="retriever"), identities=identities,
                               train_candidates=frame)
