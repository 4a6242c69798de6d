"""Fixtures of the ranker tests: a tiny random Llama (built once per session) and stand-in samples.

Until the tasks package ships ``ulmrec.tasks.templates``, a minimal stand-in with the paper's prompt layout
is installed so the ranker can be tested on its own; the real template is used as soon as it exists.
"""

from __future__ import annotations

import importlib.util
import string
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_tiny_llama  # noqa: E402

from ulmrec.tasks.base import Sample  # noqa: E402


def _standin_format_prompt(sample: Sample) -> str:
    return f"### Instruction:\n{sample.instruction}\n\n### Input:\n{sample.input}\n\n### Response:\n"


if importlib.util.find_spec("ulmrec.tasks.templates") is None:  # pragma: no cover - depends on the tasks package
    mod = types.ModuleType("ulmrec.tasks.templates")
    mod.format_prompt = _standin_format_prompt
    sys.modules["ulmrec.tasks.templates"] = mod


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_tied(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-tied"), tie=True)


def next_item_sample(user: int, n: int = 5, target: int = 2, index: str = "<a_1> <b_2>") -> Sample:
    """A next-item sample over ``n`` lettered candidates, the true one at ``target``."""
    cands = list(range(10 + user, 10 + user + n))
    pool = " ".join(f"({string.ascii_uppercase[i]}) item {c}" for i, c in enumerate(cands))
    return Sample(task="next_item", user_idx=user, instruction="Recommend the next item.",
                  input=f"User ID: {index};\nUser history: (1) item 3 (2) item 4\nCandidate pool: {pool}",
                  response=string.ascii_uppercase[target], candidates=cands, target=target)


def text_sample(user: int, task: str = "index_to_preference") -> Sample:
    return Sample(task=task, user_idx=user, instruction="Given the user index, predict the preference.",
                  input="User ID: <a_1> <b_2>", response="The user prefers natural skin care.")
