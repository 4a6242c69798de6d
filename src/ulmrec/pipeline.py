"""Stages and ``ulmrec run``: each stage writes plain artifacts into ``<run_dir>/<stage>/``.

A stage is skipped when its settings and the digests of its inputs are those recorded in
``<run_dir>/<stage>/stage.json``. Work happens in ``<run_dir>/.<stage>.partial/`` and is renamed into place
only when the stage finishes, so a killed run never leaves a half-written stage directory; a stage that
checkpoints (training) finds its checkpoints in the partial directory when it is run again with the same
fingerprint, and resumes.

Fingerprints are portable: input files inside the run directory are keyed by their path relative to it (a copied
or moved run directory stays current), and the settings in :data:`ulmrec.config.RESULT_NEUTRAL` (threads,
inference batch sizes) are left out of every stage's parameters. Each command holds the run directory's lock
(:mod:`ulmrec.runlock`) while it works.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from ulmrec import artifacts
from ulmrec.artifacts import STAGE_CONFIG, STAGE_RECORD, Artifact
from ulmrec.config import RESULT_NEUTRAL, Config
from ulmrec.data.stage import STAGE as DATA
from ulmrec.evaluation.stage import STAGE as EVALUATE
from ulmrec.indexing.stage import STAGE as INDEX
from ulmrec.io import read_json, write_json, write_yaml
from ulmrec.preferences.stage import STAGE as PREFERENCES
from ulmrec.ranker.stage import STAGE as RANKER
from ulmrec.retrieval.stage import STAGE as RETRIEVAL
from ulmrec.runlock import ensure_run_dir, run_lock
from ulmrec.stage import (
    BOOKKEEPING,
    PARTIAL_PARAMS,
    Stage,
    accepted_fingerprints,
    checkpoints_verdict,
    missing_inputs,
    params_forms,
    prepare_partial,
    stage_fingerprint,
    stage_params,
    why_stale,
)

__all__ = ["STAGES", "Stage", "architecture_markdown", "available_stages", "get_stage", "run_all", "run_stage",
           "stage_fingerprint", "stage_params", "stage_status"]

log = logging.getLogger("ulmrec")

#: The stages in pipeline order (paper: data -> preferences -> retrieval -> indexing -> ranker -> evaluation).
#: Each is the ``STAGE`` of its package's ``stage.py``; docs/ARCHITECTURE.md's stage table is generated from this
#: tuple (:func:`architecture_markdown`).
STAGES: tuple[Stage, ...] = (DATA, PREFERENCES, RETRIEVAL, INDEX, RANKER, EVALUATE)


def available_stages() -> list[Stage]:
    """Every stage in order (:data:`STAGES`)."""
    return list(STAGES)


def get_stage(name: str) -> Stage:
    """The stage called ``name`` (its directory) or ``name`` (its command)."""
    for s in available_stages():
        if name in (s.name, s.command):
            return s
    raise KeyError(name)


def _neutral_values(cfg: Config) -> dict[str, Any]:
    """The values the result-neutral settings had (recorded in stage.json for provenance, not fingerprinted)."""
    return {name: getattr(getattr(cfg, name.split(".")[0]), name.split(".")[1]) for name in sorted(RESULT_NEUTRAL)}


def is_current(stage: Stage, cfg: Config) -> bool:
    run_dir = Path(cfg.run_dir)
    record = run_dir / stage.name / STAGE_RECORD
    if not record.exists():
        return False
    try:
        accepted = accepted_fingerprints(stage, cfg, run_dir)
    except FileNotFoundError:
        return False
    return read_json(record).get("fingerprint") in accepted


def invalidate(stage: Stage, cfg: Config) -> None:
    """Make the stage's finished artifacts not current (``--force``): its ``stage.json`` goes first, so a forced
    run that is killed leaves a stage that the next run rebuilds (resuming from the forced run's checkpoints)
    instead of skipping. The artifacts stay until the new ones replace them."""
    record = Path(cfg.run_dir) / stage.name / STAGE_RECORD
    if record.exists():
        record.unlink()
        log.info("stage %s: --force, previous artifacts marked stale", stage.name)


def run_stage(stage: Stage, cfg: Config, force: bool = False) -> dict[str, Any]:
    """Run one stage unless its artifacts are current; return its record. Holds the run directory's lock."""
    with run_lock(cfg.run_dir):
        return _run_stage(stage, cfg, force)


def _run_stage(stage: Stage, cfg: Config, force: bool) -> dict[str, Any]:
    run_dir = Path(cfg.run_dir)
    final = run_dir / stage.name
    fp_obj = stage_fingerprint(stage, cfg, run_dir)
    accepted = accepted_fingerprints(stage, cfg, run_dir, fp_obj["inputs"])
    fp = accepted[0]
    record_path = final / STAGE_RECORD
    if not force and record_path.exists() and read_json(record_path).get("fingerprint") in accepted:
        log.info("stage %s: up to date, skipped (%s)", stage.name, final)
        rec = read_json(record_path)
        rec["skipped"] = True
        return rec
    if force:
        invalidate(stage, cfg)
    elif record_path.exists():
        why = why_stale(read_json(record_path), fp_obj, params_forms(stage, cfg))
        log.info("stage %s: rebuilding (%s)", stage.name, why)

    partial = prepare_partial(run_dir / f".{stage.name}.partial", stage, cfg, accepted, fp_obj, force)
    marker = partial / ".fingerprint"
    write_yaml(partial / STAGE_CONFIG, cfg.to_dict())

    log.info("stage %s: running -> %s", stage.name, final)
    t0 = time.time()
    try:
        summary = stage.build(cfg, run_dir, partial) or {}
    except BaseException:
        if {p.name for p in partial.iterdir()} <= BOOKKEEPING:  # nothing to resume from: leave nothing behind
            shutil.rmtree(partial, ignore_errors=True)
        raise
    record = {"stage": stage.name, "fingerprint": fp, "seconds": round(time.time() - t0, 3),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "params": fp_obj["params"],
              "inputs": fp_obj["inputs"], "result_neutral": _neutral_values(cfg), "summary": summary}
    write_json(partial / STAGE_RECORD, record)
    marker.unlink(missing_ok=True)
    (partial / PARTIAL_PARAMS).unlink(missing_ok=True)

    trash = run_dir / f".{stage.name}.old"
    if trash.exists():
        shutil.rmtree(trash)
    if final.exists():
        os.replace(final, trash)
    os.replace(partial, final)
    if trash.exists():
        shutil.rmtree(trash)
    record["skipped"] = False
    return record


def stage_status(stage: Stage, cfg: Config) -> dict[str, str]:
    """What ``ulmrec run`` would do with ``stage`` under ``cfg`` now, and why (``ulmrec status``): ``state`` is
    ``current``, ``stale`` (rebuilds; ``detail`` names the settings or inputs that differ), ``to run`` (never
    finished) or ``waiting`` (an input an earlier stage writes is missing); ``partial`` says whether a killed run's
    checkpoints would resume or be discarded. Reads only; takes no lock."""
    run_dir = Path(cfg.run_dir)
    out = {"stage": stage.name, "state": "", "detail": "", "partial": ""}
    record_path = run_dir / stage.name / STAGE_RECORD
    record = read_json(record_path) if record_path.exists() else None
    missing = missing_inputs(stage, cfg, run_dir)
    if missing:
        return {**out, "state": "waiting", "detail": f"needs {missing[0]}"}
    fp_obj = stage_fingerprint(stage, cfg, run_dir)
    accepted = accepted_fingerprints(stage, cfg, run_dir, fp_obj["inputs"])
    if record is not None and record.get("fingerprint") in accepted:
        out.update(state="current", detail=f"finished {record.get('finished', '?')} in {record.get('seconds', 0):.0f} s")
        return out
    if record is not None:
        out.update(state="stale", detail=why_stale(record, fp_obj, params_forms(stage, cfg)))
    else:
        out.update(state="to run", detail="never finished in this run directory")
    partial = run_dir / f".{stage.name}.partial"
    verdict, why = checkpoints_verdict(partial, stage, cfg, accepted, fp_obj)
    out["partial"] = {"resume": f"resumes from the checkpoints in {partial}",
                      "discard": f"discards the checkpoints in {partial} ({why})"}.get(verdict, "")
    return out


def run_all(cfg: Config, force: bool = False, until: str | None = None) -> list[dict[str, Any]]:
    """``ulmrec run``: every stage in order, each skipped when current. With ``force`` every selected stage is
    marked stale before the first one starts, so a killed forced run is completed, not skipped, by the next run."""
    stages = available_stages()
    if until is not None:
        names = [s.name for s in stages]
        stages = stages[: names.index(until) + 1] if until in names else stages
    for stage in stages:  # fail fast, before any work, on settings a later stage would reject
        if stage.check is not None and (force or not is_current(stage, cfg)):
            stage.check(cfg)
    ensure_run_dir(cfg.run_dir)
    with run_lock(cfg.run_dir):
        if force:
            for stage in stages:
                invalidate(stage, cfg)
        write_yaml(Path(cfg.run_dir) / STAGE_CONFIG, cfg.to_dict())
        records = []
        for stage in stages:
            records.append(_run_stage(stage, cfg, force=force))
            if until == stage.name:
                break
    return records


# ------------------------------------------------------------------------------------ docs/ARCHITECTURE.md
def _package(stage: Stage) -> str:
    """``ulmrec/<package>/stage.py`` of a stage (from its build function's module)."""
    return stage.build.__module__.split(".")[1]


def _file(artifact: Artifact, with_stage: bool = True) -> str:
    name = artifact.key if with_stage else artifact.name
    return f"`{name}`" + (" (optional)" if artifact.optional else "")


def architecture_markdown() -> str:
    """The generated part of docs/ARCHITECTURE.md: the stage graph and every stage's declared inputs and
    outputs, from :data:`STAGES` and :mod:`ulmrec.artifacts` (``scripts/architecture.py`` writes it; a test
    checks that the file holds exactly this)."""
    writer = {a: s for s in STAGES for a in s.writes}
    lines = ["### Stages: package, run directory, command", "",
             "| package | run directory | command | reads (from outside the run directory) | help |",
             "|---|---|---|---|---|"]
    for s in STAGES:
        lines.append(f"| `ulmrec/{_package(s)}/` | `{s.name}/` | `ulmrec {s.command}` | {s.sources or '-'} | {s.help} |")
    lines += ["", "`ulmrec run` runs them in this order (`ulmrec.pipeline.STAGES`). Package, run directory and "
              "command differ for some stages; the run directories and commands stay as they are, since run "
              "directories and scripts name them.", "", "### Stage graph", "",
              "An edge is an artifact the later stage declares in `reads` and the earlier one in `writes`.", "",
              "```mermaid", "flowchart LR"]
    for s in STAGES:
        for src in STAGES:
            if src is s:
                continue
            files = [a for a in s.reads if writer.get(a) is src]
            if files:
                label = "<br/>".join(a.name + (" (opt.)" if a.optional else "") for a in files)
                lines.append(f'    {src.name} -- "{label}" --> {s.name}')
    lines += ["```", "", "### Artifacts", "",
              "Declared once in `ulmrec.artifacts` (writers: `out / USER_INDEX.name`; readers: "
              "`USER_INDEX.path(run_dir)`, `candidates_path(run_dir, split)`); every stage directory also holds "
              f"`{STAGE_RECORD}` and `{STAGE_CONFIG}`.", "",
              "| file | written by | read by | content |", "|---|---|---|---|"]
    for a in artifacts.ALL:
        if a not in writer:
            continue
        readers = ", ".join(f"`{s.name}`" for s in STAGES if a in s.reads) or "-"
        lines.append(f"| {_file(a)} | `{writer[a].name}` | {readers} | {a.what} |")
    return "\n".join(lines) + "\n"
