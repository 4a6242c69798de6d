"""Benchmark: ranker threads on this 2-core CPU, quiet and beside another busy job (issue #14: thread defaults).

Each row runs in a fresh process (OpenMP reads ``OMP_WAIT_POLICY`` when torch loads): it scores ``--users``
real Beauty next-item prompts (bf16 weights, batch 4, the sample's prompt settings) and trains ``--train``
LoRA samples (bf16 + top-8 layers), with 1 or 2 torch threads, OpenMP's default wait policy or ``PASSIVE``,
on a quiet machine or with a competitor: one single-threaded process doing float32 matrix products, pinned to
core 1, for the whole row (what "something else runs" means on a 2-core box)::

    .venv/bin/python benchmarks/threads.py      # owns both cores for ~5 minutes

Writes ``benchmarks/results/threads.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402

ROWS = [  # name, threads, wait policy (None = OpenMP's default), competitor
    ("1 thread, quiet", 1, None, False),
    ("2 threads, quiet", 2, None, False),
    ("2 threads, quiet, OMP_WAIT_POLICY=PASSIVE", 2, "PASSIVE", False),
    ("1 thread, beside a busy job", 1, None, True),
    ("2 threads, beside a busy job", 2, None, True),
    ("2 threads, beside a busy job, OMP_WAIT_POLICY=PASSIVE", 2, "PASSIVE", True),
]

COMPETITOR = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
              "while True:\n    a = torch.tanh(a @ a)\n")


def child(users: int, train: int, threads: int) -> dict:
    """One row, in this process: score ``users`` prompts and train ``train`` samples with ``threads`` threads."""
    import dataclasses

    import torch
    from ranker_speed import prompts, train_row

    from ulmrec.ranker.engine import Ranker

    cfg, samples, _, tokens = prompts(max(users, train), paper=False)
    rc = dataclasses.replace(cfg.ranker, num_threads=threads, dtype="bfloat16", score_batch_size=4, lora_layers=8,
                             micro_batch_size=1)
    torch.manual_seed(0)
    ranker = Ranker.build(rc, tokens, "cpu")
    ranker.model.eval()
    ranker.score(samples[:2], progress=False)  # warm-up
    t0 = time.perf_counter()
    ranker.score(samples[:users], progress=False)
    score_s = time.perf_counter() - t0
    tr = train_row(cfg, dict(dtype="bfloat16", micro_batch_size=1, lora_layers=8), samples, tokens, train, threads, 0)
    return {"threads": torch.get_num_threads(), "seconds_per_user": score_s / users,
            "seconds_per_train_sample": tr["seconds_per_sample"]}


def run_row(name: str, threads: int, policy: str | None, busy: bool, users: int, train: int, timeout: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    # empty = OpenMP's own default (libgomp warns about the empty value and ignores it); absent would let
    # ``import ulmrec`` choose PASSIVE, the default this benchmark measured (src/ulmrec/__init__.py)
    env["OMP_WAIT_POLICY"] = policy or ""
    comp = (subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", COMPETITOR], env=env,
                             stdout=subprocess.DEVNULL) if busy else None)
    try:
        time.sleep(2 if busy else 0)
        t0 = time.perf_counter()
        cmd = ["taskset", "-c", "0,1", sys.executable, __file__, "--child", "--users", str(users), "--train",
               str(train), "--threads", str(threads)]
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            return {"name": name, "threads": threads, "wait_policy": policy or "default", "busy": busy,
                    "timed_out_after_s": timeout}
        if p.returncode:
            raise SystemExit(f"row {name!r} failed:\n{p.stderr[-3000:]}")
        out = json.loads(p.stdout.strip().splitlines()[-1])
        return {"name": name, "wait_policy": policy or "default", "busy": busy, **out,
                "row_wall_s": round(time.perf_counter() - t0, 1)}
    finally:
        if comp:
            comp.kill()
            comp.wait()


def markdown(r: dict) -> str:
    lines = ["# Ranker threads on this 2-core CPU (issue #14)", "",
             f"Scoring {r['users']} real Beauty prompts (bf16, batch 4) and training {r['train']} LoRA samples "
             "(bf16, top 8 layers) per row, each row in a fresh process. \"Beside a busy job\" = one single-threaded "
             "float32 matmul loop pinned to core 1 for the whole row.", "",
             "| row | s per user (scoring) | s per training sample | vs 1 thread, same load (scoring / training) |",
             "|---|---:|---:|---:|"]
    base = {row["busy"]: row for row in r["rows"] if row.get("threads") == 1 and "seconds_per_user" in row}
    for row in r["rows"]:
        if "timed_out_after_s" in row:
            lines.append(f"| {row['name']} | timed out after {row['timed_out_after_s']} s | | |")
            continue
        b = base.get(row["busy"])
        ratio = (f"x{b['seconds_per_user'] / row['seconds_per_user']:.2f} / "
                 f"x{b['seconds_per_train_sample'] / row['seconds_per_train_sample']:.2f}" if b else "")
        lines.append(f"| {row['name']} | {row['seconds_per_user']:.3f} | {row['seconds_per_train_sample']:.3f} | "
                     f"{ratio} |")
    lines += ["", f"Load before: `{r['load_before']}`; after: `{r['load_after']}`."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--train", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=240, help="seconds before a row counts as stalled")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import logging

        logging.disable(logging.CRITICAL)
        print(json.dumps(child(args.users, args.train, args.threads)))
        return 0
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = []
    for name, threads, policy, busy in ROWS:
        rows.append(run_row(name, threads, policy, busy, args.users, args.train, args.timeout))
        print(json.dumps(rows[-1]), flush=True)
    out = {**header(), "users": args.users, "train": args.train, "rows": rows, "load_before": load_before,
           "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    save("threads", out, markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
