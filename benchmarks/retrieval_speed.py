"""Speed of the retrieval stage on this CPU, next to LlamaRec's LRURec (306 s/epoch on Beauty, 13.7 s per 1k
sequences, ~135 s validation, ~18 GB for the candidate step, as measured here by the lead).

    .venv/bin/python benchmarks/retrieval_speed.py [--dataset beauty] [--steps 40]

Measures, for LRURec with the default recipe: (1) the candidate step (valid + test full ranking with history
masking and top-20) and the process's peak RSS after it; (2) training time per step of 64 random windows with
the encoder run on the whole padded batch vs in 4 length groups, with 1 and 2 torch threads. The load average
is recorded because the 2 cores are shared. Writes benchmarks/results/retrieval_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time

import numpy as np
import torch
from _common import REPO, header, save

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.retrieval.candidates import rank_next_items
from ulmrec.retrieval.config import RetrievalConfig
from ulmrec.retrieval.data import left_pad, split_histories, training_windows
from ulmrec.retrieval.models import build_model
from ulmrec.retrieval.train import make_optimizer


def dataset(name: str) -> Dataset:
    run = REPO / "runs" / name
    if not (run / "data" / "interactions.parquet").exists():
        from ulmrec.data.stage import STAGE
        from ulmrec.pipeline import run_stage

        tmp = REPO / "runs" / f"speed-{name}"
        run_stage(STAGE, load_config([name], [f"run_dir={tmp}"]))
        run = tmp
        shutil.rmtree(tmp / ".data.partial", ignore_errors=True)
    return Dataset.load(run)


def time_steps(ds: Dataset, groups: int, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = RetrievalConfig()
    model = build_model(cfg, ds.num_items)
    model.length_groups = groups
    opt = make_optimizer(model, cfg)
    windows = training_windows(ds.train_sequences(), cfg.max_len)
    lengths = np.array([len(w) for w in windows])
    perm = torch.randperm(len(windows), generator=torch.Generator().manual_seed(0)).numpy()
    batches = [perm[i:i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)][: steps + 3]
    t0 = 0.0
    for i, idx in enumerate(batches):
        if i == 3:  # warm-up done
            t0 = time.perf_counter()
        loss = model.loss(left_pad([windows[j] for j in idx], int(lengths[idx].max())))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="beauty", choices=["beauty", "games"])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    load_start = os.getloadavg()
    ds = dataset(args.dataset)
    windows = len(training_windows(ds.train_sequences(), 50))

    torch.set_num_threads(1)
    model = build_model(RetrievalConfig(), ds.num_items).eval()
    cand = {}
    for split in ("valid", "test"):
        t0 = time.perf_counter()
        hist, targets = split_histories(ds, split)
        rank_next_items(model, hist, targets, 50, k=20, batch_size=1024)
        cand[split] = round(time.perf_counter() - t0, 1)
    rss = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    train = []
    for threads in (1, 2):
        for groups in (1, 4):
            s = time_steps(ds, groups, threads, args.steps)
            train.append({"threads": threads, "length_groups": groups, "ms_per_step": round(1000 * s, 1),
                          "s_per_1k_sequences": round(1000 * s / 64, 2), "s_per_epoch": round(s * windows / 64, 1)})
            print(train[-1])
    result = {**header(), "dataset": args.dataset, "users": ds.num_users, "items": ds.num_items,
              "training_windows": windows, "candidate_seconds": cand, "peak_rss_mb_after_candidates": rss,
              "train": train, "loadavg_start": load_start, "loadavg_end": os.getloadavg()}
    lines = [f"# Retrieval speed on this CPU ({args.dataset}, LRURec, default recipe)", "",
             f"Load average (1/5/15 min) at start {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f}, "
             f"at end {result['loadavg_end'][0]:.1f}: the 2 cores are shared with other jobs.", "",
             "| what | LlamaRec LRURec (measured here by the lead) | this stage |", "|---|---|---|",
             f"| full-ranking validation, {ds.num_users} users | ~135 s | {cand['valid']} s (test: {cand['test']} s) |",
             f"| candidate step memory | ~18 GB | peak RSS {rss} MB (whole process, after valid + test) |"]
    for t in train:
        lines.append(f"| training, {t['threads']} thread(s), length groups {t['length_groups']} | 306 s/epoch, "
                     f"13.7 s per 1k sequences | {t['ms_per_step']} ms/step, {t['s_per_1k_sequences']} s per 1k "
                     f"sequences, {t['s_per_epoch']} s/epoch |")
    save(f"retrieval_speed_{args.dataset}", result, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
