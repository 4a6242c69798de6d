"""Fixtures of the ranker tests: a tiny random Llama, built once per session (see helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_llama_tied(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-tied"), tie=True)
