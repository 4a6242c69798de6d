"""Benchmark: ULMRec vs the LlamaRec-style ranker vs the retriever's order on real Beauty / Games (paper Table 2).

Copies the prepared data and the retriever's candidates of an existing run (``--source``) into a fresh run
directory, trains both adapters with SmolLM2-135M-Instruct on this CPU under a small step budget, and evaluates
them on a fixed random subset of the Rank test users::

    taskset -c 0 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ranker.py --dataset games --source runs/games

Writes ``benchmarks/results/ranker_<dataset>.{json,md}`` with the paper's Table 2 rows next to the measured ones.
Extra ``key=value`` arguments override the budget below.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402

from ulmrec.config import load_config  # noqa: E402
from ulmrec.io import read_json  # noqa: E402
from ulmrec.metrics import format_table  # noqa: E402
from ulmrec.paper import COLUMNS, TABLE2  # noqa: E402
from ulmrec.pipeline import get_stage, run_stage  # noqa: E402

#: The recipe and budget of the full-data benchmark (issue #12): the best lever of benchmarks/results/ranker_levers.md
#: (the retriever's top-20 of each training prefix, in retriever order, only prefixes whose list holds the target),
#: LoRA on the top 8 layers with bf16 base weights, one thread, the same step budget for both adapters.
BUDGET = [
    "ranker.max_title_tokens=12",   # LlamaRec: 32; shorter prompts are the only way to go faster on a CPU
    "tasks.max_history=10",         # paper: 20
    "retrieval.train_candidates=true",  # the retriever also lists candidates for every training prefix
    "tasks.train_candidates=retriever",
    "tasks.shuffle_candidates=false",
    "tasks.missing_target=skip",
    "tasks.max_samples=4000",       # render only a mixed subset of the ~240k candidate samples
    "ranker.lora_layers=8",
    "ranker.batch_size=2",
    "ranker.max_steps=600",         # paper: one epoch (the authors' release: 1,600 steps x 16)
    "ranker.lr=1e-3",               # paper: 1e-4; raised because the step budget is small
    "ranker.warmup_steps=20",
    "ranker.eval_every=150",
    "ranker.eval_users=200",        # checkpoint selection on 200 validation users, step 0 included
    "ranker.patience=0",
    "ranker.score_batch_size=4",
    "ranker.num_threads=1",         # one thread per job: two jobs side by side on the 2 cores
    "evaluate.max_users=1500",      # a fixed random subset of the Rank test users
    "evaluate.fusion_users=200",
    "evaluate.position_check=false",  # the shuffled-candidates check runs in the sample (sample_run.md)
]

#: Paper Table 2 (Llama-2-7b, QLoRA, 4 x A800), from ulmrec.paper.
PAPER = {d: {m: {part: list(TABLE2[d][m][part]) for part in ("Rank", "Overall")} for m in ("LRURec", "LlamaRec", "ULMRec")}
         for d in ("beauty", "games")}
KEYS = list(COLUMNS)


def prepare_run(source: Path, run_dir: Path) -> dict:
    """Copy data/, retrieval/ (and index/, preferences/ when there) of ``source`` into ``run_dir``."""
    copied = {}
    for sub in ("data", "retrieval", "index", "preferences"):
        if (source / sub).exists() and not (run_dir / sub).exists():
            shutil.copytree(source / sub, run_dir / sub)
        if (run_dir / sub / "stage.json").exists():
            copied[sub] = read_json(run_dir / sub / "stage.json").get("summary", {})
    return copied


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(PAPER), required=True)
    parser.add_argument("--source", required=True, help="run directory with data/ and retrieval/ (index/ optional)")
    parser.add_argument("--run-dir", default=None, help="where to train (default runs/bench-ranker-<dataset>)")
    parser.add_argument("--name", default="", help="result file stem (default ranker_<dataset>)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the Markdown from the saved JSON result (no training)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="take the finished ranker stage of --run-dir as it is (even when its fingerprint is "
                             "from another commit) and run only the evaluate stage")
    parser.add_argument("--add-pairs", nargs="+", metavar="'A - B'", default=None,
                        help="add paired differences (rows of the saved result, same bootstrap settings as the stage) "
                             "from --run-dir's evaluate/ranks.parquet to the saved result, and re-render it")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.add_pairs:
        return add_pairs(args)
    if args.render_only:
        from _common import RESULTS, write_text

        out = read_json(RESULTS / f"{args.name or 'ranker_' + args.dataset}.json")
        m = out["machine"]
        write_text(RESULTS / f"{args.name or 'ranker_' + args.dataset}.md", f"{markdown(out)}\n\nCommand: `{out['command']}`  \n"
                   f"Date: {out['date']}  \nMachine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
                   f"torch {m['torch']}\n")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_dir = Path(args.run_dir or REPO / "runs" / f"bench-ranker-{args.dataset}")
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = prepare_run(Path(args.source), run_dir)
    identity = "index" if (run_dir / "index" / "user_index.parquet").exists() else "reference"
    overrides = [f"run_dir={run_dir}", f"tasks.identity={identity}", "device=cpu", *BUDGET, *args.overrides]
    cfg = load_config([args.dataset], overrides)
    t0 = time.time()
    if args.evaluate_only:
        if not (run_dir / "ranker" / "stage.json").exists():
            raise SystemExit(f"--evaluate-only: {run_dir / 'ranker'} holds no finished ranker stage")
        ranker = {**read_json(run_dir / "ranker" / "stage.json"), "skipped": True}
    else:
        ranker = run_stage(get_stage("ranker"), cfg)
    t1 = time.time()
    evaluate = run_stage(get_stage("evaluate"), cfg)
    t2 = time.time()
    res = read_json(run_dir / "evaluate" / "results.json")
    out = {**header(), "dataset": args.dataset, "source_run": str(args.source), "identity": identity,
           "overrides": overrides, "inputs": inputs, "ranker": ranker["summary"],
           "ranker_seconds": round(t1 - t0, 1) if not ranker.get("skipped") else ranker["seconds"],
           "evaluate_seconds": round(t2 - t1, 1) if not evaluate.get("skipped") else evaluate["seconds"],
           "results": res, "paper_table2": PAPER[args.dataset]}
    save(args.name or f"ranker_{args.dataset}", out, markdown(out))
    print(json.dumps({k: v["Rank"]["NDCG@10"] for k, v in res["models"].items()}))
    return 0


def add_pairs(args) -> int:
    """``--add-pairs``: paired differences between rows the evaluate stage wrote per user (ranks.parquet) but did
    not pair, computed like the stage's (``stats.paired_table``: its metrics, bootstrap count and seed)."""
    import pandas as pd
    from _common import RESULTS

    from ulmrec.evaluation.stats import paired_table

    name = args.name or f"ranker_{args.dataset}"
    out = read_json(RESULTS / f"{name}.json")
    run_dir = Path(args.run_dir or REPO / "runs" / f"bench-ranker-{args.dataset}")
    ranks = pd.read_parquet(run_dir / "evaluate" / "ranks.parquet")
    cfg = load_config([args.dataset], out["overrides"])
    pairs = [tuple(p.split(" - ", 1)) for p in args.add_pairs]
    for a, b in pairs:
        if a not in ranks.columns or b not in ranks.columns:
            raise SystemExit(f"--add-pairs: {a!r} or {b!r} is not a row of {run_dir / 'evaluate' / 'ranks.parquet'}")
    metrics = list(next(iter(out["results"]["paired"].values())))
    first = out["results"]["models"]
    for row in dict.fromkeys(x for p in pairs for x in p):  # the saved rows must be these users' rows
        if abs(first[row]["Rank"]["NDCG@10"] - _ndcg10(ranks[row].to_numpy())) > 1e-9:
            raise SystemExit(f"--add-pairs: {run_dir / 'evaluate' / 'ranks.parquet'} is not the saved result's run")
    table = paired_table({k: ranks[k].to_numpy() for k in dict.fromkeys(x for p in pairs for x in p)},
                         reference=pairs[0][1], extra_pairs=pairs, metrics=metrics,
                         n_boot=cfg.evaluate.bootstrap, seed=cfg.seed)
    for a, b in pairs:
        out["results"]["paired"][f"{a} - {b}"] = table[f"{a} - {b}"]
    note = f"pairs {', '.join(args.add_pairs)} added from evaluate/ranks.parquet by `{' '.join(sys.argv)}`"
    out["provenance"] = f"{out['provenance']}; {note}" if out.get("provenance") else note
    save(name, out, markdown(out))  # the JSON and its Markdown, as the run wrote them
    return 0


