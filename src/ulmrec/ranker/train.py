"""Alignment tuning (paper 4.3): LoRA on the mixed instruction samples, loss on the response only (Eq. 7).

AdamW with linear warm-up and linear decay; every ``eval_every`` steps the ranker scores a fixed validation
subset, the adapter with the best NDCG@10 is kept in ``<out>/adapter`` and a checkpoint (adapter, optimizer,
step) in ``<out>/checkpoint``, from which an interrupted run resumes exactly (the sample order is a pure
function of the seed and the step). Early stopping after ``patience`` validations without improvement.

Speed (docs/ranker.md, benchmarks/results/ranker_speed.md): samples are tokenized once in bulk; a step's
samples are sorted by length into micro-batches; only the hidden states that predict response tokens go
through the LM head; the base weights may be bf16 (trainable parameters stay float32); LoRA may sit in the
top layers only. Dropout masks are seeded from (seed, step), so resuming is exact.

Several GPUs: the loop runs under ``accelerate`` (each process takes a share of every batch, gradients are
averaged; validation is sharded and gathered; the main process writes files); see :mod:`ulmrec.ranker.launch`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ulmrec.artifacts import ADAPTER, RANKER_BEST, RANKER_CURVES, RANKER_LOG
from ulmrec.errors import ConfigError
from ulmrec.io import read_json, write_json, write_text
from ulmrec.metrics import metrics_from_ranks
from ulmrec.ranker.config import RankerConfig
from ulmrec.ranker.model import load_adapter_weights, save_adapter
from ulmrec.ranker.predict import lm_parts, ranks_from_scores, score_encoded
from ulmrec.ranker.verbalizer import IGNORE, encode_prompts, encode_samples, letter_token_ids
from ulmrec.tasks.base import Sample

log = logging.getLogger("ulmrec")

SELECT_METRIC = "NDCG@10"


@dataclass
class TrainState:
    """What a checkpoint records besides the weights and the optimizer."""

    step: int = 0
    total_steps: int = 0
    best_metric: float = -1.0
    best_step: int = -1
    evals_since_best: int = 0
    done: bool = False
    stop_reason: str = ""
    train_seconds: float = 0.0
    evals: list[dict] = field(default_factory=list)
    running: list[float] = field(default_factory=list)
    """Step losses since the last logged training entry (kept so a resumed run logs the same means)."""


# ----------------------------------------------------------------------------------------- encoding
@dataclass
class Encoded:
    """A tokenized training sample: ``ids`` and ``labels`` (-100 over the prompt), and for a ranking sample
    (next_item, intent) the number of lettered candidates and the target's letter position (else 0 / -1), and
    ``teacher``: the retriever's score of each candidate when the sample has them (``ranker.distill_weight``)."""

    ids: list[int]
    labels: list[int]
    n_candidates: int = 0
    target: int = -1
    teacher: tuple[float, ...] | None = None


def encode_all(tokenizer, samples: list[Sample], max_length: int, what: str = "training") -> list[Encoded]:
    """Tokenize every sample in bulk; a sample longer than ``max_length`` tokens is a ConfigError (before
    training)."""
    encoded, too_long = [], []
    for s, (ids, labels) in zip(samples, encode_samples(tokenizer, samples), strict=True):
        if len(ids) > max_length:
            too_long.append((len(ids), s.task, s.user_idx))
        ranking = s.candidates is not None and s.target is not None
        teacher = tuple(s.meta["teacher"]) if ranking and s.meta.get("teacher") is not None else None
        encoded.append(Encoded(ids, labels, len(s.candidates) if ranking else 0, int(s.target) if ranking else -1,
                               teacher))
    if too_long:
        worst = max(too_long)
        raise ConfigError(f"{len(too_long)} {what} sample(s) are longer than ranker.max_length={max_length} tokens "
                          f"(longest: {worst[0]} tokens, task {worst[1]}, user {worst[2]}); lower "
                          "ranker.max_title_tokens or tasks.max_history, or raise ranker.max_length up to the "
                          "model's context length")
    return encoded


def check_prompt_lengths(tokenizer, samples: list[Sample], max_length: int, what: str) -> int:
    """The longest prompt of ``samples`` (tokens); longer than ``max_length`` is a ConfigError."""
    longest = 0
    for s, ids in zip(samples, encode_prompts(tokenizer, samples), strict=True):
        n = len(ids)
        if n > max_length:
            raise ConfigError(f"a {what} prompt (task {s.task}, user {s.user_idx}) has {n} tokens, more than "
                              f"ranker.max_length={max_length}; lower ranker.max_title_tokens or tasks.max_history")
        longest = max(longest, n)
    return longest


