"""How much ranking signal the item titles hold beyond the retriever, on validation users only.

The LLM ranker sees the same top-20 as the retriever plus text: item titles (and, for ULMRec, the user index and
preference sentence). Whatever it can add to the retriever's order has to come from that text. This benchmark
measures the part of it a plain text-similarity scorer can reach, with no training at all: every candidate's
title embedded with all-MiniLM-L6-v2 (the index stage's encoder), scored by its cosine similarity to the user's
last ``--history`` history titles (the most similar one, ``max``; the mean history vector, ``mean``), alone and
fused with the retriever (retriever score + w x similarity, w chosen on a fixed random half of the validation
Rank users, the paired difference to the retriever's order reported on the other half). No preference
sentence is read, so the shipped GPT-3.5 sentences' view of the test period plays no part; test users are
never read.

    .venv/bin/python benchmarks/title_signal.py sample=runs/sample-base beauty=runs/beauty games=runs/games
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, run_dirs, save  # noqa: E402

#: Fusion weights tried on the choosing half (cosines lie in [-1, 1]; a decoder LM's mean-pooled ones sit close
#: together, so the grid runs far; w = 0 is the retriever).
GRID = (0, 0.25, 0.5, 1, 2, 3, 5, 8, 12, 20, 30, 50, 80, 120, 200)
SIGNALS = ("max", "mean")


def similarity_scores(ds, rows, emb, history: int) -> dict:
    """``{signal: (N, C)}`` for the rows' users and candidates (:func:`ulmrec.evaluation.title_signal.title_similarity`)."""
    from ulmrec.evaluation.title_signal import title_similarity

    users, cands = list(rows["user_idx"]), list(rows["candidates"])
    return {s: title_similarity(ds, users, cands, "valid", emb, history, how=s) for s in SIGNALS}


def measure(name: str, run_dir: Path, history: int, n_candidates: int, encode=None,
            encoder: str = "all-MiniLM-L6-v2") -> dict:
    """The table's rows for one run directory; ``encode`` (texts -> vectors) defaults to MiniLM."""
    import numpy as np
    import pandas as pd

    from ulmrec.data.dataset import Dataset
    from ulmrec.evaluation.stats import choose_fusion_weight, fuse, paired_bootstrap
    from ulmrec.evaluation.title_signal import title_embeddings
    from ulmrec.metrics import metrics_from_ranks, target_rank
    from ulmrec.tasks.eval_samples import rank_users

    t0 = time.perf_counter()
    ds = Dataset.load(run_dir / "data")
    cands = pd.read_parquet(run_dir / "retrieval" / "candidates_valid.parquet")
    rows = rank_users(cands, n_candidates).reset_index(drop=True)
    rows = rows.assign(candidates=[list(c[:n_candidates]) for c in rows["candidates"]],
                       scores=[list(s[:n_candidates]) for s in rows["scores"]])
    emb = title_embeddings(ds, encoder, encode=encode)
    sims = similarity_scores(ds, rows, emb, history)
    retr = np.stack([np.asarray(s, dtype=np.float64) for s in rows["scores"]])
    targets = np.array([c.index(int(t)) for c, t in zip(rows["candidates"], rows["target"], strict=True)])
    valid = np.ones_like(retr, dtype=bool)
    base = target_rank(retr, targets, valid).numpy()
    perm = np.random.default_rng(0).permutation(len(targets))
    pick, held = np.sort(perm[: len(targets) // 2]), np.sort(perm[len(targets) // 2:])
    result = {"run": str(run_dir), "valid_rank_users": int(len(targets)), "history": history,
              "retriever_order": metrics_from_ranks(base, (5, 10)), "signals": {}}
    for s in SIGNALS:
        alone = target_rank(sims[s], targets, valid).numpy()
        w, grid = choose_fusion_weight(retr[pick], sims[s][pick], targets[pick], grid=GRID)
        fused = target_rank(fuse(retr[held], sims[s][held], w), targets[held], valid[held]).numpy()
        result["signals"][s] = {
            "alone": metrics_from_ranks(alone, (5, 10)),
            "alone_vs_retriever": paired_bootstrap(alone, base, metrics=("NDCG@10",), seed=0)["NDCG@10"],
            "fusion_weight": w, "grid_NDCG@10_choosing_half": grid,
            "fused_vs_retriever_held_half": paired_bootstrap(fused, base[held], metrics=("NDCG@10",), seed=0)["NDCG@10"],
            "choose_users": int(len(pick)), "report_users": int(len(held))}
    rng = np.random.default_rng(1)
    rand = target_rank(rng.random(retr.shape), targets, valid).numpy()
    result["random_order"] = metrics_from_ranks(rand, (5, 10))
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"{name}: {len(targets)} users, {result['seconds']} s", file=sys.stderr)
    return result


def _ci(d: dict) -> str:
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def markdown(result: dict) -> str:
    lines = ["# Title similarity beside the retriever (validation users, no training)", "",
             "Every candidate of a validation Rank user's retriever top-20 scored by the cosine similarity of its "
             f"title ({result.get('encoder', 'all-MiniLM-L6-v2')}) to the user's last "
             f"{result['history']} history titles: `max` = the most similar history title, `mean` = the mean "
             "history vector. Fused = retriever score + w x similarity, w chosen on a fixed random half of the "
             "users, the paired difference to the retriever's order (bootstrap 95 % interval) on the other half. "
             "No preference sentence is read; no test user is read.", "",
             "| dataset | users | retriever order | random order | signal | alone | alone vs retriever | w | "
             "fused vs retriever (held half) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["datasets"].items():
        for s, v in r["signals"].items():
            lines.append(f"| {name} | {r['valid_rank_users']} | {r['retriever_order']['NDCG@10']:.4f} | "
                         f"{r['random_order']['NDCG@10']:.4f} | {s} | {v['alone']['NDCG@10']:.4f} | "
                         f"{_ci(v['alone_vs_retriever'])} | {v['fusion_weight']:g} | "
                         f"{_ci(v['fused_vs_retriever_held_half'])} |")
    lines += ["", f"Load average before/after: {result['load_before'][0]:.2f} / {result['load_after'][0]:.2f}."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="name=run_dir (a run with data/ and retrieval/candidates_valid.parquet)")
    ap.add_argument("--history", type=int, default=10, help="history titles compared (the ranker's tasks.max_history)")
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--out", default="title_signal")
    ap.add_argument("--encoder", default="all-MiniLM-L6-v2",
                    help="sentence-transformers model name or directory (a plain Hugging Face model directory is "
                         "mean-pooled, e.g. the ranker's LM)")
    args = ap.parse_args()
    load_before = os.getloadavg()
    datasets = {}
    for name, run in run_dirs(args.runs).items():
        datasets[name] = measure(name, run, args.history, args.candidates, encoder=args.encoder)
        try:
            datasets[name]["run"] = str(run.resolve().relative_to(REPO))
        except ValueError:
            pass
    result = {**header(), "datasets": datasets, "history": args.history, "encoder": args.encoder,
              "load_before": load_before,
              "load_after": os.getloadavg()}
    save(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
