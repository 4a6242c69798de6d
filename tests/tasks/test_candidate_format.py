"""tasks.candidate_format (beyond the paper): 'title (A)' instead of the paper's '(A) title' in every pool."""

import math

import pytest
from test_tasks_evaluation import eval_frame
from test_tasks_training import by_task, retriever_frame

from ulmrec.config import load_config
from ulmrec.errors import ConfigError
from ulmrec.tasks import TasksConfig, build_eval_samples, build_training_samples
from ulmrec.tasks.builders import lookup_sample
from ulmrec.tasks.templates import LETTERS, candidates_text


def test_candidates_text_formats():
    titles = ["Red lipstick", "Blue shampoo"]
    assert candidates_text(titles) == "(A) Red lipstick\n(B) Blue shampoo"  # the paper's Fig. 2
    assert candidates_text(titles, "letter_last") == "Red lipstick (A)\nBlue shampoo (B)"
    with pytest.raises(ValueError, match="letter_middle"):
        candidates_text(titles, "letter_middle")


def test_lookup_sample_letter_last():
    s = lookup_sample(7, [11, 12, 13], ["Red lipstick", "Blue shampoo", "Green soap"], 2, "letter_last")
    assert s.response == "C"
    assert s.input == "Candidate pool: Red lipstick (A)\nBlue shampoo (B)\nGreen soap (C);\nItem: Green soap"


def pool_lines(text: str) -> list[str]:
    return text.split("Candidate pool: ")[1].split(";\n")[0].split("\n")


def test_every_pool_follows_the_setting(ds, identities, preferences):
    frame = retriever_frame(ds)
    common = dict(enabled=["next_item", "intent", "letter_lookup"], ratios={"letter_lookup": math.inf},
                  train_candidates="retriever", shuffle_candidates=False)
    first, _ = build_training_samples(ds, TasksConfig(**common), identities=identities, preferences=preferences,
                                      train_candidates=frame)
    last, _ = build_training_samples(ds, TasksConfig(**common, candidate_format="letter_last"),
                                     identities=identities, preferences=preferences, train_candidates=frame)
    assert [(s.task, s.user_idx, s.candidates, s.response) for s in first] == \
        [(s.task, s.user_idx, s.candidates, s.response) for s in last]  # only the rendering differs
    assert set(by_task(last)) == {"next_item", "intent", "letter_lookup"}
    for a, b in zip(first, last, strict=True):
        assert pool_lines(a.input) == [f"({LETTERS[i]}) Title-{c}-x" for i, c in enumerate(a.candidates)]
        assert pool_lines(b.input) == [f"Title-{c}-x ({LETTERS[i]})" for i, c in enumerate(b.candidates)]
        assert a.input.split("Candidate pool: ")[0] == b.input.split("Candidate pool: ")[0]
    evals = build_eval_samples(ds, "valid", eval_frame(ds, "valid"), TasksConfig(candidate_format="letter_last"),
                               identities=identities)
    assert evals and all(pool_lines(s.input)[s.target] == f"Title-{s.candidates[s.target]}-x ({s.response})"
                         for s in evals)


def test_unknown_format_is_a_config_error():
    with pytest.raises(ConfigError, match="candidate_format"):
        load_config([], ["tasks.candidate_format=letter_middle"])