def _ndcg10(ranks) -> float:
    from ulmrec.metrics import metrics_from_ranks

    return metrics_from_ranks(ranks, [10])["NDCG@10"]


def markdown(out: dict) -> str:
    res, paper = out["results"], out["paper_table2"]
    rows_rank = {f"{k} (measured)": v["Rank"] for k, v in res["models"].items()}
    rows_over = {f"{k} (measured)": v["Overall"] for k, v in res["models"].items()}
    for name, vals in paper.items():
        rows_rank[f"{name} (paper, Llama-2-7b)"] = dict(zip(KEYS, vals["Rank"], strict=True))
        rows_over[f"{name} (paper, Llama-2-7b)"] = dict(zip(KEYS, vals["Overall"], strict=True))
    r = out["ranker"]
    retr = out["inputs"].get("retrieval", {})
    lines = [f"# LLM ranker on {out['dataset']} (SmolLM2-135M-Instruct, CPU)", "",
             f"Training: ULMRec {r['ulmrec']['samples_seen']} samples seen ({r['ulmrec']['steps']} steps of "
             f"{r['ulmrec']['samples_seen'] // max(1, r['ulmrec']['steps'])}, drawn from a mixed pool of "
             f"{r['ulmrec']['train_samples']}: {r['ulmrec']['tasks']}), "
             + (f"LlamaRec-style {r['llamarec']['samples_seen']} next-item samples ({r['llamarec']['steps']} steps)"
                if r.get("llamarec") else "no LlamaRec-style adapter in this run")
             + f"; validation subset {r['ulmrec']['valid_users']} users; {r['ulmrec']['seconds_per_step']} s per ULMRec step; "
             f"user identities: {out['identity']}.",
             f"Candidates: the retriever of `{out['source_run']}` ({retr.get('model', '?')}, "
             f"{retr.get('epochs', '?')} epochs, test Recall@20 {retr.get('test_Recall@20', '?')}; "
             "the authors' released LRURec: Beauty 0.1316, Games 0.2108).",
             f"Test: {res['test_users']} users, {res['rank_users']} Rank users (retriever coverage "
             f"{res['coverage']:.4f}), {res['scored_rank_users']} of them scored"
             + (" (fixed random subset; Overall = Rank x coverage)." if res["subset"] else "."),
             f"Wall clock: ranker stage {out['ranker_seconds']} s, evaluate stage {out['evaluate_seconds']} s.", "",
             "## Rank", "", format_table(rows_rank), "", "## Overall", "", format_table(rows_over), "",
             "## Seconds per test user (scoring, this CPU)", "", "| model | s/user |", "|---|---|"]
    for k, v in res["models"].items():
        lines.append(f"| {k} | {v['seconds_per_user']:.3f} |")
    if res.get("paired"):
        from ulmrec.evaluation.stats import paired_markdown

        lines += ["", "## Paired differences on the same users (bootstrap 95 % intervals)", "",
                  paired_markdown(res["paired"])]
    if res.get("fusion"):
        lines += ["", f"Fusion weight of ULMRec + retriever: {res['fusion']['weight']} (chosen on "
                  f"{res['fusion']['valid_users']} validation users)."]
    if res.get("title_similarity"):
        t = res["title_similarity"]
        lines += ["", f"Title similarity rows (beyond the paper): \"Retriever + title similarity\" has no LLM: the "
                  f"retriever's score + {t['weight']} x the {t['similarity']} ({t['encoder']}, last {t['history']} "
                  f"titles), the weight chosen on {t['valid_users']} validation Rank users"
                  + (f"; \"ULMRec + retriever + title similarity\": retriever weight "
                     f"{t['with_ulmrec']['retriever_weight']}, title weight {t['with_ulmrec']['title_weight']}, "
                     f"chosen on {t['with_ulmrec']['valid_users']} validation users" if t.get("with_ulmrec") else "")
                  + "."]
    if res.get("title_likelihood"):
        from ulmrec.evaluation.stage import _by_signal, _tuning_text

        t = res["title_likelihood"]
        lines += ["", "LM title likelihood rows (beyond the paper; the LM read as a language model, not through the "
                  f"letters): each candidate's title scored by `{t['signal']}`"
                  + (f" (chosen on validation over {_by_signal(t['valid_NDCG@10_by_signal'])})"
                     if t.get("valid_NDCG@10_by_signal") else "")
                  + f" after the user's last {t['history']} history titles ({t['title_tokens']} tokens a title), "
                  f"{_tuning_text(t['model'], t.get('tuning'))}; \"Retriever + LM title likelihood\" = the "
                  f"retriever's score + {t['weight']} x that score"
                  + (f"; with the title similarity: title w {t['with_title_similarity']['title_weight']}, likelihood "
                     f"w {t['with_title_similarity']['likelihood_weight']}" if t.get("with_title_similarity") else "")
                  + f", chosen on {t['valid_users']} validation Rank users. These rows read no preference sentence "
                  "and no user index."]
    if res.get("preferences"):
        lines += ["", f"Preference sentences: {res['preferences']}."]
    lines += ["", "Settings: " + ", ".join(f"`{o}`" for o in out["overrides"] if not o.startswith("run_dir"))]
    if out.get("provenance"):
        lines += ["", f"Provenance: {out['provenance']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
