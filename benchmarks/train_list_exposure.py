"""Benchmark: how much easier are the retriever's training-prefix lists than its validation and test lists?

The ranker's retriever-order training candidates (``tasks.train_candidates=retriever``) come from
``retrieval/candidates_train.parquet``, written by the retriever that was trained on those very transitions.
For each run directory given (``name=path``), this reads the candidate files and reports, per split, the share of
rows whose target is among the top 20 (coverage), the share with the target first, the share first among the
lists that hold it (what a ranker trained on those lists learns as the prior of letter A) and the mean position
of the target when listed; with ``--user-items`` also how many of each list's negatives are the user's own
training items (in a training-prefix list: items bought later in the same sequence, false negatives)::

    .venv/bin/python benchmarks/train_list_exposure.py beauty=runs/beauty games=runs/games \\
        sample=runs/sample-base "sample, 2 folds=runs/bench-levers/retriever-order---skip--cross-fitted-tra"
    .venv/bin/python benchmarks/train_list_exposure.py --user-items --out train_list_user_items \\
        beauty=runs/beauty games=runs/games sample=runs/sample-base

Writes ``benchmarks/results/<--out>.{json,md}`` (default ``train_list_exposure``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import header, save  # noqa: E402


def training_items(run_dir: Path) -> dict[int, set[int]]:
    """``{user_idx: the user's training items}`` from the run's data/interactions.parquet."""
    import pandas as pd

    frame = pd.read_parquet(Path(run_dir) / "data" / "interactions.parquet", columns=["user_idx", "item_idx", "split"])
    train = frame[frame["split"] == "train"]
    return {int(u): set(items.tolist()) for u, items in train.groupby("user_idx")["item_idx"]}


def exposure(path: Path, n: int = 20, mine: dict[int, set[int]] | None = None) -> dict:
    """Target coverage / position of a candidate file; with ``mine`` (the users' training items) also how many
    of each list's top ``n`` are the user's own training items other than the target: negatives the user did
    buy (false negatives when the list trains a ranker)."""
    import numpy as np
    import pandas as pd

    cols = ["target_rank"] + (["user_idx", "candidates", "target"] if mine is not None else [])
    frame = pd.read_parquet(path, columns=cols)
    r = frame["target_rank"].to_numpy()
    hit = (r >= 0) & (r < n)
    out = {"rows": int(len(r)), "in_top": float(hit.mean()), "first": float((r == 0).mean()),
           "first_when_listed": float((r == 0).sum() / max(1, hit.sum())),
           "mean_position_when_listed": float(np.mean(r[hit])) if hit.any() else None}
    if mine is not None:
        own = np.array([sum(1 for c in list(cands)[:n] if int(c) != int(t) and int(c) in mine.get(int(u), ()))
                        for u, cands, t in zip(frame["user_idx"], frame["candidates"], frame["target"], strict=True)])
        out["user_items"] = float(own.mean()) if len(own) else None
        out["user_items_when_listed"] = float(own[hit].mean()) if hit.any() else None
        out["lists_with_user_items_when_listed"] = float((own[hit] > 0).mean()) if hit.any() else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--user-items", action="store_true",
                    help="also count the user's own training items among each list's negatives (reads data/)")
    ap.add_argument("--out", default="train_list_exposure", help="results name under benchmarks/results/")
    args = ap.parse_args()
    result = {**header(), "top": args.top, "user_items": args.user_items, "runs": {}}
    for spec in args.runs:
        name, _, run_dir = spec.partition("=")
        if not run_dir:
            raise SystemExit(f"{spec!r}: expected NAME=RUN_DIR")
        out = {"run_dir": run_dir}
        mine = training_items(Path(run_dir)) if args.user_items else None
        for split in ("train", "valid", "test"):
            path = Path(run_dir) / "retrieval" / f"candidates_{split}.parquet"
            if not path.exists():
                raise SystemExit(f"{path} does not exist")
            out[split] = exposure(path, args.top, mine)
        result["runs"][name] = out
    save(args.out, result, markdown(result))
    return 0


def markdown(r: dict) -> str:
    own = bool(r.get("user_items"))
    extra = (" user's own items among the negatives (mean) | the same, lists holding the target | lists holding "
             "the target with any |") if own else ""
    lines = [f"# Training-prefix lists vs validation/test lists (the retriever's top-{r['top']})", "",
             "| run | split | rows | target in the list | target first | first, among lists holding it | "
             "mean position when listed |" + extra, "|---|---|---:|---:|---:|---:|---:|" + ("---:|" * 3 if own else "")]

    def fmt(x):
        return "" if x is None else f"{x:.3f}"
    for name, out in r["runs"].items():
        for split in ("train", "valid", "test"):
            e = out[split]
            pos = "" if e["mean_position_when_listed"] is None else f"{e['mean_position_when_listed']:.2f}"
            row = (f"| {name} | {split} | {e['rows']} | {e['in_top']:.3f} | {e['first']:.3f} | "
                   f"{e['first_when_listed']:.3f} | {pos} |")
            if own:
                row += (f" {fmt(e['user_items'])} | {fmt(e['user_items_when_listed'])} | "
                        f"{fmt(e['lists_with_user_items_when_listed'])} |")
            lines.append(row)
    lines += ["", "Training rows: one per training prefix (retrieval.train_candidates=true); validation/test: one "
              "per user. Positions are 0-based (0 = letter A)."]
    if own:
        lines += ["", "User's own items: candidates among the top that are the user's training items other than the "
                  "target. In a training-prefix list these are items the user bought later in the same sequence (the "
                  "retriever excludes the prefix, and was trained on the whole sequence); a ranker trained on that "
                  "list is told they are wrong. Validation/test lists exclude every training item (seen), so they "
                  "hold none: `tasks.exclude_user_items` removes them from the training lists too."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
