"""One-GPU check of the ranker engine: a full epoch of the Beauty six-task mix on SmolLM2-135M, every Rank test
user scored, then a short QLoRA (nf4, bitsandbytes) run, all inside one prepared run.

It reads a prepared run directory (``--source``: ``data/`` and the converged retriever's ``retrieval/``,
``index/`` when there, else the authors' reference index) instead of retraining them, copies those into a
fresh run directory, and runs the ranker and evaluate stages with the paper's prompt settings (32-token titles,
20 history items, one epoch, batch 16, lr 1e-4) and GPU-sized batches::

    python benchmarks/ranker_gpu.py --source runs/beauty --max-minutes 8      # on the H200
    python benchmarks/ranker_gpu.py --source RUN --model TINY --cpu-test        # the test: tiny model, on CPU

Writes ``benchmarks/results/<name>.{json,md}`` (default ``ranker_gpu``): wall clock of each phase, training
samples/s, scored users/s, the Rank/Overall table and, when CUDA and bitsandbytes are there, the QLoRA run's
loss and validation figures. ``--max-minutes`` is a safety cap on the epoch (``ranker.max_minutes``-style: the
step budget is cut to what fits, and the result says so); it is not a quality setting.
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

from ranker import prepare_run  # noqa: E402  (copies data/, retrieval/, index/, preferences/)

#: The paper's ranker settings plus GPU-sized batches (LlamaRec: batch 12-16, lr 1e-4, one epoch).
GPU_SETTINGS = [
    "ranker.max_title_tokens=32", "tasks.max_history=20", "ranker.epochs=1", "ranker.batch_size=16",
    "ranker.micro_batch_size=16", "ranker.lr=1e-4", "ranker.eval_every=1000", "ranker.eval_users=200",
    "ranker.patience=0", "ranker.score_batch_size=64", "ranker.baseline=false", "evaluate.max_users=0",
    "evaluate.zero_shot=false", "evaluate.position_check=false", "evaluate.chunk_users=1000",
]
CPU_TEST = ["ranker.epochs=1", "ranker.batch_size=2", "ranker.micro_batch_size=2", "ranker.eval_every=2",
            "ranker.eval_users=0", "ranker.baseline=false", "evaluate.max_users=0", "ranker.num_threads=1",
            "evaluate.zero_shot=false", "evaluate.position_check=false"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="prepared run directory: data/, retrieval/ (index/ optional)")
    ap.add_argument("--preset", default="beauty")
    ap.add_argument("--model", default=None, help="ranker.model (default: the preset's, SmolLM2-135M-Instruct)")
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--name", default="ranker_gpu")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="safety cap on the epoch's training time")
    ap.add_argument("--qlora-steps", type=int, default=30)
    ap.add_argument("--cpu-test", action="store_true", help="tiny settings for the CPU test of this script")
    ap.add_argument("--out", default=None, help="write <name>.{json,md} here instead of benchmarks/results/")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    from ulmrec.config import load_config
    from ulmrec.io import read_json
    from ulmrec.pipeline import get_stage, run_stage

    t_start = time.time()
    run_dir = Path(args.run_dir or REPO / "runs" / "bench-gpu" / args.preset)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    inputs = prepare_run(Path(args.source), run_dir)
    identity = "index" if (run_dir / "index" / "user_index.parquet").exists() else "reference"
    cuda = torch.cuda.is_available()
    base = [f"run_dir={run_dir}", f"tasks.identity={identity}", f"device={'cuda' if cuda else 'cpu'}",
            *(CPU_TEST if args.cpu_test else GPU_SETTINGS)]
    if args.model:
        base.append(f"ranker.model={args.model}")
    overrides = [*base, *args.overrides]
    presets = [] if args.cpu_test else [args.preset]
    cfg = load_config(presets, overrides)
    if args.max_minutes:  # estimate the step time on a few steps' worth, then cut the budget to the cap
        overrides.append(f"ranker.max_steps={_capped_steps(cfg, args.max_minutes)}")
        cfg = load_config(presets, overrides)
    t0 = time.time()
    ranker = run_stage(get_stage("ranker"), cfg)
    t1 = time.time()
    run_stage(get_stage("evaluate"), cfg)
    t2 = time.time()
    res = read_json(run_dir / "evaluate" / "results.json")
    summary = ranker["summary"]["ulmrec"]
    out = {**header(), "preset": args.preset, "source_run": str(args.source), "identity": identity,
           "overrides": overrides, "inputs": inputs, "cuda": cuda,
           "gpu": torch.cuda.get_device_name(0) if cuda else None,
           "ranker": summary, "train_seconds": round(t1 - t0, 1), "evaluate_seconds": round(t2 - t1, 1),
           "train_samples_per_s": summary["samples_seen"] / max(summary["train_seconds"], 1e-9),
           "epoch_complete": summary["samples_seen"] >= summary["train_samples"],
           "score_users_per_s": 1.0 / max(res["models"]["ULMRec"]["seconds_per_user"], 1e-9),
           "results": res, "qlora": None}
    if cuda and not args.cpu_test:
        out["qlora"] = _qlora(presets, base, run_dir, args.qlora_steps)
    elif not cuda:
        out["qlora"] = {"skipped": "no CUDA here: QLoRA (nf4, bitsandbytes) needs a GPU"}
    out["wall_seconds"] = round(time.time() - t_start, 1)
    if cuda:
        out["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if args.out:
        from ulmrec.io import write_json, write_text

        write_json(Path(args.out) / f"{args.name}.json", out)
        write_text(Path(args.out) / f"{args.name}.md", markdown(out) + "\n")
    else:
        save(args.name, out, markdown(out))
    print(json.dumps({"wall_seconds": out["wall_seconds"], "Rank NDCG@10": {k: v["Rank"]["NDCG@10"]
                                                                           for k, v in res["models"].items()}}))
    return 0


def _capped_steps(cfg, minutes: float) -> int:
    """Steps that fit ``minutes``: one epoch unless a probe of 20 steps says the epoch would not fit."""
    import math

    from ulmrec.data.dataset import Dataset
    from ulmrec.ranker.engine import base_title_cutter, index_tokens_of, load_identities
    from ulmrec.tasks import build_training_samples, load_preferences

    run_dir = Path(cfg.run_dir)
    ds = Dataset.load(run_dir)
    ids = load_identities(cfg, ds, run_dir)
    samples, _ = build_training_samples(ds, cfg.tasks, identities=ids, preferences=load_preferences(ds, run_dir),
                                        seed=cfg.seed, title_fn=base_title_cutter(cfg.ranker))
    epoch = math.ceil(len(samples) / cfg.ranker.batch_size)
    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.train import encode_all, micro_batches, response_loss

    ranker = Ranker.build(cfg.ranker, index_tokens_of(ids), cfg.device)
    enc = encode_all(ranker.tokenizer, samples[:20 * cfg.ranker.batch_size], cfg.ranker.max_length)
    import torch

    ranker.model.train()
    t0 = None
    for step in range(20):
        if step == 2:
            (torch.cuda.synchronize() if torch.cuda.is_available() else None)
            t0 = time.perf_counter()
        idx = range(step * cfg.ranker.batch_size, (step + 1) * cfg.ranker.batch_size)
        for mb in micro_batches(enc, idx, cfg.ranker.micro_batch_size):
            response_loss(ranker.model, [enc[i] for i in mb], ranker.tokenizer.pad_token_id, cfg.device).backward()
        ranker.model.zero_grad(set_to_none=True)
    (torch.cuda.synchronize() if torch.cuda.is_available() else None)
    per_step = (time.perf_counter() - t0) / 18
    del ranker
    fit = int(minutes * 60 / per_step)
    logging.info("probe: %.3f s/step, epoch %d steps, %d fit in %.1f min", per_step, epoch, fit, minutes)
    return min(epoch, max(1, fit))


def _qlora(presets, base, run_dir: Path, steps: int) -> dict:
    """A short QLoRA (4-bit NF4, double quantisation, bf16 compute) run of the same ranker, scored on 200 users."""
    import importlib.util

    from ulmrec.config import load_config
    from ulmrec.io import read_json
    from ulmrec.pipeline import get_stage, run_stage

    if importlib.util.find_spec("bitsandbytes") is None:
        return {"skipped": "bitsandbytes is not installed"}
    q_dir = run_dir.with_name(run_dir.name + "-qlora")
    shutil.rmtree(q_dir, ignore_errors=True)
    q_dir.mkdir(parents=True)
    for sub in ("data", "retrieval", "index", "preferences"):
        if (run_dir / sub).exists():
            shutil.copytree(run_dir / sub, q_dir / sub)
    shutil.rmtree(q_dir / "ranker", ignore_errors=True)
    shutil.rmtree(q_dir / "evaluate", ignore_errors=True)
    over = [o for o in base if not o.startswith("run_dir=")] + [
        f"run_dir={q_dir}", "ranker.quantization=nf4", f"ranker.max_steps={steps}", f"ranker.eval_every={steps}",
        "evaluate.max_users=200", "evaluate.fusion=false"]
    cfg = load_config(presets, over)
    t0 = time.time()
    rec = run_stage(get_stage("ranker"), cfg)
    t1 = time.time()
    run_stage(get_stage("evaluate"), cfg)
    res = read_json(q_dir / "evaluate" / "results.json")
    return {"steps": steps, "ranker": rec["summary"]["ulmrec"], "train_seconds": round(t1 - t0, 1),
            "evaluate_seconds": round(time.time() - t1, 1),
            "Rank_NDCG@10": {k: v["Rank"]["NDCG@10"] for k, v in res["models"].items()}}


def markdown(out: dict) -> str:
    from ulmrec.metrics import format_table

    res, r = out["results"], out["ranker"]
    lines = [f"# Ranker engine on one GPU ({out['gpu'] or 'CPU test'}): {out['preset']}", "",
             f"Training: {r['samples_seen']} samples seen of a {r['train_samples']}-sample mix "
             f"({'one full epoch' if out['epoch_complete'] else 'cut short by --max-minutes: NOT a full epoch'}), "
             f"{r['steps']} steps, {out['train_samples_per_s']:.1f} samples/s; best validation NDCG@10 "
             f"{r['best_valid_NDCG@10']:.4f} at step {r['best_step']}.",
             f"Scoring: {res['scored_rank_users']} Rank test users, {out['score_users_per_s']:.1f} users/s. "
             f"Wall clock: ranker {out['train_seconds']} s, evaluate {out['evaluate_seconds']} s, all "
             f"{out['wall_seconds']} s.", "", "## Rank", "",
             format_table({k: v["Rank"] for k, v in res["models"].items()}), "", "## Overall", "",
             format_table({k: v["Overall"] for k, v in res["models"].items()}), ""]
    q = out.get("qlora") or {}
    lines.append("QLoRA (nf4): " + (q["skipped"] if "skipped" in q else
                                   f"{q['steps']} steps in {q['train_seconds']} s, Rank NDCG@10 {q['Rank_NDCG@10']}"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
