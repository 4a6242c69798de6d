"""Benchmark: ranker engine speed on this CPU, today's path against each lever alone and combined, one run.

The same real Beauty next-item prompts for every row (ULMRec's prompt: the authors' user index, history,
20 sampled candidates; SmolLM2-135M-Instruct; the sample preset's 12-token titles and 10 history items unless
``--paper-prompts``). Training rows run ``--train-samples`` LoRA samples (batch 4: each optimiser step sees
the same four samples in every row) and report samples/s; scoring rows score all ``--users`` prompts and
report users/s. Achieved GFLOP/s use the model's forward FLOPs (2 x non-embedding parameters per token plus
causal attention); a training sample counts forward + backward = 2 x forward (the base is frozen: its
backward computes input gradients only), which overstates the work of rows whose backward stops early
(LoRA on the top layers), so those rows' GFLOP/s are an upper bound. The floor is the scoring FLOPs at the
bf16 GEMM peak at SmolLM2's shapes, measured at the start of the same run for the thread count used::

    taskset -c 0 .venv/bin/python benchmarks/ranker_speed.py --threads 1

Writes ``benchmarks/results/ranker_speed.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, SHARED, header, save  # noqa: E402

#: Measured GEMM peaks at SmolLM2 shapes on this machine (issue: ranker engine), GFLOP/s by threads.
PEAK = {"float32": {1: 98.0, 2: 166.0}, "bfloat16": {1: 217.0, 2: 434.0}}

TRAIN_ROWS = [  # name, RankerConfig overrides
    ("today: fp32, micro-batch 1, LoRA on all layers", dict(dtype="float32", micro_batch_size=1, lora_layers=0)),
    ("bf16 base weights", dict(dtype="bfloat16", micro_batch_size=1, lora_layers=0)),
    ("micro-batch 4 (length-sorted, gathered LM head)", dict(dtype="float32", micro_batch_size=4, lora_layers=0)),
    ("LoRA on the top 8 layers", dict(dtype="float32", micro_batch_size=1, lora_layers=8)),
    ("bf16 + micro-batch 4", dict(dtype="bfloat16", micro_batch_size=4, lora_layers=0)),
    ("bf16 + top 8 layers", dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8)),
    ("bf16 + micro-batch 4 + top 8 layers", dict(dtype="bfloat16", micro_batch_size=4, lora_layers=8)),
]
#: The rows ``ulmrec run -c sample`` uses (sample.yaml: bf16 auto, micro-batch 1, lora_layers 8; scoring
#: batch 4, no shared prefix).
BASELINE_ROWS = [TRAIN_ROWS[0], ("bf16 + top 8 layers", dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8))]
FAST_TRAIN, FAST_SCORE = "bf16 + top 8 layers", "bf16, batch 4"
SCORE_ROWS = [
    ("today: fp32, batch 1", dict(dtype="float32", score_batch_size=1, share_prefix=False)),
    ("fp32, batch 4", dict(dtype="float32", score_batch_size=4, share_prefix=False)),
    ("fp32, batch 1, shared prefix", dict(dtype="float32", score_batch_size=1, share_prefix=True)),
    ("bf16, batch 1", dict(dtype="bfloat16", score_batch_size=1, share_prefix=False)),
    ("bf16, batch 4", dict(dtype="bfloat16", score_batch_size=4, share_prefix=False)),
    ("bf16, batch 8", dict(dtype="bfloat16", score_batch_size=8, share_prefix=False)),
    ("bf16, batch 1, shared prefix", dict(dtype="bfloat16", score_batch_size=1, share_prefix=True)),
]


def prompts(n: int, paper: bool):
    """``n`` real Beauty next-item samples (ULMRec prompt, the authors' index), fixed users, sampled candidates."""
    from ulmrec.config import load_config
    from ulmrec.data.dataset import Dataset
    from ulmrec.pipeline import get_stage, run_stage
    from ulmrec.ranker.engine import base_title_cutter, index_tokens_of, load_identities
    from ulmrec.tasks import build_training_samples, load_preferences

    run_dir = REPO / "runs" / "bench-speed" / "beauty"
    over = [f"run_dir={run_dir}", f"data.path={SHARED / 'beauty-ulmrec'}", "tasks.identity=reference",
            "tasks.enabled=[next_item]"]
    if not paper:
        over += ["tasks.max_history=10", "ranker.max_title_tokens=12"]
    cfg = load_config(["beauty"], over)
    run_stage(get_stage("data"), cfg)
    ds = Dataset.load(run_dir)
    ids = load_identities(cfg, ds, run_dir)
    cut = base_title_cutter(cfg.ranker)
    import numpy as np

    from ulmrec.ranker.engine import baseline_tasks

    out = []
    for tasks, identities in ((cfg.tasks, ids), (baseline_tasks(cfg), {})):
        samples, _ = build_training_samples(ds, tasks, identities=identities, preferences=load_preferences(ds, run_dir),
                                            seed=cfg.seed, title_fn=cut)
        # the last training prefix of n users drawn with a fixed seed: real lengths, one prompt per user
        last = {}
        for s in samples:
            last[s.user_idx] = s
        users = sorted(last)
        pick = np.random.default_rng(0).choice(len(users), n, replace=False)
        out.append([last[users[i]] for i in sorted(pick)])
    return cfg, out[0], out[1], index_tokens_of(ids)


def gemm_peak(threads: int, dtype: str, seconds: float = 3.0) -> float:
    """GFLOP/s of (448 x 576) @ (576 x 1536) in ``dtype`` on ``threads`` threads, measured now."""
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    a, b = torch.randn(448, 576).to(dt), torch.randn(576, 1536).to(dt)
    for _ in range(20):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            a @ b
        n += 20
    return 2 * 448 * 576 * 1536 * n / (time.perf_counter() - t0) / 1e9


def forward_flops(model_cfg, tokens: list[int]) -> float:
    d, layers = model_cfg.hidden_size, model_cfg.num_hidden_layers
    heads, kv = model_cfg.num_attention_heads, model_cfg.num_key_value_heads
    hd = d // heads
    per_layer = d * d * 2 + 2 * d * kv * hd + 3 * d * model_cfg.intermediate_size
    total = 0.0
    for t in tokens:
        total += 2 * per_layer * layers * t + 2 * 2 * layers * d * t * t / 2  # linears + causal QK^T and AV
    return total


def train_row(cfg, overrides: dict, samples, tokens, steps_samples: int, threads: int, seed: int) -> dict:
    import torch

    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.train import encode_all, micro_batches, response_loss

    rc = dataclasses.replace(cfg.ranker, num_threads=threads, batch_size=4, **overrides)
    torch.manual_seed(seed)
    ranker = Ranker.build(rc, tokens, "cpu")
    model, tok = ranker.model, ranker.tokenizer
    t_tok = time.perf_counter()
    enc = encode_all(tok, samples[:steps_samples], rc.max_length)
    tok_s = time.perf_counter() - t_tok
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    pad = tok.pad_token_id
    # warm-up step (first-call allocations), not timed
    for mb in micro_batches(enc, range(min(4, len(enc))), rc.micro_batch_size):
        response_loss(model, [enc[i] for i in mb], pad, "cpu").backward()
    opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    losses = []
    for start in range(0, len(enc), 4):
        idx = range(start, min(start + 4, len(enc)))
        total = 0.0
        for mb in micro_batches(enc, idx, rc.micro_batch_size):
            loss = response_loss(model, [enc[i] for i in mb], pad, "cpu") / len(idx)
            loss.backward()
            total += float(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
    sec = time.perf_counter() - t0
    lengths = [len(e.ids) for e in enc]
    flops = 2 * forward_flops(model.config, lengths)
    del ranker, model, opt
    gc.collect()
    return {"samples": len(enc), "seconds": round(sec, 2), "samples_per_s": len(enc) / sec,
            "seconds_per_sample": sec / len(enc), "gflops": flops / sec / 1e9, "tokenize_seconds": round(tok_s, 3),
            "first_step_loss": losses[0], "mean_tokens": sum(lengths) / len(lengths)}


def score_row(cfg, overrides: dict, samples, tokens, threads: int, seed: int, baseline: bool = False) -> dict:
    import numpy as np
    import torch

    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.verbalizer import encode_prompts

    rc = dataclasses.replace(cfg.ranker, num_threads=threads, **overrides)
    torch.manual_seed(seed)
    ranker = Ranker.build(rc, tokens, "cpu")
    ranker.model.eval()
    ranker.score(samples[:2], progress=False)  # warm-up
    scores, sec = ranker.score(samples, progress=False)  # tokenizing included
    lengths = [len(p) for p in encode_prompts(ranker.tokenizer, samples)]
    flops = forward_flops(ranker.model.config, lengths)
    floor = flops / (PEAK["bfloat16"][threads] * 1e9) / len(samples)
    out = {"users": len(samples), "seconds": round(sec, 2), "users_per_s": len(samples) / sec,
           "seconds_per_user": sec / len(samples), "gflops": flops / sec / 1e9,
           "peak_gflops": PEAK[rc.dtype][threads], "bf16_floor_seconds_per_user": floor,
           "mean_tokens": float(np.mean(lengths)), "top1": scores.argmax(1).tolist()}
    del ranker
    gc.collect()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--train-samples", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paper-prompts", action="store_true", help="32-token titles and 20 history items")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true",
                    help="recompute the derived fields (speed-ups of the default rows) and the Markdown from the saved JSON")
    args = ap.parse_args()
    if args.render:
        from _common import RESULTS

        from ulmrec.io import read_json

        result = read_json(RESULTS / "ranker_speed.json")
        derive(result)
        save("ranker_speed", result, markdown(result))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    for dt in ("float32", "bfloat16"):  # this run's own GEMM peaks, the floor's denominator
        PEAK[dt][args.threads] = gemm_peak(args.threads, dt)
    print("GEMM peaks:", {k: round(v[args.threads]) for k, v in PEAK.items()}, flush=True)
    cfg, samples, baseline_samples, tokens = prompts(args.users, args.paper_prompts)
    result = {**header(), "threads": args.threads, "loadavg_before": load_before, "users": len(samples),
              "gemm_peak_gflops": {k: v[args.threads] for k, v in PEAK.items()},
              "prompts": "paper (32-token titles, 20 history)" if args.paper_prompts else
              "sample preset (12-token titles, 10 history)", "train": {}, "train_llamarec_style": {}, "score": {}}
    for name, over in TRAIN_ROWS:
        print("train:", name, flush=True)
        result["train"][name] = train_row(cfg, over, samples, tokens, args.train_samples, args.threads, args.seed)
        print(result["train"][name], flush=True)
    for name, over in BASELINE_ROWS:  # LlamaRec-style prompts: no user index, no index-token rows to train
        print("train (LlamaRec-style):", name, flush=True)
        result["train_llamarec_style"][name] = train_row(cfg, over, baseline_samples, [], args.train_samples,
                                                         args.threads, args.seed)
        print(result["train_llamarec_style"][name], flush=True)
    for name, over in SCORE_ROWS:
        print("score:", name, flush=True)
        result["score"][name] = score_row(cfg, over, samples, tokens, args.threads, args.seed)
        print({k: v for k, v in result["score"][name].items() if k != "top1"}, flush=True)
    result["loadavg_after"] = os.getloadavg()
    derive(result)
    save("ranker_speed", result, markdown(result))
    return 0


