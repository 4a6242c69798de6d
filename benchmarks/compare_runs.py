"""Benchmark: are two finished ``ulmrec run`` directories the same work? Artifact digests side by side.

The artifacts ``benchmarks/sample_run.py`` compares (candidates, retriever weights, user index, evaluation ranks:
SHA-256; the adapters tensor by tensor), each stage's seconds and the evaluation's Rank NDCG@10 per row, for run
directories made by different commits or on different machines. How each run directory was made is recorded as
given (``--made-by name="command"``)::

    .venv/bin/python benchmarks/compare_runs.py head=runs/bench-sample-run/a old=runs/bench-sample-old \\
        --made-by head="benchmarks/sample_run.py at 3345c9d" --out sample_run_commits

Writes ``benchmarks/results/<out>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402
from sample_run import FILES, STAGES, _sha, _tensors_equal  # noqa: E402

ADAPTERS = ("ranker/adapter", "ranker/llamarec/adapter")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs=2, metavar="name=run_dir")
    ap.add_argument("--made-by", action="append", default=[], metavar='name="how it was made"')
    ap.add_argument("--out", required=True, help="results name under benchmarks/results/")
    args = ap.parse_args(argv)
    runs = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        run = Path(path) if Path(path).is_absolute() else REPO / path
        if not path or not (run / "evaluate" / "results.json").exists():
            raise SystemExit(f"{spec!r}: expected name=run_dir of a finished run (evaluate/results.json)")
        runs[name] = run
    made_by = dict(m.split("=", 1) for m in args.made_by)
    (na, a), (nb, b) = runs.items()
    res = {n: json.loads((r / "evaluate" / "results.json").read_text()) for n, r in runs.items()}
    out = {**header(), "runs": {n: {"dir": str(r.relative_to(REPO)) if r.is_relative_to(REPO) else str(r),
                                    "made_by": made_by.get(n, ""),
                                    "stage_seconds": {s: json.loads((r / s / "stage.json").read_text())["seconds"]
                                                      for s in STAGES if (r / s / "stage.json").exists()}}
                                for n, r in runs.items()},
           "digests": {rel: [_sha(a / rel), _sha(b / rel)] for rel in FILES},
           "adapters_equal": {d: _tensors_equal(a / d, b / d) for d in ADAPTERS},
           "rank_ndcg10": {n: {k: v["Rank"]["NDCG@10"] for k, v in r["models"].items()} for n, r in res.items()}}
    out["identical"] = all(x == y for x, y in out["digests"].values()) and all(out["adapters_equal"].values()) \
        and out["rank_ndcg10"][na] == out["rank_ndcg10"][nb]
    save(args.out, out, markdown(out, na, nb))
    return 0


def markdown(r: dict, na: str, nb: str) -> str:
    ra, rb = r["runs"][na], r["runs"][nb]
    lines = [f"# Two run directories side by side: {na} and {nb}", "",
             f"- {na}: `{ra['dir']}`, made by: {ra['made_by'] or '(not given)'}",
             f"- {nb}: `{rb['dir']}`, made by: {rb['made_by'] or '(not given)'}", "",
             f"| artifact | {na} | {nb} |", "|---|---|---|"]
    for rel, (x, y) in r["digests"].items():
        lines.append(f"| {rel} | `{x}` | `{y}` |")
    for k, v in r["adapters_equal"].items():
        lines.append(f"| {k} (tensors) | {'equal' if v else 'DIFFERENT'} | |")
    lines += ["", f"Identical: **{'yes' if r['identical'] else 'no'}**.", "",
              f"| stage | {na} s | {nb} s |", "|---|---|---|"]
    for s in STAGES:
        lines.append(f"| {s} | {ra['stage_seconds'].get(s, '-')} | {rb['stage_seconds'].get(s, '-')} |")
    lines += ["", f"| row: Rank NDCG@10 | {na} | {nb} |", "|---|---|---|"]
    for k, v in r["rank_ndcg10"][na].items():
        other = r["rank_ndcg10"][nb].get(k)
        lines.append(f"| {k} | {v:.4f} | {'-' if other is None else f'{other:.4f}'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
