"""Tokenizing instruction samples and the verbalizer (paper 4.3).

Training supervises the response only: ``labels`` are -100 over the prompt and the response's token ids after
it. The prompt (everything up to ``### Response:\\n``) and the response are tokenized *separately* and
concatenated, so the first supervised token of a ranking sample is exactly ``response_ids(tokenizer, "C")[0]``
whatever the tokenizer does at word boundaries. The verbalizer reads the LM head's logits at the last prompt
position for exactly those ids (:func:`letter_token_ids`). LlamaRec reads ``▁A``..``▁T`` while it trains on
``A``..``T`` after a newline (REFERENCE.md); here both come from the same function, and a test asserts it for
every supported tokenizer.
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch

from ulmrec.errors import ConfigError
from ulmrec.tasks.base import Sample
from ulmrec.tasks.templates import format_prompt as _format_prompt

LETTERS = string.ascii_uppercase
IGNORE = -100


def format_prompt(sample: Sample) -> str:
    """The prompt text up to and including ``### Response:\\n`` (the tasks package's template)."""
    return _format_prompt(sample)


def prompt_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's usual start-of-text token."""
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def response_ids(tokenizer, response: str) -> list[int]:
    """Token ids of a response as training supervises them: the text alone, then end-of-text."""
    ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_prompt(tokenizer, sample: Sample) -> list[int]:
    """Token ids of a sample's prompt (what the verbalizer reads the answer after)."""
    return prompt_ids(tokenizer, format_prompt(sample))


def encode_sample(tokenizer, sample: Sample, prompt: str | None = None) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)``: the loss is on the response only (labels -100 over the prompt)."""
    p = prompt_ids(tokenizer, format_prompt(sample) if prompt is None else prompt)
    r = response_ids(tokenizer, sample.response)
    return p + r, [IGNORE] * len(p) + r


def encode_prompts(tokenizer, samples: Sequence[Sample]) -> list[list[int]]:
    """:func:`encode_prompt` for many samples in one call of the (Rust) fast tokenizer; the same ids."""
    if not samples:
        return []
    return [list(x) for x in tokenizer([format_prompt(s) for s in samples], add_special_tokens=True)["input_ids"]]


def encode_samples(tokenizer, samples: Sequence[Sample]) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_sample` for many samples in two bulk tokenizer calls; the same ``(input_ids, labels)``."""
    if not samples:
        return []
    prompts = encode_prompts(tokenizer, samples)
    responses = tokenizer([s.response for s in samples], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = []
    for p, r in zip(prompts, responses, strict=True):
        r = list(r) + eos
        out.append((p + r, [IGNORE] * len(p) + r))
    return out


def letter_token_ids(tokenizer, n: int) -> list[int]:
    """The token id that training supervises first for each of the letters A.. (``n`` of them).

    Every letter must be one token of its own and the ids distinct, else scores would be ambiguous.
    """
    if n > len(LETTERS):
        raise ConfigError(f"at most {len(LETTERS)} lettered candidates are supported, got {n}")
    ids = []
    for letter in LETTERS[:n]:
        r = response_ids(tokenizer, letter)
        body = r[:-1] if tokenizer.eos_token_id is not None else r
        if len(body) != 1:
            raise ConfigError(f"the tokenizer splits the answer letter {letter!r} into {len(body)} tokens "
                              f"({tokenizer.convert_ids_to_tokens(body)}); the verbalizer needs one token per letter")
        ids.append(body[0])
    if len(set(ids)) != n:
        raise ConfigError("the tokenizer maps two answer letters to the same token")
    return ids


def letter_scores(answer_logits: torch.Tensor, letter_ids: Sequence[int], n_candidates: int | Sequence[int]) -> torch.Tensor:
    """Candidate scores from the LM head's logits at the answer position.

    ``answer_logits`` (B, V) -> (B, C) with C = len(letter_ids); columns past a row's candidate count are -inf.
    """
    ids = torch.as_tensor(list(letter_ids), device=answer_logits.device)
    scores = answer_logits.index_select(1, ids).float()  # (B, C)
    counts = torch.as_tensor(n_candidates, device=scores.device).reshape(-1, 1).expand(scores.shape[0], 1)
    cols = torch.arange(scores.shape[1], device=scores.device)[None, :]
    return scores.masked_fill(cols >= counts, float("-inf"))
