"""Leakage ablation (issue #13): ULMRec trained on the shipped GPT-3.5 sentences vs on leak-free sentences.

Both arms are runs of ``benchmarks/ranker.py`` with the same recipe, budget, seed and test users; they differ only in
the preference sentences (and the user index the index stage built from them)::

    # shipped arm (also the ranker_<ds> benchmark): data/retrieval/index/preferences of runs/<ds>
    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ranker.py --dataset games --source runs/games
    # leak-free arm: preferences.mode=titles; its index is rebuilt from those sentences when not current
    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/leakage_ranker.py --dataset games \\
        --source runs/games --train
    # tabulate (no training): pairs the two evaluate/ranks.parquet files user by user
    .venv/bin/python benchmarks/leakage_ranker.py --dataset games

Adds an ``ablation`` section to ``benchmarks/results/leakage_<ds>.{json,md}`` (the audit figures stay as written by
``benchmarks/leakage.py``): Rank NDCG@10 etc. of every row on the same users, and paired bootstrap 95 % intervals
of ULMRec shipped - leak-free, each ULMRec arm - LlamaRec-style, each arm - the retriever's order.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, header, write_text  # noqa: E402

from ulmrec.config import load_config  # noqa: E402
from ulmrec.evaluation.stats import paired_bootstrap, paired_markdown, per_user_metric  # noqa: E402
from ulmrec.io import read_json, write_json  # noqa: E402
from ulmrec.metrics import format_table  # noqa: E402
from ulmrec.pipeline import get_stage, run_stage  # noqa: E402

METRICS = ("MRR@5", "NDCG@5", "Recall@5", "MRR@10", "NDCG@10", "Recall@10")
#: The leak-free arm trains ULMRec only: the LlamaRec-style ranker reads no preferences, and the untuned LM's
#: next-item prompt holds no preference sentence (only the user index differs), so both rows come from the shipped arm.
LEAK_FREE = ["preferences.mode=titles", "ranker.baseline=false", "evaluate.baseline=false", "evaluate.zero_shot=false"]


def prepare_leak_free(source: Path, run_dir: Path, dataset: str) -> None:
    """data/ and retrieval/ from ``source``; preferences (mode=titles) and the index built here."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "retrieval"):
        if not (run_dir / sub).exists():
            shutil.copytree(source / sub, run_dir / sub)
    cfg = load_config([dataset], [f"run_dir={run_dir}", "retrieval.train_candidates=true", "preferences.mode=titles"])
    run_stage(get_stage("preferences"), cfg)
    run_stage(get_stage("index"), cfg)


def table(shipped: Path, leak_free: Path, n_boot: int) -> dict:
    a = pd.read_parquet(shipped / "evaluate" / "ranks.parquet").sort_values("user_idx", kind="stable")
    b = pd.read_parquet(leak_free / "evaluate" / "ranks.parquet").sort_values("user_idx", kind="stable")
    if not np.array_equal(a["user_idx"].to_numpy(), b["user_idx"].to_numpy()):
        raise SystemExit(f"{shipped} and {leak_free} scored different users: not a paired comparison")
    if not np.array_equal(a["Retriever order"].to_numpy(), b["Retriever order"].to_numpy()):
        raise SystemExit("the two runs' retriever ranks differ: they do not share the retriever's candidates")
    ranks = {"Retriever order": a["Retriever order"], "LlamaRec-style": a["LlamaRec-style"],
             "Zero-shot (untuned LM)": a["Zero-shot (untuned LM)"],
             "ULMRec, shipped sentences": a["ULMRec"], "ULMRec, leak-free sentences": b["ULMRec"],
             "ULMRec + retriever, shipped": a["ULMRec + retriever"],
             "ULMRec + retriever, leak-free": b["ULMRec + retriever"]}
    if "Zero-shot (untuned LM)" in b:
        ranks["Zero-shot, leak-free user index"] = b["Zero-shot (untuned LM)"]
    ranks = {k: v.to_numpy() for k, v in ranks.items()}
    pairs = [("ULMRec, shipped sentences", "ULMRec, leak-free sentences"),
             ("ULMRec + retriever, shipped", "ULMRec + retriever, leak-free"),
             ("ULMRec, shipped sentences", "LlamaRec-style"), ("ULMRec, leak-free sentences", "LlamaRec-style"),
             *[(k, "Retriever order") for k in ranks if k != "Retriever order"]]
    paired = {f"{x} - {y}": paired_bootstrap(ranks[x], ranks[y], METRICS, n_boot=n_boot) for x, y in pairs}
    means = {k: {m: float(per_user_metric(v, m).mean()) for m in METRICS} for k, v in ranks.items()}
    return {"users": int(len(a)), "models": means, "paired": paired,
            "runs": {"shipped": str(shipped.relative_to(REPO)), "leak_free": str(leak_free.relative_to(REPO))},
            "preferences": {"shipped": read_json(shipped / "evaluate" / "results.json").get("preferences"),
                            "leak_free": read_json(leak_free / "evaluate" / "results.json").get("preferences")}}


