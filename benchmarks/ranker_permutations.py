"""Benchmark: does the LM ranker hold a signal beyond its retriever's order once the list order is averaged out?

A ranker trained on retriever-ordered lists learns to copy the order (ranker_levers.md); one trained on
shuffled lists cannot, but scored once its letter scores still carry a position prior. Here every validation
Rank user of the Beauty sample is scored with its 20 candidates shown in K orders (the retriever's, then K-1
seeded random permutations); each order's letter scores go through log-softmax over the user's candidates,
are mapped back to the candidates and averaged (permutation self-consistency, Tang et al. 2023). Rows, every
one on the same validation users, paired bootstrap 95 % intervals against the retriever's order:

- the adapter scored once, in retriever order (its ULMRec row);
- the mean over the K orders;
- either one fused with the retriever (log-softmax + w x retriever score, the evaluate stage's "ULMRec +
  retriever"), w chosen on a fixed random half of the users and reported on the other half.

The adapters are run directories of ``benchmarks/ranker_levers.py`` (their selected checkpoint); test users are
never read. Each adapter's scores are saved beside it (``perm_scores_k<K>.json``), so a rerun only reports::

    .venv/bin/python benchmarks/ranker_permutations.py --orders 4 --zero-shot \\
        runs/bench-levers/retriever-top-20--shuffled runs/bench-levers-3000/retriever-top-20--shuffled

Writes ``benchmarks/results/ranker_permutations.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402
from ranker_levers import fusion_row  # noqa: E402

from ulmrec.evaluation.stats import log_softmax_rows  # noqa: E402

#: The row of the untuned LM (``--zero-shot``), scored like the adapters.
ZERO_SHOT = "zero-shot: the untuned LM (ULMRec prompt)"


def average_orders(shown: list[np.ndarray], perms: list[np.ndarray]) -> np.ndarray:
    """The mean log-softmax score of each candidate (original order) over the shown orders: ``shown[k][i, j]``
    is the score of the candidate shown at letter j of user i in order k, ``perms[k][i, j]`` its original column."""
    from ulmrec.evaluation.stats import unshuffle_scores

    return np.mean([unshuffle_scores(log_softmax_rows(s), p) for s, p in zip(shown, perms, strict=True)], axis=0)


def score_orders(run_dir: Path, orders: int, seed: int, tuned: bool = True) -> dict:
    """Score ``run_dir``'s adapter (``tuned=False``: the untuned LM, same prompts) on every validation Rank user
    in ``orders`` shown orders (order 0 = the retriever's); returns the shown scores, permutations, targets
    (original column) and retriever scores."""
    import pandas as pd

    from ulmrec.config import load_config
    from ulmrec.data.dataset import Dataset
    from ulmrec.evaluation.stats import permute_rows, position_check_permutations
    from ulmrec.ranker.engine import Ranker, base_title_cutter, load_identities
    from ulmrec.tasks import build_eval_samples

    cfg = load_config([str(run_dir / "ranker" / "config.yaml")])
    n = cfg.tasks.num_candidates
    ds = Dataset.load(run_dir)
    cands = pd.read_parquet(run_dir / "retrieval" / "candidates_valid.parquet").sort_values("user_idx", kind="stable")
    ids = load_identities(cfg, ds, run_dir)
    cut = base_title_cutter(cfg.ranker)
    base = build_eval_samples(ds, "valid", cands, cfg.tasks, identities=ids, title_fn=cut, max_users=0, seed=cfg.seed)
    users = [s.user_idx for s in base]
    by_user = cands.set_index("user_idx").loc[users].reset_index()
    lists = [[int(c) for c in np.asarray(row)[:n]] for row in by_user["candidates"]]
    if any(len(x) != n for x in lists):
        raise SystemExit(f"{run_dir}: a validation user has fewer than {n} candidates")
    ranker = Ranker.load(cfg.ranker, run_dir / "ranker" / "adapter") if tuned else Ranker.build(cfg.ranker, ())
    shown, perms = [], []
    for k in range(orders):
        perm = (np.tile(np.arange(n), (len(users), 1)) if k == 0
                else position_check_permutations(len(users), n, seed + k))
        shown_lists = permute_rows(lists, perm)
        frame = by_user[["user_idx", "target"]].assign(candidates=shown_lists)
        samples = build_eval_samples(ds, "valid", frame, cfg.tasks, identities=ids, title_fn=cut, max_users=0,
                                     seed=cfg.seed)
        if [s.user_idx for s in samples] != users or any(list(s.candidates) != x for s, x in zip(samples, shown_lists)):
            raise SystemExit(f"{run_dir}: order {k} did not keep every user and list")  # a bug, not input
        scores, _ = ranker.score(samples, desc=f"{run_dir.name} order {k}")
        shown.append(np.asarray(scores, dtype=np.float64))
        perms.append(perm)
    targets = [int(s.target) for s in base]
    return {"users": users, "targets": targets,
            "retriever_scores": [[float(x) for x in row[:n]] for row in by_user["scores"]],
            "perms": [p.tolist() for p in perms],
            "shown": [[[float(x) if np.isfinite(x) else None for x in row] for row in s] for s in shown],
            "best_step": json.loads((run_dir / "ranker" / "best.json").read_text())["best_step"] if tuned else "-"}


def analyse(saved: dict) -> dict:
    """The rows of one adapter (see the module docstring) from its saved scores."""
    from ulmrec.evaluation.stats import paired_bootstrap
    from ulmrec.metrics import metrics_from_ranks, target_rank

    shown = [np.array([[-np.inf if x is None else x for x in row] for row in s], dtype=np.float64) for s in saved["shown"]]
    perms = [np.asarray(p, dtype=np.int64) for p in saved["perms"]]
    t = np.asarray(saved["targets"])
    retr_ranks = t  # the retriever's own order: the target's column in its list
    out = {"users": len(t), "orders": len(shown), "best_step": saved["best_step"],
           "retriever": metrics_from_ranks(retr_ranks, (5, 10)),
           # a score that knows nothing: every rank of the C candidates equally likely
           "random_order_NDCG@10": metrics_from_ranks(np.arange(shown[0].shape[1]), (10,))["NDCG@10"]}
    ranks = {}
    for name, s in zip(scorings(out), (log_softmax_rows(shown[0]), average_orders(shown, perms)), strict=True):
        r = ranks[name] = target_rank(s, t, np.isfinite(s)).numpy()
        f = fusion_row({"scores": s, "retriever_scores": saved["retriever_scores"], "targets": t}, retr_ranks)
        out[name] = {"valid": metrics_from_ranks(r, (5, 10)), "ranks": r.tolist(),
                     "vs_retriever": paired_bootstrap(r, retr_ranks, metrics=("NDCG@10",), seed=0)["NDCG@10"],
                     "top1_A": float(np.mean(np.argmax(s, axis=1) == 0)),
                     "fused": {"weight": f["weight"], "grid_NDCG@10": f["grid_NDCG@10"], "held_users": f["report_users"],
                               "NDCG@10": f["vs_retriever"]["a"], "vs_retriever": f["vs_retriever"]}}
    one, mean = scorings(out)
    out["mean_vs_one"] = paired_bootstrap(ranks[mean], ranks[one], metrics=("NDCG@10",), seed=0)["NDCG@10"]
    return out


def scorings(a: dict) -> tuple[str, str]:
    return "one order", f"mean of {a['orders']} orders"


def paired_rows(adapters: dict) -> dict:
    """``{"<row> - <other row>": {"NDCG@10": interval}}``: every row against the retriever's order (fused rows
    too), against the zero-shot row scored the same way, against the first adapter scored the same way, and the
    mean of the orders against one order."""
    from ulmrec.evaluation.stats import paired_bootstrap

    out, zero = {}, adapters.get(ZERO_SHOT)
    ref = next((k for k in adapters if k != ZERO_SHOT), None)
    for key, a in adapters.items():
        if key not in (ref, ZERO_SHOT):
            for row in scorings(a):
                x = a[row]
                x["vs_first"] = paired_bootstrap(x["ranks"], adapters[ref][row]["ranks"], metrics=("NDCG@10",),
                                                 seed=0)["NDCG@10"]
                out[f"{key}, {row} - {ref}, {row}"] = {"NDCG@10": x["vs_first"]}
        for row in scorings(a):
            x = a[row]
            out[f"{key}, {row} - Retriever order"] = {"NDCG@10": x["vs_retriever"]}
            out[f"{key}, {row} + retriever (fused) - Retriever order"] = {"NDCG@10": x["fused"]["vs_retriever"]}
            if zero is not None and key != ZERO_SHOT:
                x["vs_zero_shot"] = paired_bootstrap(x["ranks"], zero[row]["ranks"], metrics=("NDCG@10",), seed=0)["NDCG@10"]
                out[f"{key}, {row} - {ZERO_SHOT}, {row}"] = {"NDCG@10": x["vs_zero_shot"]}
        out[f"{key}, {scorings(a)[1]} - {key}, one order"] = {"NDCG@10": a["mean_vs_one"]}
    return out


def markdown(r: dict) -> str:
    def ci(x: dict) -> str:
        return f"{x['mean']:+.4f} [{x['lo']:+.4f}, {x['hi']:+.4f}]"

    first = next(iter(r["adapters"].values()))
    lines = ["# The LM ranker with its list order averaged out (SmolLM2-135M, the Beauty sample, validation users)", "",
             f"Every row: the same {first['users']} validation Rank users (retriever order NDCG@10 "
             f"{first['retriever']['NDCG@10']:.4f}, a random order {first['random_order_NDCG@10']:.4f} in "
             "expectation); each adapter scored with the candidates shown in "
             f"{r['orders']} orders (the retriever's, then {r['orders'] - 1} seeded random permutations), letter "
             "scores log-softmaxed over the candidates and averaged per candidate. Fused = that + w x the "
             "retriever's score, w chosen on a fixed random half of the users, the paired difference to the "
             "retriever's order on the other half. Paired bootstrap 95 % intervals.", "",
             "| adapter (ranker_levers.py run) | best step | scoring | valid NDCG@10 | vs retriever order [95 % CI] | "
             "vs zero-shot, same scoring [95 % CI] | top-1 = A | fused vs retriever order [95 % CI] (w) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, a in r["adapters"].items():
        for row in scorings(a):
            x = a[row]
            z = ci(x["vs_zero_shot"]) if "vs_zero_shot" in x else ""
            lines.append(f"| {name} | {a['best_step']} | {row} | {x['valid']['NDCG@10']:.4f} | {ci(x['vs_retriever'])} | "
                         f"{z} | {x['top1_A']:.2f} | {ci(x['fused']['vs_retriever'])} (w {x['fused']['weight']:g}) |")
    firsts = [(name, row, a[row]["vs_first"]) for name, a in r["adapters"].items() for row in scorings(a)
              if "vs_first" in a[row]]
    if firsts:
        ref = next(k for k in r["adapters"] if k != ZERO_SHOT)  # as paired_rows chose it
        lines += ["", f"Minus the first adapter ({ref}), same scoring, same users: " + "; ".join(
            f"{name}, {row} {ci(d)}" for name, row, d in firsts) + "."]
    lines += ["", "Mean of the orders minus one order, same users: " + "; ".join(
        f"{name} {ci(a['mean_vs_one'])}" for name, a in r["adapters"].items()) + ".", "",
        f"Preferences in the prompts: {r['preferences']}.",
        "Scores do not depend on load (nothing here is timed): each adapter was scored by its own job, one thread "
        "pinned to one core, saved beside the adapter; this invocation's load before/after (it scored "
        f"{r['scored_now']} of {len(r['adapters'])} adapters): {r['loadavg_before'][0]:.2f} / "
        f"{r['loadavg_after'][0]:.2f}."]
    return "\n".join(lines)


def label(run_dir: Path) -> str:
    """``<lever run dir> (<steps> steps)`` from the run's resolved config."""
    import yaml

    steps = yaml.safe_load((run_dir / "ranker" / "config.yaml").read_text())["ranker"]["max_steps"]
    return f"{run_dir.name} ({steps} steps)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dirs", nargs="+", type=Path, help="ranker_levers.py run directories (trained adapters)")
    ap.add_argument("--orders", type=int, default=4, help="shown orders per user, the retriever's included")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, nargs="*", default=[0, 1], help="one scoring job per listed core at a time")
    ap.add_argument("--zero-shot", action="store_true",
                    help="also the untuned LM, on the first run directory's users and prompts")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: score one run dir
    ap.add_argument("--out", default="ranker_permutations")
    args = ap.parse_args()
    if args.orders < 2:
        raise SystemExit(f"--orders must be at least 2, got {args.orders}")
    name = f"perm_scores_k{args.orders}_s{args.seed}.json"
    if args.one:
        import torch

        from ulmrec.io import write_json

        torch.set_num_threads(1)
        (d,) = args.run_dirs
        write_json(d.parent / f"zero_shot_{name}" if args.zero_shot else d / name,
                   score_orders(d, args.orders, args.seed, tuned=not args.zero_shot))
        return 0
    for d in args.run_dirs:
        if not (d / "ranker" / "adapter").is_dir():
            raise SystemExit(f"{d}: no trained adapter (ranker/adapter); train it with benchmarks/ranker_levers.py")
    load_before = os.getloadavg()
    # (label, scores file, the run directory it reads, zero-shot?)
    jobs = [(label(d), d / name, d, False) for d in args.run_dirs]
    if args.zero_shot:
        first = args.run_dirs[0]
        jobs.insert(0, (ZERO_SHOT, first.parent / f"zero_shot_{name}", first, True))
    queue, running, free = [j for j in jobs if not j[1].exists()], {}, list(args.cores)
    scored_now = len(queue)
    while queue or running:
        while queue and free:
            (_, out, d, zero), core = queue.pop(0), free.pop(0)
            log = open(f"{out}.log", "w")  # noqa: SIM115
            cmd = ["taskset", "-c", str(core), sys.executable, str(Path(__file__).resolve()), str(d), "--one",
                   "--orders", str(args.orders), "--seed", str(args.seed), *(["--zero-shot"] if zero else [])]
            running[out] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                             env={**os.environ, "OMP_NUM_THREADS": "1"}), core)
        time.sleep(5)
        for out in list(running):
            proc, core = running[out]
            if proc.poll() is not None:
                if proc.returncode != 0:
                    print(f"scoring {out} failed: see {out}.log", file=sys.stderr)
                    return 1
                free.append(core)
                del running[out]
    result = {**header(), "orders": args.orders, "seed": args.seed, "loadavg_before": load_before, "scored_now": scored_now,
              "preferences": ("shipped GPT-3.5 sentences of the sample (written from all reviews: they see the "
                              "validation and test period; benchmarks/results/leakage_beauty.md)"),
              "adapters": {key: analyse(json.loads(out.read_text())) for key, out, _, _ in jobs}}
    result["loadavg_after"] = os.getloadavg()
    result["paired"] = paired_rows(result["adapters"])
    users = {a["users"] for a in result["adapters"].values()}
    if len(users) != 1:
        raise SystemExit(f"the adapters were scored on different validation users ({sorted(users)})")
    save(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
