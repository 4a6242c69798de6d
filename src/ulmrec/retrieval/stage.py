"""``ulmrec retrieve``: train the retriever (``retrieval.model``), then write its top-k candidates.

Artifacts in ``<run_dir>/retrieval/`` (docs/ARCHITECTURE.md): ``model.safetensors`` + ``model.yaml``,
``candidates_valid.parquet`` / ``candidates_test.parquet`` (and ``candidates_train.parquet`` with
``retrieval.train_candidates: true``), ``metrics.json`` (full-ranking metrics over all items, history
masked) and ``train_log.json``. Validation histories are the training items; test histories add the
validation item (LlamaRec). Training checkpoints live in the stage's partial directory, so an interrupted
``ulmrec retrieve`` resumes from its last validation.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ulmrec import artifacts as art
from ulmrec.config import Config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import DataError
from ulmrec.io import read_json, write_json, write_parquet, write_safetensors, write_yaml
from ulmrec.retrieval.candidates import candidates_frame, full_ranking_metrics, rank_next_items
from ulmrec.retrieval.data import split_histories, train_prefixes, training_windows
from ulmrec.retrieval.models import build_model, load_retriever, model_card
from ulmrec.retrieval.train import Trainer
from ulmrec.stage import Stage, stage_fingerprint
from ulmrec.utils import resolve_device, seed_everything

log = logging.getLogger("ulmrec")


def _params(cfg: Config) -> dict:
    """Every retrieval setting and the seed; the pipeline leaves out the result-neutral ones (threads, the
    evaluation batch size: ulmrec.config.RESULT_NEUTRAL) and the later-added ones at their legacy value
    (ulmrec.config.ADDED_SETTINGS: train_candidates_folds=1). ``max_minutes`` stays in: a cap that cuts training
    short changes the model."""
    return {**dataclasses.asdict(cfg.retrieval), "seed": cfg.seed}


#: Settings that only decide which training prefixes are listed after training: where nothing else changed, the
#: stage reuses the retriever it trained before (weights, training record and log) instead of training it again.
LISTING_ONLY = ("train_candidates", "train_candidates_folds")


def _earlier_retriever(cfg: Config, run_dir: Path) -> tuple | None:
    """``(model, training record, training log)`` of the finished retrieval stage in ``run_dir`` where it was trained
    on the same inputs with the same settings, the LISTING_ONLY ones aside; else None."""
    final = run_dir / art.RETRIEVAL
    files = [final / art.STAGE_RECORD, final / art.RETRIEVER_WEIGHTS.name, final / art.RETRIEVER_CARD.name,
             final / art.RETRIEVAL_METRICS.name, final / art.RETRIEVAL_LOG.name]
    if not all(f.exists() for f in files):
        return None
    record, now = read_json(files[0]), stage_fingerprint(STAGE, cfg, run_dir)

    def trained_by(params: dict) -> dict:  # as stage.json holds it (JSON: tuples are lists)
        return json.loads(json.dumps({k: v for k, v in params.items() if k not in LISTING_ONLY}))

    if record.get("inputs") != now["inputs"] or trained_by(record.get("params", {})) != trained_by(now["params"]):
        return None
    training = read_json(files[3]).get("training")
    if not training:
        return None
    model = load_retriever(final, resolve_device(cfg.device))
    return model, {**training, "reused": f"trained by an earlier run of this stage ({record.get('finished')})"}, \
        read_json(files[4])


def _inputs(cfg: Config, run_dir: Path) -> list[Path]:
    return [art.INTERACTIONS.path(run_dir)]


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    rc = cfg.retrieval
    if rc.num_threads:
        torch.set_num_threads(rc.num_threads)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    ds = Dataset.load(run_dir)
    short = [u for u, seq in enumerate(ds.sequences) if len(seq) < 3]
    if short:
        raise DataError(f"{len(short)} user(s) have fewer than 3 interactions (one training item, the validation "
                        f"and the test item are needed), e.g. user_idx {short[0]}",
                        art.INTERACTIONS.path(run_dir), field="user_idx")
    valid_h, valid_t = split_histories(ds, "valid")
    earlier = _earlier_retriever(cfg, run_dir)
    if earlier is not None:
        model, training, history = earlier
        log.info("retrieval: only %s changed: the retriever trained before is reused (%d epochs), its lists written "
                 "again", "/".join(LISTING_ONLY), training.get("epochs", 0))
    else:
        model, state = fit_retriever(rc, ds.num_items, ds.train_sequences(), valid_h, valid_t, out / "checkpoints",
                                     device, cfg.seed,
                                     f"retrieval: {rc.model} on {ds.num_users} users, {ds.num_items} items")
        history = read_json(out / "checkpoints" / "trainer_state.json")["history"]
        training = {"epochs": state.epoch, "steps": state.step, "best_epoch": state.best_epoch,
                    f"best_valid_{rc.best_metric}": state.best, "stopped": state.stopped,
                    "train_seconds": round(state.seconds, 1), "cut_by_wall_clock": state.stopped == "time",
                    "seconds_per_epoch": round(sum(h["train_s"] for h in state.history) / max(state.epoch, 1), 2)}
    if training["stopped"] == "time":
        log.warning("retrieval: TRAINING CUT SHORT BY THE WALL CLOCK (retrieval.max_minutes=%g) after %d of %d epochs: "
                    "this model depends on the machine's speed and load, not only on the settings and seed (recorded "
                    f"as cut_by_wall_clock in {art.RETRIEVAL_METRICS.name} and {art.STAGE_RECORD}); set retrieval.max_minutes=0 for a "
                    "reproducible run", rc.max_minutes, training["epochs"], rc.epochs)
    write_safetensors(out / art.RETRIEVER_WEIGHTS.name, model.state_dict(), metadata={"model": rc.model})
    write_yaml(out / art.RETRIEVER_CARD.name, model_card(rc.model, model, training=training))

    metrics = {"model": rc.model, "users": ds.num_users, "items": ds.num_items, "training": training}
    for split in ("valid", "test"):
        t0 = time.time()
        histories, targets = split_histories(ds, split)
        res = _rank(model, rc, histories, targets, device, f"candidates {split}")
        write_parquet(out / art.candidates(split).name,
                      candidates_frame(range(ds.num_users), res, targets))
        metrics[split] = full_ranking_metrics(res["rank"], sorted({*rc.metric_ks, rc.num_candidates}))
        metrics[split]["coverage"] = float((res["target_rank"] >= 0).mean())
        metrics[split]["seconds"] = round(time.time() - t0, 2)
        log.info("retrieval %s: %s", split, {k: round(v, 4) for k, v in metrics[split].items()})
    if rc.train_candidates:
        t0 = time.time()
        users, positions, histories, targets = train_prefixes(ds)
        folds = {}
        if rc.train_candidates_folds > 1:
            res, folds = crossfit_train_candidates(cfg, ds, out, device, users, histories, targets)
        else:
            res = _rank(model, rc, histories, targets, device, "candidates train")
        write_parquet(out / art.candidates("train").name, candidates_frame(users, res, targets, positions))
        metrics["train"] = {"prefixes": len(users), "coverage": float((res["target_rank"] >= 0).mean()),
                            "target_first": float((res["target_rank"] == 0).mean()),
                            "folds": rc.train_candidates_folds, **({"by_fold": folds} if folds else {}),
                            "seconds": round(time.time() - t0, 2)}
    write_json(out / art.RETRIEVAL_METRICS.name, metrics)

    for fold_ckpt in out.glob("checkpoints_fold*"):
        shutil.rmtree(fold_ckpt)
    write_json(out / art.RETRIEVAL_LOG.name, history)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return {"model": rc.model, "epochs": training["epochs"], "stopped": training["stopped"],
            **({"cut_by_wall_clock": True} if training["stopped"] == "time" else {}),
            **({"reused": training["reused"]} if "reused" in training else {}),
            "train_seconds": training["train_seconds"],
            **{f"test_{k}": round(v, 4) for k, v in metrics["test"].items() if k in ("NDCG@10", "Recall@10", "Recall@20")}}


def fit_retriever(rc, num_items: int, sequences, valid_h, valid_t, ckpt: Path, device: str, seed: int,
                  label: str):
    """A fresh ``rc.model`` trained on ``sequences`` with early stopping on ``(valid_h, valid_t)``, checkpoints
    (and resume) in ``ckpt``: (the best model in eval mode, the trainer's state)."""
    model = build_model(rc, num_items)
    windows = training_windows(sequences, rc.max_len, rc.first_target and rc.model != "bert4rec")
    log.info("%s, %d training windows, device %s", label, len(windows), device)
    trainer = Trainer(model, rc, ckpt, device=device, seed=seed)
    state = trainer.fit(windows, valid_h, valid_t)
    return trainer.load_best().eval(), state


def _rank(model, rc, histories, targets, device: str, desc: str) -> dict[str, np.ndarray]:
    return rank_next_items(model, histories, targets, rc.max_len, k=rc.num_candidates, batch_size=rc.eval_batch_size,
                           device=device, desc=desc)


def user_folds(num_users: int, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every user: a fixed random split of the users into k near-equal parts."""
    fold = np.empty(num_users, dtype=np.int64)
    fold[np.random.default_rng([int(seed), 7]).permutation(num_users)] = np.arange(num_users) % k
    return fold


def crossfit_train_candidates(cfg: Config, ds: Dataset, out: Path, device: str, users: np.ndarray,
                              histories: list, targets: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """``retrieval.train_candidates_folds``: every fold's training prefixes ranked by a retriever trained on the
    other folds' users only (same settings, seed + 1 + fold; early stopping on those users' validation items).
    Checkpoints in ``out/checkpoints_fold<k>``, so an interrupted stage resumes."""
    rc, k = cfg.retrieval, cfg.retrieval.train_candidates_folds
    fold = user_folds(ds.num_users, k, cfg.seed)
    train, (valid_h, valid_t) = ds.train_sequences(), split_histories(ds, "valid")
    width = min(rc.num_candidates, ds.num_items)
    res = {"rank": np.empty(len(users), np.int64), "candidates": np.empty((len(users), width), np.int32),
           "scores": np.empty((len(users), width), np.float32), "target_rank": np.empty(len(users), np.int32)}
    info = {}
    for f in range(k):
        keep = np.flatnonzero(fold != f)
        seed_everything(cfg.seed + 1 + f)
        model, state = fit_retriever(rc, ds.num_items, [train[u] for u in keep], [valid_h[u] for u in keep],
                                     valid_t[keep], out / f"checkpoints_fold{f}", device, cfg.seed + 1 + f,
                                     f"retrieval: fold {f + 1} of {k}: a retriever on {len(keep)} users lists the "
                                     f"other {ds.num_users - len(keep)} users' training prefixes")
        rows = np.flatnonzero(fold[users] == f)
        got = _rank(model, rc, [histories[i] for i in rows], targets[rows], device, f"candidates train, fold {f + 1}")
        for key, arr in res.items():
            arr[rows] = got[key]
        info[str(f)] = {"train_users": len(keep), "prefixes": len(rows), "epochs": state.epoch,
                        "best_epoch": state.best_epoch, f"best_valid_{rc.best_metric}": state.best,
                        "stopped": state.stopped, "coverage": float((got["target_rank"] >= 0).mean())}
    return res, info


STAGE = Stage(
    name=art.RETRIEVAL,
    command="retrieve",
    help="train the retriever (LRURec by default) and write its top-20 candidates for validation and test",
    params=_params,
    inputs=_inputs,
    build=_build,
    reads=(art.INTERACTIONS,),
    writes=(art.RETRIEVER_WEIGHTS, art.RETRIEVER_CARD, art.candidates("valid"), art.candidates("test"),
            art.candidates("train"), art.RETRIEVAL_METRICS, art.RETRIEVAL_LOG),
)
