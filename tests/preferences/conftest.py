"""Fixtures of the preferences tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from pref_fixtures import make_dataset


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    make_dataset().save(d / "data")
    return d
