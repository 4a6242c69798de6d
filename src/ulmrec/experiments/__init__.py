"""``ulmrec experiment NAME``: the paper's ablations and analyses (Tables 2 and 4, Figures 8-10, section 5.4.3).

    ulmrec experiment all --budget cpu-small -c games          # the whole grid, CPU-sized
    ulmrec experiment ablation --budget paper -c games         # Fig. 8 with the paper's settings

``key=value`` overrides follow NAME directly (argparse cannot take flags between them). One base run (``--base``, default the config's ``run_dir``) holds the
upstream stages (data, preferences, retrieval, index), built or found current with the ordinary pipeline; every
(variant, seed) is its own run directory under ``--work`` that links them in and runs only ``ranker`` and
``evaluate``. A killed grid continues where it stopped (finished stages are skipped, training resumes from its
checkpoint). Tables (Markdown, CSV, LaTeX) and figures (PNG) go to ``--out``; each names the exact command.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

from ulmrec.artifacts import GRID_ANALYSES, GRID_PLAN, GRID_RESULTS
from ulmrec.config import load_config
from ulmrec.errors import ConfigError
from ulmrec.experiments import analyses as an
from ulmrec.experiments import runner
from ulmrec.experiments.config import BUDGETS, ExperimentConfig, budget
from ulmrec.experiments.grid import (
    EXPERIMENTS,
    VARIANTS,
    expand,
    experiment_names,
    variants_for,
)
from ulmrec.experiments.reports import write_reports
from ulmrec.experiments.runner import lookup
from ulmrec.io import read_json, write_json

log = logging.getLogger("ulmrec")

__all__ = ["BUDGETS", "EXPERIMENTS", "ExperimentConfig", "add_arguments", "main", "run_experiments"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=experiment_names(),
                   help="; ".join(f"{k}: {v[0]}" for k, v in EXPERIMENTS.items()) + "; all: every one of them")
    p.add_argument("-c", "--config", action="append", default=[], metavar="PRESET_OR_YAML",
                   help="preset name or YAML file (repeatable), as for `ulmrec run`")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="paper",
                   help="paper: the paper's protocol (all samples, all test users, 3 seeds); cpu-small: a grid "
                        "for a 2-core CPU (32 training samples, 30 test users, 2 seeds)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (overrides the budget's)")
    p.add_argument("--train-samples", type=int, help="size of the full six-task mix (0 = all)")
    p.add_argument("--test-users", type=int, help="Rank test users scored per run (0 = all)")
    p.add_argument("--batch-size", type=int, help="ranker.batch_size")
    p.add_argument("--lr", type=float, help="ranker.lr")
    p.add_argument("--valid-users", type=int, help="ranker.eval_users")
    p.add_argument("--threads", type=int, help="ranker.num_threads")
    p.add_argument("--case-users", type=int, help="users of the case study (Fig. 10)")
    p.add_argument("--timing-users", type=int, help="users timed one by one (section 5.4.3)")
    p.add_argument("--base", help="base run directory with the upstream stages (default: the config's run_dir)")
    p.add_argument("--work", help="directory of the variant runs (default: <base>-variants)")
    p.add_argument("--out", default="benchmarks/results/experiments", help="tables and figures go here")
    p.add_argument("--no-prepare", action="store_true",
                   help="use the base run's upstream stages as they are (they must exist) instead of running them")
    p.add_argument("--report-only", action="store_true", help="write tables and figures from finished runs only")
    p.add_argument("--dry-run", action="store_true", help="print the plan (variants, budgets, run dirs) and stop")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings on top, e.g. retrieval.max_minutes=12")
    p.add_argument("-v", "--verbose", action="store_true")


def exp_config(args: argparse.Namespace) -> ExperimentConfig:
    return budget(args.budget, seeds=args.seeds, train_samples=args.train_samples, test_users=args.test_users,
                  batch_size=args.batch_size, lr=args.lr, valid_users=args.valid_users, threads=args.threads,
                  case_users=args.case_users, timing_users=args.timing_users)


def command_line(args: argparse.Namespace) -> str:
    """The command as typed (from ``sys.argv`` when it holds it), else rebuilt from the parsed arguments."""
    if getattr(args, "command_line", None):
        return args.command_line
    argv = sys.argv[1:]
    if "experiment" in argv:
        return "ulmrec " + shlex.join(argv[argv.index("experiment"):])
    parts = ["experiment"]
    for c in args.config:
        parts += ["-c", c]
    if args.budget != "paper":
        parts += ["--budget", args.budget]
    for flag in ("seeds", "train_samples", "test_users", "batch_size", "lr", "valid_users", "threads", "case_users",
                 "timing_users", "base", "work"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", *(map(str, value) if isinstance(value, list) else [str(value)])]
    if args.out != "benchmarks/results/experiments":
        parts += ["--out", args.out]
    parts += [f"--{f.replace('_', '-')}" for f in ("no_prepare", "report_only", "dry_run") if getattr(args, f)]
    return "ulmrec " + shlex.join([*parts, args.name, *args.overrides])


def main(args: argparse.Namespace) -> int:
    try:
        exp = exp_config(args)
    except ValueError as err:
        raise ConfigError(f"experiment settings: {err}") from err
    cfg = load_config(args.config, args.overrides)
    base = Path(args.base or cfg.run_dir)
    work = Path(args.work) if args.work else base.with_name(base.name + "-variants")
    run_experiments(args.name, list(args.config), list(args.overrides), base, work, Path(args.out), exp,
                    command_line(args), prepare=not args.no_prepare, report_only=args.report_only,
                    dry_run=args.dry_run)
    return 0


def run_experiments(name: str, presets: list[str], overrides: list[str], base: Path, work: Path, out: Path,
                    exp: ExperimentConfig, command: str, prepare: bool = True, report_only: bool = False,
                    dry_run: bool = False) -> dict[str, Any]:
    """Build the base run, train/evaluate every variant the experiments need, run the analyses, write reports."""
    import json

    names = expand(name)
    plan = runner.Plan(presets, overrides, base, work, exp)
    if not report_only and not dry_run:
        runner.prepare_base(plan, build=prepare)
    runner.plan_budgets(plan)
    variants = variants_for(names)
    print(f"$ {command}")
    print(f"experiments: {', '.join(names)}; variants: {', '.join(variants)}; seeds: {exp.seeds}")
    for v in variants:
        cfg = plan.config(VARIANTS[v], exp.seeds[0])
        print(f"  {v:12s} -> {plan.run_dir(VARIANTS[v], exp.seeds[0])} (tasks.max_samples={cfg.tasks.max_samples}, "
              f"tasks {','.join(t for t in cfg.tasks.enabled if t in plan.available)}, identity {cfg.tasks.identity})")
    if dry_run:
        print(json.dumps(plan.describe(), indent=1))
        return {}
    work.mkdir(parents=True, exist_ok=True)
    if not report_only:
        write_json(work / GRID_PLAN, {**plan.describe(), "command": command})
    results_path = work / GRID_RESULTS
    analyses_path = work / GRID_ANALYSES
    analyses: dict[str, Any] = read_json(analyses_path) if analyses_path.exists() else {}

    def analyses_and_reports(store: dict) -> None:
        _run_analyses(plan, names, store, analyses, analyses_path)
        write_reports(plan, names, store, analyses, out, command)

    if report_only:
        store = read_json(results_path) if results_path.exists() else {}
        made_by = read_json(work / GRID_PLAN).get("command") if (work / GRID_PLAN).exists() else None
        if made_by:  # the tables name the command that produced the numbers
            print(f"tables of the runs made by: {made_by}")
            command = made_by
    else:
        store = runner.run_grid(plan, variants, results_path, after_each=analyses_and_reports)
    write_reports(plan, names, store, analyses, out, command)
    summary = out / "README.md"
    if summary.exists():
        print(summary.read_text(encoding="utf-8"))
    return store


def _run_analyses(plan, names: list[str], store: dict, analyses: dict, path: Path) -> None:
    """Case study and inference time on each seed's full model as soon as it is trained (results cached)."""
    wanted = [n for n in ("case-study", "inference-time") if n in names]
    if not wanted:
        return
    full = lookup(store, plan, "full")
    for seed, rec in full.items():
        run_dir = Path(rec["run_dir"])
        cfg = plan.config(VARIANTS["full"], seed)
        key = f"s{seed}"
        if "case-study" in wanted and key not in analyses.get("case-study", {}):
            try:
                users = an.case_users(cfg, run_dir, plan.exp.case_users, seed)
                rows = an.case_study(cfg, run_dir, users, plan.exp.case_max_new_tokens)
                analyses.setdefault("case-study", {})[key] = rows
            except Exception as err:  # noqa: BLE001 - reported, the grid goes on
                log.error("case study, seed %d: %s", seed, err)
            write_json(path, analyses)
        if "inference-time" in wanted and key not in analyses.get("inference-time", {}):
            try:
                analyses.setdefault("inference-time", {})[key] = an.inference_time(cfg, run_dir, plan.exp.timing_users,
                                                                                   seed)
            except Exception as err:  # noqa: BLE001
                log.error("inference time, seed %d: %s", seed, err)
            write_json(path, analyses)

