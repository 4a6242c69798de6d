"""Scoring candidates by how likely the LM finds their titles after the user's history (beyond the paper).

The paper's ranker reads one letter's logit per candidate from a list-wise prompt (paper 4.3). A small LM does
not learn that comparison at any budget this CPU allows (benchmarks/results/ranker_levers*.md): it learns the
retriever's position prior. This module reads the same LM another way, as a language model: each candidate's
score is the log-probability of its title as the next line of the user's history,

    cond(i)   = log p(title_i | "<intro>\\n- h_1\\n- h_2 ... \\n- h_k\\n-")
    uncond(i) = log p(title_i | "<intro>\\n-")
    pmi(i)    = cond(i) - uncond(i)

summed over the title's first ``max_title_tokens`` tokens. ``pmi`` removes how likely a title is anyway (short,
common words), leaving what the history adds: the LM's copying of brands, product lines and vocabulary from the
history (its induction heads). No training and no preference sentence; the history is what the model may see
for the split (``Dataset.history``), so test items never enter.

Cost per user: one decoder pass over the history prefix, whose key/value cache is then shared by all candidate
continuations in one batch; ``uncond`` is computed once per item and reused across users.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmrec.data.dataset import Dataset

SIGNALS = ("pmi", "cond")
INTRO = "Products one shopper bought, oldest first:"


def history_prompt(titles: Sequence[str], intro: str = INTRO) -> str:
    """The prefix a candidate title continues: the intro, one ``- title`` line per history item, then ``-``."""
    return intro + "\n" + "".join(f"- {t}\n" for t in titles) + "-"


def title_tokens(tokenizer, titles: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Each title as it follows ``-``: a leading space, at most ``max_tokens`` tokens, never empty."""
    out = []
    for t in titles:
        ids = tokenizer(" " + str(t).strip(), add_special_tokens=False)["input_ids"][:max_tokens]
        out.append(ids or tokenizer(" ?", add_special_tokens=False)["input_ids"][:1])
    return out


def head_weight(model) -> torch.Tensor:
    """The LM head's weight as float32 (through a PEFT wrapper), converted once per call: pass it on."""
    from ulmrec.ranker.predict import lm_parts

    _, head = lm_parts(model)
    return getattr(head, "base_layer", head).weight.float()


@torch.no_grad()
def continuation_logprobs(model, prefix: Sequence[int], continuations: Sequence[Sequence[int]],
                          device: str = "cpu", weight: torch.Tensor | None = None) -> np.ndarray:
    """``(len(continuations),)``: the summed log-probability of each token list right after ``prefix``.

    The prefix runs once; its key/value cache is expanded to the batch of continuations, right-padded (a causal
    model never lets a real token see the padding after it, so no mask is needed). The LM head runs in float32
    on the positions that predict a continuation token only (``weight``: :func:`head_weight`, computed here when
    not given)."""
    from transformers import DynamicCache

    from ulmrec.ranker.predict import lm_parts

    decoder, _ = lm_parts(model)
    weight = head_weight(model) if weight is None else weight
    b = len(continuations)
    width = max(len(c) for c in continuations)
    ids = torch.zeros((b, width), dtype=torch.long)
    valid = torch.zeros((b, width), dtype=torch.bool)
    for i, c in enumerate(continuations):
        ids[i, :len(c)] = torch.as_tensor(list(c))
        valid[i, :len(c)] = True
    pre = torch.as_tensor([list(prefix)], device=device)
    out = decoder(input_ids=pre, attention_mask=torch.ones_like(pre), use_cache=True)
    p = pre.shape[1]
    past = DynamicCache.from_legacy_cache(tuple(
        (k.expand(b, -1, -1, -1).contiguous(), v.expand(b, -1, -1, -1).contiguous())
        for k, v in out.past_key_values.to_legacy_cache()))
    first = out.last_hidden_state[:, -1:, :].expand(b, 1, -1)  # predicts each continuation's first token
    if width > 1:
        rest = decoder(input_ids=ids[:, :-1].to(device), attention_mask=torch.ones((b, p + width - 1), device=device),
                       position_ids=torch.arange(p, p + width - 1, device=device)[None].expand(b, -1),
                       past_key_values=past, use_cache=True).last_hidden_state
        hidden = torch.cat([first, rest], dim=1)
    else:
        hidden = first
    logp = torch.log_softmax(hidden.float() @ weight.T, dim=-1)  # (b, width, V)
    tok = logp.gather(-1, ids.to(device)[..., None])[..., 0].cpu()
    return tok.masked_fill(~valid, 0.0).sum(1).double().numpy()


