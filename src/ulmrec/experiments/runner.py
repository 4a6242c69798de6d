"""Running the variants: one base run's upstream artifacts, one run directory per (variant, seed).

The base run directory holds ``data/``, ``preferences/``, ``retrieval/`` and ``index/``, made (or found current)
with the ordinary pipeline. Each variant directory links those four in (symbolic links) and runs only the
``ranker`` and ``evaluate`` stages through :func:`ulmrec.pipeline.run_stage`, so a finished variant is skipped
and a killed one resumes from its training checkpoint or its saved evaluation chunks. The stages fingerprint
their inputs by content digest (the links are followed), so a variant re-runs when the base run changes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ulmrec import artifacts as art
from ulmrec.config import Config, load_config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError
from ulmrec.experiments.config import ExperimentConfig
from ulmrec.experiments.grid import (
    VARIANTS,
    Variant,
    task_quotas,
    training_key,
    variant_budget,
)
from ulmrec.io import read_json, write_json
from ulmrec.pipeline import available_stages, get_stage, run_stage
from ulmrec.tasks import build_training_samples, load_preferences, read_identities

log = logging.getLogger("ulmrec")

UPSTREAM = (art.DATA, art.PREFERENCES, art.RETRIEVAL, art.INDEX)
UID = "ULMRec-uid (no history)"
RETRIEVER = "Retriever order"
MAIN = "ULMRec"


@dataclass
class Plan:
    """What the grid will run: the settings shared by every variant and each variant's sample budget."""

    presets: list[str]
    overrides: list[str]
    base: Path
    work: Path
    exp: ExperimentConfig
    available: set[str] = field(default_factory=set)
    selected: dict[str, int] = field(default_factory=dict)
    quotas: dict[str, int] = field(default_factory=dict)

    def config(self, variant: Variant | None, seed: int | None = None) -> Config:
        """The full config of a variant run (``variant=None``: the base run)."""
        if variant is None:
            return load_config(self.presets, [*self.overrides, f"run_dir={self.base}"])
        extra = [*self.exp.ranker_overrides(), *variant.overrides(),
                 f"tasks.max_samples={variant_budget(variant, self.quotas, self.exp.train_samples)}",
                 f"evaluate.no_history={str(variant.name == 'full').lower()}",
                 f"seed={seed}", f"run_dir={self.run_dir(variant, seed)}"]
        return load_config(self.presets, [*self.overrides, *extra])

    @property
    def dataset(self) -> str:
        """A name for titles: the presets, else the base run's directory name."""
        return ", ".join(Path(p).stem for p in self.presets) or self.base.name

    def run_dir(self, variant: Variant, seed: int) -> Path:
        return self.work / f"{self.trained_as(variant).name}-s{seed}"

    def trained_as(self, variant: Variant) -> Variant:
        """The first variant (in :data:`VARIANTS` order) that trains on the same samples as ``variant``."""
        key = training_key(variant, self.available)
        for v in VARIANTS.values():
            if training_key(v, self.available) == key:
                return v
        return variant

    def describe(self) -> dict[str, Any]:
        return {"base": str(self.base), "work": str(self.work), "presets": self.presets, "overrides": self.overrides,
                "budget": dataclasses.asdict(self.exp), "tasks_with_samples": sorted(self.available),
                "selected_per_task": self.selected, "full_mix_per_task": self.quotas}


# --------------------------------------------------------------------------------------------- base run
def prepare_base(plan: Plan, build: bool = True) -> None:
    """Make (or find current) the base run's upstream stages; with ``build=False`` only check they exist."""
    cfg = plan.config(None)
    for stage in available_stages():
        if stage.name not in UPSTREAM:
            continue
        if build:
            rec = run_stage(stage, cfg)
            log.info("experiment base: %s %s", stage.name, "current" if rec.get("skipped") else "built")
        elif stage.name in (art.DATA, art.RETRIEVAL) and not (plan.base / stage.name).is_dir():
            raise ConfigError(f"the base run {plan.base} has no finished '{stage.name}' stage; run "
                              f"`ulmrec run --until index -c ... run_dir={plan.base}` first, or leave out --no-prepare")


