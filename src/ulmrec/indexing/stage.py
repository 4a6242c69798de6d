"""``ulmrec index``: personalized user indexing (paper 4.1) into ``<run_dir>/index/``.

Texts (training reviews, or the fallback) -> encoder -> Eq. 1 pooling with the ID embedding -> RQ-VAE ->
unique 4-token indices. Writes ``user_index.parquet`` (user_idx, user_id, codes, tokens), ``report.json``,
``rqvae.safetensors`` and ``rqvae.yaml``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ulmrec import artifacts as art
from ulmrec.config import Config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import DataError
from ulmrec.indexing.encoder import TextEncoder
from ulmrec.indexing.indexer import CHECKPOINT_FILE, UserIndexer
from ulmrec.indexing.quality import shared_code_similarity
from ulmrec.indexing.sources import collect_user_texts
from ulmrec.indexing.unique import index_tokens
from ulmrec.io import write_json, write_parquet, write_yaml
from ulmrec.stage import Stage
from ulmrec.utils import resolve_device

log = logging.getLogger("ulmrec")


def user_text_embeddings(review_emb: np.ndarray, owners: np.ndarray, id_emb: np.ndarray) -> np.ndarray:
    """Each user's mean text embedding (the ID embedding for a user without text): what "similar source
    texts" is measured on."""
    sums = np.zeros_like(id_emb, dtype=np.float64)
    np.add.at(sums, owners, review_emb)
    counts = np.bincount(owners, minlength=len(id_emb))
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], id_emb).astype(np.float32)


def reference_codes(ref: pd.DataFrame, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """The authors' indices (``data/reference_index.parquet``) as (user_idx (n,), codes (n, L))."""
    users = ref["user_idx"].to_numpy().astype(np.int64)
    codes = np.array([[int(t.split("_", 1)[1].rstrip(">")) for t in row] for row in ref["index"]], dtype=np.int64)
    keep = (users >= 0) & (users < num_users)
    return users[keep], codes[keep]


def semantic_check(text_emb: np.ndarray, codes: np.ndarray, ref: pd.DataFrame | None) -> dict:
    """Mean cosine of users sharing level-1 (and 1+2) codes vs random pairs, for this index and the reference."""
    out = {"this_index": [shared_code_similarity(text_emb, codes, d) for d in (1, 2)]}
    if ref is not None and len(ref):
        users, ref_codes = reference_codes(ref, len(text_emb))
        out["reference_index"] = [shared_code_similarity(text_emb[users], ref_codes, d) for d in (1, 2)]
    return out


def _build(cfg: Config, run_dir: Path, out: Path) -> dict:
    default_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.index.threads or default_threads)
    try:
        return _build_index(cfg, run_dir, out)
    finally:
        torch.set_num_threads(default_threads)


