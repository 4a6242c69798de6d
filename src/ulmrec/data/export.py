"""``ulmrec export-recbole``: the prepared data of a run as RecBole atomic files (.inter, .item)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ulmrec.data.dataset import Dataset
from ulmrec.data.readers import export_recbole


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory with a finished data stage")
    p.add_argument("--out", default=None, help="output directory (default: <run_dir>/recbole)")
    p.add_argument("--name", default="dataset", help="dataset name: writes <name>.inter and <name>.item")


def main(args: argparse.Namespace) -> int:
    ds = Dataset.load(args.run_dir)
    out = Path(args.out or Path(args.run_dir) / "recbole")
    for p in export_recbole(ds, out, args.name):
        print(p)
    return 0
