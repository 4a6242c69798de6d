"""Benchmark: do the engine's speed levers change what is learned? Today's path vs the fast path, same seed.

The two adapters come from ``benchmarks/ranker_levers.py`` (same seed, same sample task mix, same step budget
and validation users, trained side by side on one core each):

- today's path ("today's engine path" lever): float32 weights, micro-batch 1, LoRA on all layers;
- the fast path (the "reference" lever, the sample preset's engine settings): bfloat16 base weights (float32
  LoRA and index-token rows), micro-batch 1, LoRA on the top 8 layers.

Both validated on the same users every ``ranker.eval_every`` steps (step 0 included) and logged each user's
rank. A second pair does the same for ``ranker.index_token_grad``: 'non_ranking' (the sample preset's) vs 'all'
(the paper's), both on the retriever-order + skip recipe (its two lever runs). This script reads the two training logs and reports both validation NDCG@10 curves and, at every
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
from ranker_levers import LEVERS, SKIP_RECIPE, slug  # noqa: E402

FAST, TODAY = list(LEVERS)[0], list(LEVERS)[1]
NON_RANKING = "retriever order + skip, index rows trained by non-ranking samples only"
GRAD_PATHS = {"all": ["ranker.index_token_grad=all"], "non_ranking": ["ranker.index_token_grad=non_ranking"]}
PATHS = {"today": ["ranker.dtype=float32", "ranker.lora_layers=0"],
         "fast": ["ranker.dtype=auto (bf16 here)", "ranker.lora_layers=8"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levers-dir", default=str(REPO / "runs" / "bench-levers"))
    args = ap.parse_args()
    base = Path(args.levers_dir)
    dirs = {"today": base / slug(TODAY), "fast": base / slug(FAST)}
    result = {**header(), **compare(dirs, "fast", "today"), "paths": PATHS}
    grad_dirs = {"non_ranking": base / slug(NON_RANKING), "all": base / slug(SKIP_RECIPE)}
    if all((d / "ranker" / "train_log.jsonl").exists() for d in grad_dirs.values()):
        result["index_token_grad"] = {**compare(grad_dirs, "non_ranking", "all"), "paths": GRAD_PATHS}
    _plot(result, RESULTS / "ranker_equivalence.png")
    save("ranker_equivalence", result, markdown(result))
    print(json.dumps(result["paired"], indent=1))
    return 0


def compare(dirs: dict[str, Path], new: str, ref: str) -> dict:
    """Both runs' validation curves and, at every validation, the paired difference new - ref."""
    from ulmrec.evaluation.stats import paired_bootstrap

    out = {"runs": {k: str(v) for k, v in dirs.items()}, "curves": {}, "paired": [], "train_seconds": {},
           "seconds_per_step": {}}
    evals = {}
    for name, run_dir in dirs.items():
        entries = [json.loads(line) for line in (run_dir / "ranker" / "train_log.jsonl").read_text().splitlines()]
        evals[name] = [e for e in entries if e.get("event") == "eval"]
        out["curves"][name] = [(e["step"], e["valid"]["NDCG@10"]) for e in evals[name]]
        best = json.loads((run_dir / "ranker" / "best.json").read_text())
        out["train_seconds"][name] = best["train_seconds"]
        out["seconds_per_step"][name] = best["seconds_per_step"]
        out["steps"] = best["total_steps"]
    for a, b in zip(evals[new], evals[ref], strict=True):
        d = paired_bootstrap(a["valid"]["ranks"], b["valid"]["ranks"], metrics=("NDCG@10",), seed=0)["NDCG@10"]
        out["paired"].append({"step": a["step"], new: a["valid"]["NDCG@10"], ref: b["valid"]["NDCG@10"],
                              "users": a["valid"]["users"], "diff": d["mean"], "lo": d["lo"], "hi": d["hi"]})
    out["all_intervals_contain_0"] = all(p["lo"] <= 0 <= p["hi"] for p in out["paired"])
    return out


def _plot(result: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(result, "Same seed: today's path vs the fast path")]
    if "index_token_grad" in result:
        panels.append((result["index_token_grad"], "Retriever order + skip: index_token_grad"))
    fig = Figure(figsize=(6 * len(panels), 3.4))
    FigureCanvasAgg(fig)
    for k, (r, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        for name, curve in r["curves"].items():
            ax.plot(*zip(*curve, strict=True), marker="o",
                    label=f"{name}: {' '.join(r['paths'][name])}".replace("ranker.", ""))
        ax.set(xlabel="step", ylabel="validation NDCG@10", title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)


def _curve_table(r: dict, new: str, ref: str, side: str) -> list[str]:
    """The paired table of one comparison (``new`` - ``ref`` at every validation) and its verdict line."""
    lines = [f"| step | {ref} NDCG@10 | {new} NDCG@10 | {new} - {ref} [95 % CI] |", "|---|---|---|---|"]
    for p in r["paired"]:
        lines.append(f"| {p['step']} | {p[ref]:.4f} | {p[new]:.4f} | {p['diff']:+.4f} [{p['lo']:+.4f}, {p['hi']:+.4f}] |")
    return [*lines, "", "Every interval contains 0: " + ("yes" if r["all_intervals_contain_0"] else "**no**") +
            f". {r['paired'][0]['users']} validation users. Curves: ranker_equivalence.png ({side})."]


def markdown(r: dict) -> str:
    lines = [f"# Speed levers vs what is learned: {r['steps']} steps, same seed, same validation users", "",
             f"Training time (one core each, side by side with the other lever runs): today "
             f"{r['train_seconds']['today']} s ({r['seconds_per_step']['today']} s/step), fast "
             f"{r['train_seconds']['fast']} s ({r['seconds_per_step']['fast']} s/step). Runs: "
             f"`{r['runs']['today']}`, `{r['runs']['fast']}` (benchmarks/ranker_levers.py).", "",
             *_curve_table(r, "fast", "today", "left")]
    g = r.get("index_token_grad")
    if g:
        lines += ["", "## ranker.index_token_grad: non_ranking vs all (retriever order + skip)", "",
                  f"Training time: all {g['train_seconds']['all']} s ({g['seconds_per_step']['all']} s/step), "
                  f"non_ranking {g['train_seconds']['non_ranking']} s ({g['seconds_per_step']['non_ranking']} s/step). "
                  f"Runs: `{g['runs']['all']}`, `{g['runs']['non_ranking']}`.", "",
                  *_curve_table(g, "non_ranking", "all", "right")]
    lines += ["", "Preferences in the ULMRec prompts: the shipped GPT-3.5 sentences of the sample (they see the "
              "validation and test period; benchmarks/results/leakage_beauty.md)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
