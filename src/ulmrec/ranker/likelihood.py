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
history (its induction heads). No training; the history is what the model may see for the split
(``Dataset.history``), so test items never enter.

With ``preferences`` (user -> sentence, e.g. the preferences stage's), the prefix starts with the user's
preference line (``PREFERENCE``) before the intro, so ``cond`` and ``pmi`` also read the sentence the ULMRec
prompts read; ``uncond`` stays the intro alone. Mind where the sentences come from: the shipped GPT-3.5 ones
were written from reviews that include the validation and test period.

Cost per user: one decoder pass over the history prefix, whose key/value cache is then shared by all candidate
continuations in one batch; ``uncond`` is computed once per item and reused across users.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmrec.data.dataset import Dataset
from ulmrec.ranker.predict import lm_parts
from ulmrec.retrieval.candidates import rank_next_items

SIGNALS = ("pmi", "cond")
INTRO = "Products one shopper bought, oldest first:"
PREFERENCE = "What this shopper prefers: {}\n"


def history_prompt(titles: Sequence[str], intro: str = INTRO, preference: str | None = None) -> str:
    """The prefix a candidate title continues: the preference line when given, the intro, one ``- title`` line
    per history item, then ``-``."""
    head = PREFERENCE.format(" ".join(preference.split())) if preference and preference.strip() else ""
    return head + intro + "\n" + "".join(f"- {t}\n" for t in titles) + "-"


def title_tokens(tokenizer, titles: Sequence[str], max_tokens: int) -> list[list[int]]:
    """Each title as it follows ``-``: a leading space, at most ``max_tokens`` tokens, never empty."""
    out = []
    for t in titles:
        ids = tokenizer(" " + str(t).strip(), add_special_tokens=False)["input_ids"][:max_tokens]
        out.append(ids or tokenizer(" ?", add_special_tokens=False)["input_ids"][:1])
    return out


def head_weight(model) -> torch.Tensor:
    """The LM head's weight as float32 (through a PEFT wrapper), converted once per call: pass it on."""
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
    weight = head_weight(model) if weight is None else weight
    return continuation_sums(model, prefix, continuations, device, weight).cpu().double().numpy()


def continuation_sums(model, prefix: Sequence[int], continuations: Sequence[Sequence[int]], device: str,
                      weight: torch.Tensor) -> torch.Tensor:
    """:func:`continuation_logprobs` as a float32 tensor that keeps the autograd graph (for training: the
    gradient flows through the continuations and, by the shared key/value cache, the prefix)."""
    from transformers import DynamicCache

    decoder, _ = lm_parts(model)
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
    tok = logp.gather(-1, ids.to(device)[..., None])[..., 0]
    return tok.masked_fill(~valid.to(device), 0.0).sum(1)


class TitleLikelihood:
    """Per-user candidate scores ``{signal: (N, C)}`` from a causal LM (module docstring).

    ``model``/``tokenizer``: a loaded causal LM (an adapter-wrapped ranker works too); ``history``: how many of
    the user's last history titles the prefix lists; ``max_title_tokens``: tokens scored per title. The
    no-history term is cached per item for the model as it is now: a model tuned afterwards needs a new scorer.
    ``preferences``: user -> sentence put before the history (module docstring); users without one get none."""

    def __init__(self, model, tokenizer, ds: Dataset, history: int = 10, max_title_tokens: int = 16,
                 device: str = "cpu", intro: str = INTRO, uncond_batch: int = 64,
                 preferences: Mapping[int, str] | None = None):
        if history < 1 or max_title_tokens < 1:
            raise ValueError("history and max_title_tokens must be >= 1")
        self.model, self.tok, self.ds, self.device = model, tokenizer, ds, device
        self.history, self.max_title_tokens, self.intro, self.uncond_batch = history, max_title_tokens, intro, uncond_batch
        self._titles = ds.titles
        self.preferences = dict(preferences or {})
        self._uncond: dict[int, float] = {}
        self._cut_titles: dict[int, str] = {}
        self._weight = head_weight(model).to(device)
        self._bos = [tokenizer.bos_token_id] if getattr(tokenizer, "bos_token_id", None) is not None \
            and getattr(tokenizer, "add_bos_token", False) else []
        self._empty_prefix = self._encode(history_prompt([], intro))  # what ``uncond`` conditions on

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
        for s in tqdm(range(0, len(todo), self.uncond_batch), desc="titles alone", disable=not progress, leave=False):
            chunk = todo[s:s + self.uncond_batch]
            values = continuation_logprobs(self.model, self._empty_prefix, self._tokens(chunk), self.device,
                                           self._weight)
            self._uncond.update({i: float(v) for i, v in zip(chunk, values, strict=True)})
        return np.array([self._uncond[int(i)] for i in items], dtype=np.float64)

    def score(self, users: Sequence[int], candidates: Sequence[Sequence[int]], split: str,
              progress: bool = True) -> dict[str, np.ndarray]:
        """``{signal: (N, C)}`` for each user's candidates (``-inf`` past a shorter list)."""
        was_training = self.model.training
        self.model.eval()
        width = max((len(c) for c in candidates), default=0)
        out = {s: np.full((len(users), width), -np.inf) for s in SIGNALS}
        self.unconditional([i for c in candidates for i in c], progress=progress)
        for n, (u, cands) in enumerate(tqdm(list(zip(users, candidates, strict=True)), desc=f"title likelihood ({split})",
                                            disable=not progress, leave=False)):
            hist = [self._cut(int(i)) for i in self.ds.history(int(u), split)[-self.history:]]
            prefix = self._encode(history_prompt(hist, self.intro, self.preferences.get(int(u))))
            cond = continuation_logprobs(self.model, prefix, self._tokens(cands), self.device, self._weight)
            out["cond"][n, :len(cands)] = cond
            out["pmi"][n, :len(cands)] = cond - self.unconditional(cands)
        self.model.train(was_training)
        return out


# ----------------------------------------------------------------------------------------- tuning
def _training_sequences(ds: Dataset) -> tuple[list, np.ndarray]:
    """(every user's TRAINING sequence: the items before their validation item, the users with two or more)."""
    seqs = [ds.history(u, "valid") for u in range(ds.num_users)]
    users = np.array([u for u, s in enumerate(seqs) if len(s) >= 2])
    if not len(users):
        raise ValueError("no user has two training items")
    return seqs, users


def training_positions(ds: Dataset, n: int, seed: int = 0) -> list[tuple[int, int]]:
    """``n`` (user, position ``t >= 1``) of the users' TRAINING sequences (the items before each user's
    validation item): a user with two training items uniformly, then ``t`` uniformly."""
    rng = np.random.default_rng([seed, 13])
    seqs, users = _training_sequences(ds)
    return [(int(u), int(rng.integers(1, len(seqs[int(u)])))) for u in rng.choice(users, size=n)]


def next_title_pairs(ds: Dataset, n: int, history: int, seed: int = 0) -> list[tuple[list[int], int]]:
    """``n`` (history items, next item) pairs drawn from the users' TRAINING sequences only
    (:func:`training_positions`); the history is the ``history`` items before the position. Neither validation
    nor test items ever enter."""
    out = []
    for u, t in training_positions(ds, n, seed):
        s = ds.history(u, "valid")
        out.append(([int(i) for i in s[max(0, t - history):t]], int(s[t])))
    return out


def training_windows(ds: Dataset, n: int, length: int, seed: int = 0) -> list[list[int]]:
    """``n`` windows of the users' TRAINING sequences (the items before each user's validation item): each user's
    last ``length`` training items, users in a shuffled order, every user once before any user twice (a pass over
    the users is an epoch of :func:`train_title_lm` with ``every_title``). Users with fewer than two training
    items are left out. Neither validation nor test items ever enter."""
    if length < 2:
        raise ValueError("a training window needs length >= 2")
    rng = np.random.default_rng([seed, 17])
    seqs, users = _training_sequences(ds)
    order = np.concatenate([rng.permutation(users) for _ in range(-(-n // len(users)))])[:n]
    return [[int(i) for i in seqs[int(u)][-length:]] for u in order]


def listwise_samples(ds: Dataset, retriever, n: int, k: int = 20, seed: int = 0, max_len: int = 50,
                     device: str = "cpu", missing: str = "skip") -> tuple[list[tuple[list[int], list[int], int]], dict]:
    """(samples, info): ``n`` (training prefix, candidates, target's position) at :func:`training_positions`:
    the candidates are ``retriever``'s top ``k`` for the prefix (a trained ``SequentialRecommender``, the same
    kind that makes the test candidates). ``missing``: what to do with a prefix whose true next item the
    retriever did not list: ``skip`` it (positions are drawn until ``n`` are kept, or the draws run out at
    ``20 n``), so every list looks like a Rank user's list at test time, or ``replace`` the last candidate with
    it (then the true item is, in those lists, the one the retriever did not pick). Training sequences only: no
    validation or test item is a prefix item, candidate slot or target by design (a retriever trained on the
    same sequences may still list them as candidates, as it does at test time). ``info``: of all prefixes
    drawn, the fraction whose target the retriever listed (``retrieved``) and listed first (``target_first``);
    a retriever on its own training sequences is better there than at test time."""
    if missing not in ("skip", "replace"):
        raise ValueError(f"missing must be 'skip' or 'replace', got {missing!r}")
    out, ranks, draw = [], [], 0
    while len(out) < n and draw < 20:
        pos = training_positions(ds, n, seed + 1000 * draw)
        draw += 1
        seqs = [ds.history(u, "valid") for u, _ in pos]
        hist = [np.asarray(s[:t], dtype=np.int64) for s, (_, t) in zip(seqs, pos, strict=True)]
        targets = np.array([int(s[t]) for s, (_, t) in zip(seqs, pos, strict=True)], dtype=np.int64)
        res = rank_next_items(retriever, hist, targets, max_len, k=k, device=device)
        ranks.append(res["target_rank"])
        for h, c, tgt, r in zip(hist, res["candidates"], targets, res["target_rank"], strict=True):
            if len(out) == n:
                break
            c = [int(i) for i in c]
            if r < 0:
                if missing == "skip":
                    continue
                c[-1], r = int(tgt), len(c) - 1
            out.append(([int(i) for i in h], c, int(r)))
    r = np.concatenate(ranks)
    return out, {"retrieved": float((r >= 0).mean()), "target_first": float((r == 0).mean()), "missing": missing}


def _optimizer(model, lr: float, warmup: int):
    """(trainable parameters, AdamW, linear warm-up then constant) of a LoRA-wrapped model."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (wrap it with LoRA first)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return params, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup)))


def _update(params, opt, sched, entry: dict, out: list[dict], bar, log) -> None:
    """One optimizer step after the step's backward passes; logs ``entry`` (+ lr)."""
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    entry["lr"] = sched.get_last_lr()[0]
    out.append(entry)
    bar.set_postfix(loss=f"{entry['loss']:.3f}")
    if log is not None:
        log(entry)


def train_title_listwise(model, tokenizer, ds: Dataset, samples: Sequence[tuple[Sequence[int], Sequence[int], int]],
                         batch_size: int = 4, lr: float = 1e-3, history: int = 10, max_title_tokens: int = 12,
                         warmup: int = 20, seed: int = 0, temperature: float = 1.0, signal: str = "pmi",
                         device: str = "cpu",
                         intro: str = INTRO, progress: bool = True, log: Callable[[dict], None] | None = None,
                         max_seconds: float = 0.0) -> list[dict]:
    """Tune ``model`` (LoRA-wrapped; only its trainable parameters move) to rank: for each sample of
    :func:`listwise_samples`, the loss is the cross-entropy of a softmax over its candidates of ``signal / T``
    (:class:`TitleLikelihood`'s scores: the last ``history`` prefix items, each title's first
    ``max_title_tokens`` tokens), towards the true next item. With ``pmi`` the no-history term comes from the
    model as it is at that step, without gradient: it only takes each title's length and commonness out of the
    comparison (summed log-probabilities of titles of different lengths differ by tens of nats), so the gradient
    goes to what the history makes more or less likely. Unlike :func:`train_title_lm`,
    which teaches the next title against the whole vocabulary, this teaches it against the retriever's own
    hardest alternatives, the only ones it will ever be compared with. ``batch_size`` samples per optimizer
    step (one backward pass each); AdamW, linear warm-up then constant; ``max_seconds`` > 0 stops after the
    step that passes that much wall-clock time. Returns the log (one entry per step: loss, the fraction of
    samples whose true item scored highest, lr)."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if signal not in SIGNALS:
        raise ValueError(f"signal must be one of {', '.join(SIGNALS)}, got {signal!r}")
    start = time.perf_counter()
    torch.manual_seed(seed)
    scorer = TitleLikelihood(model, tokenizer, ds, history=history, max_title_tokens=max_title_tokens,
                             device=device, intro=intro)
    params, opt, sched = _optimizer(model, lr, warmup)
    model.train()
    out = []
    steps = len(samples) // batch_size
    bar = tqdm(range(steps), desc="tuning on candidate lists", disable=not progress, leave=False)
    for step in bar:
        batch = samples[step * batch_size:(step + 1) * batch_size]
        total, top = 0.0, 0
        for hist, cands, target in batch:
            prefix = scorer._encode(history_prompt([scorer._cut(int(i)) for i in list(hist)[-history:]], intro))
            titles = scorer._tokens(cands)
            s = continuation_sums(model, prefix, titles, device, scorer._weight)
            if signal == "pmi":
                with torch.no_grad():
                    alone = continuation_sums(model, scorer._empty_prefix, titles, device, scorer._weight)
                s = s - alone
            s = s / temperature
            loss = torch.nn.functional.cross_entropy(s[None], torch.as_tensor([int(target)], device=device))
            (loss / len(batch)).backward()
            total += float(loss.detach()) / len(batch)
            top += int(int(s.detach().argmax()) == int(target))
        _update(params, opt, sched, {"step": step + 1, "loss": total, "top1": top / len(batch)}, out, bar, log)
        if max_seconds and time.perf_counter() - start > max_seconds:
            break
    model.eval()
    return out


def pair_tokens(scorer: TitleLikelihood, pair: tuple[Sequence[int], int], intro: str = INTRO) -> tuple[list[int], list[tuple[int, int]]]:
    """The scorer's prompt over a (history, next item) pair followed by the next item's title, and that title's
    token span ``[a, b)``."""
    prefix = scorer._encode(history_prompt([scorer._cut(i) for i in pair[0]], intro))
    target = scorer._tokens([pair[1]])[0]
    return prefix + target, [(len(prefix), len(prefix) + len(target))]


def window_tokens(scorer: TitleLikelihood, items: Sequence[int], intro: str = INTRO) -> tuple[list[int], list[tuple[int, int]]]:
    """The prompt of :func:`history_prompt` over ``items[:-1]`` followed by ``items[-1]``'s title, built title by
    title, and the token span ``[a, b)`` of every title after the first. Each title's tokens are the scorer's
    (:meth:`TitleLikelihood._tokens`), so a span holds exactly what the scorer would score for that item after the
    titles before it (the earlier ones cut to ``max_title_tokens`` as the scorer's history lines are)."""
    sep = scorer.tok("\n-", add_special_tokens=False)["input_ids"]
    ids = scorer._encode(intro + "\n-")
    spans = []
    for k, item in enumerate(items):
        if k:
            ids = ids + sep
        toks = scorer._tokens([int(item)])[0]
        if k:
            spans.append((len(ids), len(ids) + len(toks)))
        ids = ids + toks
    return ids, spans


def train_title_lm(model, tokenizer, ds: Dataset, steps: int, batch_size: int = 8, lr: float = 1e-3,
                   history: int = 10, max_title_tokens: int = 12, warmup: int = 20, seed: int = 0,
                   device: str = "cpu", intro: str = INTRO, progress: bool = True,
                   log: Callable[[dict], None] | None = None, max_seconds: float = 0.0,
                   every_title: bool = False) -> list[dict]:
    """Tune ``model`` (a LoRA-wrapped causal LM; only its trainable parameters move) on the next title: the loss
    is the cross-entropy of the next item's title tokens (``max_title_tokens``) after the same history prompt
    the scorer reads, averaged over those tokens, on ``steps`` x ``batch_size`` pairs of
    :func:`next_title_pairs`. The LM head runs on the title positions only. AdamW, linear warm-up then constant.
    ``max_seconds`` > 0 stops after the step that passes that much wall-clock time (a budget in time, not steps).

    ``every_title``: each sample is instead a window of ``history + 1`` training titles
    (:func:`training_windows`) in the same prompt format, and the loss covers every title after the window's
    first, each after the titles before it (teacher forcing): one forward pass teaches up to ``history`` next
    titles instead of one, for about the same cost.
    Returns the loss log (one entry per step)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    scorer = TitleLikelihood(model, tokenizer, ds, history=history, max_title_tokens=max_title_tokens,
                             device=device, intro=intro)
    decoder, _ = lm_parts(model)
    weight = scorer._weight
    params, opt, sched = _optimizer(model, lr, warmup)
    if every_title:
        drawn, encode = training_windows(ds, steps * batch_size, history + 1, seed), window_tokens
    else:
        drawn, encode = next_title_pairs(ds, steps * batch_size, history, seed), pair_tokens
    model.train()
    out = []
    bar = tqdm(range(steps), desc="tuning on every title" if every_title else "tuning on next titles",
               disable=not progress, leave=False)
    for step in bar:
        batch = [encode(scorer, d, intro) for d in drawn[step * batch_size:(step + 1) * batch_size]]
        width = max(len(s) for s, _ in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols, labels = [], [], []
        for i, (s, spans) in enumerate(batch):
            ids[i, :len(s)] = torch.as_tensor(s)
            mask[i, :len(s)] = 1
            for a, b in spans:
                for j in range(a, b):  # position j-1 predicts token j
                    rows.append(i), cols.append(j - 1), labels.append(s[j])
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False).last_hidden_state
        logits = hidden[torch.as_tensor(rows), torch.as_tensor(cols)].float() @ weight.T
        loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels, device=device))
        loss.backward()
        _update(params, opt, sched, {"step": step + 1, "loss": float(loss.detach())}, out, bar, log)
        if max_seconds and time.perf_counter() - start > max_seconds:
            break
    model.eval()
    return out