def _build_index(cfg: Config, run_dir: Path, out: Path) -> dict:
    ic = cfg.index
    device = resolve_device(cfg.device)
    ds = Dataset.load(run_dir)
    users_file = art.USERS.path(run_dir)
    if ds.num_users == 0:
        raise DataError("no users to index (the prepared dataset is empty)", users_file)
    if not np.array_equal(ds.users["user_idx"].to_numpy(), np.arange(ds.num_users)):
        raise DataError("user_idx must run 0..U-1 in order", users_file, field="user_idx")

    t0 = time.time()
    texts = collect_user_texts(ds, ic.text_source, run_dir)
    encoder = TextEncoder(ic.encoder, ic.encoder_batch_size, ic.max_seq_length, device, cache=ic.embedding_cache)
    review_emb = encoder.encode(texts.texts, desc="index: user texts")
    user_ids = ds.users["user_id"].astype(str).tolist()
    id_emb = encoder.encode(user_ids, desc="index: user ids")
    t_encode = time.time() - t0

    indexer = UserIndexer(ic, seed=cfg.seed, device=device, checkpoint_dir=out)
    codes = indexer.fit_transform(review_emb, id_emb, texts.owners)
    t_index = time.time() - t0 - t_encode
    report = indexer.report_
    if report["collisions_after"]["collision_rate"] != 0.0:  # the resolution step guarantees this
        raise RuntimeError("user indices are not unique after resolution")

    table = pd.DataFrame({"user_idx": ds.users["user_idx"].to_numpy(), "user_id": user_ids,
                          "codes": [list(map(int, row)) for row in codes], "tokens": index_tokens(codes)})
    write_parquet(out / art.USER_INDEX.name, table)
    indexer.save(out / art.RQVAE_WEIGHTS.name)
    write_yaml(out / art.RQVAE_CARD.name, {**indexer.params, "in_dim": indexer.in_dim_,
                                    "encoder": ic.encoder})
    (out / CHECKPOINT_FILE).unlink(missing_ok=True)

    report = {
        "users": ds.num_users,
        "text_source": ic.text_source,
        "users_per_source": texts.counts,
        "texts": len(texts.texts),
        "preferences_file": str(art.PREFERENCE_TABLE.path(run_dir)) if texts.counts.get("preferences") else None,
        "encoder": ic.encoder,
        "embedding_dim": int(id_emb.shape[1]),
        **report,
        "semantic_check": semantic_check(user_text_embeddings(review_emb, texts.owners, id_emb), codes,
                                         ds.reference_index),
        "final_epoch": indexer.history_[-1] if indexer.history_ else None,
        "seconds": {"encode": round(t_encode, 2), "fit_and_index": round(t_index, 2),
                    "total": round(time.time() - t0, 2)},
    }
    write_json(out / art.INDEX_REPORT.name, report)
    write_json(out / art.INDEX_LOG.name, indexer.history_)
    cb = report["collisions_before"]
    log.info("index: %d users, collisions %.4f -> %.4f (%d moved), level-1 perplexity %.1f, recon mse %.3g",
             ds.num_users, cb["collision_rate"], report["collisions_after"]["collision_rate"],
             report["resolution"]["moved"], report["codebook"][0]["perplexity"], report["reconstruction_mse"])
    return {"users": ds.num_users, "collision_rate_before": round(cb["collision_rate"], 6),
            "collision_rate_after": report["collisions_after"]["collision_rate"],
            "users_per_source": texts.counts, "perplexity": [round(c["perplexity"], 2) for c in report["codebook"]],
            "reconstruction_mse": report["reconstruction_mse"], "seconds": report["seconds"]["total"]}


def _inputs(cfg: Config, run_dir: Path) -> list[Path]:
    files = [art.INTERACTIONS.path(run_dir), art.USERS.path(run_dir)]
    if cfg.index.text_source in ("auto", "preferences", "titles"):
        files.append(art.ITEMS.path(run_dir))
    if cfg.index.text_source in ("auto", "preferences"):
        files += [p for p in (art.PREFERENCE_TABLE.path(run_dir), art.SOURCE_PREFERENCES.path(run_dir)) if p.exists()]
    if art.REFERENCE_INDEX.path(run_dir).exists():
        files.append(art.REFERENCE_INDEX.path(run_dir))
    return files


STAGE = Stage(
    name=art.INDEX,
    command="index",
    help="personalized user indexing: review encoder, Eq. 1 pooling, RQ-VAE, unique user indices (paper 4.1)",
    params=lambda cfg: {**dataclasses.asdict(cfg.index), "seed": cfg.seed},
    inputs=_inputs,
    build=_build,
    reads=(art.INTERACTIONS, art.USERS, art.ITEMS, art.PREFERENCE_TABLE, art.SOURCE_PREFERENCES, art.REFERENCE_INDEX),
    writes=(art.USER_INDEX, art.INDEX_REPORT, art.RQVAE_WEIGHTS, art.RQVAE_CARD, art.INDEX_LOG),
    sources="the text encoder (index.encoder; the packaged MiniLM by default)",
)
