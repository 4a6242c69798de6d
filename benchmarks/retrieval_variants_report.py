"""Tabulate the LRURec recipe variants run by benchmarks/retrieval_variants_gpu.sh.

    tar xzf all_logs.tgz -C /tmp/var && .venv/bin/python benchmarks/retrieval_variants_report.py /tmp/var/tmp

Writes benchmarks/results/retrieval_variants_h200.{json,md}: validation (model selection) and test metrics of
every variant at its best validation epoch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import header, save

from ulmrec.io import read_json

VARIANTS = {"b2": "length-bucketed batches, dropout 0.2", "r2": "random batches, dropout 0.2",
            "b5": "length-bucketed batches, dropout 0.5", "r5": "random batches, dropout 0.5"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", help="the folder holding w_b2/, w_r2/, ... from all_logs.tgz")
    args = ap.parse_args()
    rows = []
    for ds in ("beauty", "games"):
        for v, what in VARIANTS.items():
            m = read_json(Path(args.root) / f"w_{v}" / "runs" / ds / "retrieval" / "metrics.json")
            rows.append({"dataset": ds, "variant": v, "what": what, "training": m["training"],
                         "valid": {k: round(m["valid"][k], 4) for k in ("NDCG@10", "Recall@10", "Recall@20")},
                         "test": {k: round(m["test"][k], 4) for k in ("MRR@10", "NDCG@10", "Recall@10", "Recall@20")}})
    lines = ["# LRURec recipe variants (one NVIDIA H200, eight trainings at once, 3.8 min budget each)", "",
             "Selected by validation Recall@10 (the recipe's metric); test = Overall, full ranking, history masked.",
             "", "| dataset | variant | valid R@10 | valid N@10 | valid R@20 | test M@10 | test N@10 | test R@10 "
             "| test R@20 | epochs (best) | stopped |", "|---" * 11 + "|"]
    for r in rows:
        t, v, tr = r["test"], r["valid"], r["training"]
        lines.append(f"| {r['dataset']} | {r['what']} | {v['Recall@10']:.4f} | {v['NDCG@10']:.4f} "
                     f"| {v['Recall@20']:.4f} | {t['MRR@10']:.4f} | {t['NDCG@10']:.4f} | {t['Recall@10']:.4f} "
                     f"| {t['Recall@20']:.4f} | {tr['epochs']} ({tr['best_epoch']}) | {tr['stopped']} |")
    result = {**header(), "gpu_command": "bash benchmarks/retrieval_variants_gpu.sh (device tool, nvidia-h200)",
              "gpu_date": "2026-11-27 13:02 UTC", "rows": rows}
    save("retrieval_variants_h200", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
