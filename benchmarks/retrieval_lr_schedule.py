"""LRURec on this CPU: constant learning rate (LlamaRec) vs x0.1 on validation plateaus (this project's default).

    .venv/bin/python benchmarks/retrieval_lr_schedule.py --constant runs/bench-cpu --decay runs/bench-cpu-lrdecay

Both roots hold ``<dataset>-lrurec/retrieval/`` run directories made by ``benchmarks/retrieval.py`` with the same
seed and settings except ``retrieval.lr_decay`` (0 vs 0.1), so the two runs are identical up to the first
decay. Tabulates validation (model selection) and Overall test metrics at the best validation epoch and plots
the validation curves. Writes benchmarks/results/retrieval_lr_schedule_cpu.{json,md,png}.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from _common import RESULTS, header, save

from retrieval import PAPER, PAPER_R20
from ulmrec.io import read_json, write_bytes

KEYS = ("MRR@10", "NDCG@10", "Recall@10", "Recall@20")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--constant", required=True, help="root with <dataset>-lrurec runs, retrieval.lr_decay=0")
    ap.add_argument("--decay", required=True, help="root with <dataset>-lrurec runs, retrieval.lr_decay=0.1")
    args = ap.parse_args()
    rows, curves = [], {}
    for ds in ("beauty", "games"):
        for name, root in (("constant", args.constant), ("x0.1 on plateau", args.decay)):
            run = Path(root) / f"{ds}-lrurec" / "retrieval"
            m, cfg = read_json(run / "metrics.json"), read_json(run / "stage.json")
            log = read_json(run / "train_log.json")
            curves[(ds, name)] = [(h["epoch"], h["Recall@10"]) for h in log]
            rows.append({"dataset": ds, "schedule": name, "training": m["training"],
                         "fingerprint": cfg["fingerprint"],
                         "valid": {k: round(m["valid"][k], 4) for k in KEYS},
                         "test": {k: round(m["test"][k], 4) for k in KEYS},
                         # binomial standard error of a Recall@20 over this many test users
                         "test_Recall@20_standard_error": round(
                             (m["test"]["Recall@20"] * (1 - m["test"]["Recall@20"]) / m["users"]) ** 0.5, 4)})
    lines = ["# LRURec learning-rate schedule on this CPU (full Beauty and Games, one thread each)", "",
             "Same seed and settings (defaults: dropout 0.5, random batches, patience 10) except `retrieval.lr_decay`;"
             " selected by validation Recall@10; test = Overall, full ranking, history masked.", "",
             "| dataset | learning rate | valid R@10 | valid R@20 | test M@10 | test N@10 | test R@10 | test R@20 (s.e.) "
             "| target N@10 / R@20 | epochs (best) | stopped | train min |", "|---" * 12 + "|"]
    for r in rows:
        v, t, tr = r["valid"], r["test"], r["training"]
        lines.append(f"| {r['dataset']} | {r['schedule']} | {v['Recall@10']:.4f} | {v['Recall@20']:.4f} "
                     f"| {t['MRR@10']:.4f} | {t['NDCG@10']:.4f} | {t['Recall@10']:.4f} | {t['Recall@20']:.4f} "
                     f"({r['test_Recall@20_standard_error']:.4f}) "
                     f"| {PAPER[r['dataset']]['lrurec'][4]:.4f} / {PAPER_R20[r['dataset']]:.4f} "
                     f"| {tr['epochs']} ({tr['best_epoch']}) | {tr['stopped']} | {tr['train_seconds'] / 60:.0f} |")
    lines += ["", "![validation curves](retrieval_lr_schedule_cpu.png)"]
    result = {**header(), "rows": rows}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, ds in zip(axes, ("beauty", "games"), strict=True):
        for name, style in (("constant", "-"), ("x0.1 on plateau", "--")):
            xs, ys = zip(*curves[(ds, name)], strict=True)
            ax.plot(xs, ys, style, label=f"lr {name}")
        ax.set_title(f"LRURec, {ds}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Recall@10")
        ax.set_ylim(bottom=min(y for (d, _), c in curves.items() if d == ds for _, y in c[len(c) // 3:]) - 0.005)
        ax.legend()
    fig.text(0.01, -0.03, result["command"], fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_bytes(RESULTS / "retrieval_lr_schedule_cpu.png", buf.getvalue())
    save("retrieval_lr_schedule_cpu", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
