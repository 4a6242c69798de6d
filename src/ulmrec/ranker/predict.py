"""Scoring candidates with a trained ranker (paper 4.3, inference): one forward pass per prompt.

Prompts are left-padded (explicit position ids, so padding never shifts positions) and only the last
position's logits are computed; the verbalizer turns them into scores for all lettered candidates at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmrec.evaluation.metrics import metrics_from_ranks, target_rank
from ulmrec.ranker.verbalizer import encode_prompt, letter_scores, letter_token_ids
from ulmrec.tasks.base import Sample


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.as_tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


@torch.no_grad()
def answer_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) left-padded prompts -> (B, V) logits at the last position (the answer position)."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=1, use_cache=False)
    return out.logits[:, -1, :]


@torch.no_grad()
def score_samples(model, tokenizer, samples: Sequence[Sample], batch_size: int = 4, device: str = "cpu",
                  progress: bool = True, desc: str = "scoring") -> tuple[np.ndarray, float]:
    """Scores ``(N, C)`` for the lettered candidates of each sample (-inf past a sample's candidates), and the
    wall-clock seconds spent (tokenizing included)."""
    t0 = time.perf_counter()
    if not samples:
        return np.zeros((0, 0), dtype=np.float32), 0.0
    counts = [len(s.candidates or []) for s in samples]
    width = max(counts)
    letters = letter_token_ids(tokenizer, width)
    encoded = [encode_prompt(tokenizer, s) for s in samples]
    order = np.argsort([len(e) for e in encoded], kind="stable")  # similar lengths share a batch
    out = np.full((len(samples), width), -np.inf, dtype=np.float32)
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = tqdm(total=len(samples), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(samples), batch_size):
        idx = order[start:start + batch_size]
        ids, mask = _left_pad([encoded[i] for i in idx], pad)
        logits = answer_logits(model, ids.to(device), mask.to(device))
        scores = letter_scores(logits, letters, [counts[i] for i in idx])
        out[idx] = scores.cpu().numpy()
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return out, time.perf_counter() - t0


def ranks_from_scores(scores: np.ndarray, samples: Sequence[Sample]) -> np.ndarray:
    """0-based rank of each sample's target among its candidates (-1 when the target is not among them)."""
    target = np.array([s.target if s.target is not None else -1 for s in samples], dtype=np.int64)
    valid = np.isfinite(scores)
    safe = np.where(valid, scores, np.finfo(np.float32).min)
    return target_rank(safe, target, valid).numpy()


def evaluate_samples(model, tokenizer, samples: Sequence[Sample], batch_size: int = 4, device: str = "cpu",
                     ks: Sequence[int] = (5, 10), progress: bool = True) -> dict:
    """Rank metrics of the verbalizer's order on ``samples`` (all with their target among the candidates)."""
    scores, seconds = score_samples(model, tokenizer, samples, batch_size, device, progress, desc="validating")
    ranks = ranks_from_scores(scores, samples)
    return {**metrics_from_ranks(ranks, ks), "users": len(samples), "seconds": round(seconds, 3)}
