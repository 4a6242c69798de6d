"""What a pipeline stage is, and its fingerprint. Ground level: every ``ulmrec/<pkg>/stage.py`` builds one
:class:`Stage` (``STAGE``) from it, and :mod:`ulmrec.pipeline` lists them in order and runs them; no stage imports
the pipeline. :func:`stage_fingerprint` (settings less the result-neutral ones, input digests) lives here so a
stage can compare its own earlier record (the retrieval stage's reuse of its trained retriever)."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ulmrec.artifacts import STAGE_CONFIG, Artifact
from ulmrec.config import ADDED_SETTINGS, RESULT_NEUTRAL, Config
from ulmrec.io import file_digest, fingerprint, read_json, write_json

log = logging.getLogger("ulmrec")


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


def _legacy_names(cfg: Config, additions) -> tuple[set[str], set[str]]:
    """``(settings, tasks)`` among ``additions`` that hold their legacy value in ``cfg`` (tasks: ratio 0)."""
    settings, tasks = set(), set()
    for added in additions:
        for name, legacy in added.settings.items():
            section, field_name = name.split(".", 1)
            if getattr(getattr(cfg, section), field_name) == legacy:
                settings.add(name)
        for task in added.tasks:
            if not cfg.tasks.ratios.get(task, 0.0):
                tasks.add(task)
    return settings, tasks


def stage_params(stage: Stage, cfg: Config, kept: int = 0) -> dict[str, Any]:
    """``stage.params(cfg)`` without the settings of :data:`ulmrec.config.RESULT_NEUTRAL` and without those of
    :data:`ulmrec.config.ADDED_SETTINGS` at their legacy value: the stage sees a copy of ``cfg`` in which those
    fields hold a marker, and every entry holding the marker is dropped, whatever the shape of the dict the stage
    returns (a flat section, nested sections, several sections). ``kept``: the first ``kept`` additions stay in
    (the form a stage record written before they were left out holds; :func:`accepted_fingerprints`)."""
    masked = copy.copy(cfg)
    sections: dict[str, Any] = {}

    def section_copy(section: str) -> Any:
        if section not in sections:
            sections[section] = copy.copy(getattr(cfg, section))  # no __post_init__: the marker is not validated
            setattr(masked, section, sections[section])
        return sections[section]

    legacy, tasks = _legacy_names(cfg, ADDED_SETTINGS[kept:])
    for name in sorted(RESULT_NEUTRAL | legacy):
        section, field_name = name.split(".", 1)
        object.__setattr__(section_copy(section), field_name, _NEUTRAL)
    if tasks:
        t = section_copy("tasks")
        object.__setattr__(t, "enabled", [x for x in cfg.tasks.enabled if x not in tasks])
        object.__setattr__(t, "ratios", {k: v for k, v in cfg.tasks.ratios.items() if k not in tasks})
    return _strip_neutral(stage.params(masked))


def input_key(path: Path, run_dir: Path) -> str:
    """How an input file is named in a fingerprint: relative to the run directory when inside it (so a copied,
    moved or differently spelled run directory keeps its fingerprints), else its absolute resolved path."""
    resolved = Path(os.path.realpath(path))
    try:
        return resolved.relative_to(os.path.realpath(run_dir)).as_posix()
    except ValueError:
        return str(resolved)


def missing_inputs(stage: Stage, cfg: Config, run_dir: Path) -> list[Path]:
    """The input files of ``stage`` under ``cfg`` that do not exist yet (an earlier stage writes them)."""
    return [Path(p) for p in stage.inputs(cfg, run_dir) if not Path(p).exists()]


def stage_fingerprint(stage: Stage, cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The stage's settings (:func:`stage_params`) and the digests of its input files: what its fingerprint
    digests and its ``stage.json`` records."""
    paths = [Path(p) for p in stage.inputs(cfg, run_dir)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"stage '{stage.name}' needs {missing[0]}, which does not exist; run the stage that "
                                "makes it first (or `ulmrec run`)")
    inputs = {input_key(p, run_dir): file_digest(p) for p in paths}
    return {"params": stage_params(stage, cfg), "inputs": inputs}


def params_forms(stage: Stage, cfg: Config) -> list[dict[str, Any]]:
    """The stage's settings as this version fingerprints them, then as earlier versions did: with the first 1, 2,
    ... :data:`ulmrec.config.ADDED_SETTINGS` still written out at their legacy value."""
    return [stage_params(stage, cfg, kept) for kept in range(len(ADDED_SETTINGS) + 1)]


