"""Benchmark: do the trained letter rankers read the titles, or only learn a letter prior (ranker-quality issue)?

The shuffled-list levers of ``benchmarks/ranker_levers.py`` fall *below a random order* on the validation users
(selection NDCG@10 0.263 untuned -> 0.167 at step 200), with and without the user's own later items in the
training lists. This probe reads two adapters trained by that script with no checkpoint selection (one
validation, at the last step: ``--eval-every`` = ``--steps``, ``ranker.eval_first=false``), so each is the
last-step adapter, and asks of each:

- on every validation Rank user (its ``valid_ranks.json``): NDCG@10, the histogram of the top-1 letter, and the
  NDCG@10 of a *constant order* -- every user's candidates ranked by the adapter's mean letter score over the
  users (a ranker that ignores the titles); if the two agree, the adapter is a letter prior, not a reader;
- on its own training next-item prompts (the first ``--train-samples`` of its training mix): NDCG@10 and the
  top-1 letter histogram, i.e. whether it fits the lists it was trained on;
- chance: the expected NDCG@10 of a uniformly random order of 20 candidates.

    .venv/bin/python benchmarks/ranker_levers.py --source runs/sample-base --steps 300 --eval-every 300 \\
        --runs runs/bench-levers-final --only 'title (A), own later items excluded: retriever order + skip' \\
        'shuffled title (A), own later items excluded: retriever top-20 + skip' --no-report ranker.eval_first=false
    .venv/bin/python benchmarks/letter_collapse.py --runs runs/bench-levers-final

Writes ``benchmarks/results/letter_collapse.{json,md}``. Validation users only; test is never read.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402
from ranker_levers import LEVERS, slug  # noqa: E402

LETTERS = string.ascii_uppercase[:20]


def chance_ndcg(n: int = 20, k: int = 10) -> float:
    """Expected NDCG@k of one relevant item placed uniformly among ``n``."""
    return float(sum(1 / np.log2(r + 2) for r in range(min(n, k))) / n)


def top1_hist(scores: np.ndarray) -> list[int]:
    safe = np.where(np.isfinite(scores), scores, -np.inf)
    return np.bincount(safe.argmax(1), minlength=scores.shape[1]).tolist()


def validation_view(run_dir: Path) -> dict:
    from ulmrec.evaluation.stats import paired_bootstrap
    from ulmrec.metrics import metrics_from_ranks
    from ulmrec.ranker.predict import ranks_of_targets

    saved = json.loads((run_dir / "valid_ranks.json").read_text())
    if "scores" not in saved:
        raise SystemExit(f"{run_dir}/valid_ranks.json has no letter scores (score it with ranker_levers.py)")
    # NaN where a user has no such candidate: never ranked above the target, left out of the mean
    scores = np.array([[np.nan if x is None else x for x in row] for row in saved["scores"]], dtype=np.float64)
    targets = np.asarray(saved["targets"])
    model = ranks_of_targets(scores, targets)
    # a constant order: the adapter's mean letter score over the users, the same for every user
    prior = np.nanmean(scores - np.nanmax(scores, 1, keepdims=True), 0)
    constant = ranks_of_targets(np.broadcast_to(prior, scores.shape), targets)
    retriever = np.asarray(saved["retriever_ranks"])
    ndcg = lambda r: metrics_from_ranks(r, (10,))["NDCG@10"]  # noqa: E731
    diff = paired_bootstrap(model, constant, metrics=["NDCG@10"])["NDCG@10"]
    return {"users": len(targets), "best_step": saved.get("best_step"), "NDCG@10": ndcg(model),
            "constant_order_NDCG@10": ndcg(constant), "retriever_NDCG@10": ndcg(retriever),
            "model_minus_constant": {k: diff[k] for k in ("mean", "lo", "hi")},
            "constant_order": [LETTERS[i] for i in np.argsort(-prior)],
            "top1_hist": top1_hist(scores), "target_position_hist": np.bincount(targets, minlength=20).tolist()}


def training_view(run_dir: Path, n: int) -> dict:
    from ulmrec.config import load_config
    from ulmrec.metrics import metrics_from_ranks
    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.predict import ranks_from_scores
    from ulmrec.ranker.stage import build_samples

    cfg = load_config([str(run_dir / "ranker" / "config.yaml")], [])
    ranker = Ranker.load(cfg.ranker, run_dir / "ranker" / "adapter")
    train, _, _, _ = build_samples(cfg, run_dir, ranker.tokenizer)
    samples = [s for s in train if s.task == "next_item"][:n]
    scores, _ = ranker.score(samples, desc=f"{run_dir.name} (training prompts)")
    targets = np.array([s.target for s in samples])
    ranks = ranks_from_scores(scores, samples)
    return {"samples": len(samples), "NDCG@10": metrics_from_ranks(ranks, (10,))["NDCG@10"],
            "top1_hist": top1_hist(scores), "target_position_hist": np.bincount(targets, minlength=20).tolist()}


def hist_text(h: list[int]) -> str:
    total = sum(h) or 1
    top = sorted(range(len(h)), key=lambda i: -h[i])[:3]
    return ", ".join(f"{LETTERS[i]} {h[i] / total:.0%}" for i in top if h[i])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bench-levers-final")
    ap.add_argument("--selected", type=Path, default=REPO / "runs" / "bench-levers-lookup",
                    help="a ranker_levers.py --runs directory whose scored levers (their selected checkpoints) get the "
                         "validation view only")
    ap.add_argument("--train-samples", type=int, default=150)
    ap.add_argument("--out", default="letter_collapse")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dirs = sorted(p.parent for p in args.runs.glob("*/valid_ranks.json"))
    if not dirs:
        raise SystemExit(f"{args.runs}: no scored lever (valid_ranks.json); train them with ranker_levers.py first")
    load_before = os.getloadavg()
    names = {slug(k): k for k in LEVERS}
    rows = {}
    for run_dir in dirs:
        rows[run_dir.name] = {"lever": names.get(run_dir.name, run_dir.name), "valid": validation_view(run_dir),
                              "train": training_view(run_dir, args.train_samples)}
        print(run_dir.name, json.dumps({k: rows[run_dir.name]["valid"][k] for k in ("NDCG@10", "constant_order_NDCG@10")}),
              flush=True)
    selected = {}
    for f in sorted(args.selected.glob("*/valid_ranks.json")):
        if "scores" in json.loads(f.read_text()):
            selected[f.parent.name] = {"lever": names.get(f.parent.name, f.parent.name), "valid": validation_view(f.parent)}
    zero_path = args.selected / "zero_shot_ranks.json"  # the untuned LM, ULMRec prompt (ranker_levers.py writes it)
    zero_shot = None
    if zero_path.exists():
        from ulmrec.metrics import metrics_from_ranks

        zero_shot = metrics_from_ranks(json.loads(zero_path.read_text())["ranks"], (10,))["NDCG@10"]
    result = {**header(), "load_before": load_before, "load_after": os.getloadavg(), "chance_NDCG@10": chance_ndcg(),
              "runs": str(args.runs), "rows": rows, "selected_runs": str(args.selected), "selected": selected,
              "selected_zero_shot_NDCG@10": zero_shot}
    first = next(iter(selected.values()))["valid"] if selected else None
    lines = ["# Do the letter rankers read the titles? (validation users of the sample)", "",
             "Each adapter is its lever's last step (no checkpoint selection), trained by benchmarks/ranker_levers.py "
             f"(300 steps, q/v of the top 8 layers, `title (A)`, the user's own later items excluded). Chance (a "
             f"uniformly random order of 20): NDCG@10 {result['chance_NDCG@10']:.4f}. Constant order: every user's "
             "candidates ranked by the adapter's mean letter score over the users (a ranker that reads no title).",
             "", "| adapter | valid users | valid NDCG@10 | constant order | adapter - constant [95 % CI] | "
             "retriever order | valid top-1 letters | own training prompts: NDCG@10 | training top-1 letters |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows.values():
        v, t = row["valid"], row["train"]
        d = v["model_minus_constant"]
        lines.append(f"| {row['lever']} | {v['users']} | {v['NDCG@10']:.4f} | {v['constant_order_NDCG@10']:.4f} | "
                     f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] | {v['retriever_NDCG@10']:.4f} | "
                     f"{hist_text(v['top1_hist'])} | {t['NDCG@10']:.4f} ({t['samples']}) | {hist_text(t['top1_hist'])} |")
    lines += ["", "Constant orders (the adapter's letters by mean score, best first): "
              + "; ".join(f"{r['lever']}: {''.join(r['valid']['constant_order'])}" for r in rows.values()), "",
              f"**The levers' selected adapters** (best validation checkpoint, step 0 = untuned; `{args.selected}`, "
              "the rows of ranker_levers_{lookup,format,capacity,exclusion,lookup_fullora}.md) on the same validation users"
              + (f" ({first['users']}; retriever order {first['retriever_NDCG@10']:.4f}" if first else "")
              + (f", the untuned LM as in those tables {zero_shot:.4f}" if first and zero_shot is not None else "")
              + (")" if first else "") + ":", "",
              "| lever | best step | valid NDCG@10 | constant order | adapter - constant [95 % CI] | top-1 letters |",
              "|---|---|---|---|---|---|"]
    for row in selected.values():
        v, d = row["valid"], row["valid"]["model_minus_constant"]
        lines.append(f"| {row['lever']} | {v['best_step']} | {v['NDCG@10']:.4f} | {v['constant_order_NDCG@10']:.4f} | "
                     f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}] | {hist_text(v['top1_hist'])} |")
    lines += ["",
              "Preferences in the prompts: shipped GPT-3.5 sentences of the sample (they see the validation and test "
              "period).",
              f"Load average before/after: {load_before[0]:.2f} / {result['load_after'][0]:.2f}."]
    save(args.out, result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
