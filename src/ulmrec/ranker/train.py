"""Alignment tuning (paper 4.3): LoRA on the mixed instruction samples, loss on the response only (Eq. 7).

AdamW with linear warm-up and linear decay; every ``eval_every`` steps the ranker scores a fixed validation
subset, the adapter with the best NDCG@10 is kept in ``<out>/adapter`` and a checkpoint (adapter, optimizer,
step) in ``<out>/checkpoint``, from which an interrupted run resumes exactly (the sample order is a pure
function of the seed and the step). Early stopping after ``patience`` validations without improvement.

Several GPUs: the loop runs under ``accelerate`` (each process takes a share of every batch, gradients are
averaged; validation is sharded and gathered; the main process writes files)::

    accelerate launch --multi_gpu --num_processes 4 -m ulmrec.ranker.train -c beauty run_dir=runs/beauty
    ulmrec train -c beauty run_dir=runs/beauty      # finds the finished checkpoint and completes the stage
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

from ulmrec.errors import ConfigError
from ulmrec.evaluation.metrics import metrics_from_ranks
from ulmrec.io import read_json, write_json
from ulmrec.ranker.config import RankerConfig
from ulmrec.ranker.model import save_adapter
from ulmrec.ranker.predict import ranks_from_scores, score_samples
from ulmrec.ranker.verbalizer import IGNORE, encode_prompt, encode_sample
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


# ----------------------------------------------------------------------------------------- encoding
def encode_all(tokenizer, samples: list[Sample], max_length: int, what: str = "training") -> list[tuple[list[int], list[int]]]:
    """Tokenize every sample; a sample longer than ``max_length`` tokens is a ConfigError (before training)."""
    encoded, too_long = [], []
    for s in samples:
        ids, labels = encode_sample(tokenizer, s)
        if len(ids) > max_length:
            too_long.append((len(ids), s.task, s.user_idx))
        encoded.append((ids, labels))
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
    for s in samples:
        n = len(encode_prompt(tokenizer, s))
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


def _pad_right(batch: list[tuple[list[int], list[int]]], pad_id: int):
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, (x, y) in enumerate(batch):
        ids[i, :len(x)] = torch.as_tensor(x)
        labels[i, :len(y)] = torch.as_tensor(y)
        mask[i, :len(x)] = 1
    return ids, labels, mask


def response_loss(model, batch: list[tuple[list[int], list[int]]], pad_id: int, device) -> torch.Tensor:
    """Sum over samples of each sample's mean cross-entropy on its response tokens (Eq. 7).

    Only the last positions that hold response tokens go through the LM head (``logits_to_keep``), which
    spares the (T x vocabulary) projection of the prompt.
    """
    ids, labels, mask = _pad_right(batch, pad_id)
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    first = int((labels != IGNORE).float().argmax(1).min())  # earliest supervised position in the batch
    keep = ids.shape[1] - first + 1
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep, use_cache=False).logits  # (B, keep, V)
    target = labels[:, -keep + 1:] if keep > 1 else labels[:, :0]  # token t+1 predicted at position t
    logits = logits[:, :-1, :]
    per_tok = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), target, ignore_index=IGNORE,
                                                reduction="none")  # (B, keep-1)
    n_tok = (target != IGNORE).sum(1).clamp(min=1)
    return (per_tok.sum(1) / n_tok).sum()


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


def _load_weights(model, ckpt: Path) -> None:
    """The checkpoint's adapter weights into ``model`` (before the optimizer is made: PEFT may replace the
    trainable-token parameters rather than copy into them)."""
    from peft import load_peft_weights, set_peft_model_state_dict

    set_peft_model_state_dict(model, load_peft_weights(str(ckpt / "adapter"), device="cpu"))


# ----------------------------------------------------------------------------------------- validation
def _validate(accelerator, model, tokenizer, samples: list[Sample], cfg: RankerConfig) -> dict:
    from accelerate.utils import gather_object

    share = samples[accelerator.process_index::accelerator.num_processes]
    scores, seconds = score_samples(accelerator.unwrap_model(model), tokenizer, share, cfg.score_batch_size,
                                    accelerator.device, progress=accelerator.is_main_process, desc="validating")
    ranks = gather_object(ranks_from_scores(scores, share).tolist()) if share else gather_object([])
    return {**metrics_from_ranks(np.asarray(ranks), (5, 10)), "users": len(ranks), "seconds": round(seconds, 2)}


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
    encode_all(tokenizer, valid_samples, cfg.max_length, what="validation")
    steps = total_steps(cfg, len(encoded), max_steps)
    order = sample_order(len(encoded), steps * cfg.batch_size, seed)
    warmup = min(cfg.warmup_steps, max(1, steps // 10))

    ckpt = out_dir / "checkpoint"
    state = TrainState(total_steps=steps)
    resume = (ckpt / "state.json").exists()
    if resume:
        _load_weights(model, ckpt)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if resume:
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True))
        state = TrainState(**read_json(ckpt / "state.json"))
        if state.total_steps != steps:
            raise ConfigError(f"{ckpt}: the checkpoint was made for {state.total_steps} steps, now {steps}; "
                              "delete it or restore the settings")
        log.info("%s: resuming from step %d of %d", name, state.step, steps)

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
    log_path = out_dir / "train_log.jsonl"
    world, rank = accelerator.num_processes, accelerator.process_index

    def evaluate_and_checkpoint() -> None:
        metrics = _validate(accelerator, model, tokenizer, valid_samples, cfg) if valid_samples else {}
        value = metrics.get(SELECT_METRIC, float("nan"))
        improved = not valid_samples or (not math.isnan(value) and value > state.best_metric)
        if improved:
            state.best_metric, state.best_step, state.evals_since_best = (value if valid_samples else -1.0), state.step, 0
            if accelerator.is_main_process:
                save_adapter(accelerator.unwrap_model(model), tokenizer, out_dir / "adapter")
        else:
            state.evals_since_best += 1
        entry = {"step": state.step, "valid": metrics, "best": improved}
        state.evals.append(entry)
        _append_log(accelerator, log_path, {"event": "eval", **entry})
        log.info("%s: step %d valid %s=%.4f (best %.4f at step %d)", name, state.step, SELECT_METRIC, value,
                 state.best_metric, state.best_step)
        if cfg.patience and state.evals_since_best >= cfg.patience:
            state.done, state.stop_reason = True, f"early stop: {cfg.patience} validations without improvement"
        if state.step >= steps:
            state.done, state.stop_reason = True, state.stop_reason or "step budget reached"
        _save_checkpoint(accelerator, model, tokenizer, optimizer, state, ckpt)
        accelerator.wait_for_everyone()

    model.train()
    bar = tqdm(total=steps, initial=state.step, desc=f"training {name}", disable=not accelerator.is_main_process)
    running, t_last = [], time.perf_counter()
    while not state.done:
        if state.step >= steps:
            evaluate_and_checkpoint()
            break
        t0 = time.perf_counter()
        batch_idx = order[state.step * cfg.batch_size:(state.step + 1) * cfg.batch_size]
        mine = batch_idx[rank::world]
        batch_loss = 0.0
        for start in range(0, len(mine), cfg.micro_batch_size):
            micro = [encoded[i] for i in mine[start:start + cfg.micro_batch_size]]
            loss = response_loss(model, micro, pad, accelerator.device) * world / len(batch_idx)
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
            running, t_last = [], time.perf_counter()
        if state.step % cfg.eval_every == 0 or state.step >= steps:
            evaluate_and_checkpoint()
    bar.close()
    summary = {"name": name, "steps": state.step, "total_steps": steps, "train_samples": len(encoded),
               "samples_seen": state.step * cfg.batch_size, "valid_users": len(valid_samples),
               "best_step": state.best_step, f"best_valid_{SELECT_METRIC}": state.best_metric,
               "stop_reason": state.stop_reason, "train_seconds": round(state.train_seconds, 1),
               "seconds_per_step": round(state.train_seconds / max(1, state.step), 3)}
    if accelerator.is_main_process:
        write_json(out_dir / "best.json", summary)
    return summary


def _append_log(accelerator, path: Path, entry: dict) -> None:
    if accelerator.is_main_process:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Multi-GPU training under ``accelerate launch``: trains into ``<run_dir>/.ranker.partial/`` (where
    ``ulmrec train`` looks for checkpoints), so a following ``ulmrec train`` with the same settings only
    completes the stage."""
    import argparse

    from ulmrec.config import load_config
    from ulmrec.io import fingerprint
    from ulmrec.pipeline import stage_fingerprint
    from ulmrec.ranker.stage import BASELINE_DIR, STAGE, check_settings, train_one

    parser = argparse.ArgumentParser(prog="python -m ulmrec.ranker.train", description=main.__doc__)
    parser.add_argument("-c", "--config", action="append", default=[])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(cfg.run_dir)
    partial = run_dir / f".{STAGE.name}.partial"
    fp = fingerprint(stage_fingerprint(STAGE, cfg, run_dir))
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        marker = partial / ".fingerprint"
        if partial.exists() and (not marker.exists() or marker.read_text() != fp):
            import shutil

            shutil.rmtree(partial)
        partial.mkdir(parents=True, exist_ok=True)
        marker.write_text(fp)
    state.wait_for_everyone()
    check_settings(cfg)
    train_one(cfg, run_dir, partial, baseline=False)
    if cfg.ranker.baseline:
        train_one(cfg, run_dir, partial / BASELINE_DIR, baseline=True)
    if state.is_main_process:
        print(f"trained into {partial}; now run `ulmrec train` with the same settings to complete the stage")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
