"""Build the training mix of a prepared run and show what it holds: counts per task and one rendered prompt each.

    python -m ulmrec.tasks.preview -c beauty tasks.identity=reference
    python -m ulmrec.tasks.preview run_dir=runs/allbeauty tasks.identity=original --report report.json

Reads ``<run_dir>/data`` (and ``preferences/``, ``index/``, ``retrieval/`` when they are there); writes nothing
unless ``--report`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ulmrec.artifacts import candidates_path
from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import UlmrecError
from ulmrec.io import write_json
from ulmrec.tasks.base import TASKS
from ulmrec.tasks.candidate_lists import read_candidates
from ulmrec.tasks.config import RETRIEVER_MODES
from ulmrec.tasks.inputs import load_preferences, read_identities
from ulmrec.tasks.mixing import build_training_samples
from ulmrec.tasks.templates import format_example


def counts_table(report: dict) -> str:
    """A Markdown table of the report: status, ratio, users, distinct samples, samples in the mix."""
    lines = ["| task | status | ratio | users | distinct samples | in the mix |", "|---|---|---|---|---|---|"]
    for name, e in report["tasks"].items():
        status = e["status"] if "reason" not in e else f"{e['status']}: {e['reason']}"
        lines.append(f"| {name} | {status} | {e['ratio']:g} | {e.get('users', 0)} | {e.get('pool', 0)} | "
                     f"{e['samples']} |")
    lines.append(f"| total | | | | | {report.get('total', 0)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ulmrec.tasks.preview", description=__doc__.split("\n")[0])
    p.add_argument("-c", "--config", action="append", default=[], help="preset name or YAML file (repeatable)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--report", help="also write the report (counts, examples) as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_config(args.config, args.overrides)
        run_dir = Path(cfg.run_dir)
        ds = Dataset.load(run_dir)
        ids = read_identities(cfg.tasks.identity, ds, run_dir)
        prefs = load_preferences(ds, run_dir)
        train_cands = None
        if cfg.tasks.train_candidates in RETRIEVER_MODES:
            train_cands = read_candidates(candidates_path(run_dir, "train"), cfg.tasks.num_candidates)
        samples, report = build_training_samples(ds, cfg.tasks, identities=ids, preferences=prefs, seed=cfg.seed,
                                                 train_candidates=train_cands)
    except UlmrecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(counts_table(report))
    examples = {}
    for task in TASKS:
        first = next((s for s in samples if s.task == task), None)
        if first is not None:
            prompt, response = format_example(first)
            examples[task] = prompt + response
            print(f"\n===== {task} (user {first.user_idx})\n{prompt}{response}")
    if args.report:
        write_json(args.report, {**report, "examples": examples})
    if report["not_rendered"]:
        print("\nnot rendered:", json.dumps(report["not_rendered"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
