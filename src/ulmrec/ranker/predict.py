"""Scoring candidates with a trained ranker (paper 4.3, inference): one forward pass per prompt.

Prompts are tokenized in bulk, sorted by length and left-padded into batches (explicit position ids, so
padding never shifts positions). Only the decoder runs over the prompt; the LM head is applied to the last
position's hidden state for the candidate letters' rows alone, in float32, so a bf16 model does not round the
letters' logits into ties and the (positions x vocabulary) projection is never computed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmrec.metrics import target_rank
from ulmrec.ranker.verbalizer import encode_prompts, letter_token_ids
from ulmrec.tasks.base import Sample


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.as_tensor(s)
        mask[i, width - len(s):] = 1
    return ids, mask


def lm_parts(model):
    """``(decoder, lm_head)`` of a causal LM, PEFT-wrapped or not (LoRA layers live inside the decoder)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder(), base.get_output_embeddings()


def output_rows(lm_head, ids: Sequence[int]) -> torch.Tensor:
    """Rows ``ids`` of the LM head's weight as float32 (through a PEFT trainable-tokens wrapper, whose delta
    rows only ever concern added index tokens, never the answer letters)."""
    weight = getattr(lm_head, "base_layer", lm_head).weight
    return weight[torch.as_tensor(list(ids), device=weight.device)].float()


@torch.no_grad()
def last_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) left-padded prompts -> (B, H) final hidden state at the last position (the answer position)."""
    decoder, _ = lm_parts(model)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state[:, -1, :]


def common_prefix(encoded: list[list[int]]) -> int:
    """Length of the token prefix every prompt shares, leaving each prompt at least one token of its own."""
    if not encoded:
        return 0
    first, n = encoded[0], min(len(e) for e in encoded) - 1
    for e in encoded[1:]:
        k = 0
        while k < n and e[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


@torch.no_grad()
def prefix_cache(model, prefix: list[int], device: str) -> tuple:
    """The decoder's key/value cache of a shared prompt prefix, as per-layer ``(key, value)`` tensors."""
    decoder, _ = lm_parts(model)
    ids = torch.as_tensor([prefix], device=device)
    out = decoder(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True)
    return tuple((k, v) for k, v in out.past_key_values.to_legacy_cache())


@torch.no_grad()
def last_hidden_after_prefix(model, cache: tuple, prefix_len: int, input_ids: torch.Tensor,
                             attention_mask: torch.Tensor) -> torch.Tensor:
    """Like :func:`last_hidden` for prompts that all start with the cached prefix: ``input_ids`` (B, S) are the
    left-padded rest. The padding sits between prefix and rest and is masked out; positions continue from the
    prefix, so the result equals the full prompt's (up to float rounding)."""
    from transformers import DynamicCache

    decoder, _ = lm_parts(model)
    b = input_ids.shape[0]
    past = DynamicCache.from_legacy_cache(tuple((k.expand(b, -1, -1, -1).contiguous(), v.expand(b, -1, -1, -1).contiguous())
                                                for k, v in cache))
    mask = torch.cat([torch.ones((b, prefix_len), dtype=attention_mask.dtype, device=attention_mask.device),
                      attention_mask], dim=1)
    position_ids = prefix_len + (attention_mask.cumsum(-1) - 1).clamp(min=0)
    cache_position = torch.arange(prefix_len, prefix_len + input_ids.shape[1], device=input_ids.device)
    out = decoder(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, past_key_values=past,
                  cache_position=cache_position, use_cache=True)
    return out.last_hidden_state[:, -1, :]


@torch.no_grad()
def score_encoded(model, encoded: list[list[int]], counts: list[int], letters: list[int], pad_id: int,
                  batch_size: int = 4, device: str = "cpu", progress: bool = True, desc: str = "scoring",
                  share_prefix: bool = False) -> np.ndarray:
    """Letter scores ``(N, C)`` of already tokenized prompts (-inf past a sample's ``counts`` candidates).

    ``share_prefix``: the token prefix all prompts share (the instruction, ~10 % of a next-item prompt) is run
    through the decoder once and its key/value cache reused by every batch."""
    out = np.full((len(encoded), len(letters)), -np.inf, dtype=np.float32)
    if not encoded:
        return out
    _, head = lm_parts(model)
    rows = output_rows(head, letters).to(device)  # (C, H)
    cols = torch.arange(len(letters))[None, :]
    order = np.argsort([-len(e) for e in encoded], kind="stable")  # longest first: memory peaks at once
    was_training = model.training
    model.eval()
    p = common_prefix(encoded) if share_prefix else 0
    cache = prefix_cache(model, encoded[0][:p], device) if p >= 4 else None
    bar = tqdm(total=len(encoded), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(encoded), batch_size):
        idx = order[start:start + batch_size]
        if cache is not None:
            ids, mask = _left_pad([encoded[i][p:] for i in idx], pad_id)
            h = last_hidden_after_prefix(model, cache, p, ids.to(device), mask.to(device)).float()  # (b, H)
        else:
            ids, mask = _left_pad([encoded[i] for i in idx], pad_id)
            h = last_hidden(model, ids.to(device), mask.to(device)).float()  # (b, H)
        scores = (h @ rows.T).cpu()  # (b, C)
        n = torch.as_tensor([counts[i] for i in idx])[:, None]
        out[idx] = scores.masked_fill(cols >= n, float("-inf")).numpy()
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return out


def score_samples(model, tokenizer, samples: Sequence[Sample], batch_size: int = 4, device: str = "cpu",
                  progress: bool = True, desc: str = "scoring", encoded: list[list[int]] | None = None,
                  share_prefix: bool = False) -> tuple[np.ndarray, float]:
    """Scores ``(N, C)`` for the lettered candidates of each sample (-inf past a sample's candidates), and the
    wall-clock seconds spent (tokenizing included unless ``encoded`` prompts are given)."""
    t0 = time.perf_counter()
    if not samples:
        return np.zeros((0, 0), dtype=np.float32), 0.0
    counts = [len(s.candidates or []) for s in samples]
    letters = letter_token_ids(tokenizer, max(counts))
    encoded = encode_prompts(tokenizer, samples) if encoded is None else encoded
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = score_encoded(model, encoded, counts, letters, pad, batch_size, device, progress, desc, share_prefix)
    return out, time.perf_counter() - t0


def ranks_from_scores(scores: np.ndarray, samples: Sequence[Sample]) -> np.ndarray:
    """0-based rank of each sample's target among its candidates (-1 when the target is not among them)."""
    target = np.array([s.target if s.target is not None else -1 for s in samples], dtype=np.int64)
    return ranks_of_targets(scores, target)


def ranks_of_targets(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of ``targets[i]`` in row ``i`` of ``scores``; non-finite scores (no candidate) never outrank it."""
    valid = np.isfinite(scores)
    safe = np.where(valid, scores, np.finfo(np.float32).min)
    return target_rank(safe, np.asarray(targets, dtype=np.int64), valid).numpy()
