"""``ulmrec``: one subcommand per pipeline stage, ``ulmrec run`` for all of them.

Every stage command takes ``-c/--config`` presets or YAML files (repeatable) and ``key=value`` overrides::

    ulmrec run -c beauty run_dir=runs/beauty ranker.max_steps=200
    ulmrec prepare -c games data.k_core=10
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ulmrec import experiments
from ulmrec.config import load_config, preset_names
from ulmrec.data import download, export
from ulmrec.errors import UlmrecError
from ulmrec.pipeline import STAGES, get_stage, run_all, run_stage, stage_status
from ulmrec.preferences import audit
from ulmrec.ranker import recommend
from ulmrec.runlock import ensure_run_dir

#: Extra commands that are not pipeline stages: (command, module, help). Each module has
#: ``add_arguments(parser)`` and ``main(args) -> int``.
EXTRA_COMMANDS = [
    ("download", download, "print or fetch the public Amazon review files of a category"),
    ("export-recbole", export, "write the prepared data as RecBole atomic files"),
    ("recommend", recommend, "ranked titles for one user from a trained run"),
    ("experiment", experiments, "the paper's ablations and analyses"),
    ("audit", audit, "do the preference sentences / user index see the test period?"),
]


def _config_args(p: argparse.ArgumentParser, force: bool = True) -> None:
    p.add_argument("-c", "--config", action="append", default=[], metavar="PRESET_OR_YAML",
                   help="preset name (see `ulmrec presets`) or YAML file; repeatable, later wins")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="settings on top, e.g. ranker.lr=1e-4")
    if force:
        p.add_argument("--force", action="store_true", help="run even when the artifacts are current")
    p.add_argument("-v", "--verbose", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ulmrec", description="ULMRec end to end: one subcommand per pipeline stage, `ulmrec run` for all of them.",
        epilog="Stage commands take -c PRESET_OR_YAML (repeatable) and key=value overrides, e.g. "
               "`ulmrec run -c beauty ranker.max_steps=200`. `ulmrec presets` lists the presets.")
    sub = parser.add_subparsers(dest="command", required=True)
    for st in STAGES:
        p = sub.add_parser(st.command, help=st.help, description=st.help)
        _config_args(p)
        p.set_defaults(stage=st.name)
    p = sub.add_parser("run", help="every stage in order, each skipped when current")
    _config_args(p)
    p.add_argument("--until", choices=[s.name for s in STAGES], help="stop after this stage")
    p.set_defaults(stage="__all__")
    p = sub.add_parser("status", help="what `ulmrec run` would do with each stage now, and why (reads only)",
                       description="Each stage: current, stale (which settings or inputs changed), to run, or "
                                   "waiting for an earlier stage; and whether a killed run's checkpoints resume.")
    _config_args(p, force=False)
    p.set_defaults(stage="__status__")
    p = sub.add_parser("presets", help="list the shipped config presets")
    p.set_defaults(stage="__presets__")
    p = sub.add_parser("config", help="print the resolved config")
    _config_args(p)
    p.set_defaults(stage="__config__")
    for name, module, help_ in EXTRA_COMMANDS:
        p = sub.add_parser(name, help=help_, description=help_)
        module.add_arguments(p)
        p.set_defaults(stage="__extra__", module=module)
    return parser


BUG_HINT = ("this is a bug in ulmrec, not in your input: please report it with the command line; "
            "rerun with -v for the traceback")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 a user error (one line on stderr naming the file, line and field or the setting;
    argparse usage errors too), 1 an internal error (one line and a bug-report hint; the traceback with -v),
    130 interrupted. Nothing is half-written in any case: stages write into partial directories."""
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return _dispatch(args)
    except UlmrecError as err:
        print(f"ulmrec: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"ulmrec: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # the environment: read-only file system, disk full, permissions
        where = f"{err.filename}: " if err.filename else ""
        print(f"ulmrec: error: {where}{_one_line(err.strerror or err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ulmrec: interrupted; finished stages are kept, the current one resumes from its checkpoints",
              file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last resort: a bug
        if verbose:
            raise
        print(f"ulmrec: internal error: {type(err).__name__}: {_one_line(err)[:300]} ({BUG_HINT})", file=sys.stderr)
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.stage == "__presets__":
        print("\n".join(preset_names()))
        return 0
    if args.stage == "__extra__":
        return int(args.module.main(args) or 0)
    cfg = load_config(args.config, args.overrides)
    if args.stage == "__config__":
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    if args.stage == "__status__":
        return _status(cfg)
    ensure_run_dir(cfg.run_dir)
    if args.stage == "__all__":
        records = run_all(cfg, force=args.force, until=args.until)
    else:
        records = [run_stage(get_stage(args.stage), cfg, force=args.force)]
    for rec in records:
        state = "skipped (current)" if rec.get("skipped") else f"done in {rec['seconds']:.1f}s"
        print(f"[{rec['stage']}] {state}: {json.dumps(rec.get('summary', {}))[:400]}")
    return 0


def _status(cfg) -> int:
    from pathlib import Path

    if not Path(cfg.run_dir).is_dir():
        print(f"run directory {cfg.run_dir} does not exist: `ulmrec run` would run every stage")
        return 0
    print(f"run directory {cfg.run_dir}")
    before = ""
    for st in STAGES:
        row = stage_status(st, cfg)
        note = f" (after {before} reruns, if its output changes)" if before and row["state"] == "current" else ""
        print(f"  {st.name:<12} {row['state']:<8} {row['detail']}{note}")
        if row["partial"]:
            print(f"  {'':<12} {'':<8} {row['partial']}")
        if row["state"] in ("stale", "to run") and not before:
            before = st.name
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
