"""``ulmrec evaluate``: Rank and Overall tables on the test split (paper 5.1.3, Table 2) into ``<run_dir>/evaluate/``.

Side by side on the same users: ULMRec (user index + history + candidates), the LlamaRec-style ranker (same LM,
next-item task only, no user index) and the retriever's own order. "Rank" averages over the users whose test
item is among the candidates; "Overall" over all test users, a target that was not retrieved counting as a
miss (Overall = Rank x coverage). With ``evaluate.max_users`` a fixed random subset of the Rank users is
scored and Overall is that Rank estimate times the coverage measured on all users.

Artifacts: ``results.json``, ``results.md``, ``ranks.parquet`` (per user: the target's 0-based rank in each
model's order). Scores are saved every ``evaluate.chunk_users`` users, so an interrupted evaluation resumes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.config import Config
from ulmrec.errors import ConfigError
from ulmrec.evaluation.metrics import format_table, metrics_from_ranks, rank_and_overall
from ulmrec.io import write_json, write_parquet, write_text
from ulmrec.pipeline import Stage

log = logging.getLogger("ulmrec")

ULMREC, LLAMAREC, ULMREC_UID, RETRIEVER = "ULMRec", "LlamaRec-style", "ULMRec-uid (no history)", "Retriever order"


def _adapters(cfg: Config, run_dir: Path) -> list[tuple[str, Path, str]]:
    """(model name, adapter directory, prompt) of every LLM ranker to evaluate."""
    ranker = Path(run_dir) / "ranker"
    out = [(ULMREC, ranker / "adapter", cfg.tasks.prompt)]
    if cfg.evaluate.no_history:
        out.append((ULMREC_UID, ranker / "adapter", "no_history"))
    if cfg.evaluate.baseline and cfg.ranker.baseline:
        out.append((LLAMAREC, ranker / "llamarec" / "adapter", "no_index"))
    return out


def _inputs(cfg: Config, run_dir: Path) -> list[Path]:
    run_dir = Path(run_dir)
    files = [run_dir / "data" / "interactions.parquet", run_dir / "data" / "items.parquet",
             run_dir / "retrieval" / "candidates_test.parquet"]
    if cfg.tasks.identity == "index":
        files.append(run_dir / "index" / "user_index.parquet")
    files += sorted({a for _, a, _ in _adapters(cfg, run_dir)})
    return files


def _params(cfg: Config) -> dict:
    import dataclasses

    return {"evaluate": dataclasses.asdict(cfg.evaluate), "tasks": dataclasses.asdict(cfg.tasks),
            "ranker": dataclasses.asdict(cfg.ranker), "seed": cfg.seed}


def retriever_ranks(candidates: pd.DataFrame, n: int) -> np.ndarray:
    """The target's 0-based position among each user's first ``n`` candidates (-1: not retrieved)."""
    out = np.full(len(candidates), -1, dtype=np.int64)
    for i, (c, t) in enumerate(zip(candidates["candidates"], candidates["target"], strict=True)):
        hit = np.flatnonzero(np.asarray(c[:n]) == t)
        if len(hit):
            out[i] = hit[0]
    return out


def overall_from_rank(rank: dict[str, float], coverage: float) -> dict[str, float]:
    """Overall = Rank x coverage: every user outside the candidates scores 0 at k <= num_candidates."""
    return {k: v * coverage for k, v in rank.items()}


def score_in_chunks(ranker, samples, cfg: Config, parts: Path, name: str) -> tuple[np.ndarray, float]:
    """Scores of all samples, ``chunk_users`` at a time, each chunk saved under ``parts`` (resumable)."""
    parts.mkdir(parents=True, exist_ok=True)
    step = cfg.evaluate.chunk_users
    chunks, seconds = [], 0.0
    slug = name.split(" ")[0].lower()
    for i, start in enumerate(range(0, len(samples), step)):
        npy, meta = parts / f"{slug}_{i:05d}.npy", parts / f"{slug}_{i:05d}.json"
        if npy.exists() and meta.exists():
            chunks.append(np.load(npy, allow_pickle=False))
            seconds += json.loads(meta.read_text())["seconds"]
            continue
        scores, sec = ranker.score(samples[start:start + step],
                                   desc=f"{name} {start + 1}-{min(start + step, len(samples))}/{len(samples)}")
        with open(npy.with_suffix(".tmp.npy"), "wb") as f:
            np.save(f, scores, allow_pickle=False)
        npy.with_suffix(".tmp.npy").replace(npy)
        write_json(meta, {"seconds": sec, "users": len(scores)})
        chunks.append(scores)
        seconds += sec
    width = max((c.shape[1] for c in chunks), default=0)
    padded = [np.pad(c, ((0, 0), (0, width - c.shape[1])), constant_values=-np.inf) for c in chunks]
    return (np.concatenate(padded) if padded else np.zeros((0, 0), np.float32)), seconds


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    import dataclasses

    from ulmrec.data.dataset import Dataset
    from ulmrec.ranker.engine import Ranker, base_title_cutter, load_identities
    from ulmrec.ranker.predict import ranks_from_scores
    from ulmrec.tasks import build_eval_samples
    from ulmrec.utils import resolve_device

    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    ks = list(cfg.evaluate.ks)
    n = cfg.tasks.num_candidates
    ds = Dataset.load(run_dir)
    cands = pd.read_parquet(run_dir / "retrieval" / "candidates_test.parquet").sort_values("user_idx", kind="stable")
    all_ranks = retriever_ranks(cands, n)
    coverage = float((all_ranks >= 0).mean()) if len(all_ranks) else float("nan")
    identities = load_identities(cfg, ds, run_dir)
    cut = base_title_cutter(cfg.ranker)

    results: dict[str, dict] = {}
    per_user: pd.DataFrame | None = None
    for name, adapter, prompt in _adapters(cfg, run_dir):
        tasks = dataclasses.replace(cfg.tasks, prompt=prompt)
        samples = build_eval_samples(ds, "test", cands, tasks, identities={} if prompt == "no_index" else identities,
                                     title_fn=cut, prompt=prompt, max_users=cfg.evaluate.max_users, seed=cfg.seed)
        t0 = time.perf_counter()
        ranker = Ranker.load(cfg.ranker, adapter, device)
        load_s = time.perf_counter() - t0
        scores, seconds = score_in_chunks(ranker, samples, cfg, out / "parts", name)
        del ranker
        ranks = ranks_from_scores(scores, samples)
        users = np.array([s.user_idx for s in samples], dtype=np.int64)
        if per_user is None:
            targets = [s.candidates[s.target] for s in samples]
            sub = cands.set_index("user_idx").loc[users]
            per_user = pd.DataFrame({"user_idx": users, "target": targets,
                                     RETRIEVER: retriever_ranks(sub.reset_index(), n)})
        elif not np.array_equal(per_user["user_idx"].to_numpy(), users):
            raise RuntimeError("the evaluated users differ between models")  # build_eval_samples is deterministic
        per_user[name] = ranks
        results[name] = {"seconds_per_user": round(seconds / max(1, len(samples)), 4),
                         "load_seconds": round(load_s, 2), "scored_users": len(samples)}
    if per_user is None:
        raise ConfigError("nothing to evaluate")
    subset = cfg.evaluate.max_users and len(per_user) < int((all_ranks >= 0).sum())
    results[RETRIEVER] = {"seconds_per_user": 0.0, "scored_users": len(per_user)}
    missed = np.full(int((all_ranks < 0).sum()), -1, dtype=np.int64)
    for name in [RETRIEVER] + [a[0] for a in _adapters(cfg, run_dir)]:
        rank = metrics_from_ranks(per_user[name].to_numpy(), ks)
        if subset:
            overall = overall_from_rank(rank, coverage)
        else:  # every Rank user scored: the users the retriever missed are appended as misses
            overall = rank_and_overall(np.concatenate([per_user[name].to_numpy(), missed]), ks)["Overall"]
        results[name].update(Rank=rank, Overall=overall)
    order = [RETRIEVER] + [a[0] for a in _adapters(cfg, run_dir)]
    summary = {"test_users": len(cands), "rank_users": int((all_ranks >= 0).sum()), "scored_rank_users": len(per_user),
               "coverage": coverage, "subset": bool(subset), "num_candidates": n, "device": device,
               "model": cfg.ranker.model, "models": {k: results[k] for k in order}}
    write_json(out / "results.json", summary)
    write_text(out / "results.md", results_markdown(summary, ks))
    write_parquet(out / "ranks.parquet", per_user)
    log.info("evaluate:\n%s", results_markdown(summary, ks))
    return {name: {"Rank NDCG@10": results[name]["Rank"].get("NDCG@10"),
                   "Overall NDCG@10": results[name]["Overall"].get("NDCG@10"),
                   "s/user": results[name]["seconds_per_user"]} for name in order}


def results_markdown(summary: dict, ks: list[int]) -> str:
    models = summary["models"]
    lines = [f"Test users: {summary['test_users']}; target among the {summary['num_candidates']} candidates "
             f"(Rank users): {summary['rank_users']} (coverage {summary['coverage']:.4f}); scored: "
             f"{summary['scored_rank_users']}" + (" (a fixed random subset; Overall = Rank x coverage)"
                                                   if summary["subset"] else "") + f". Model: {summary['model']}, "
             f"device: {summary['device']}.", "", "**Rank**", "",
             format_table({k: v["Rank"] for k, v in models.items()}, ks), "", "**Overall**", "",
             format_table({k: v["Overall"] for k, v in models.items()}, ks), "", "**Seconds per test user**", "",
             "| model | s/user | load s |", "|---|---|---|"]
    for k, v in models.items():
        lines.append(f"| {k} | {v['seconds_per_user']:.4f} | {v.get('load_seconds', 0.0):.1f} |")
    return "\n".join(lines) + "\n"


STAGE = Stage(
    name="evaluate",
    command="evaluate",
    help="Rank and Overall tables on test: ULMRec, the LlamaRec-style ranker and the retriever's order",
    params=_params,
    inputs=_inputs,
    build=_build,
)
