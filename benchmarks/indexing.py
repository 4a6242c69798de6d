"""Benchmark of the user-indexing stage (paper 4.1) on full Beauty and Games.

Runs ``ulmrec index`` (the real stage, into ``<run_dir>/index/``) for each preset and records: collisions
before/after the resolution step, codebook use and perplexity per level, reconstruction error, time; and
whether the index carries meaning: the mean cosine similarity of users who share their level-1 (and level-1+2)
codes against random pairs, for this index, for the authors' reference indices on the same users, and for a
shuffled copy of this index (same group sizes, no meaning: the null). Similarity is measured on two views:
the embedded source texts the index was built from (here: preference sentences) and, independently, the mean
embedding of the user's training-history titles (which the index never saw).

    .venv/bin/python benchmarks/indexing.py                      # beauty and games, presets' run dirs
    .venv/bin/python benchmarks/indexing.py --presets beauty --set index.epochs=20

Needs ``ulmrec prepare -c beauty`` / ``-c games`` first. Writes benchmarks/results/indexing.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.indexing.encoder import TextEncoder
from ulmrec.indexing.quality import shared_code_similarity
from ulmrec.indexing.sources import collect_user_texts
from ulmrec.indexing.stage import reference_codes, user_text_embeddings
from ulmrec.io import read_json, write_json, write_text
from ulmrec.pipeline import get_stage, run_stage

RESULTS = Path(__file__).resolve().parent / "results"


def similarity_views(cfg, ds: Dataset, codes: np.ndarray) -> dict:
    """Shared-code cosine for this index, the reference and a shuffled null, on source texts and on titles."""
    run_dir = Path(cfg.run_dir)
    torch.set_num_threads(cfg.index.threads or torch.get_num_threads())
    enc = TextEncoder(cfg.index.encoder, cfg.index.encoder_batch_size, cfg.index.max_seq_length)
    texts = collect_user_texts(ds, cfg.index.text_source, run_dir)
    t0 = time.time()
    src = user_text_embeddings(enc.encode(texts.texts, desc="bench: texts"), texts.owners,
                               enc.encode(ds.users["user_id"].astype(str).tolist(), desc="bench: ids"))
    train = ds.interactions[ds.interactions["split"] == "train"]
    titles = [str(t) for t in ds.titles[train["item_idx"].to_numpy()]]
    title_emb = user_text_embeddings(enc.encode(titles, desc="bench: titles"), train["user_idx"].to_numpy(),
                                     np.zeros((ds.num_users, src.shape[1]), np.float32))
    log_seconds = time.time() - t0
    shuffled = codes[np.random.default_rng(0).permutation(len(codes))]
    indices = {"this_index": (np.arange(len(codes)), codes), "shuffled_this_index": (np.arange(len(codes)), shuffled)}
    if ds.reference_index is not None:
        indices["reference_index"] = reference_codes(ds.reference_index, ds.num_users)
    out = {}
    for view, emb in (("source_texts", src), ("history_titles", title_emb)):
        out[view] = {name: [shared_code_similarity(emb[u], c, d) for d in (1, 2)] for name, (u, c) in indices.items()}
    out["embedding_seconds"] = round(log_seconds, 1)
    return out


def run_one(preset: str, sets: list[str]) -> dict:
    cfg = load_config([preset], sets)
    run_dir = Path(cfg.run_dir)
    ds = Dataset.load(run_dir)
    t0 = time.time()
    rec = run_stage(get_stage("index"), cfg, force=True)
    wall = time.time() - t0
    out_dir = run_dir / "index"
    report = read_json(out_dir / "report.json")
    import pandas as pd

    codes = np.array(pd.read_parquet(out_dir / "user_index.parquet")["codes"].tolist(), dtype=np.int64)
    ref = None
    if ds.reference_index is not None:
        from ulmrec.indexing.quality import codebook_usage
        from ulmrec.indexing.unique import collision_stats

        _, rc = reference_codes(ds.reference_index, ds.num_users)
        ref = {"codebook": codebook_usage(rc, 256), "collisions": collision_stats(rc),
               "unique_prefixes": [int(len(np.unique(rc[:, :d], axis=0))) for d in (1, 2, 3)]}
    return {"preset": preset, "overrides": sets, "run_dir": str(run_dir), "stage_wall_seconds": round(wall, 1),
            "index_settings": cfg.index.__dict__, "seed": cfg.seed, "report": report,
            "unique_prefixes": [int(len(np.unique(codes[:, :d], axis=0))) for d in (1, 2, 3)],
            "reference": ref, "similarity": similarity_views(cfg, ds, codes), "stage_record_seconds": rec["seconds"]}


def fmt(x: float) -> str:
    return f"{x:.4f}"


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# User indexing benchmark (paper 4.1)", "", f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
             f"Date: {meta['date']}  ", f"Load average (1/5/15 min) at start / end: {meta.get('load_average_at_start')} / "
             f"{meta.get('load_average_at_end')} (the box is shared; times are inflated by other jobs)", ""]
    for r in results:
        rep = r["report"]
        cb, ca = rep["collisions_before"], rep["collisions_after"]
        lines += [f"## {r['preset']} ({rep['users']} users; texts: {json.dumps(rep['users_per_source'])})", "",
                  f"- collisions before resolution: rate {fmt(cb['collision_rate'])} ({cb['users_in_collisions']} users in "
                  f"shared indices, largest group {cb['largest_group']}); after: rate {fmt(ca['collision_rate'])}; "
                  f"users moved {rep['resolution']['moved']} (first changed level: {rep['resolution']['moved_at_level']})",
                  f"- reconstruction MSE (standardized inputs, mean square {fmt(rep['input_mean_square'])}): "
                  f"{fmt(rep['reconstruction_mse'])} (before resolution {fmt(rep['reconstruction_mse_before'])}); "
                  f"latent quantization MSE {rep['quantization_mse']:.3g}",
                  f"- time: stage {r['stage_wall_seconds']} s (encode {rep['seconds']['encode']} s with the embedding "
                  f"cache warm, fit + index {rep['seconds']['fit_and_index']} s)",
                  f"- distinct prefixes (levels 1 / 1-2 / 1-3): this {r['unique_prefixes']}"
                  + (f"; reference {r['reference']['unique_prefixes']}" if r["reference"] else ""), "",
                  "| level | used | perplexity | reference used | reference perplexity |", "|---|---|---|---|---|"]
        for i, c in enumerate(rep["codebook"]):
            rc = r["reference"]["codebook"][i] if r["reference"] else {"used": "-", "perplexity": float("nan")}
            lines.append(f"| {c['level']} | {c['used']} | {c['perplexity']:.1f} | {rc['used']} | {rc['perplexity']:.1f} |")
        lines += ["", "Mean cosine of users sharing a code prefix vs random pairs (lift = shared - random):", "",
                  "| view | index | level-1 shared | level-1+2 shared | random pairs | lift L1 | lift L1+2 |",
                  "|---|---|---|---|---|---|---|"]
        for view in ("source_texts", "history_titles"):
            for name, (d1, d2) in r["similarity"][view].items():
                lines.append(f"| {view} | {name} | {fmt(d1['mean_cosine_shared'])} | {fmt(d2['mean_cosine_shared'])} | "
                             f"{fmt(d1['mean_cosine_random'])} | {fmt(d1['lift'])} | {fmt(d2['lift'])} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["beauty", "games"])
    ap.add_argument("--set", action="append", default=[], metavar="key=value", help="config override (repeatable)")
    ap.add_argument("--out", default="indexing", help="result file stem under benchmarks/results/")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    meta = {"command": " ".join(["python", *sys.argv]),
            "machine": f"{platform.machine()} CPU, shared 2-core box, torch threads = index.threads (1 by default) "
                       f"(Python {platform.python_version()}, torch {torch.__version__})",
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
    meta["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    results = [run_one(p, args.set) for p in args.presets]
    meta["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / f"{args.out}.json", {"meta": meta, "results": results})
    write_text(RESULTS / f"{args.out}.md", markdown(results, meta))
    print(markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