def sample_order(n: int, total: int, seed: int) -> np.ndarray:
    """Indices of the samples seen in order: fresh permutations of ``range(n)`` concatenated to ``total``."""
    rng = np.random.default_rng(seed)
    reps = math.ceil(total / n) if n else 0
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:total] if reps else np.zeros(0, dtype=int)


def total_steps(cfg: RankerConfig, n_samples: int, max_steps: int | None = None) -> int:
    steps = cfg.max_steps if max_steps is None else max_steps
    if steps > 0:
        return steps
    return max(1, math.ceil(cfg.epochs * n_samples / cfg.batch_size))


def micro_batches(encoded: list[Encoded], indices, size: int) -> list[list[int]]:
    """A step's sample indices sorted by length (stable) and cut into micro-batches of ``size``: samples of
    similar length share a forward pass, so little is padded. The step's gradient does not depend on the cut."""
    idx = sorted((int(i) for i in indices), key=lambda i: len(encoded[i].ids))
    return [idx[k:k + size] for k in range(0, len(idx), size)]


def _pad_right(batch: list[Encoded], pad_id: int):
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, :len(e.ids)] = torch.as_tensor(e.ids)
        labels[i, :len(e.labels)] = torch.as_tensor(e.labels)
        mask[i, :len(e.ids)] = 1
    return ids, labels, mask


