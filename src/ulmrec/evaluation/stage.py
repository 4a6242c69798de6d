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
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec import artifacts as art
from ulmrec.config import Config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError
from ulmrec.evaluation.title_signal import title_embeddings, title_similarity
from ulmrec.io import read_json, write_json, write_parquet, write_text
from ulmrec.metrics import format_table, metrics_from_ranks, rank_and_overall
from ulmrec.ranker.engine import Ranker, base_title_cutter, load_identities
from ulmrec.ranker.likelihood import TitleLikelihood, train_title_lm
from ulmrec.ranker.model import load_adapter_weights, save_adapter
from ulmrec.ranker.predict import ranks_from_scores
from ulmrec.stage import Stage
from ulmrec.tasks import build_eval_samples
from ulmrec.tasks.candidate_lists import list_scores
from ulmrec.tasks.eval_samples import rank_users
from ulmrec.utils import resolve_device, seed_everything

log = logging.getLogger("ulmrec")

ULMREC, LLAMAREC, ULMREC_UID, RETRIEVER = "ULMRec", "LlamaRec-style", "ULMRec-uid (no history)", "Retriever order"
ZERO_SHOT, FUSED, SHUFFLED = "Zero-shot (untuned LM)", "ULMRec + retriever", "ULMRec, candidates shuffled"
TITLE, FUSED_TITLE = "Retriever + title similarity", "ULMRec + retriever + title similarity"
LIKELIHOOD, LIKELIHOOD_TITLE = "Retriever + LM title likelihood", "Retriever + title similarity + LM title likelihood"
#: settings of the title-likelihood rows: left out of the stage's fingerprint while the rows are off, so run
#: directories evaluated before they existed stay current
LIKELIHOOD_KEYS = ("likelihood_signal", "likelihood_users", "likelihood_title_tokens", "likelihood_grid")
TUNING_KEYS = ("likelihood_tuning_steps", "likelihood_tuning_lr")
SIGNALS = ("cond", "pmi")  # the column blocks of the scores with likelihood_signal=auto


def _adapters(cfg: Config, run_dir: Path) -> list[tuple[str, Path, str]]:
    """(model name, adapter directory, prompt) of every LLM ranker to evaluate."""
    out = [(ULMREC, art.adapter_dir(run_dir), cfg.tasks.prompt)]
    if cfg.evaluate.no_history:
        out.append((ULMREC_UID, art.adapter_dir(run_dir), "no_history"))
    if cfg.evaluate.baseline and cfg.ranker.baseline:
        out.append((LLAMAREC, art.adapter_dir(run_dir, baseline=True), "no_index"))
    return out


def _inputs(cfg: Config, run_dir: Path) -> list[Path]:
    files = [art.INTERACTIONS.path(run_dir), art.ITEMS.path(run_dir), art.candidates_path(run_dir, "test")]
    if cfg.tasks.identity == "index":
        files.append(art.user_index_path(run_dir))
    if cfg.evaluate.fusion or cfg.evaluate.title_similarity or cfg.evaluate.title_likelihood:  # weights: validation
        files.append(art.candidates_path(run_dir, "valid"))
    for provenance in (art.PREFERENCE_REPORT.path(run_dir), art.SOURCE_PREFERENCES.path(run_dir)):
        if provenance.exists():  # which sentences the results used is part of results.json
            files.append(provenance)
    files += sorted({a for _, a, _ in _adapters(cfg, run_dir)})
    if cfg.evaluate.title_likelihood and cfg.evaluate.likelihood_adapter:
        files.append(likelihood_adapter_dir(cfg))
    return files


def likelihood_adapter_dir(cfg: Config) -> Path:
    """The adapter/ folder of ``evaluate.likelihood_adapter``; a clear error where it holds none."""
    folder = Path(cfg.evaluate.likelihood_adapter).expanduser()
    for need in (folder / "adapter" / "adapter_config.json", folder / "train.json"):
        if not need.exists():
            raise ConfigError(f"evaluate.likelihood_adapter: {need} not found (the folder needs adapter/ and "
                              "train.json: an evaluate stage's title_lm/ or a benchmarks/title_likelihood.py tag)")
    return folder / "adapter"