def verdict(ab: dict) -> str:
    """One sentence computed from the intervals (nothing typed in by hand)."""
    def cell(name: str) -> str:
        s = ab["paired"][name]["NDCG@10"]
        return f"{s['mean']:+.4f} [{s['lo']:+.4f}, {s['hi']:+.4f}]"

    def sign(name: str) -> int:
        s = ab["paired"][name]["NDCG@10"]
        return 1 if s["lo"] > 0 else -1 if s["hi"] < 0 else 0

    words = {1: "above", -1: "below", 0: "not distinguishable from"}
    gain_shipped = sign("ULMRec, shipped sentences - LlamaRec-style")
    gain_free = sign("ULMRec, leak-free sentences - LlamaRec-style")
    return (f"On {ab['users']} Rank test users, ULMRec with the shipped sentences is {words[gain_shipped]} the "
            f"LlamaRec-style ranker ({cell('ULMRec, shipped sentences - LlamaRec-style')} Rank NDCG@10) and with "
            f"leak-free sentences {words[gain_free]} it ({cell('ULMRec, leak-free sentences - LlamaRec-style')}); "
            f"shipped - leak-free: {cell('ULMRec, shipped sentences - ULMRec, leak-free sentences')}.")


def markdown(ab: dict) -> list[str]:
    return ["## Ablation: ULMRec trained on shipped vs leak-free sentences", "",
            f"Same recipe, budget, seed and {ab['users']} Rank test users in both arms (benchmarks/ranker.py); each "
            "arm's user index was built from its own sentences. Shipped = the authors' GPT-3.5 sentences (they see "
            "the validation and test period); leak-free = `preferences.mode=titles` (training-period titles only). "
            f"Runs: `{ab['runs']['shipped']}`, `{ab['runs']['leak_free']}`. The LlamaRec-style ranker reads no "
            "preferences and the untuned LM's next-item prompt holds no sentence (only the user index), so their rows "
            "come from the shipped arm.", "", "### Rank (same users)", "",
            format_table(ab["models"]), "", "### Paired differences (bootstrap 95 % intervals)", "",
            paired_markdown(ab["paired"]), "", verdict(ab), ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["beauty", "games"], required=True)
    ap.add_argument("--source", default=None, help="run with data/ and retrieval/ (for --train; default runs/<ds>)")
    ap.add_argument("--shipped", default=None, help="the shipped arm (default runs/bench-ranker-<ds>)")
    ap.add_argument("--leak-free", default=None, help="the leak-free arm (default runs/bench-ranker-<ds>-titles)")
    ap.add_argument("--train", action="store_true", help="prepare and train the leak-free arm first")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("overrides", nargs="*", help="extra key=value settings for the leak-free arm's ranker.py run")
    args = ap.parse_args()
    shipped = Path(args.shipped or REPO / "runs" / f"bench-ranker-{args.dataset}").resolve()
    leak_free = Path(args.leak_free or REPO / "runs" / f"bench-ranker-{args.dataset}-titles").resolve()
    if args.train:
        source = Path(args.source or REPO / "runs" / args.dataset).resolve()
        prepare_leak_free(source, leak_free, args.dataset)
        cmd = [sys.executable, str(REPO / "benchmarks" / "ranker.py"), "--dataset", args.dataset,
               "--source", str(source), "--run-dir", str(leak_free), "--name", f"ranker_{args.dataset}_leak_free",
               *LEAK_FREE, *args.overrides]
        subprocess.run(cmd, check=True, cwd=REPO)
    ab = {**header(), "ablation_of": "preferences", **table(shipped, leak_free, args.bootstrap)}
    path = RESULTS / f"leakage_{args.dataset}.json"
    result = read_json(path) if path.exists() else {}
    result["ablation"] = ab
    write_json(path, result)
    md_path = RESULTS / f"leakage_{args.dataset}.md"
    md = md_path.read_text() if md_path.exists() else f"# Leakage: {args.dataset}\n"
    cut = md.find("## Ablation: ULMRec trained on shipped vs leak-free sentences")
    if cut >= 0:
        md = md[:cut].rstrip() + "\n"
    md += "\n" + "\n".join(markdown(ab)) + (f"\nAblation command: `{ab['command']}`  \nAblation date: {ab['date']}\n")
    write_text(md_path, md)
    print(verdict(ab))
    return 0


if __name__ == "__main__":
    sys.exit(main())