def plan_budgets(plan: Plan) -> Plan:
    """Which tasks have samples on this data, and each task's share of the full mix (``train_samples``)."""
    cfg = plan.config(VARIANTS["full"], plan.exp.seeds[0])
    ds = Dataset.load(plan.base)
    ids = read_identities(cfg.tasks.identity, ds, plan.base)
    prefs = load_preferences(ds, plan.base)
    tasks = dataclasses.replace(cfg.tasks, max_samples=2)  # counts only: render two samples
    _, report = build_training_samples(ds, tasks, identities=ids, preferences=prefs, seed=plan.exp.seeds[0])
    plan.selected = {t: int(e.get("selected", 0)) for t, e in report["tasks"].items() if e["status"] == "ok"}
    plan.available = {t for t, n in plan.selected.items() if n > 0}
    plan.quotas = task_quotas(plan.selected, plan.exp.train_samples)
    return plan


# --------------------------------------------------------------------------------------------- variants
def link_upstream(base: Path, run_dir: Path) -> None:
    """``run_dir/<stage>`` -> ``base/<stage>`` for each upstream stage the base run has."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in UPSTREAM:
        src, dst = (base / name).resolve(), run_dir / name
        if not src.exists():
            continue
        if dst.is_symlink():
            if Path(os.readlink(dst)) == src:
                continue
            dst.unlink()
        elif dst.exists():
            raise ConfigError(f"{dst} is a real directory; a variant run must link its upstream stages to the base "
                              f"run ({src}); remove it or pick another --work directory")
        dst.symlink_to(src, target_is_directory=True)


def collect(run_dir: Path) -> dict[str, Any]:
    """The metrics of one finished variant run (evaluate/results.json + the ranker's summary)."""
    res = read_json(art.RESULTS.path(run_dir))
    out: dict[str, Any] = {"test_users": res["test_users"], "rank_users": res["rank_users"],
                           "scored_rank_users": res["scored_rank_users"], "coverage": res["coverage"], "models": {}}
    for name, entry in res["models"].items():
        out["models"][name] = {"Rank": entry["Rank"], "Overall": entry["Overall"],
                               "seconds_per_user": entry.get("seconds_per_user")}
    best = art.RANKER_BEST.path(run_dir)
    if best.exists():
        b = read_json(best)
        out["train"] = {k: b.get(k) for k in ("steps", "train_samples", "train_seconds", "seconds_per_step",
                                              "best_step", "stop_reason")}
    report = art.TASKS_REPORT.path(run_dir)
    if report.exists():
        out["train"] = {**out.get("train", {}), "per_task": read_json(report).get("used_samples", {})}
    return out


def run_variant(plan: Plan, variant: Variant, seed: int) -> dict[str, Any]:
    """Train and evaluate one (variant, seed) unless current; returns :func:`collect`'s record."""
    cfg = plan.config(variant, seed)
    run_dir = Path(cfg.run_dir)
    link_upstream(plan.base, run_dir)
    t0 = time.time()
    for stage in (art.RANKER, art.EVALUATE):
        run_stage(get_stage(stage), cfg)
    rec = collect(run_dir)
    rec.update(variant=variant.name, trained_as=plan.trained_as(variant).name, seed=seed, run_dir=str(run_dir),
               wall_seconds=round(time.time() - t0, 1))
    return rec


def run_grid(plan: Plan, variant_names: list[str], results_path: Path,
             after_each=None) -> dict[str, dict[int, dict[str, Any]]]:
    """Every (seed, variant), seed by seed so that a cut-short grid still has whole seeds. A failing variant is
    logged and recorded (``error``), the others go on. Results accumulate in ``results_path`` (JSON)."""
    store: dict[str, dict[str, Any]] = read_json(results_path) if results_path.exists() else {}
    done_keys: set[str] = set()
    for seed in plan.exp.seeds:
        for name in variant_names:
            variant = VARIANTS[name]
            key = f"{plan.trained_as(variant).name}/s{seed}"
            if key not in done_keys:
                log.info("experiment: %s (seed %d) -> %s", name, seed, plan.run_dir(variant, seed))
                try:
                    rec = run_variant(plan, variant, seed)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # noqa: BLE001 - one broken variant must not stop the grid
                    log.error("experiment: %s seed %d failed: %s", name, seed, err)
                    rec = {"variant": name, "seed": seed, "error": f"{type(err).__name__}: {err}",
                           "traceback": traceback.format_exc(limit=8)}
                store[key] = rec
                done_keys.add(key)
                write_json(results_path, store)
                if after_each is not None:
                    after_each(store)
    return store


def lookup(store: dict[str, Any], plan: Plan, name: str) -> dict[int, dict[str, Any]]:
    """``{seed: record}`` of variant ``name`` (records of the variant it is trained as); failed runs left out."""
    trained = plan.trained_as(VARIANTS[name]).name
    out = {}
    for seed in plan.exp.seeds:
        rec = store.get(f"{trained}/s{seed}")
        if rec and "error" not in rec:
            out[seed] = rec
    return out
