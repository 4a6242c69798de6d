"""``ulmrec train``: alignment tuning of the LLM ranker (paper 4.2-4.3) into ``<run_dir>/ranker/``.

Artifacts: ``adapter/`` (ULMRec's LoRA adapter + tokenizer with the index tokens), ``train_log.jsonl``,
``best.json``, ``tasks_report.json``; with ``ranker.baseline`` also ``llamarec/`` (the LlamaRec-style ranker:
same LM, next-item task only, no user index) with the same files. Training resumes from the checkpoints in the
partial stage directory after an interruption.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np

from ulmrec import artifacts as art
from ulmrec.config import Config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError, DataError
from ulmrec.indexing.titles import similarity_to, title_embeddings
from ulmrec.io import write_json
from ulmrec.ranker.engine import (
    Ranker,
    baseline_tasks,
    index_tokens_of,
    load_identities,
    set_threads,
    title_cutter,
)
from ulmrec.ranker.model import init_adapter_dir, load_tokenizer, model_context_length, resolve_model
from ulmrec.ranker.train import check_prompt_lengths
from ulmrec.stage import Stage
from ulmrec.tasks import build_eval_samples, build_training_samples, check_run_settings, load_preferences
from ulmrec.tasks.candidate_lists import list_scores
from ulmrec.tasks.config import RETRIEVER_MODES
from ulmrec.utils import resolve_device, seed_everything

log = logging.getLogger("ulmrec")

BASELINE_DIR = art.BASELINE_DIR


def check_settings(cfg: Config) -> str:
    """Every check that can fail before a model is trained; returns the model path."""
    check_run_settings(cfg)
    if cfg.tasks.num_candidates > cfg.retrieval.num_candidates:
        raise ConfigError(f"tasks.num_candidates={cfg.tasks.num_candidates} letters but only "
                          f"{cfg.retrieval.num_candidates} retrieved candidates")
    if cfg.ranker.distill_weight and cfg.tasks.train_candidates not in RETRIEVER_MODES:
        raise ConfigError(f"ranker.distill_weight={cfg.ranker.distill_weight} distils the retriever's scores of the "
                          f"training candidates, but tasks.train_candidates={cfg.tasks.train_candidates} does not read "
                          "them; set tasks.train_candidates=retriever (or retriever_shuffled) or ranker.distill_weight=0")
    if cfg.ranker.residual_weight and cfg.tasks.train_candidates not in RETRIEVER_MODES:
        raise ConfigError(f"ranker.residual_weight={cfg.ranker.residual_weight} adds the retriever's scores of the "
                          f"training candidates, but tasks.train_candidates={cfg.tasks.train_candidates} does not read "
                          "them; set tasks.train_candidates=retriever (or retriever_shuffled) or ranker.residual_weight=0")
    path, _ = resolve_model(cfg.ranker)
    init_adapter_dir(cfg.ranker)  # a named adapter must exist
    context = model_context_length(path)
    if context and cfg.ranker.max_length > context:
        raise ConfigError(f"ranker.max_length={cfg.ranker.max_length} is longer than the model allows "
                          f"({context} positions, {cfg.ranker.model})")
    return path


# ----------------------------------------------------------------------------------------- the stage
def _inputs(cfg: Config, run_dir: Path) -> list[Path]:
    files = [art.INTERACTIONS.path(run_dir), art.ITEMS.path(run_dir), art.candidates_path(run_dir, "valid")]
    if cfg.tasks.identity == "index":
        files.append(art.user_index_path(run_dir))
    if cfg.tasks.train_candidates in RETRIEVER_MODES:
        files.append(art.candidates_path(run_dir, "train"))
    for optional in (art.PREFERENCE_TABLE.path(run_dir), art.SOURCE_PREFERENCES.path(run_dir)):
        if optional.exists():
            files.append(optional)
    init = init_adapter_dir(cfg.ranker)
    if init is not None:  # the starting weights
        files.append(init / "adapter_model.safetensors")
    return files


#: Ranker settings that only change how a finished adapter is scored afterwards (evaluate, recommend): they are
#: part of the evaluate stage's fingerprint, not of training's, so changing one never retrains an adapter.
SCORING_ONLY = ("merge_adapter",)


def _params(cfg: Config) -> dict:
    ranker = {k: v for k, v in dataclasses.asdict(cfg.ranker).items() if k not in SCORING_ONLY}
    return {"ranker": ranker, "tasks": dataclasses.asdict(cfg.tasks), "seed": cfg.seed}


def build_samples(cfg: Config, run_dir: Path, tokenizer, baseline: bool = False):
    """``(train, valid, report)``: the mixed training samples and the fixed validation subset."""
    import pandas as pd

    tasks = baseline_tasks(cfg) if baseline else cfg.tasks
    ds = Dataset.load(run_dir)
    identities = {} if baseline else load_identities(cfg, ds, run_dir)
    preferences = {} if baseline else load_preferences(ds, run_dir)
    cut = title_cutter(tokenizer, cfg.ranker.max_title_tokens)
    train_cands = None
    if tasks.train_candidates in RETRIEVER_MODES:
        train_cands = pd.read_parquet(art.candidates_path(run_dir, "train"))
    train, report = build_training_samples(ds, tasks, identities=identities, preferences=preferences,
                                           seed=cfg.seed, title_fn=cut, train_candidates=train_cands)
    if cfg.ranker.distill_title_weight:
        report["distill_title"] = add_title_teacher(train, ds, cfg.ranker)
    if cfg.ranker.max_train_samples and len(train) > cfg.ranker.max_train_samples:
        keep = np.sort(np.random.default_rng([cfg.seed, 11]).choice(len(train), cfg.ranker.max_train_samples,
                                                                     replace=False))
        train = [train[i] for i in keep]
        report["max_train_samples"] = cfg.ranker.max_train_samples
    valid_cands = pd.read_parquet(art.candidates_path(run_dir, "valid"))
    valid = build_eval_samples(ds, "valid", valid_cands, tasks, identities=identities, title_fn=cut,
                               prompt="no_index" if baseline else tasks.prompt, max_users=cfg.ranker.eval_users,
                               seed=cfg.seed)
    if cfg.ranker.residual_weight:
        attach_retriever_scores(valid, valid_cands, art.candidates_path(run_dir, "valid"))
    report["used_samples"] = _count_tasks(train)
    report["valid_users"] = len(valid)
    return train, valid, report, identities


def add_title_teacher(samples, ds: Dataset, rc, encode=None) -> dict:
    """``ranker.distill_title_weight``: add weight x title similarity (max cosine of each candidate's title to
    the titles of the prefix's last ``distill_title_history`` training items) to every training sample's
    retriever teacher (``meta["teacher"]``, letter order), in place. Returns what the tasks report records."""
    emb = title_embeddings(ds, rc.distill_title_encoder, encode=encode, setting="ranker.distill_title_encoder")
    train = ds.train_sequences()
    changed, spread = 0, []
    for s in samples:
        teacher = s.meta.get("teacher")
        if teacher is None or s.candidates is None:
            continue
        p = int(s.meta["position"])
        sim = similarity_to(emb, train[s.user_idx][:p][-rc.distill_title_history:], s.candidates)
        s.meta["teacher"] = [float(t) + rc.distill_title_weight * float(x) for t, x in zip(teacher, sim, strict=True)]
        changed += 1
        spread.append(float(sim.max() - sim.min()))
    return {"weight": rc.distill_title_weight, "history": rc.distill_title_history,
            "encoder": rc.distill_title_encoder, "samples": changed,
            "median_similarity_spread": float(np.median(spread)) if spread else None}


def attach_retriever_scores(samples, cands, path) -> None:
    """``meta["teacher"]``: the retriever's score of each sample's lettered candidates (letter order), from the
    candidate file's ``scores`` column (``ranker.residual_weight`` selects checkpoints on the fused order)."""
    scores = list_scores(cands, [s.user_idx for s in samples], [s.candidates for s in samples])
    if scores is None:
        raise DataError("ranker.residual_weight needs the retriever's scores, but the file has no 'scores' column "
                        "(re-run the retrieval stage)", path, field="scores")
    for s, teacher in zip(samples, scores, strict=True):
        s.meta["teacher"] = teacher


def _count_tasks(samples) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.task] = counts.get(s.task, 0) + 1
    return counts


