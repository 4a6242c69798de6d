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
    ("bf16 + top 8 layers, index rows trained by non-ranking samples only (index_token_grad=non_ranking)",
     dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8, index_token_grad="non_ranking")),
    ("bf16 + top 8 layers + torch.compile", dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8, compile=True)),
    ("bf16 + top 8 layers, driven by transformers.Trainer",
     dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8, trainer=True)),
]
#: Benchmark-only switches of a row (not RankerConfig fields).
ROW_FLAGS = ("compile", "trainer", "merge")
#: The rows ``ulmrec run -c sample`` uses (sample.yaml: bf16 auto, micro-batch 1, lora_layers 8; scoring
#: batch 4, no shared prefix).
BASELINE_ROWS = [TRAIN_ROWS[0], ("bf16 + top 8 layers", dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8))]
#: The sample preset's training path (sample.yaml: bf16, lora_layers 8, index_token_grad non_ranking) and
#: scoring path (batch 4; merge_adapter is off by default: bf16 rounding).
FAST_TRAIN = "bf16 + top 8 layers, index rows trained by non-ranking samples only (index_token_grad=non_ranking)"
FAST_SCORE = "bf16, batch 4"
#: The same path with the paper's index-token gradient (every sample trains the rows; the global default), also
#: the row the profile breaks down (its backward runs through all 30 layers).
PAPER_INDEX_TRAIN = "bf16 + top 8 layers"
SCORE_ROWS = [
    ("today: fp32, batch 1", dict(dtype="float32", score_batch_size=1, share_prefix=False)),
    ("fp32, batch 4", dict(dtype="float32", score_batch_size=4, share_prefix=False)),
    ("fp32, batch 1, shared prefix", dict(dtype="float32", score_batch_size=1, share_prefix=True)),
    ("bf16, batch 1", dict(dtype="bfloat16", score_batch_size=1, share_prefix=False)),
    ("bf16, batch 4", dict(dtype="bfloat16", score_batch_size=4, share_prefix=False)),
    ("bf16, batch 8", dict(dtype="bfloat16", score_batch_size=8, share_prefix=False)),
    ("bf16, batch 1, shared prefix", dict(dtype="bfloat16", score_batch_size=1, share_prefix=True)),
    ("bf16, batch 4, merged adapter", dict(dtype="bfloat16", score_batch_size=4, share_prefix=False, merge=True)),
    ("bf16, batch 4, merged adapter + torch.compile",
     dict(dtype="bfloat16", score_batch_size=4, share_prefix=False, merge=True, compile=True)),
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


def split_flags(overrides: dict) -> tuple[dict, dict]:
    return ({k: v for k, v in overrides.items() if k not in ROW_FLAGS},
            {k: v for k, v in overrides.items() if k in ROW_FLAGS})


def train_row(cfg, overrides: dict, samples, tokens, steps_samples: int, threads: int, seed: int) -> dict:
    import torch

    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.predict import lm_parts
    from ulmrec.ranker.train import encode_all, micro_batches, response_loss

    overrides, flags = split_flags(overrides)
    rc = dataclasses.replace(cfg.ranker, num_threads=threads, batch_size=4, **overrides)
    torch.manual_seed(seed)
    ranker = Ranker.build(rc, tokens, "cpu")
    model, tok = ranker.model, ranker.tokenizer
    t_tok = time.perf_counter()
    enc = encode_all(tok, samples[:steps_samples], rc.max_length)
    tok_s = time.perf_counter() - t_tok
    if flags.get("trainer"):
        out = trainer_row(model, tok, enc, rc, seed)
        out["tokenize_seconds"] = round(tok_s, 3)
        del ranker, model
        gc.collect()
        return out
    if flags.get("compile"):
        lm_parts(model)[0].compile(dynamic=True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    pad = tok.pad_token_id
    detach = rc.index_token_grad == "non_ranking"
    # warm-up step (first-call allocations; the compilation of a torch.compile row), not timed
    t_warm = time.perf_counter()
    for mb in micro_batches(enc, range(min(4, len(enc))), rc.micro_batch_size):
        response_loss(model, [enc[i] for i in mb], pad, "cpu", detach_ranking=detach).backward()
    warm_s = time.perf_counter() - t_warm
    opt.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    losses = []
    for start in range(0, len(enc), 4):
        idx = range(start, min(start + 4, len(enc)))
        total = 0.0
        for mb in micro_batches(enc, idx, rc.micro_batch_size):
            loss = response_loss(model, [enc[i] for i in mb], pad, "cpu", detach_ranking=detach) / len(idx)
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
            "warmup_seconds": round(warm_s, 1), "first_step_loss": losses[0],
            "mean_tokens": sum(lengths) / len(lengths)}


def trainer_row(model, tok, enc, rc, seed: int) -> dict:
    """The same model, samples (in the same order, batch 4 by gradient accumulation) and loss driven by
    ``transformers.Trainer`` (AdamW, constant lr, nothing logged or saved); the first step is the warm-up."""
    import tempfile

    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from ulmrec.ranker.train import response_loss

    pad = tok.pad_token_id
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    class LossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            return response_loss(model, inputs, pad, "cpu")

        def _get_train_sampler(self, train_dataset=None):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    data = enc[:4] + enc  # step 1 (the warm-up) repeats the first four samples, as the hand loop's does
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=rc.micro_batch_size,
                                 gradient_accumulation_steps=4 // rc.micro_batch_size, max_steps=len(data) // 4,
                                 learning_rate=1e-4, lr_scheduler_type="constant", warmup_steps=0,
                                 max_grad_norm=rc.grad_clip, logging_strategy="no", save_strategy="no",
                                 report_to=[], use_cpu=True, dataloader_num_workers=0, remove_unused_columns=False,
                                 disable_tqdm=True, seed=seed)
        t0 = time.perf_counter()
        LossTrainer(model=model, args=args, train_dataset=data, data_collator=lambda b: b,
                    callbacks=[Clock()]).train()
    sec = stamps[-1] - stamps[0]
    n = len(enc) // 4 * 4
    lengths = [len(e.ids) for e in enc[:n]]
    flops = 2 * forward_flops(model.config, lengths)
    return {"samples": n, "seconds": round(sec, 2), "samples_per_s": n / sec, "seconds_per_sample": sec / n,
            "gflops": flops / sec / 1e9, "warmup_seconds": round(stamps[0] - t0, 1),
            "mean_tokens": sum(lengths) / len(lengths)}


