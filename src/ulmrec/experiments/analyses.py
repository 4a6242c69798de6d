"""Analyses of a trained full model: the index-prefix case study (paper 5.4.4, Fig. 10) and the inference time
per test user (paper 5.4.3).
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from ulmrec.artifacts import adapter_dir, candidates_path
from ulmrec.config import Config
from ulmrec.data.dataset import Dataset
from ulmrec.ranker.engine import Ranker, base_title_cutter, load_identities
from ulmrec.ranker.verbalizer import encode_prompt
from ulmrec.tasks import (
    INSTRUCTIONS,
    Sample,
    build_eval_samples,
    load_preferences,
    rank_users,
    read_identities,
)
from ulmrec.tasks.templates import fields

log = logging.getLogger("ulmrec")

_WORD = re.compile(r"[a-z0-9]+")
#: Words left out of the overlap score (they say nothing about a particular user).
STOP = {"the", "and", "user", "users", "prefers", "prefer", "with", "for", "that", "their", "they", "like",
        "likes", "enjoys", "enjoy", "interested", "interest", "products", "product", "games", "game", "items",
        "especially", "such", "from", "this", "have", "has", "are", "but", "who", "also", "towards", "toward",
        "showing", "shows", "some", "well", "other", "into", "using"}


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 2 and w not in STOP}


def overlap(generated: str, reference: str) -> float:
    """Share of the reference preference's content words that the generated text contains (nan: none)."""
    ref = content_words(reference)
    return len(ref & content_words(generated)) / len(ref) if ref else float("nan")


def _load_full_model(cfg: Config, run_dir: Path):
    """The trained ULMRec ranker of ``run_dir`` (:class:`ulmrec.ranker.engine.Ranker`)."""
    return Ranker.load(cfg.ranker, adapter_dir(run_dir), cfg.device)


def case_users(cfg: Config, run_dir: Path, n: int, seed: int) -> list[int]:
    """``n`` test Rank users (with an identity and a preference), drawn with ``seed`` from the sorted list."""
    import pandas as pd

    ds = Dataset.load(run_dir)
    ids, prefs = read_identities("index", ds, run_dir), load_preferences(ds, run_dir)
    cands = pd.read_parquet(candidates_path(run_dir, "test"))
    users = [int(u) for u in rank_users(cands, cfg.tasks.num_candidates)["user_idx"] if int(u) in ids and int(u) in prefs]
    if not users:
        return []
    pick = np.random.default_rng([seed, 10]).choice(len(users), min(n, len(users)), replace=False)
    return sorted(users[i] for i in pick)


def case_study(cfg: Config, run_dir: Path, users: list[int], max_new_tokens: int = 48) -> list[dict[str, Any]]:
    """Greedy generation of each user's preference from the first 1..L tokens of the user's index (Fig. 10)."""
    import torch

    ds = Dataset.load(run_dir)
    ids, prefs = read_identities("index", ds, run_dir), load_preferences(ds, run_dir)
    ranker = _load_full_model(cfg, run_dir)
    model, tok, device = ranker.model, ranker.tokenizer, ranker.device
    rows = []
    for u in users:
        tokens = ids[u].split()
        for level in range(1, len(tokens) + 1):
            prefix = " ".join(tokens[:level])
            sample = Sample("index_to_preference", u, INSTRUCTIONS["index_to_preference"], fields(("User ID", prefix)),
                            prefs.get(u, ""))
            prompt = torch.as_tensor([encode_prompt(tok, sample)], device=device)
            with torch.no_grad():
                out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                     max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            text = tok.decode(out[0, prompt.shape[1]:], skip_special_tokens=True).strip()
            rows.append({"user_idx": u, "level": level, "index_prefix": prefix, "generated": text,
                         "reference": prefs.get(u, ""), "overlap": overlap(text, prefs.get(u, ""))})
            log.info("case study: user %d, level %d (%s): %s", u, level, prefix, text[:100])
    return rows


def inference_time(cfg: Config, run_dir: Path, n_users: int, seed: int) -> dict[str, Any]:
    """Seconds per test user, one user at a time (tokenizing, the forward pass, the verbalizer), for the full
    prompt and the no-history prompt; plus the time to load the model."""
    import pandas as pd

    ds = Dataset.load(run_dir)
    cands = pd.read_parquet(candidates_path(run_dir, "test"))
    identities = load_identities(cfg, ds, Path(run_dir))
    t0 = time.perf_counter()
    ranker = _load_full_model(cfg, run_dir)
    load_s = time.perf_counter() - t0
    cut = base_title_cutter(cfg.ranker)
    out: dict[str, Any] = {"load_seconds": round(load_s, 2), "device": ranker.device, "threads": cfg.ranker.num_threads,
                           "loadavg_before": os.getloadavg()[0], "prompts": {}}
    for prompt in ("full", "no_history"):
        samples = build_eval_samples(ds, "test", cands, cfg.tasks, identities=identities, title_fn=cut, prompt=prompt,
                                     max_users=n_users, seed=seed)
        ranker.score(samples[:1], batch_size=1, progress=False)  # warm-up
        per_user = []
        for s in samples:
            _, sec = ranker.score([s], batch_size=1, progress=False)
            per_user.append(sec)
        lengths = [len(encode_prompt(ranker.tokenizer, s)) for s in samples]
        out["prompts"][prompt] = {"users": len(samples), "mean_seconds": float(np.mean(per_user)),
                                  "std_seconds": float(np.std(per_user, ddof=1)) if len(per_user) > 1 else float("nan"),
                                  "median_seconds": float(np.median(per_user)),
                                  "mean_prompt_tokens": float(np.mean(lengths))}
        log.info("inference time (%s): %.3f s per user over %d users", prompt, np.mean(per_user), len(samples))
    out["loadavg_after"] = os.getloadavg()[0]
    return out