def train_one(cfg: Config, run_dir: Path, out: Path, baseline: bool) -> dict:
    """Build samples, check lengths, train one adapter into ``out``."""
    name = "LlamaRec-style" if baseline else "ULMRec"
    device = resolve_device(cfg.device)
    path, _ = resolve_model(cfg.ranker)
    probe = load_tokenizer(path)  # titles are cut with the base tokenizer (index tokens never occur in titles)
    train, valid, report, identities = build_samples(cfg, run_dir, probe, baseline)
    tokens = [] if baseline else index_tokens_of(identities)
    seed_everything(cfg.seed)
    init = init_adapter_dir(cfg.ranker)
    ranker = Ranker.build(cfg.ranker, tokens, device, init=init)
    longest = check_prompt_lengths(ranker.tokenizer, valid, cfg.ranker.max_length, "validation")
    report.update(index_tokens_added=len(tokens) if cfg.ranker.index_tokens == "added" else 0,
                  longest_valid_prompt=longest)
    write_json(out / art.TASKS_REPORT.name, report)
    steps = None
    if baseline and cfg.ranker.baseline_max_steps >= 0:
        steps = cfg.ranker.baseline_max_steps
    summary = ranker.train(train, valid, out, seed=cfg.seed, max_steps=steps, name=name)
    summary["tasks"] = report["used_samples"]
    if init is not None:
        r = ranker.cfg
        summary["init_adapter"] = {"adapter": str(init), "lora_r": r.lora_r, "lora_alpha": r.lora_alpha,
                                   "lora_targets": r.lora_targets, "lora_layers": r.lora_layers}
    return summary


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    set_threads(cfg.ranker)
    check_settings(cfg)
    summary = {"ulmrec": train_one(cfg, Path(run_dir), out, baseline=False)}
    if cfg.ranker.baseline:
        summary["llamarec"] = train_one(cfg, Path(run_dir), out / BASELINE_DIR, baseline=True)
    for ckpt in (out / "checkpoint", out / BASELINE_DIR / "checkpoint"):
        shutil.rmtree(ckpt, ignore_errors=True)
    return summary


STAGE = Stage(
    name=art.RANKER,
    command="train",
    help="alignment tuning of the LLM ranker (six tasks, LoRA) and the LlamaRec-style baseline",
    params=_params,
    inputs=_inputs,
    build=_build,
    check=check_settings,
    reads=(art.INTERACTIONS, art.ITEMS, art.candidates("valid"), art.USER_INDEX,
           art.candidates("train"), art.PREFERENCE_TABLE, art.SOURCE_PREFERENCES),
    writes=(art.ADAPTER, art.RANKER_LOG, art.RANKER_CURVES, art.RANKER_BEST, art.TASKS_REPORT, art.BASELINE_ADAPTER),
    sources=("the base LM (ranker.model: a local path, the Hugging Face cache, or the packaged SmolLM2 GGUF); with "
             "ranker.distill_title_weight the title encoder (ranker.distill_title_encoder; the packaged MiniLM by default)"),
)
