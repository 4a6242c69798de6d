"""Benchmark: how much easier are the retriever's training-prefix lists than its validation and test lists?

The ranker's retriever-order training candidates (``tasks.train_candidates=retriever``) come from
``retrieval/candidates_train.parquet``, written by the retriever that was trained on those very transitions.
For each run directory given (``name=path``), this reads the candidate files and reports, per split, the share of
rows whose target is among the top 20 (coverage), the share with the target first, the share first among the
lists that hold it (what a ranker trained on those lists learns as the prior of letter A) and the mean position
of the target when listed::

    .venv/bin/python benchmarks/train_list_exposure.py beauty=runs/beauty games=runs/games \\
        sample=runs/sample-base "sample, 2 folds=runs/bench-levers/retriever-order---skip--cross-fitted-tra"

Writes ``benchmarks/results/train_list_exposure.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, save  # noqa: E402


def exposure(path: Path, n: int = 20) -> dict:
    import numpy as np
    import pandas as pd

    r = pd.read_parquet(path, columns=["target_rank"])["target_rank"].to_numpy()
    hit = (r >= 0) & (r < n)
    return {"rows": int(len(r)), "in_top": float(hit.mean()), "first": float((r == 0).mean()),
            "first_when_listed": float((r == 0).sum() / max(1, hit.sum())),
            "mean_position_when_listed": float(np.mean(r[hit])) if hit.any() else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    result = {**header(), "top": args.top, "runs": {}}
    for spec in args.runs:
        name, _, run_dir = spec.partition("=")
        if not run_dir:
            raise SystemExit(f"{spec!r}: expected NAME=RUN_DIR")
        out = {"run_dir": run_dir}
        for split in ("train", "valid", "test"):
            path = Path(run_dir) / "retrieval" / f"candidates_{split}.parquet"
            if not path.exists():
                raise SystemExit(f"{path} does not exist")
            out[split] = exposure(path, args.top)
        result["runs"][name] = out
    save("train_list_exposure", result, markdown(result))
    return 0


def markdown(r: dict) -> str:
    lines = [f"# Training-prefix lists vs validation/test lists (the retriever's top-{r['top']})", "",
             "| run | split | rows | target in the list | target first | first, among lists holding it | "
             "mean position when listed |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, out in r["runs"].items():
        for split in ("train", "valid", "test"):
            e = out[split]
            pos = "" if e["mean_position_when_listed"] is None else f"{e['mean_position_when_listed']:.2f}"
            lines.append(f"| {name} | {split} | {e['rows']} | {e['in_top']:.3f} | {e['first']:.3f} | "
                         f"{e['first_when_listed']:.3f} | {pos} |")
    lines += ["", "Training rows: one per training prefix (retrieval.train_candidates=true); validation/test: one "
              "per user. Positions are 0-based (0 = letter A)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