def _params(cfg: Config) -> dict:
    import dataclasses

    ev = dataclasses.asdict(cfg.evaluate)
    if not cfg.evaluate.title_likelihood:
        for key in ("title_likelihood", *LIKELIHOOD_KEYS):
            ev.pop(key)
    if not (cfg.evaluate.title_likelihood and cfg.evaluate.likelihood_tuning_steps):
        for key in TUNING_KEYS:  # untuned: earlier run directories stay current
            ev.pop(key)
    if not (cfg.evaluate.title_likelihood and cfg.evaluate.likelihood_adapter):
        ev.pop("likelihood_adapter")  # its weights are an input file (_inputs) where set
    return {"evaluate": ev, "tasks": dataclasses.asdict(cfg.tasks),
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
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
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


def _retriever_scores(cands: pd.DataFrame, users, lists, n: int) -> np.ndarray:
    """``(N, n)``: the retriever's own scores of each user's lettered candidates (the ``scores`` column of the
    candidate file; its position, ``-log(position + 1)``, when the file has none), in letter order."""
    from ulmrec.evaluation.stats import retriever_rank_scores  # defers scipy (0.1 s)

    scores = list_scores(cands, users, lists)
    out = np.full((len(lists), n), -np.inf, dtype=np.float64)
    for i, items in enumerate(lists):
        out[i, :len(items)] = scores[i] if scores is not None else retriever_rank_scores(n)[:len(items)]
    return out


def _listed(samples) -> tuple[list[int], list[list[int]]]:
    """(users, lettered candidate lists) of prompts."""
    return [s.user_idx for s in samples], [list(s.candidates) for s in samples]


def _shuffled(cands: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The candidate file with every user's first ``n`` candidates permuted (the position check)."""
    from ulmrec.evaluation.stats import position_check_permutations  # defers scipy (0.1 s)

    perm = position_check_permutations(len(cands), n, seed)
    lists = [[int(c) for c in np.asarray(row)[:n][p]] for row, p in zip(cands["candidates"], perm, strict=True)]
    out = cands.assign(candidates=lists)
    return out.drop(columns=["scores"]) if "scores" in out else out


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    import dataclasses

    from ulmrec.evaluation import stats  # defers scipy (0.1 s)

    run_dir = Path(run_dir)
    ev = cfg.evaluate
    device = resolve_device(cfg.device)
    ks = list(ev.ks)
    n = cfg.tasks.num_candidates
    ds = Dataset.load(run_dir)
    cands = pd.read_parquet(art.candidates_path(run_dir, "test")).sort_values("user_idx", kind="stable")
    all_ranks = retriever_ranks(cands, n)
    coverage = float((all_ranks >= 0).mean()) if len(all_ranks) else float("nan")
    identities = load_identities(cfg, ds, run_dir)
    cut = base_title_cutter(cfg.ranker)

    def samples_for(prompt: str, frame: pd.DataFrame = cands, split: str = "test", max_users: int = ev.max_users):
        tasks = dataclasses.replace(cfg.tasks, prompt=prompt)
        return build_eval_samples(ds, split, frame, tasks, identities={} if prompt == "no_index" else identities,
                                  title_fn=cut, prompt=prompt, max_users=max_users, seed=cfg.seed)

    results: dict[str, dict] = {}
    scores_by: dict[str, np.ndarray] = {}
    per_user: pd.DataFrame | None = None

    def record(name: str, samples, scores: np.ndarray, seconds: float, load_s: float) -> None:
        nonlocal per_user
        users = np.array([s.user_idx for s in samples], dtype=np.int64)
        if per_user is None:
            targets = [s.candidates[s.target] for s in samples]
            sub = cands.set_index("user_idx").loc[users]
            per_user = pd.DataFrame({"user_idx": users, "target": targets,
                                     RETRIEVER: retriever_ranks(sub.reset_index(), n)})
        elif not np.array_equal(per_user["user_idx"].to_numpy(), users):
            raise RuntimeError("the evaluated users differ between models")  # build_eval_samples is deterministic
        per_user[name] = ranks_from_scores(scores, samples)
        scores_by[name] = scores
        results[name] = {"seconds_per_user": round(seconds / max(1, len(samples)), 4),
                         "load_seconds": round(load_s, 2), "scored_users": len(samples)}

    def run_model(name: str, adapter: Path | None, prompt: str, frame: pd.DataFrame = cands):
        samples = samples_for(prompt, frame)
        t0 = time.perf_counter()
        ranker = (Ranker.load(cfg.ranker, adapter, device) if adapter is not None
                  else Ranker.build(cfg.ranker, (), device))  # untuned: LoRA B = 0, no added tokens
        load_s = time.perf_counter() - t0
        scores, seconds = score_in_chunks(ranker, samples, cfg, out / "parts", name)
        record(name, samples, scores, seconds, load_s)
        return ranker, samples

    ulmrec_ranker = ulmrec_samples = None
    for name, adapter, prompt in _adapters(cfg, run_dir):
        ranker, samples = run_model(name, adapter, prompt)
        if name == ULMREC:
            ulmrec_ranker, ulmrec_samples = ranker, samples
        else:
            del ranker
    if ev.zero_shot:
        run_model(ZERO_SHOT, None, "no_index")
    if ev.position_check and ulmrec_ranker is not None:
        shuffled = samples_for(cfg.tasks.prompt, _shuffled(cands, n, cfg.seed))
        scores, seconds = score_in_chunks(ulmrec_ranker, shuffled, cfg, out / "parts", SHUFFLED)
        record(SHUFFLED, shuffled, scores, seconds, 0.0)
    fusion = fusion_valid = title = None
    if ev.fusion and ulmrec_ranker is not None:
        fusion, fusion_valid = _fusion(cfg, run_dir, ulmrec_ranker, samples_for, n)
        fused = stats.fuse(scores_by[ULMREC], _retriever_scores(cands, *_listed(ulmrec_samples), n), fusion["weight"])
        record(FUSED, ulmrec_samples, fused, results[ULMREC]["seconds_per_user"] * len(ulmrec_samples), 0.0)
    del ulmrec_ranker
    if per_user is None:
        raise ConfigError("nothing to evaluate")
    emb = title_embeddings(ds, ev.title_encoder) if ev.title_similarity else None
    if ev.title_similarity:
        title, rows = _title_rows(cfg, run_dir, ds, emb, cands, samples_for, fusion_valid, scores_by, ulmrec_samples, n)
        for name, samples, scores, seconds in rows:
            lm_seconds = results[ULMREC]["seconds_per_user"] * len(samples) if name == FUSED_TITLE else 0.0
            record(name, samples, scores, seconds + lm_seconds, 0.0)
    likelihood = None
    if ev.title_likelihood:
        test_samples = ulmrec_samples if ulmrec_samples is not None else samples_for("no_index")
        likelihood, rows = _likelihood_rows(cfg, run_dir, ds, emb, cands, samples_for, test_samples, n, device, out)
        for name, scores, seconds, load_s in rows:
            record(name, test_samples, scores, seconds, load_s)

    subset = ev.max_users and len(per_user) < int((all_ranks >= 0).sum())
    results[RETRIEVER] = {"seconds_per_user": 0.0, "scored_users": len(per_user)}
    missed = np.full(int((all_ranks < 0).sum()), -1, dtype=np.int64)
    order = [RETRIEVER] + [k for k in (ZERO_SHOT, LLAMAREC, ULMREC, FUSED, ULMREC_UID, SHUFFLED, TITLE, FUSED_TITLE,
                                       LIKELIHOOD, LIKELIHOOD_TITLE) if k in results]
    for name in order:
        rank = metrics_from_ranks(per_user[name].to_numpy(), ks)
        if subset:
            overall = overall_from_rank(rank, coverage)
        else:  # every Rank user scored: the users the retriever missed are appended as misses
            overall = rank_and_overall(np.concatenate([per_user[name].to_numpy(), missed]), ks)["Overall"]
        results[name].update(Rank=rank, Overall=overall)
    metrics = [f"{m}@{k}" for k in ks for m in ("NDCG", "Recall", "MRR")]
    extra = [(ULMREC, LLAMAREC), (FUSED, ULMREC), (ULMREC, ZERO_SHOT), (ULMREC, SHUFFLED), (FUSED_TITLE, TITLE),
             (LIKELIHOOD, TITLE), (LIKELIHOOD_TITLE, TITLE), (LIKELIHOOD, FUSED), (LIKELIHOOD_TITLE, FUSED_TITLE)]
    paired = stats.paired_table({k: per_user[k].to_numpy() for k in order}, reference=RETRIEVER,
                                extra_pairs=[p for p in extra if p[0] in results and p[1] in results],
                                metrics=metrics, n_boot=ev.bootstrap, seed=cfg.seed)
    hist = {k: stats.letter_histogram(v) for k, v in scores_by.items()
            if k not in (FUSED, TITLE, FUSED_TITLE, LIKELIHOOD, LIKELIHOOD_TITLE)}
    stats.plot_letter_histograms(hist, out / art.LETTERS.name)
    summary = {"test_users": len(cands), "rank_users": int((all_ranks >= 0).sum()), "scored_rank_users": len(per_user),
               "coverage": coverage, "subset": bool(subset), "num_candidates": n, "device": device,
               "model": cfg.ranker.model, "models": {k: results[k] for k in order}, "paired": paired,
               "letter_histogram": {k: [int(c) for c in v] for k, v in hist.items()}, "fusion": fusion,
               "title_similarity": title, "title_likelihood": likelihood,
               "preferences": preference_note(run_dir)}
    write_json(out / art.RESULTS.name, summary)
    write_text(out / art.RESULTS_TABLE.name, results_markdown(summary, ks))
    write_parquet(out / art.RANKS.name, per_user)
    log.info("evaluate:\n%s", results_markdown(summary, ks))
    return {name: {"Rank NDCG@10": results[name]["Rank"].get("NDCG@10"),
                   "Overall NDCG@10": results[name]["Overall"].get("NDCG@10"),
                   "s/user": results[name]["seconds_per_user"]} for name in order}


def _fusion(cfg: Config, run_dir: Path, ranker, samples_for, n: int) -> tuple[dict, tuple]:
    """The fusion weight w of "ULMRec + retriever", chosen on validation users only (w = 0 allowed), and the
    validation (letter scores, samples) it was chosen on (the title-similarity row reuses them)."""
    from ulmrec.evaluation import stats  # defers scipy (0.1 s)

    valid_cands = pd.read_parquet(art.candidates_path(run_dir, "valid"))
    samples = samples_for(cfg.tasks.prompt, valid_cands, "valid", cfg.evaluate.fusion_users)
    lm, _ = ranker.score(samples, desc="fusion weight (validation)")
    retr = _retriever_scores(valid_cands, *_listed(samples), n)
    w, by_w = stats.choose_fusion_weight(lm, retr, [s.target for s in samples], grid=cfg.evaluate.fusion_grid)
    return ({"weight": w, "valid_users": len(samples), "valid_NDCG@10_by_weight": {str(k): v for k, v in by_w.items()},
             "retriever_scores": "candidate file scores" if "scores" in valid_cands else "-log(position + 1)"},
            (lm, samples))


def _title_terms(ds: Dataset, emb: np.ndarray, frame: pd.DataFrame, users, lists, split: str, n: int,
                 history: int) -> tuple[np.ndarray, np.ndarray]:
    """(retriever scores, title similarity), both (N, n); the similarity is 0 past a shorter list."""
    retr = _retriever_scores(frame, users, lists, n)
    sim = title_similarity(ds, users, lists, split, emb, history)
    return retr, np.where(np.isfinite(retr), np.pad(sim, ((0, 0), (0, n - sim.shape[1]))), 0.0)


def _title_rows(cfg: Config, run_dir: Path, ds: Dataset, emb: np.ndarray, cands: pd.DataFrame, samples_for,
                fusion_valid, scores_by: dict, ulmrec_samples, n: int) -> tuple[dict, list]:
    """"Retriever + title similarity" (w on every validation Rank user) and, with the fusion row (its
    validation scores in ``fusion_valid``), "ULMRec + retriever + title similarity" (both weights on the fusion
    users): the weights from validation users only, then the test scores. Returns (the summary,
    [(row name, samples, scores, seconds)])."""
    from ulmrec.evaluation import stats  # defers scipy (0.1 s)

    ev, hist = cfg.evaluate, cfg.tasks.max_history
    t0 = time.perf_counter()

    def terms(frame: pd.DataFrame, users, lists, split: str) -> tuple[np.ndarray, np.ndarray]:
        return _title_terms(ds, emb, frame, users, lists, split, n, hist)

    valid_cands = pd.read_parquet(art.candidates_path(run_dir, "valid"))
    rows = rank_users(valid_cands, n)
    lists = [[int(c) for c in cs[:n]] for cs in rows["candidates"]]
    v_retr, v_sim = terms(valid_cands, rows["user_idx"].tolist(), lists, "valid")
    v_t = [c.index(int(t)) for c, t in zip(lists, rows["target"], strict=True)]
    w, by_w = stats.choose_fusion_weight(v_retr, v_sim, v_t, grid=ev.title_grid)
    samples = ulmrec_samples if ulmrec_samples is not None else samples_for("no_index")
    t_retr, t_sim = terms(cands, *_listed(samples), "test")
    rows_out = [(TITLE, samples, stats.fuse(t_retr, t_sim, w), time.perf_counter() - t0)]
    out = {"weight": w, "valid_users": len(v_t), "valid_NDCG@10_by_weight": {str(k): v for k, v in by_w.items()},
           "encoder": ev.title_encoder, "history": hist, "similarity": "max cosine to the history titles"}
    if fusion_valid is not None and ULMREC in scores_by:
        lm, v_samples = fusion_valid
        f_retr, f_sim = terms(valid_cands, *_listed(v_samples), "valid")
        (w_r, w_s), by = stats.choose_fusion_weights(lm, [f_retr, f_sim], [s.target for s in v_samples],
                                                     [ev.fusion_grid, ev.title_grid])
        fused = stats.fuse_terms(scores_by[ULMREC], [t_retr, t_sim], [w_r, w_s])
        rows_out.append((FUSED_TITLE, ulmrec_samples, fused, 0.0))
        out["with_ulmrec"] = {"retriever_weight": w_r, "title_weight": w_s, "valid_users": len(v_samples),
                              "valid_NDCG@10_by_weights": by}
    return out, rows_out


class _LikelihoodScorer:
    """:meth:`Ranker.score`'s interface over :class:`ulmrec.ranker.likelihood.TitleLikelihood`, so
    :func:`score_in_chunks` saves and resumes it like the letter scores: ``(N, n)`` scores of one signal, or
    with ``evaluate.likelihood_signal=auto`` ``(N, 2n)``: [cond | pmi], each padded to ``n`` with -inf."""

    def __init__(self, ranker, ds: Dataset, cfg: Config, n: int):
        ev = cfg.evaluate
        self.signal, self.n = ev.likelihood_signal, n
        self.scorer = TitleLikelihood(ranker.model, ranker.tokenizer, ds, history=cfg.tasks.max_history,
                                      max_title_tokens=ev.likelihood_title_tokens, device=ranker.device)

    def score(self, samples, desc: str = "title likelihood") -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        if not samples:
            return np.zeros((0, 0)), 0.0
        splits = {(s.meta or {}).get("split") for s in samples}
        if len(splits) != 1:
            raise ValueError(f"one split at a time, got {sorted(map(str, splits))}")
        users, lists = _listed(samples)
        out = self.scorer.score(users, lists, splits.pop())
        if self.signal != "auto":
            return out[self.signal], time.perf_counter() - t0
        both = [np.pad(out[k], ((0, 0), (0, self.n - out[k].shape[1])), constant_values=-np.inf)
                for k in SIGNALS]
        return np.concatenate(both, axis=1), time.perf_counter() - t0


def _loss_ends(log: list[dict]) -> list[float]:
    """Mean loss of a tuning log's first and last 20 steps."""
    return [float(np.mean([e["loss"] for e in log[:20]])), float(np.mean([e["loss"] for e in log[-20:]]))]


def _tune_title_lm(cfg: Config, ranker, ds: Dataset, out: Path) -> dict:
    """Tune ``ranker``'s LoRA in place on every title of windows of the users' training sequences
    (``evaluate.likelihood_tuning_steps``), or load the adapter an earlier run of the stage saved with the same
    settings (``out/title_lm``). Returns what was done, for results.json."""
    ev = cfg.evaluate
    folder = out / "title_lm"
    settings = {"steps": ev.likelihood_tuning_steps, "lr": ev.likelihood_tuning_lr, "batch_size": 8,
                "history": cfg.tasks.max_history, "title_tokens": ev.likelihood_title_tokens, "seed": cfg.seed,
                "model": cfg.ranker.model, "lora_layers": cfg.ranker.lora_layers,
                "lora_targets": list(cfg.ranker.lora_targets), "lora_r": cfg.ranker.lora_r}
    info_file = folder / "train.json"
    saved = read_json(info_file) if info_file.exists() else {}
    if saved.get("settings") == settings:
        load_adapter_weights(ranker.model, folder / "adapter")
        ranker.model.eval()
        return saved
    t0 = time.perf_counter()
    log = train_title_lm(ranker.model, ranker.tokenizer, ds, steps=ev.likelihood_tuning_steps, batch_size=8,
                         lr=ev.likelihood_tuning_lr, history=cfg.tasks.max_history,
                         max_title_tokens=ev.likelihood_title_tokens, seed=cfg.seed, device=ranker.device,
                         every_title=True)
    save_adapter(ranker.model, ranker.tokenizer, folder / "adapter")
    info = {"settings": settings, "seconds": round(time.perf_counter() - t0, 1),
            "loss_first_last_20": _loss_ends(log), "log": log}
    write_json(info_file, info)  # last: its presence means the adapter is complete
    return info


def _likelihood_rows(cfg: Config, run_dir: Path, ds: Dataset, emb: np.ndarray | None, cands: pd.DataFrame,
                     samples_for, test_samples, n: int, device: str, out: Path) -> tuple[dict, list]:
    """"Retriever + LM title likelihood" and, with the title similarity (``emb``), "Retriever + title
    similarity + LM title likelihood": the weights chosen on ``likelihood_users`` validation Rank users, then
    the test scores. Returns (the summary, [(row name, test scores, seconds, model load seconds)])."""
    from ulmrec.evaluation import stats  # defers scipy (0.1 s)

    ev, hist = cfg.evaluate, cfg.tasks.max_history
    t0, tuning = time.perf_counter(), None
    if ev.likelihood_adapter:  # trained earlier: the LM with that adapter, in the adapter's own LoRA layout
        folder = likelihood_adapter_dir(cfg).parent
        ranker = Ranker.load(cfg.ranker, folder / "adapter", device)
        info = read_json(folder / "train.json")
        tuning = {"adapter": str(folder), **{k: v for k, v in info.items() if k != "log"}}
        if info.get("log"):
            tuning["loss_first_last_20"] = _loss_ends(info["log"])
    else:
        if ev.likelihood_tuning_steps:
            seed_everything(cfg.seed)  # the LoRA's A init matters once it is tuned: the same run, the same adapter
        ranker = Ranker.build(cfg.ranker, (), device)  # untuned: LoRA B = 0, no added tokens
    load_s = time.perf_counter() - t0  # the tuning's own seconds are in its summary
    if ev.likelihood_tuning_steps:
        tuning = _tune_title_lm(cfg, ranker, ds, out)
    scorer = _LikelihoodScorer(ranker, ds, cfg, n)
    valid_cands = pd.read_parquet(art.candidates_path(run_dir, "valid"))
    v_samples = samples_for("no_index", valid_cands, "valid", ev.likelihood_users)
    tag = " both" if ev.likelihood_signal == "auto" else ""  # other chunk files: another width
    v_lm, _ = score_in_chunks(scorer, v_samples, cfg, out / "parts", f"title likelihood{tag} valid")
    t_lm, seconds = score_in_chunks(scorer, test_samples, cfg, out / "parts", f"title likelihood{tag} test")
    if emb is not None:  # (retriever scores, title similarity) of both splits
        v_retr, v_sim = _title_terms(ds, emb, valid_cands, *_listed(v_samples), "valid", n, hist)
        t_retr, t_sim = _title_terms(ds, emb, cands, *_listed(test_samples), "test", n, hist)
    else:
        v_retr = _retriever_scores(valid_cands, *_listed(v_samples), n)
        t_retr = _retriever_scores(cands, *_listed(test_samples), n)
    def dense(x: np.ndarray, r: np.ndarray) -> np.ndarray:
        """(N, n) and 0 outside the retriever's list: fuse() keeps the candidates where the retriever's score
        is finite."""
        return np.where(np.isfinite(r), np.pad(x, ((0, 0), (0, n - x.shape[1])), constant_values=0.0), 0.0)

    targets = [s.target for s in v_samples]
    auto = ev.likelihood_signal == "auto"
    blocks = ({sig: (v_lm[:, j * n:(j + 1) * n], t_lm[:, j * n:(j + 1) * n]) for j, sig in enumerate(SIGNALS)}
              if auto else {ev.likelihood_signal: (v_lm, t_lm)})
    fits = {sig: stats.choose_fusion_weight(v_retr, dense(v, v_retr), targets, grid=ev.likelihood_grid)
            for sig, (v, _) in blocks.items()}  # each signal's best weight on the validation users
    signal = max(reversed(list(fits)), key=lambda k: max(fits[k][1].values()))  # a tie goes to pmi (untuned LM's)
    w, by_w = fits[signal]
    v_lm, t_lm = dense(blocks[signal][0], v_retr), dense(blocks[signal][1], t_retr)
    by_signal = {k: max(b.values()) for k, (_, b) in fits.items()} if auto else None
    rows = [(LIKELIHOOD, stats.fuse(t_retr, t_lm, w), seconds, load_s)]
    summary = {"signal": signal, "weight": w, "valid_users": len(v_samples), "history": hist,
               "title_tokens": ev.likelihood_title_tokens, "model": cfg.ranker.model, "tuning": tuning,
               "valid_NDCG@10_by_weight": {str(k): v for k, v in by_w.items()}}
    if by_signal:
        summary["valid_NDCG@10_by_signal"] = by_signal
    if emb is not None:
        (w_s, w_l), by = stats.choose_fusion_weights(v_retr, [v_sim, v_lm], targets,
                                                     [ev.title_grid, ev.likelihood_grid])
        fused = stats.fuse_terms(t_retr, [t_sim, t_lm], [w_s, w_l])
        rows.append((LIKELIHOOD_TITLE, fused, seconds, load_s))
        summary["with_title_similarity"] = {"title_weight": w_s, "likelihood_weight": w_l,
                                            "valid_NDCG@10_by_weights": by}
    return summary, rows


def preference_note(run_dir: Path) -> str:
    """Which preference sentences the ULMRec prompts' inputs came from (the shipped GPT-3.5 ones see the
    test period: README, leakage audit)."""
    report = art.PREFERENCE_REPORT.path(run_dir)
    if report.exists():
        info = read_json(report)
        return str(info.get("provenance") or info.get("mode") or "preferences stage")
    if art.SOURCE_PREFERENCES.path(run_dir).exists():
        return "shipped with the data (GPT-3.5, written from all reviews: they see the validation and test period)"
    return "none"


def _by_signal(by: dict) -> str:
    return ", ".join(f"`{k}` N@10 {v:.4f}" for k, v in by.items())


def _tuning_text(model: str, tuning: dict | None) -> str:
    """How the title-likelihood LM was tuned, from the stage's own tuning or an earlier adapter's train.json."""
    if not tuning:
        return f"the untuned {model}"
    if "adapter" in tuning:  # evaluate.likelihood_adapter: an evaluate stage's or the benchmark's train.json
        spec = tuning.get("settings", tuning)  # the stage's train.json nests its settings, the benchmark's does not
        steps, batch = spec.get("steps", "?"), spec.get("batch_size", "?")
        objective = tuning.get("objective", "every-title" if "settings" in tuning else "?")
        return (f"{model} with the LoRA of `{tuning['adapter']}` ({steps} steps x {batch}, objective {objective}, "
                f"{float(tuning.get('seconds', 0)):.0f} s of tuning)")
    return (f"{model} with a LoRA tuned for {tuning['settings']['steps']} x 8 windows of training titles (loss on "
            f"every title; {tuning['seconds']:.0f} s)")


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
    if summary.get("paired"):
        from ulmrec.evaluation.stats import paired_markdown  # defers scipy (0.1 s)

        lines += ["", "**Paired differences on the same users** (mean, bootstrap 95 % interval; bold: the interval "
                  "excludes 0)", "", paired_markdown(summary["paired"])]
    if summary.get("fusion"):
        f = summary["fusion"]
        lines += ["", f"Fusion weight w = {f['weight']} (chosen on {f['valid_users']} validation users; retriever "
                  f"scores: {f['retriever_scores']})."]
    if summary.get("title_similarity"):
        t = summary["title_similarity"]
        lines += ["", f"Title similarity ({t['similarity']}, last {t['history']} titles, {t['encoder']}): w = "
                  f"{t['weight']} for \"{TITLE}\" (chosen on {t['valid_users']} validation Rank users)"
                  + (f"; \"{FUSED_TITLE}\": retriever w = {t['with_ulmrec']['retriever_weight']}, title w = "
                     f"{t['with_ulmrec']['title_weight']} (chosen on {t['with_ulmrec']['valid_users']} validation "
                     "users)" if t.get("with_ulmrec") else "") + ". Beyond the paper: the similarity row has no LLM."]
    if summary.get("title_likelihood"):
        t = summary["title_likelihood"]
        lines += ["", f"LM title likelihood (`{t['signal']}`"
                  + (f", chosen on validation over {_by_signal(t['valid_NDCG@10_by_signal'])}"
                     if t.get("valid_NDCG@10_by_signal") else "")
                  + f", {_tuning_text(t['model'], t.get('tuning'))}, last {t['history']} history "
                  f"titles, {t['title_tokens']} tokens a title): w = {t['weight']} for \"{LIKELIHOOD}\""
                  + (f"; \"{LIKELIHOOD_TITLE}\": title w = {t['with_title_similarity']['title_weight']}, likelihood "
                     f"w = {t['with_title_similarity']['likelihood_weight']}" if t.get("with_title_similarity") else "")
                  + f" (chosen on {t['valid_users']} validation Rank users). Beyond the paper: the LM reads no "
                  "preference sentence and no user index there."]
    if summary.get("letter_histogram"):
        from ulmrec.evaluation.stats import letter_histogram_markdown  # defers scipy (0.1 s)

        lines += ["", f"**Predicted letters** (argmax per user; {art.LETTERS.name})", "",
                  letter_histogram_markdown(summary["letter_histogram"])]
    if summary.get("preferences"):
        lines += ["", f"Preference sentences used by the ULMRec prompts: {summary['preferences']}."]
    return "\n".join(lines) + "\n"


STAGE = Stage(
    name=art.EVALUATE,
    command="evaluate",
    help="Rank and Overall tables on test: ULMRec, the LlamaRec-style ranker and the retriever's order",
    params=_params,
    inputs=_inputs,
    build=_build,
    reads=(art.INTERACTIONS, art.ITEMS, art.candidates("test"), art.candidates("valid"), art.USER_INDEX, art.ADAPTER,
           art.BASELINE_ADAPTER, art.PREFERENCE_REPORT, art.SOURCE_PREFERENCES),
    writes=(art.RESULTS, art.RESULTS_TABLE, art.RANKS, art.LETTERS),
    sources=("the base LM (ranker.model), as for the ranker stage; with evaluate.title_similarity the title encoder "
             "(evaluate.title_encoder; the packaged MiniLM by default)"),
)