def accepted_fingerprints(stage: Stage, cfg: Config, run_dir: Path, inputs: dict[str, str] | None = None) -> list[str]:
    """The fingerprints a finished stage (``stage.json``) or a partial directory's checkpoints (``.fingerprint``)
    may carry and still be current under ``cfg``: the one written today first, then those earlier versions of this
    package wrote for the same work (:func:`params_forms`). ``inputs``: the input digests where already computed
    (:func:`stage_fingerprint`)."""
    if inputs is None:
        inputs = stage_fingerprint(stage, cfg, run_dir)["inputs"]
    return list(dict.fromkeys(fingerprint({"params": form, "inputs": inputs}) for form in params_forms(stage, cfg)))


# ----------------------------------------------------------------------------------------- partial directories
#: The settings and input digests a partial directory's checkpoints were made with (beside its ``.fingerprint``).
PARTIAL_PARAMS = ".params.json"

BOOKKEEPING = {".fingerprint", PARTIAL_PARAMS, STAGE_CONFIG}


def changed_settings(before: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """``name: old -> new`` for every fingerprinted setting that differs between two ``params`` dicts (what a
    rerun reports before it rebuilds a stage or drops its checkpoints)."""
    out = []
    for key in sorted(set(before) | set(now)):
        a, b = before.get(key, "(unset)"), now.get(key, "(unset)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_settings(a, b, f"{prefix}{key}.")
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def why_stale(recorded: dict[str, Any] | None, fp_obj: dict[str, Any],
              forms: list[dict[str, Any]] | None = None) -> str:
    """Why a stage record or checkpoint made with ``recorded`` (its ``params`` / ``inputs``) is not current under
    ``fp_obj`` (:func:`stage_fingerprint`), in words for a log line. ``forms``: the settings as each earlier version
    wrote them (:func:`params_forms`); the closest one is compared, so a setting added since is not reported."""
    if not recorded:
        return "made by an older version that did not record its settings"
    before = recorded.get("params", {})
    what = min((changed_settings(before, json.loads(json.dumps(form, default=str)))
                for form in (forms or [fp_obj["params"]])), key=len)
    inputs = [k for k in sorted(set(recorded.get("inputs", {})) | set(fp_obj["inputs"]))
              if recorded.get("inputs", {}).get(k) != fp_obj["inputs"].get(k)]
    parts = ([f"settings changed: {'; '.join(what[:6])}{' ...' if len(what) > 6 else ''}"] if what else []) + \
        ([f"inputs changed: {', '.join(inputs[:4])}{' ...' if len(inputs) > 4 else ''}"] if inputs else [])
    return ", ".join(parts) or "made by a version of this package whose fingerprints differ"


def checkpoints_verdict(partial: Path, stage: Stage, cfg: Config, accepted: list[str],
                        fp_obj: dict[str, Any]) -> tuple[str, str]:
    """What a run would do with the checkpoints in ``partial``: ``("none", "")`` (nothing but bookkeeping there),
    ``("resume", "")`` (its marker is one of ``accepted``) or ``("discard", why)`` (made with other settings or
    inputs: :func:`why_stale` against the ``.params.json`` written beside them)."""
    if not partial.is_dir() or all(p.name in BOOKKEEPING for p in partial.iterdir()):
        return "none", ""
    marker = partial / ".fingerprint"
    if marker.exists() and marker.read_text() in accepted:
        return "resume", ""
    saved = read_json(partial / PARTIAL_PARAMS) if (partial / PARTIAL_PARAMS).exists() else None
    return "discard", why_stale(saved, fp_obj, params_forms(stage, cfg))


def prepare_partial(partial: Path, stage: Stage, cfg: Config, accepted: list[str], fp_obj: dict[str, Any],
                    force: bool = False) -> Path:
    """The stage's partial directory, ready for work: kept when its checkpoints resume
    (:func:`checkpoints_verdict`), else removed (with a log line saying why, unless forced). The marker and the
    settings it stands for (``.params.json``) are written for today's fingerprint (``accepted[0]``)."""
    verdict, why = checkpoints_verdict(partial, stage, cfg, accepted, fp_obj)
    if partial.exists() and (force or verdict != "resume"):
        if verdict == "discard" and not force:
            log.warning("stage %s: discarding the checkpoints in %s (%s)", stage.name, partial, why)
        shutil.rmtree(partial)
    elif verdict == "resume" and (partial / ".fingerprint").read_text() != accepted[0]:
        log.info("stage %s: resuming checkpoints written by an earlier version of this package", stage.name)
    partial.mkdir(parents=True, exist_ok=True)
    write_json(partial / PARTIAL_PARAMS, fp_obj)
    (partial / ".fingerprint").write_text(accepted[0])
    return partial
