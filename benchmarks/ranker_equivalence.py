"""Benchmark: do the engine's speed levers change what is learned? Today's path vs the fast path, same seed.

The two adapters come from ``benchmarks/ranker_levers.py`` (same seed, same sample task mix, same step budget
and validation users, trained side by side on one core each):

- today's path ("today's engine path" lever): float32 weights, micro-batch 1, LoRA on all layers;
- the fast path (the "reference" lever, the sample preset's engine settings): bfloat16 base weights (float32
  LoRA and index-token rows), micro-batch 1, LoRA on the top 8 layers.

Both validated on the same users every ``ranker.eval_every`` steps (step 0 included) and logged each user's
rank. This script reads the two training logs and reports both validation NDCG@10 curves and, at every
validation, the paired difference (fast - today) with a bootstrap 95 % interval::

    .venv/bin/python benchmarks/ranker_levers.py --source runs/sample-base --steps 300   # trains both
    .venv/bin/python benchmarks/ranker_equivalence.py

Writes ``benchmarks/results/ranker_equivalence.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, header, save  # noqa: E402
from ranker_levers import LEVERS, slug  # noqa: E402

FAST, TODAY = list(LEVERS)[0], list(LEVERS)[1]
PATHS = {"today": ["ranker.dtype=float32", "ranker.lora_layers=0"],
         "fast": ["ranker.dtype=auto (bf16 here)", "ranker.lora_layers=8"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levers-dir", default=str(REPO / "runs" / "bench-levers"))
    args = ap.parse_args()
    base = Path(args.levers_dir)
    dirs = {"today": base / slug(TODAY), "fast": base / slug(FAST)}
    result = {**header(), "runs": {k: str(v) for k, v in dirs.items()}, "paths": PATHS, "curves": {}, "paired": [],
              "train_seconds": {}, "seconds_per_step": {}}
    evals = {}
    for name, run_dir in dirs.items():
        entries = [json.loads(line) for line in (run_dir / "ranker" / "train_log.jsonl").read_text().splitlines()]
        evals[name] = [e for e in entries if e.get("event") == "eval"]
        result["curves"][name] = [(e["step"], e["valid"]["NDCG@10"]) for e in evals[name]]
        best = json.loads((run_dir / "ranker" / "best.json").read_text())
        result["train_seconds"][name] = best["train_seconds"]
        result["seconds_per_step"][name] = best["seconds_per_step"]
        result["steps"] = best["total_steps"]
    from ulmrec.evaluation.stats import paired_bootstrap

    for a, b in zip(evals["fast"], evals["today"], strict=True):
        d = paired_bootstrap(a["valid"]["ranks"], b["valid"]["ranks"], metrics=("NDCG@10",), seed=0)["NDCG@10"]
        result["paired"].append({"step": a["step"], "fast": a["valid"]["NDCG@10"], "today": b["valid"]["NDCG@10"],
                                 "users": a["valid"]["users"], "diff": d["mean"], "lo": d["lo"], "hi": d["hi"]})
    result["all_intervals_contain_0"] = all(p["lo"] <= 0 <= p["hi"] for p in result["paired"])
    _plot(result, RESULTS / "ranker_equivalence.png")
    save("ranker_equivalence", result, markdown(result))
    print(json.dumps(result["paired"], indent=1))
    return 0


def _plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in result["curves"].items():
        ax.plot(*zip(*curve, strict=True), marker="o", label=f"{name}: {' '.join(PATHS[name])}".replace("ranker.", ""))
    ax.set(xlabel="step", ylabel="validation NDCG@10", title="Same seed: today's path vs the fast path")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)


def markdown(r: dict) -> str:
    lines = [f"# Speed levers vs what is learned: {r['steps']} steps, same seed, same validation users", "",
             f"Training time (one core each, side by side with the other lever runs): today "
             f"{r['train_seconds']['today']} s ({r['seconds_per_step']['today']} s/step), fast "
             f"{r['train_seconds']['fast']} s ({r['seconds_per_step']['fast']} s/step). Runs: "
             f"`{r['runs']['today']}`, `{r['runs']['fast']}` (benchmarks/ranker_levers.py).", "",
             "| step | today NDCG@10 | fast NDCG@10 | fast - today [95 % CI] |", "|---|---|---|---|"]
    for p in r["paired"]:
        lines.append(f"| {p['step']} | {p['today']:.4f} | {p['fast']:.4f} | {p['diff']:+.4f} "
                     f"[{p['lo']:+.4f}, {p['hi']:+.4f}] |")
    lines += ["", "Every interval contains 0: " + ("yes" if r["all_intervals_contain_0"] else "**no**") +
              f". {r['paired'][0]['users']} validation users. Curves: ranker_equivalence.png."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
