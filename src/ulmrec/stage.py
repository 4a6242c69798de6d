"""What a pipeline stage is. Ground level: every ``ulmrec/<pkg>/stage.py`` builds one :class:`Stage` (``STAGE``)
from it, and :mod:`ulmrec.pipeline` lists them in order and runs them; no stage imports the pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ulmrec.artifacts import Artifact
from ulmrec.config import Config


@dataclass
class Stage:
    """One pipeline stage. ``build(cfg, run_dir, out_dir)`` writes artifacts into ``out_dir`` and may
    return a small JSON-able summary that is stored in ``stage.json`` and printed."""

    name: str
    """Directory under the run directory, and the stage's name in logs and ``ulmrec run --until``."""
    command: str
    """The CLI subcommand (``ulmrec <command>``)."""
    help: str
    params: Callable[[Config], dict[str, Any]]
    """The settings that change its output (fingerprinted, less :data:`ulmrec.config.RESULT_NEUTRAL`)."""
    inputs: Callable[[Config, Path], list[Path]]
    """The files a run with these settings reads (their digests are fingerprinted): the earlier stages' artifacts
    among :attr:`reads`, or source files outside the run directory."""
    build: Callable[[Config, Path, Path], dict[str, Any] | None]
    check: Callable[[Config], None] | None = None
    """Settings checks that need no earlier stage's output (e.g. "QLoRA needs CUDA", "model not found").
    ``ulmrec run`` calls them for every stage it will run before it starts the first one, so a run does not
    fail on a bad ranker setting after an hour of retrieval training."""
    reads: tuple[Artifact, ...] = ()
    """Every earlier stage's artifact the stage reads, optional ones included (:attr:`inputs` returns those of
    them that decide its output under the settings): the declared edges of the stage graph (docs/ARCHITECTURE.md;
    tests/test_architecture.py checks that ``inputs`` stays within them)."""
    writes: tuple[Artifact, ...] = ()
    """The artifacts ``build`` writes into the stage directory (optional ones only under some settings)."""
    sources: str = ""
    """What it reads from outside the run directory, in words (docs/ARCHITECTURE.md)."""
