"""Paper Table 2 for the sequential retrievers: LRURec, SASRec, BERT4Rec and NARM on full Beauty and Games.

    .venv/bin/python benchmarks/retrieval.py --max-minutes 15 --jobs 2 --label cpu
    python3 benchmarks/retrieval.py --device cuda --max-minutes 5 --jobs 8 --label h200   # on a GPU machine

Each (dataset, model) pair runs the real ``retrieve`` stage (default recipe, ``retrieval.max_minutes`` as the
budget) in its own process and run directory (``--root``), with the prepared data copied from
``runs/<dataset>/data`` when that exists (else ``ulmrec prepare`` from ../shared/data). The Overall test metrics
(full ranking over all items, history masked) are set next to the paper's Table 2 Overall row.
Writes benchmarks/results/retrieval_<label>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import REPO, RESULTS, header, save

from ulmrec.io import read_json
from ulmrec.paper import COLUMNS, RETRIEVER_R20, TABLE2

MODELS = ("lrurec", "sasrec", "bert4rec", "narm")
DATASETS = ("beauty", "games")
#: ULMRec paper, Table 2, "Overall" (all test users): M@5 N@5 R@5 M@10 N@10 R@10 (ulmrec.paper).
PAPER = {d: {m.lower(): TABLE2[d][m]["Overall"] for m in ("NARM", "BERT4Rec", "SASRec", "LRURec")}
         for d in DATASETS}
#: Recall@20 of the authors' released LRURec candidates (REFERENCE.md), the coverage target.
PAPER_R20 = RETRIEVER_R20


def run_job(dataset: str, model: str, run_dir: Path, max_minutes: float, device: str, extra: list[str]) -> None:
    """One (dataset, model) pair: prepare data if needed, then the retrieval stage (in this process)."""
    from ulmrec.config import load_config
    from ulmrec.pipeline import run_stage
    from ulmrec.retrieval.stage import STAGE

    cfg = load_config([dataset], [f"run_dir={run_dir}", f"device={device}", f"retrieval.model={model}",
                                  f"retrieval.max_minutes={max_minutes}", *extra])
    prepared = REPO / "runs" / dataset / "data"
    if not (run_dir / "data" / "interactions.parquet").exists():
        if (prepared / "interactions.parquet").exists():
            shutil.copytree(prepared, run_dir / "data", dirs_exist_ok=True)
        else:
            from ulmrec.data.stage import STAGE as DATA

            run_stage(DATA, cfg)
    run_stage(STAGE, cfg)


def row(dataset: str, model: str, run_dir: Path) -> dict:
    m = read_json(run_dir / "retrieval" / "metrics.json")
    test, tr = m["test"], m["training"]
    paper = dict(zip(COLUMNS, PAPER[dataset][model], strict=True))
    return {"dataset": dataset, "model": model, **{k: round(test[k], 4) for k in (*COLUMNS, "Recall@20")},
            "paper": paper, "ratio_NDCG@10": round(test["NDCG@10"] / paper["NDCG@10"], 3),
            "epochs": tr["epochs"], "best_epoch": tr["best_epoch"], "stopped": tr["stopped"],
            "train_seconds": tr["train_seconds"], "seconds_per_epoch": tr["seconds_per_epoch"],
            "valid_seconds_per_validation": round(
                sum(h["valid_s"] for h in read_json(run_dir / "retrieval" / "train_log.json"))
                / max(1, len(read_json(run_dir / "retrieval" / "train_log.json"))), 2),
            "candidate_seconds": round(m["valid"]["seconds"] + m["test"]["seconds"], 1)}


def curves_figure(pairs: list[tuple[str, str]], root: Path, path: Path, command: str) -> None:
    """Validation Recall@10 and Recall@20 per epoch, one panel per dataset, one line per model; the
    paper's Table 2 Recall@10 and the authors' coverage are drawn as dotted lines for scale (they are *test*
    figures, so they are a guide, not the same split)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ulmrec.io import write_bytes

    datasets = sorted({d for d, _ in pairs})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        for dd, m in pairs:
            log_file = root / f"{dd}-{m}" / "retrieval" / "train_log.json"
            if dd != d or not log_file.exists():
                continue
            hist = read_json(log_file)
            color = f"C{MODELS.index(m)}"
            ax.plot([h["epoch"] for h in hist], [h["Recall@10"] for h in hist], color=color, label=f"{m} R@10")
            ax.plot([h["epoch"] for h in hist], [h["Recall@20"] for h in hist], color=color, ls="--",
                    label=f"{m} R@20")
        ax.axhline(PAPER[d]["lrurec"][5], color="grey", ls=":", lw=1)
        ax.axhline(PAPER_R20[d], color="black", ls=":", lw=1)
        ax.set_title(d)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation recall")
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle("Validation Recall@10 (solid) and @20 (dashed) per epoch; dotted: paper LRURec test R@10 (grey) "
                 "and the authors' test R@20 (black)", fontsize=9)
    import textwrap

    fig.text(0.01, -0.02, textwrap.fill(command.split(" --note ")[0], 170), fontsize=7, va="top")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def budget_text(args: argparse.Namespace) -> str:
    if not args.pairs:
        return f"{args.max_minutes:g} min per model and dataset"
    return ", ".join(f"{p.split(':')[0]} {p.split(':')[1]} {p.split(':')[2] if p.count(':') == 2 else args.max_minutes} min"
                     for p in args.pairs)


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    short = [c[0] + c[c.index("@"):] for c in COLUMNS]
    from ulmrec.retrieval.config import RetrievalConfig

    c = RetrievalConfig()
    recipe = (f"hidden {c.hidden}, {c.blocks} blocks, dropout {c.dropout}/{c.attn_dropout}, max len {c.max_len}, "
              f"AdamW lr {c.lr} wd {c.weight_decay}, batch {c.batch_size} ({'length-bucketed' if c.bucket_batches else 'random'}), "
              f"clip {c.grad_clip}, validate every {c.val_every} epoch(s) on {c.best_metric}, patience {c.patience}, "
              + (f"learning rate x{c.lr_decay} after {c.lr_decay_patience} validations without improvement "
                 f"(at most {c.lr_decays} times)" if c.lr_decay else "constant learning rate"))
    lines = [f"# Retrievers, paper Table 2 (Overall, test), label `{args.label}`, device `{args.device}`", "",
             f"Budget (`retrieval.max_minutes`): {budget_text(args)}; {args.jobs} job(s) at once. "
             f"Recipe (defaults): {recipe}. Overrides: {' '.join(args.set) or 'none'}.", "",
             "| dataset | model | " + " | ".join(short) + " | R@20 | paper N@10 | ours/paper N@10 | epochs (best) "
             "| stopped | train s | s/epoch |", "|---" * (len(short) + 9) + "|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['model']} | " + " | ".join(f"{r[c]:.4f}" for c in COLUMNS)
                     + f" | {r['Recall@20']:.4f} | {r['paper']['NDCG@10']:.4f} | {r['ratio_NDCG@10']:.2f} "
                     f"| {r['epochs']} ({r['best_epoch']}) | {r['stopped']} | {r['train_seconds']:.0f} "
                     f"| {r['seconds_per_epoch']:.1f} |")
        lines.append(f"| {r['dataset']} | {r['model']} (paper) | "
                     + " | ".join(f"{r['paper'][c]:.4f}" for c in COLUMNS)
                     + f" | {PAPER_R20[r['dataset']] if r['model'] == 'lrurec' else float('nan'):.4f} | | | | | | |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--max-minutes", type=float, default=15.0, help="training budget per model and dataset")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="pairs trained at once (separate processes)")
    ap.add_argument("--root", default="/tmp/ulmrec-bench-retrieval", help="run directories go here")
    ap.add_argument("--label", default="cpu", help="results go to benchmarks/results/retrieval_<label>.*")
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value overrides for every pair")
    ap.add_argument("--pairs", nargs="+", metavar="DATASET:MODEL[:MINUTES]",
                    help="explicit pairs in launch order, each with an optional own budget "
                         "(instead of --datasets x --models)")
    ap.add_argument("--note", default="", help="a paragraph appended to the markdown (e.g. how --report's runs were made)")
    ap.add_argument("--report", action="store_true",
                    help="train nothing: tabulate the finished pairs found under --root")
    ap.add_argument("--job", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    root = Path(args.root)
    if args.job:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        dataset, model = args.job
        run_job(dataset, model, root / f"{dataset}-{model}", args.max_minutes, args.device, args.set)
        return

    budgets = {}
    for spec in args.pairs or [f"{d}:{m}" for d in args.datasets for m in args.models]:
        d, m, *minutes = spec.split(":")
        if d not in DATASETS or m not in MODELS or len(minutes) > 1:
            ap.error(f"--pairs: expected DATASET:MODEL[:MINUTES] with a dataset in {DATASETS} and a model in "
                     f"{MODELS}, got {spec!r}")
        budgets[(d, m)] = float(minutes[0]) if minutes else args.max_minutes
    pairs = list(budgets)
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def launch(pair: tuple[str, str]) -> int:
        d, m = pair
        cmd = [sys.executable, __file__, "--job", d, m, "--max-minutes", str(budgets[pair]), "--device",
               args.device, "--root", str(root), "--set", *args.set]
        with open(logs / f"{d}-{m}.log", "a") as log:
            return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)

    loads: list[float] = []
    done = threading.Event()

    def sample_load() -> None:  # the cores may be shared: record how busy they were
        while not done.wait(60):
            loads.append(round(os.getloadavg()[0], 2))

    t0 = time.time()
    if args.report:
        codes = {p: 0 if (root / f"{p[0]}-{p[1]}" / "retrieval" / "metrics.json").exists() else 1 for p in pairs}
    else:
        threading.Thread(target=sample_load, daemon=True).start()
        with ThreadPoolExecutor(args.jobs) as pool:
            codes = dict(zip(pairs, pool.map(launch, pairs), strict=True))
        done.set()
    rows = [row(d, m, root / f"{d}-{m}") for (d, m), code in codes.items() if code == 0]
    failed = [f"{d}-{m}" for (d, m), code in codes.items() if code != 0]
    result = {**header(), "device": args.device, "max_minutes": {f"{d}:{m}": b for (d, m), b in budgets.items()},
              "jobs": args.jobs, "wall_seconds": round(time.time() - t0, 1), "failed": failed, "rows": rows,
              "load_average_1min_sampled_each_minute": loads}
    curves = RESULTS / f"retrieval_{args.label}_curves.png"
    curves_figure([p for p, code in codes.items() if code == 0], root, curves, result["command"])
    save(f"retrieval_{args.label}", result, markdown(rows, args) + f"\n\nValidation curves: [{curves.name}]({curves.name})"
         + (f"\n\n{args.note}" if args.note else ""))
    print(markdown(rows, args))
    if failed:
        print("failed:", failed, "- see", logs)


if __name__ == "__main__":
    main()