def response_loss(model, batch: list[Encoded], pad_id: int, device, letter_ids: list[int] | None = None,
                  gather: bool = True, detach_ranking: bool = False, distill: float = 0.0,
                  distill_letters: list[int] | None = None, temperature: float = 1.0, residual: float = 0.0,
                  residual_letters: list[int] | None = None) -> torch.Tensor:
    """Sum over samples of each sample's mean cross-entropy on its response tokens (Eq. 7).

    ``gather``: the decoder's hidden states are gathered at the positions that predict a response token and
    only those rows go through the LM head, so padded and prompt positions are never projected onto the
    vocabulary. (Under a multi-process ``accelerate`` run the wrapped model's own forward is needed for the
    gradient all-reduce, so there ``gather=False`` keeps the last ``logits_to_keep`` positions instead.)
    ``letter_ids``: list-wise loss for ranking samples, a cross-entropy over their candidate letters' logits
    at the answer position (``ranker.next_item_loss=listwise``); other samples keep Eq. 7.
    ``detach_ranking`` (``ranker.index_token_grad=non_ranking``): the input embeddings of ranking samples are
    constants, so their gradient reaches LoRA but not the index-token rows; a micro-batch of ranking samples
    only then needs no backward pass below the lowest trainable layer.
    ``distill`` (``ranker.distill_weight``) with ``distill_letters``: every ranking sample with retriever scores
    (``Encoded.teacher``) adds ``distill`` x the cross-entropy of its candidate-letter distribution at the answer
    position against softmax(teacher / ``temperature``) (knowledge distillation from the retriever).
    ``residual`` (``ranker.residual_weight``) with ``residual_letters``: at the answer position of every ranking
    sample with retriever scores, ``residual`` x log_softmax(teacher) is added to its candidate letters' logits
    before the loss (Eq. 7 or list-wise), so the LM learns a correction of the retriever's order.
    """
    ids, labels, mask = _pad_right(batch, pad_id)
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    inputs = {"input_ids": ids}
    ranking = torch.tensor([e.n_candidates > 0 for e in batch], device=device)  # next_item / intent samples
    if detach_ranking and ranking.any():
        emb = model.get_input_embeddings()(ids)
        emb = emb.detach() if ranking.all() else torch.where(ranking[:, None, None], emb.detach(), emb)
        inputs = {"inputs_embeds": emb}
    target = labels[:, 1:]  # token t+1 is predicted at position t
    listwise = ranking & (letter_ids is not None)
    if listwise.any():  # only the answer position (the first response token's predictor) counts
        first = (target != IGNORE).int().argmax(1)
        cols = torch.arange(target.shape[1], device=device)[None, :]
        target = target.masked_fill(listwise[:, None] & (cols != first[:, None]), IGNORE)
    sel = target != IGNORE  # (B, T-1)
    if gather:
        decoder, head = lm_parts(model)
        hidden = decoder(**inputs, attention_mask=mask, use_cache=False).last_hidden_state[:, :-1]
        picked = hidden[sel]  # (N, H), row-major: samples in order, positions within
    else:
        first = int(sel.float().argmax(1).min())
        keep = sel.shape[1] - first
        logits = model(**inputs, attention_mask=mask, logits_to_keep=keep + 1, use_cache=False).logits
        picked_logits = logits[:, :-1][sel[:, -keep:]] if keep else logits[:, :0].reshape(0, logits.shape[-1])
        sel = sel[:, -keep:] if keep else sel[:, :0]
        target = target[:, -keep:] if keep else target[:, :0]
    rows = sel.nonzero()[:, 0]  # sample of each picked row
    y = target[sel]
    is_list = listwise[rows]
    per_tok = torch.zeros(len(y), device=device, dtype=torch.float32)
    bias = None  # (N, C) residual_weight x log_softmax(teacher) on each answer row, 0 elsewhere
    if residual and residual_letters is not None and any(e.teacher is not None for e in batch):
        bias = _residual_bias(rows, batch, len(residual_letters), residual, device)
        res_letters = torch.as_tensor(residual_letters, device=device)

    def full(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # vocabulary logits (+ the residual)
        z = z.float()
        return z if bias is None else z.index_add(1, res_letters, bias[mask])

    def lettered(z: torch.Tensor, mask: torch.Tensor, letters: torch.Tensor) -> torch.Tensor:
        z = z.float().index_select(1, letters)  # (n, C)
        if bias is not None:
            z = z + bias[mask][:, :len(letters)]
        return z

    if gather:
        if (~is_list).any():
            per_tok[~is_list] = torch.nn.functional.cross_entropy(full(head(picked[~is_list]), ~is_list),
                                                                  y[~is_list], reduction="none")
        if is_list.any():
            letters = torch.as_tensor(letter_ids, device=device)
            logits_l = lettered(head(picked[is_list]), is_list, letters)
            per_tok[is_list] = _listwise(logits_l, y[is_list], letters, batch, rows[is_list])
    else:
        if (~is_list).any():
            per_tok[~is_list] = torch.nn.functional.cross_entropy(full(picked_logits[~is_list], ~is_list),
                                                                  y[~is_list], reduction="none")
        if is_list.any():
            letters = torch.as_tensor(letter_ids, device=device)
            logits_l = lettered(picked_logits[is_list], is_list, letters)
            per_tok[is_list] = _listwise(logits_l, y[is_list], letters, batch, rows[is_list])
    sums = torch.zeros(len(batch), device=device).index_add(0, rows, per_tok)
    n_tok = sel.sum(1).clamp(min=1)
    loss = (sums / n_tok).sum()
    if distill and distill_letters is not None and any(e.teacher is not None for e in batch):
        at = _answer_rows(rows)
        at = at[torch.as_tensor([batch[int(rows[i])].teacher is not None for i in at], dtype=torch.bool,
                                device=device)]
        letters = torch.as_tensor(distill_letters, device=device)
        z = (head(picked[at]) if gather else picked_logits[at]).float().index_select(1, letters)
        loss = loss + distill * _distill(z, [batch[int(rows[i])].teacher for i in at], temperature).sum()
    return loss


def _answer_rows(rows: torch.Tensor) -> torch.Tensor:
    """Indices of each sample's first picked row (``rows``: the sample of each row, in order): the position that
    predicts the letter."""
    first = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
    first[1:] = rows[1:] != rows[:-1]
    return first.nonzero()[:, 0]


def _residual_bias(rows: torch.Tensor, batch: list[Encoded], width: int, weight: float, device) -> torch.Tensor:
    """``(N, width)``: ``weight`` x log_softmax(teacher) over the sample's own candidates on each sample's first
    picked row (the position that predicts the letter), zeros on every other row and past its candidates."""
    bias = torch.zeros((len(rows), width), device=device, dtype=torch.float32)
    for i in _answer_rows(rows).tolist():
        teacher = batch[int(rows[i])].teacher
        if teacher is not None:
            t = torch.as_tensor(teacher, dtype=torch.float32, device=device)
            bias[i, :len(t)] = weight * torch.log_softmax(t, 0)
    return bias


def _distill(logits: torch.Tensor, teachers: list[tuple[float, ...]], temperature: float) -> torch.Tensor:
    """Per sample: cross-entropy of softmax(letter logits) over its own candidates against the teacher's
    softmax(scores / temperature); columns past a sample's candidate count are out of both."""
    n, width = len(teachers), logits.shape[1]
    t = torch.full((n, width), float("-inf"), device=logits.device)
    for i, scores in enumerate(teachers):
        t[i, :len(scores)] = torch.as_tensor(scores, dtype=torch.float32, device=logits.device) / temperature
    valid = torch.isfinite(t)
    logq = torch.log_softmax(logits.masked_fill(~valid, float("-inf")), 1).masked_fill(~valid, 0.0)
    return -(torch.softmax(t, 1) * logq).sum(1)


def _listwise(logits: torch.Tensor, y: torch.Tensor, letters: torch.Tensor, batch: list[Encoded],
              rows: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over each ranking sample's own candidate letters (columns past its count masked)."""
    n = torch.as_tensor([batch[int(r)].n_candidates for r in rows], device=logits.device)[:, None]
    cols = torch.arange(logits.shape[1], device=logits.device)[None, :]
    logits = logits.masked_fill(cols >= n, float("-inf"))
    cls = (letters[None, :] == y[:, None]).int().argmax(1)
    return torch.nn.functional.cross_entropy(logits, cls, reduction="none")


# ----------------------------------------------------------------------------------------- checkpoints
def _save_checkpoint(accelerator, model, tokenizer, optimizer, state: TrainState, ckpt: Path) -> None:
    if not accelerator.is_main_process:
        return
    tmp = ckpt.with_name(f".{ckpt.name}.tmp")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_adapter(accelerator.unwrap_model(model), tokenizer, tmp / "adapter")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    write_json(tmp / "state.json", asdict(state))
    old = ckpt.with_name(f".{ckpt.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if ckpt.exists():
        ckpt.rename(old)
    tmp.rename(ckpt)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------- validation
def _validate(accelerator, model, tokenizer, samples: list[Sample], prompts: list[list[int]], cfg: RankerConfig) -> dict:
    from accelerate.utils import gather_object

    t0 = time.perf_counter()
    share = samples[accelerator.process_index::accelerator.num_processes]
    enc = prompts[accelerator.process_index::accelerator.num_processes]
    scores = np.zeros((0, 0), np.float32)
    if share:
        counts = [len(s.candidates or []) for s in share]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        scores = score_encoded(accelerator.unwrap_model(model), enc, counts, letter_token_ids(tokenizer, max(counts)),
                               pad, cfg.score_batch_size, accelerator.device, progress=accelerator.is_main_process,
                               desc="validating", share_prefix=cfg.share_prefix)
    if share and cfg.residual_weight:
        scores = residual_scores(scores, share, cfg.residual_weight)
    ranks = gather_object(ranks_from_scores(scores, share).tolist()) if share else gather_object([])
    return {**metrics_from_ranks(np.asarray(ranks), (5, 10)), "users": len(ranks),
            "seconds": round(time.perf_counter() - t0, 2), "ranks": [int(r) for r in ranks]}


def residual_scores(scores: np.ndarray, samples: list[Sample], weight: float) -> np.ndarray:
    """Letter scores + ``weight`` x log_softmax(the retriever's scores, ``meta["teacher"]``) per sample: the
    order a ``ranker.residual_weight`` adapter was trained to produce."""
    out = np.array(scores, dtype=np.float64, copy=True)
    for i, s in enumerate(samples):
        t = np.asarray(s.meta["teacher"], dtype=np.float64)
        t = t - t.max()
        out[i, :len(t)] += weight * (t - np.log(np.exp(t).sum()))
    return out


def step_seed(seed: int, step: int) -> int:
    """The torch seed of optimisation step ``step``: dropout masks are a pure function of (seed, step), so a
    run resumed from a checkpoint draws exactly the masks an uninterrupted one draws."""
    return (int(seed) * 1_000_003 + int(step)) % (2**63 - 1)


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log entries written after ``step`` (the steps an interrupted run did past its checkpoint)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    write_text(path, "".join(line + "\n" for line in keep))


# ----------------------------------------------------------------------------------------- the loop
def train_ranker(model, tokenizer, train_samples: list[Sample], valid_samples: list[Sample], cfg: RankerConfig,
                 out_dir: Path, seed: int = 42, max_steps: int | None = None, name: str = "ranker") -> dict:
    """Train ``model`` (a PEFT model) in place; the best adapter ends up in ``out_dir/adapter``.

    Returns the summary also written to ``out_dir/best.json``.
    """
    from accelerate import Accelerator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    if not train_samples:
        raise ConfigError(f"{name}: no training samples (check the tasks settings and the input artifacts)")
    encoded = encode_all(tokenizer, train_samples, cfg.max_length)
    if cfg.distill_weight and not any(e.teacher is not None for e in encoded):
        raise ConfigError(f"{name}: ranker.distill_weight={cfg.distill_weight} needs training samples with the "
                          "retriever's scores: set tasks.train_candidates=retriever (or retriever_shuffled) and "
                          "retrieval.train_candidates=true, or ranker.distill_weight=0")
    valid_prompts = encode_prompts(tokenizer, valid_samples)  # once, reused at every validation
    encode_all(tokenizer, valid_samples, cfg.max_length, what="validation")
    steps = total_steps(cfg, len(encoded), max_steps)
    order = sample_order(len(encoded), steps * cfg.batch_size, seed)
    warmup = min(cfg.warmup_steps, max(1, steps // 10))

    ckpt = out_dir / "checkpoint"
    state = TrainState(total_steps=steps)
    resume = (ckpt / "state.json").exists()
    if resume:
        load_adapter_weights(model, ckpt / "adapter")  # before the optimizer is made
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
        state = TrainState(**read_json(ckpt / "state.json"))
        if state.total_steps != steps:
            raise ConfigError(f"{ckpt}: the checkpoint was made for {state.total_steps} steps, now {steps}; "
                              "delete it or restore the settings")
        log.info("%s: resuming from step %d of %d", name, state.step, steps)
        if accelerator.is_main_process:
            _truncate_log(out_dir / RANKER_LOG.name, state.step)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    for group in optimizer.param_groups:  # the schedule below scales the base rate from this step on
        group["lr"] = group["initial_lr"] = cfg.lr
    first_step = state.step
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_at(i + first_step))
    model, optimizer = accelerator.prepare(model, optimizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    log_path = out_dir / RANKER_LOG.name
    world, rank = accelerator.num_processes, accelerator.process_index
    gather = world == 1  # the hidden-state gather bypasses the (DDP-)wrapped forward; see response_loss
    n_letters = max((e.n_candidates for e in encoded), default=0)
    letters = letter_token_ids(tokenizer, n_letters) if n_letters else None
    letter_ids = letters if cfg.next_item_loss == "listwise" else None
    distill_letters = letters if cfg.distill_weight else None
    residual_letters = letters if cfg.residual_weight else None
    if cfg.residual_weight and not any(e.teacher is not None for e in encoded):
        raise ConfigError(f"{name}: ranker.residual_weight={cfg.residual_weight} needs training samples with the "
                          "retriever's scores: set tasks.train_candidates=retriever (or retriever_shuffled) and "
                          "retrieval.train_candidates=true, or ranker.residual_weight=0")

    def evaluate_and_checkpoint() -> None:
        metrics = _validate(accelerator, model, tokenizer, valid_samples, valid_prompts, cfg) if valid_samples else {}
        value = metrics.get(SELECT_METRIC, float("nan"))
        improved = not valid_samples or (not math.isnan(value) and value > state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = (value if valid_samples else -1.0), state.step, 0
            if accelerator.is_main_process:
                save_adapter(accelerator.unwrap_model(model), tokenizer, out_dir / ADAPTER.name)
        else:
            state.evals_since_best += 1
        entry = {"step": state.step, "valid": metrics, "best": improved}
        state.evals.append(entry)
        _append_log(accelerator, log_path, {"event": "eval", **entry})
        state.evals[-1] = {**entry, "valid": {k: v for k, v in metrics.items() if k != "ranks"}}  # small state
        log.info("%s: step %d valid %s=%.4f (best %.4f at step %d)", name, state.step, SELECT_METRIC, value,
                 state.best_metric, state.best_step)
        if cfg.patience and state.evals_since_best >= cfg.patience:
            state.done, state.stop_reason = True, f"early stop: {cfg.patience} validations without improvement"
        if state.step >= steps:
            state.done, state.stop_reason = True, state.stop_reason or "step budget reached"
        _save_checkpoint(accelerator, model, tokenizer, optimizer, state, ckpt)
        if accelerator.is_main_process:
            write_curves(log_path, out_dir / RANKER_CURVES.name, name)
        accelerator.wait_for_everyone()

    model.train()
    if cfg.eval_first and valid_samples and not resume:
        evaluate_and_checkpoint()  # step 0: the untuned model competes for "best" too
    bar = tqdm(total=steps, initial=state.step, desc=f"training {name}", disable=not accelerator.is_main_process)
    running, t_last = state.running, time.perf_counter()
    while not state.done:
        if state.step >= steps:
            evaluate_and_checkpoint()
            break
        t0 = time.perf_counter()
        torch.manual_seed(step_seed(seed, state.step))
        batch_idx = order[state.step * cfg.batch_size:(state.step + 1) * cfg.batch_size]
        mine = batch_idx[rank::world]
        batch_loss = 0.0
        for micro_idx in micro_batches(encoded, mine, cfg.micro_batch_size):
            micro = [encoded[i] for i in micro_idx]
            loss = response_loss(model, micro, pad, accelerator.device, letter_ids, gather,
                                 detach_ranking=cfg.index_token_grad == "non_ranking", distill=cfg.distill_weight,
                                 distill_letters=distill_letters,
                                 temperature=cfg.distill_temperature, residual=cfg.residual_weight,
                                 residual_letters=residual_letters) * world / len(batch_idx)
            accelerator.backward(loss)
            batch_loss += float(loss.detach()) / world
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.train_seconds += time.perf_counter() - t0
        running.append(batch_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(running[-20:]):.3f}")
        if state.step % 10 == 0 or state.step == steps:
            _append_log(accelerator, log_path, {"event": "train", "step": state.step, "loss": round(float(np.mean(running)), 5),
                                                "lr": scheduler.get_last_lr()[0],
                                                "seconds": round(time.perf_counter() - t_last, 2)})
            running, t_last = state.running, time.perf_counter()
        if state.step % cfg.eval_every == 0 or state.step >= steps:
            evaluate_and_checkpoint()
    bar.close()
    summary = {"name": name, "steps": state.step, "total_steps": steps, "train_samples": len(encoded),
               "samples_seen": state.step * cfg.batch_size, "valid_users": len(valid_samples),
               "best_step": state.best_step, f"best_valid_{SELECT_METRIC}": state.best_metric,
               "stop_reason": state.stop_reason, "train_seconds": round(state.train_seconds, 1),
               "seconds_per_step": round(state.train_seconds / max(1, state.step), 3)}
    if accelerator.is_main_process:
        write_json(out_dir / RANKER_BEST.name, summary)
    return summary


def _append_log(accelerator, path: Path, entry: dict) -> None:
    if accelerator.is_main_process:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def write_curves(log_path: Path, png: Path, name: str = "ranker") -> None:
    """Training loss and validation NDCG@10 against the step, from ``train_log.jsonl``, as a PNG (atomic);
    also as TensorBoard event files in ``<dir>/tensorboard/`` when the tensorboard package is installed."""
    if not log_path.exists():
        return
    entries = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [(e["step"], e["loss"]) for e in entries if e.get("event") == "train"]
    evals = [(e["step"], e["valid"].get(SELECT_METRIC)) for e in entries
             if e.get("event") == "eval" and e.get("valid")]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    if train:
        ax[0].plot(*zip(*train, strict=True), lw=1)
    ax[0].set(xlabel="step", ylabel="training loss", title=f"{name}: loss")
    if evals:
        ax[1].plot(*zip(*evals, strict=True), marker="o", lw=1)
    ax[1].set(xlabel="step", ylabel=f"validation {SELECT_METRIC}", title=f"{name}: validation")
    fig.tight_layout()
    tmp = png.with_name(f".{png.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(png)
    _tensorboard(png.parent / "tensorboard", train, evals)


def _tensorboard(directory: Path, train: list, evals: list) -> None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # noqa: BLE001 - tensorboard is optional
        return
    import shutil

    shutil.rmtree(directory, ignore_errors=True)  # rewritten whole from the log, so a resumed run stays continuous
    with SummaryWriter(str(directory)) as writer:
        for step, loss in train:
            writer.add_scalar("train/loss", loss, step)
        for step, value in evals:
            writer.add_scalar(f"valid/{SELECT_METRIC}", value, step)