def profile_train(cfg, overrides: dict, samples, tokens, threads: int, seed: int, n: int = 4) -> dict:
    """Where a training sample's time goes on the given path: self CPU time by operator class."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.train import encode_all, response_loss

    overrides, _ = split_flags(overrides)
    rc = dataclasses.replace(cfg.ranker, num_threads=threads, **overrides)
    torch.manual_seed(seed)
    ranker = Ranker.build(rc, tokens, "cpu")
    model, tok = ranker.model, ranker.tokenizer
    enc = encode_all(tok, samples[:n + 2], rc.max_length)
    model.train()
    for e in enc[:2]:
        response_loss(model, [e], tok.pad_token_id, "cpu").backward()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for e in enc[2:]:
            response_loss(model, [e], tok.pad_token_id, "cpu").backward()
    groups = {"GEMM (aten::mm/addmm/bmm)": 0.0, "attention forward (SDPA flash, CPU)": 0.0,
              "attention backward (SDPA flash, CPU)": 0.0, "element-wise, copies, norms, rest": 0.0}
    total = 0.0
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total
        total += t
        if ev.key in ("aten::mm", "aten::addmm", "aten::bmm"):
            groups["GEMM (aten::mm/addmm/bmm)"] += t
        elif "flash_attention" in ev.key and "backward" in ev.key:
            groups["attention backward (SDPA flash, CPU)"] += t
        elif "flash_attention" in ev.key:
            groups["attention forward (SDPA flash, CPU)"] += t
        else:
            groups["element-wise, copies, norms, rest"] += t
    del ranker, model
    gc.collect()
    return {"samples": n, "seconds_per_sample": total / 1e6 / n,
            "share": {k: v / total for k, v in groups.items()}}


def score_row(cfg, overrides: dict, samples, tokens, threads: int, seed: int, baseline: bool = False) -> dict:
    import tempfile

    import numpy as np
    import torch

    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.model import save_adapter
    from ulmrec.ranker.predict import lm_parts
    from ulmrec.ranker.verbalizer import encode_prompts

    overrides, flags = split_flags(overrides)
    rc = dataclasses.replace(cfg.ranker, num_threads=threads, merge_adapter=bool(flags.get("merge")), **overrides)
    torch.manual_seed(seed)
    built = Ranker.build(rc, tokens, "cpu")
    with tempfile.TemporaryDirectory() as tmp:  # scored as the evaluate stage does: a saved adapter, loaded
        save_adapter(built.model, built.tokenizer, Path(tmp) / "adapter")
        del built
        ranker = Ranker.load(rc, Path(tmp) / "adapter", "cpu")
    if flags.get("compile"):
        lm_parts(ranker.model)[0].compile(dynamic=True)
    t_warm = time.perf_counter()
    ranker.score(samples[:rc.score_batch_size], progress=False)  # warm-up (and a torch.compile row's compilation)
    warm_s = time.perf_counter() - t_warm
    scores, sec = ranker.score(samples, progress=False)  # tokenizing included
    lengths = [len(p) for p in encode_prompts(ranker.tokenizer, samples)]
    flops = forward_flops(ranker.model.config, lengths)
    floor = flops / (PEAK["bfloat16"][threads] * 1e9) / len(samples)
    out = {"users": len(samples), "seconds": round(sec, 2), "users_per_s": len(samples) / sec,
           "seconds_per_user": sec / len(samples), "gflops": flops / sec / 1e9,
           "peak_gflops": PEAK[rc.dtype][threads], "bf16_floor_seconds_per_user": floor,
           "mean_tokens": float(np.mean(lengths)), "warmup_seconds": round(warm_s, 1),
           "top1": scores.argmax(1).tolist()}
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
    ap.add_argument("--skip", nargs="*", default=[], help="leave out rows whose name contains any of these")
    ap.add_argument("--out", default="ranker_speed", help="results name under benchmarks/results/")
    ap.add_argument("--render", action="store_true",
                    help="recompute the derived fields (speed-ups of the default rows) and the Markdown from the saved JSON")
    args = ap.parse_args()
    if args.render:
        import datetime

        from _common import RESULTS

        from ulmrec.io import read_json

        result = read_json(RESULTS / "ranker_speed.json")
        derive(result)
        result["rendered"] = (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC with --render: derived fields "
                              "and Markdown recomputed from the measured rows, no measurement repeated")
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
    keep = lambda name: name in (TRAIN_ROWS[0][0], FAST_TRAIN, PAPER_INDEX_TRAIN, SCORE_ROWS[0][0], FAST_SCORE) or not any(  # noqa: E731
        k in name for k in args.skip)
    for name, over in filter(lambda row: keep(row[0]), TRAIN_ROWS):
        print("train:", name, flush=True)
        result["train"][name] = train_row(cfg, over, samples, tokens, args.train_samples, args.threads, args.seed)
        print(result["train"][name], flush=True)
    print("profile:", PAPER_INDEX_TRAIN, flush=True)
    result["train_profile"] = profile_train(cfg, dict(TRAIN_ROWS)[PAPER_INDEX_TRAIN], samples, tokens, args.threads,
                                            args.seed)
    print(result["train_profile"], flush=True)
    for name, over in BASELINE_ROWS:  # LlamaRec-style prompts: no user index, no index-token rows to train
        print("train (LlamaRec-style):", name, flush=True)
        result["train_llamarec_style"][name] = train_row(cfg, over, baseline_samples, [], args.train_samples,
                                                         args.threads, args.seed)
        print(result["train_llamarec_style"][name], flush=True)
    for name, over in filter(lambda row: keep(row[0]), SCORE_ROWS):
        print("score:", name, flush=True)
        result["score"][name] = score_row(cfg, over, samples, tokens, args.threads, args.seed)
        print({k: v for k, v in result["score"][name].items() if k != "top1"}, flush=True)
    result["loadavg_after"] = os.getloadavg()
    derive(result)
    save(args.out, result, markdown(result))
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
    # the same path with the paper's index-token gradient (the global default): reported beside it
    result["speedup_train_paper_index_grad"] = result["train"][PAPER_INDEX_TRAIN]["speedup"]
    result.pop("speedup_train_index_token_grad_non_ranking", None)  # older files: now speedup_train itself
    result["paired"] = quality_intervals()
    a, b = result["score"][today_s]["top1"], result["score"][fast_s]["top1"]
    result["top1_agreement_fp32_vs_bf16"] = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


#: What each training path learns, from ranker_levers.json (same 690 validation users of the sample, paired
#: bootstrap): its row in that file for this file's paths, and the rows they are compared with.
QUALITY_ROWS = {
    "today's engine path (fp32 weights, LoRA on all layers)": "today's path (fp32, LoRA on all layers; sampled candidates)",
    "reference: sampled candidates, Eq. 7 loss, lr 1e-3": "bf16 + top 8 layers (sampled candidates)",
    "retriever order, only prefixes whose list holds the target": "bf16 + top 8 layers (retriever-order candidates)",
    "retriever order + skip, index rows trained by non-ranking samples only":
        "bf16 + top 8 layers, index_token_grad=non_ranking (retriever-order candidates)",
}


def quality_intervals() -> dict:
    """``{"A - B": {"NDCG@10": interval, "source": ...}}`` for this file's training paths, copied from the lever
    benchmark (this file times untrained adapters; quality is measured there). Empty without that file."""
    from _common import RESULTS

    from ulmrec.io import read_json

    path = RESULTS / "ranker_levers.json"
    if not path.exists():
        return {}
    levers = read_json(path)
    names = {**QUALITY_ROWS, "Zero-shot (untuned LM)": "Zero-shot (untuned LM)", "Retriever order": "Retriever order"}
    out = {}
    for key, value in levers["paired"].items():
        a, _, b = key.partition(" - ")
        if a in names and b in names and a != b:
            out[f"{names[a]} - {names[b]}"] = {**value, "source": f"ranker_levers.json: {key} "
                                               f"({value['NDCG@10']['n']} validation users of the sample)"}
    return out


def markdown(r: dict) -> str:
    t = r["threads"]
    lines = [f"# Ranker engine speed (SmolLM2-135M-Instruct, {r['users']} real Beauty next-item prompts, "
             f"{r['prompts']}, {t} thread{'s' if t > 1 else ''})", "",
             "Default fast path (what `ulmrec run -c sample` trains and scores with) over today's path, same run: "
             f"**training x{r['speedup_train']:.2f}**, **scoring x{r['speedup_score']:.2f}**. Its training path "
             "sets `ranker.index_token_grad=non_ranking`: next-item samples no longer train the index-token input "
             "rows, the alignment samples still do (validation-neutral on the sample: ranker_levers.md, "
             "ranker_equivalence.md). With the paper's index-token gradient (every sample trains the rows, the "
             f"global default) the same path trains x{r['speedup_train_paper_index_grad']:.2f}. Load average before/after: "
             f"{r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f} (the other core ran other jobs; "
             "this process was pinned to one core). GEMM peak at SmolLM2's shapes measured in this run: "
             f"fp32 {r['gemm_peak_gflops']['float32']:.0f}, bf16 {r['gemm_peak_gflops']['bfloat16']:.0f} GFLOP/s.", "",
             "## Training (LoRA r 8 on q/v, index-token rows trained, batch 4)", "",
             "| path | samples/s | s/sample | x today | GFLOP/s (upper bound) | mean tokens | warm-up s |",
             "|---|---|---|---|---|---|---|"]
    for name, v in r["train"].items():
        lines.append(f"| {name} | {v['samples_per_s']:.3f} | {v['seconds_per_sample']:.2f} | {v['speedup']:.2f} | "
                     f"{v['gflops']:.0f} | {v['mean_tokens']:.0f} | {v.get('warmup_seconds', '')} |")
    if "train_profile" in r:
        p = r["train_profile"]
        lines += ["", f"Where the training time of '{PAPER_INDEX_TRAIN}' goes (torch.profiler, self CPU time, "
                  f"{p['samples']} samples, {p['seconds_per_sample']:.2f} s/sample under the profiler):", "",
                  "| operators | share |", "|---|---|"]
        lines += [f"| {k} | {v:.0%} |" for k, v in p["share"].items()]
    lines += ["", "## Training, LlamaRec-style prompts (no user index: nothing below the LoRA layers is trained)", "",
              "| path | samples/s | s/sample | x today | GFLOP/s (upper bound) | mean tokens |", "|---|---|---|---|---|---|"]
    for name, v in r["train_llamarec_style"].items():
        lines.append(f"| {name} | {v['samples_per_s']:.3f} | {v['seconds_per_sample']:.2f} | {v['speedup']:.2f} | "
                     f"{v['gflops']:.0f} | {v['mean_tokens']:.0f} |")
    lines += ["", "## Scoring (all letters from one forward pass; tokenizing included)", "",
              "| path | users/s | s/user | x today | GFLOP/s | peak GFLOP/s | bf16 floor s/user | x floor | warm-up s |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, v in r["score"].items():
        lines.append(f"| {name} | {v['users_per_s']:.2f} | {v['seconds_per_user']:.3f} | {v['speedup']:.2f} | "
                     f"{v['gflops']:.0f} | {v['peak_gflops']:.0f} | {v['bf16_floor_seconds_per_user']:.3f} | "
                     f"{v['seconds_per_user'] / v['bf16_floor_seconds_per_user']:.2f} | {v.get('warmup_seconds', '')} |")
    fast = r.get("default_fast_path", {}).get("score", "bf16, batch 4")
    lines += ["", f"Top-1 letter agreement fp32 batch 1 vs {fast} (untrained adapter): "
              f"{r['top1_agreement_fp32_vs_bf16']:.3f}. Scoring rows load a saved adapter as the evaluate "
              "stage does; warm-up = the first batch, which holds a torch.compile row's compilation. The floor "
              "is the scoring FLOPs at this run's bf16 GEMM peak (AMX on this CPU); at the brief's 434 GFLOP/s "
              "(2 threads, AVX512-BF16) it would be "
              f"{r['score'][fast]['bf16_floor_seconds_per_user'] * r['gemm_peak_gflops']['bfloat16'] / 434:.3f} s per "
              "user. The merged-adapter rows are opt-in (`ranker.merge_adapter`): merged into bf16 weights, a small "
              "LoRA delta loses what falls below the weights' rounding step (on the sample's 60 test users ULMRec "
              "Rank NDCG@10 0.4233 unmerged vs 0.4181 merged; docs/ranker.md).", "",
              "The rows above time untrained adapters. Whether a lever changes ranking quality is measured with "
              "paired bootstrap intervals on the same users elsewhere (the table below copies the lever "
              "benchmark's): fast vs today's path along 300 steps in ranker_equivalence.md, "
              "index_token_grad=non_ranking in ranker_levers.md and ranker_equivalence.md, merge_adapter in "
              "merge_adapter.md."]
    if r.get("paired"):
        lines += ["", "What the training paths learn (ranker_levers.json, validation NDCG@10, paired bootstrap 95 % "
                  "intervals, the shipped GPT-3.5 preference sentences, which see the test period):", "",
                  "| difference | NDCG@10 [95 % CI] | users |", "|---|---|---|"]
        for key, v in r["paired"].items():
            x = v["NDCG@10"]
            lines.append(f"| {key} | {x['mean']:+.4f} [{x['lo']:+.4f}, {x['hi']:+.4f}] | {x['n']} |")
    if "rendered" in r:
        lines += ["", f"Rendered {r['rendered']}."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
