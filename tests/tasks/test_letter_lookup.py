"""letter_lookup (beyond the paper): a candidate list and one candidate's title, answered with its letter."""

import math

import numpy as np
from test_tasks_training import by_task, retriever_frame

from ulmrec.tasks import TasksConfig, build_training_samples, format_prompt
from ulmrec.tasks.builders import lookup_sample
from ulmrec.tasks.templates import LETTERS


def test_off_by_default(ds, identities, preferences):
    samples, report = build_training_samples(ds, TasksConfig(), identities=identities, preferences=preferences)
    assert "letter_lookup" not in by_task(samples)
    assert report["tasks"]["letter_lookup"]["status"] == "off"


def test_lookup_sample_by_hand():
    s = lookup_sample(7, [11, 12, 13], ["Red lipstick", "Blue shampoo", "Green soap"], 1, split="train")
    assert s.task == "letter_lookup" and s.response == "B" and s.target == 1 and s.candidates == [11, 12, 13]
    assert s.input == "Candidate pool: (A) Red lipstick\n(B) Blue shampoo\n(C) Green soap;\nItem: Blue shampoo"
    assert format_prompt(s).startswith("### Instruction:\nGiven candidate items and the title of one of them")
    assert "User" not in s.input  # nothing about the user


def test_lookup_on_the_next_item_lists(ds, identities, preferences):
    frame = retriever_frame(ds)
    cfg = TasksConfig(enabled=["next_item", "letter_lookup"], ratios={"letter_lookup": math.inf},
                      train_candidates="retriever", shuffle_candidates=False)
    samples, report = build_training_samples(ds, cfg, identities=identities, train_candidates=frame)
    lists = {(r.user_idx, r.position): list(r.candidates[:20]) for r in frame.itertuples()}
    look = by_task(samples)["letter_lookup"]
    train = ds.train_sequences()
    assert len(look) == sum(len(s) - 1 for s in train) == report["tasks"]["letter_lookup"]["samples"]
    for s in look:
        assert s.candidates == lists[(s.user_idx, s.meta["position"])]  # the same list as next_item's prefix
        assert s.response == LETTERS[s.target]
        assert s.input.endswith(f";\nItem: Title-{s.candidates[s.target]}-x")
        pool = s.input.split(";\nItem: ")[0].removeprefix("Candidate pool: ").split("\n")
        assert pool[s.target] == f"({s.response}) Title-{s.candidates[s.target]}-x"
    # the probe is drawn over every letter, not tied to where the target sits
    counts = np.bincount([s.target for s in look], minlength=20)
    assert (counts > 0).sum() >= 15
    targets = {(u, p): int(seq[p]) for u, seq in enumerate(train) for p in range(1, len(seq))}
    assert sum(s.candidates[s.target] != targets[(s.user_idx, s.meta["position"])] for s in look) > len(look) / 2
    # switching lookup on leaves the next-item samples as they were
    alone, _ = build_training_samples(ds, TasksConfig(enabled=["next_item"], train_candidates="retriever",
                                                      shuffle_candidates=False), identities=identities,
                                      train_candidates=frame)
    key = lambda s: (s.user_idx, s.meta["position"], format_prompt(s), s.response)  # noqa: E731
    assert sorted(map(key, by_task(samples)["next_item"])) == sorted(map(key, alone))


def test_lookup_needs_no_identity_or_preference(ds):
    cfg = TasksConfig(enabled=["letter_lookup"], ratios={"letter_lookup": 1})
    samples, report = build_training_samples(ds, cfg)
    assert len(samples) == ds.num_users and {s.task for s in samples} == {"letter_lookup"}
    assert all(len(set(s.candidates)) == 20 for s in samples)
