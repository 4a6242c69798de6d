"""What a pipeline stage is, and its fingerprint. Ground level: every ``ulmrec/<pkg>/stage.py`` builds one
:class:`Stage` (``STAGE``) from it, and :mod:`ulmrec.pipeline` lists them in order and runs them; no stage imports
the pipeline. :func:`stage_fingerprint` (settings less the result-neutral ones, input digests) lives here so a
stage can compare its own earlier record (the retrieval stage's reuse of its trained retriever)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ulmrec.artifacts import Artifact
from ulmrec.config import RESULT_NEUTRAL, Config
from ulmrec.io import file_digest


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


# ----------------------------------------------------------------------------------------- fingerprints
_NEUTRAL = "\x00result-neutral"


def _strip_neutral(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_neutral(v) for k, v in obj.items() if not (isinstance(v, str) and v == _NEUTRAL)}
    if isinstance(obj, list | tuple):
        return [_strip_neutral(v) for v in obj]
    return obj


def stage_params(stage: Stage, cfg: Config) -> dict[str, Any]:
    """``stage.params(cfg)`` without the settings of :data:`ulmrec.config.RESULT_NEUTRAL`: the stage sees a copy
    of ``cfg`` in which those fields hold a marker, and every entry holding the marker is dropped, whatever the
    shape of the dict the stage returns (a flat section, nested sections, several sections)."""
    masked = copy.copy(cfg)
    sections: dict[str, Any] = {}
    for name in RESULT_NEUTRAL:
        section, field_name = name.split(".", 1)
        if section not in sections:
            sections[section] = copy.copy(getattr(cfg, section))  # no __post_init__: the marker is not validated
            setattr(masked, section, sections[section])
        object.__setattr__(sections[section], field_name, _NEUTRAL)
    return _strip_neutral(stage.params(masked))


def input_key(path: Path, run_dir: Path) -> str:
    """How an input file is named in a fingerprint: relative to the run directory when inside it (so a copied,
    moved or differently spelled run directory keeps its fingerprints), else its absolute resolved path."""
    resolved = Path(os.path.realpath(path))
    try:
        return resolved.relative_to(os.path.realpath(run_dir)).as_posix()
    except ValueError:
        return str(resolved)


def stage_fingerprint(stage: Stage, cfg: Config, run_dir: Path) -> dict[str, Any]:
    inputs = {}
    for p in stage.inputs(cfg, run_dir):
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"stage '{stage.name}' needs {p}, which does not exist; run the stage that "
                                    "makes it first (or `ulmrec run`)")
        inputs[input_key(p, run_dir)] = file_digest(p)
    return {"params": stage_params(stage, cfg), "inputs": inputs}