def derive(result: dict) -> None:
    """Speed-ups against today's path and the default fast path's figures, from the measured rows."""
    today_t, today_s = TRAIN_ROWS[0][0], SCORE_ROWS[0][0]
    fast_t, fast_s = FAST_TRAIN, FAST_SCORE
    for rows, today, key in ((result["train"], today_t, "samples_per_s"), (result["score"], today_s, "users_per_s"),
                             (result["train_llamarec_style"], today_t, "samples_per_s")):
        for v in rows.values():
            v["speedup"] = v[key] / rows[today][key]
    result["speedup_train"] = result["train"][fast_t]["speedup"]
    result["speedup_score"] = result["score"][fast_s]["speedup"]
    result["default_fast_path"] = {"train": fast_t, "score": fast_s}
    a, b = result["score"][today_s]["top1"], result["score"][fast_s]["top1"]
    result["top1_agreement_fp32_vs_bf16"] = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def markdown(r: dict) -> str:
    t = r["threads"]
    lines = [f"# Ranker engine speed (SmolLM2-135M-Instruct, {r['users']} real Beauty next-item prompts, "
             f"{r['prompts']}, {t} thread{'s' if t > 1 else ''})", "",
             f"Default fast path over today's path, same run: **training x{r['speedup_train']:.2f}**, "
             f"**scoring x{r['speedup_score']:.2f}**. Load average before/after: "
             f"{r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} (the other core ran other jobs; "
             "this process was pinned to one core). GEMM peak at SmolLM2's shapes measured in this run: "
             f"fp32 {r['gemm_peak_gflops']['float32']:.0f}, bf16 {r['gemm_peak_gflops']['bfloat16']:.0f} GFLOP/s.", "",
             "## Training (LoRA r 8 on q/v, index-token rows trained, batch 4)", "",
             "| path | samples/s | s/sample | x today | GFLOP/s (upper bound) | mean tokens |", "|---|---|---|---|---|---|"]
    for name, v in r["train"].items():
        lines.append(f"| {name} | {v['samples_per_s']:.3f} | {v['seconds_per_sample']:.2f} | {v['speedup']:.2f} | "
                     f"{v['gflops']:.0f} | {v['mean_tokens']:.0f} |")
    lines += ["", "## Training, LlamaRec-style prompts (no user index: nothing below the LoRA layers is trained)", "",
              "| path | samples/s | s/sample | x today | GFLOP/s (upper bound) | mean tokens |", "|---|---|---|---|---|---|"]
    for name, v in r["train_llamarec_style"].items():
        lines.append(f"| {name} | {v['samples_per_s']:.3f} | {v['seconds_per_sample']:.2f} | {v['speedup']:.2f} | "
                     f"{v['gflops']:.0f} | {v['mean_tokens']:.0f} |")
    lines += ["", "## Scoring (all letters from one forward pass; tokenizing included)", "",
              "| path | users/s | s/user | x today | GFLOP/s | peak GFLOP/s | bf16 floor s/user | x floor |",
              "|---|---|---|---|---|---|---|---|"]
    for name, v in r["score"].items():
        lines.append(f"| {name} | {v['users_per_s']:.2f} | {v['seconds_per_user']:.3f} | {v['speedup']:.2f} | "
                     f"{v['gflops']:.0f} | {v['peak_gflops']:.0f} | {v['bf16_floor_seconds_per_user']:.3f} | "
                     f"{v['seconds_per_user'] / v['bf16_floor_seconds_per_user']:.2f} |")
    lines += ["", f"Top-1 letter agreement fp32 batch 1 vs bf16 batch 4 (untrained adapter): "
              f"{r['top1_agreement_fp32_vs_bf16']:.3f}."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