class TitleLikelihood:
    """Per-user candidate scores ``{signal: (N, C)}`` from a causal LM (module docstring).

    ``model``/``tokenizer``: a loaded causal LM (an adapter-wrapped ranker works too); ``history``: how many of
    the user's last history titles the prefix lists; ``max_title_tokens``: tokens scored per title."""

    def __init__(self, model, tokenizer, ds: Dataset, history: int = 10, max_title_tokens: int = 16,
                 device: str = "cpu", intro: str = INTRO, uncond_batch: int = 64):
        if history < 1 or max_title_tokens < 1:
            raise ValueError("history and max_title_tokens must be >= 1")
        self.model, self.tok, self.ds, self.device = model, tokenizer, ds, device
        self.history, self.max_title_tokens, self.intro, self.uncond_batch = history, max_title_tokens, intro, uncond_batch
        self._titles = ds.titles
        self._uncond: dict[int, float] = {}
        self._cut_titles: dict[int, str] = {}
        self._weight = head_weight(model).to(device)
        self._bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None \
            and getattr(tokenizer, "add_bos_token", False) else []

    def _encode(self, text: str) -> list[int]:
        return self._bos + self.tok(text, add_special_tokens=False)["input_ids"]

    def _tokens(self, items: Sequence[int]) -> list[list[int]]:
        return title_tokens(self.tok, [str(self._titles[int(i)]) for i in items], self.max_title_tokens)

    def _cut(self, item: int) -> str:
        """A history title cut to the same ``max_title_tokens`` as the candidates' (decoded back to text)."""
        if item not in self._cut_titles:
            self._cut_titles[item] = self.tok.decode(self._tokens([item])[0]).strip()
        return self._cut_titles[item]

    def unconditional(self, items: Sequence[int], progress: bool = False) -> np.ndarray:
        """``uncond`` of each item (cached per item)."""
        todo = sorted({int(i) for i in items} - self._uncond.keys())
        prefix = self._encode(history_prompt([], self.intro))
        for s in tqdm(range(0, len(todo), self.uncond_batch), desc="titles alone", disable=not progress, leave=False):
            chunk = todo[s:s + self.uncond_batch]
            for i, v in zip(chunk, continuation_logprobs(self.model, prefix, self._tokens(chunk), self.device,
                                                                       self._weight),
                            strict=True):
                self._uncond[i] = float(v)
        return np.array([self._uncond[int(i)] for i in items], dtype=np.float64)

    def score(self, users: Sequence[int], candidates: Sequence[Sequence[int]], split: str,
              progress: bool = True, on_user: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
        """``{signal: (N, C)}`` for each user's candidates (``-inf`` past a shorter list)."""
        was_training = self.model.training
        self.model.eval()
        width = max((len(c) for c in candidates), default=0)
        out = {s: np.full((len(users), width), -np.inf) for s in SIGNALS}
        self.unconditional([i for c in candidates for i in c], progress=progress)
        for n, (u, cands) in enumerate(tqdm(list(zip(users, candidates, strict=True)), desc=f"title likelihood ({split})",
                                            disable=not progress, leave=False)):
            hist = [self._cut(int(i)) for i in self.ds.history(int(u), split)[-self.history:]]
            cond = continuation_logprobs(self.model, self._encode(history_prompt(hist, self.intro)),
                                         self._tokens(cands), self.device, self._weight)
            out["cond"][n, :len(cands)] = cond
            out["pmi"][n, :len(cands)] = cond - self.unconditional(cands)
            if on_user is not None:
                on_user(n)
        self.model.train(was_training)
        return out
