"""One training loop for every retriever: AdamW, gradient clipping, periodic full-ranking validation with
early stopping, a wall-clock budget, and checkpoints (safetensors + JSON) from which training resumes.

Files in the checkpoint directory:

- ``best.safetensors``: weights with the best validation ``best_metric`` so far;
- ``last.safetensors``: weights and AdamW state after the latest validation;
- ``trainer_state.json``: epoch, step, best metric and epoch, validations without improvement, seconds used,
  the AdamW param groups, and the validation log.

Randomness is re-seeded from ``seed + epoch`` at the start of every epoch (batch order and dropout), so a run
resumed at an epoch boundary continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from ulmrec.io import read_json, write_json, write_safetensors
from ulmrec.retrieval.base import SequentialRecommender
from ulmrec.retrieval.candidates import full_ranking_metrics, rank_next_items
from ulmrec.retrieval.config import RetrievalConfig
from ulmrec.retrieval.data import bucketed_batches, left_pad

log = logging.getLogger("ulmrec")


@dataclass
class TrainState:
    epoch: int = 0
    """Epochs finished."""
    step: int = 0
    best: float = float("-inf")
    best_epoch: int = 0
    bad_validations: int = 0
    seconds: float = 0.0
    lr_decays: int = 0
    """Learning-rate decays applied so far (retrieval.lr_decay)."""
    stopped: str = ""
    """Why training ended: 'epochs', 'patience' or 'time' (empty while running)."""
    history: list[dict[str, Any]] = field(default_factory=list)


def make_optimizer(model: torch.nn.Module, cfg: RetrievalConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (no biases, norms or 1-d recurrence params)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, eps=cfg.adam_eps)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    return {f"optim.{i}.{key}": torch.as_tensor(value) for i, st in opt.state_dict()["state"].items()
            for key, value in st.items()}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    """``Trainer(model, cfg, ckpt_dir, device).fit(windows, valid_histories, valid_targets)``."""

    def __init__(self, model: SequentialRecommender, cfg: RetrievalConfig, ckpt_dir: str | Path,
                 device: str = "cpu", seed: int = 42, progress: bool = True):
        self.model = model.to(device)
        self.cfg, self.device, self.seed, self.progress = cfg, device, seed, progress
        self.dir = Path(ckpt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.opt = make_optimizer(self.model, cfg)
        self.state = TrainState()
        self._resume()

    # ------------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        state_file, last = self.dir / "trainer_state.json", self.dir / "last.safetensors"
        if not (state_file.exists() and last.exists()):
            return
        saved = read_json(state_file)
        tensors = load_file(str(last))
        self.model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        _load_optimizer(self.opt, tensors, saved.pop("param_groups"))
        saved["best"] = float(saved["best"]) if saved["best"] is not None else float("-inf")
        self.state = TrainState(**saved)
        log.info("retrieval: resumed from %s at epoch %d (best %s %.4f at epoch %d)", self.dir, self.state.epoch,
                 self.cfg.best_metric, self.state.best, self.state.best_epoch)

    def _checkpoint(self, improved: bool) -> None:
        weights = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if improved:
            write_safetensors(self.dir / "best.safetensors", {k[len("model."):]: v for k, v in weights.items()})
        write_safetensors(self.dir / "last.safetensors", {**weights, **_optimizer_tensors(self.opt)})
        st = self.state.__dict__.copy()
        st["best"] = None if st["best"] == float("-inf") else st["best"]
        write_json(self.dir / "trainer_state.json", {**st, "param_groups": self.opt.state_dict()["param_groups"]})

    def load_best(self) -> SequentialRecommender:
        best = self.dir / "best.safetensors"
        if best.exists():
            self.model.load_state_dict(load_file(str(best), device=str(self.device)))
        return self.model

    # ------------------------------------------------------------------ training
    def validate(self, histories: Sequence[np.ndarray], targets: np.ndarray) -> dict[str, float]:
        res = rank_next_items(self.model, histories, targets, self.cfg.max_len, k=1,
                              batch_size=self.cfg.eval_batch_size, device=self.device)
        return full_ranking_metrics(res["rank"], self.cfg.metric_ks)

    def _out_of_time(self, started: float) -> bool:
        budget = self.cfg.max_minutes * 60
        return budget > 0 and self.state.seconds + (time.time() - started) >= budget

    def train_epoch(self, windows: list[np.ndarray], lengths: np.ndarray, started: float) -> tuple[float, bool]:
        """One pass over the windows; returns (mean loss, ran out of time)."""
        gen = torch.Generator().manual_seed(self.seed + self.state.epoch)
        torch.manual_seed(self.seed + self.state.epoch)
        if self.cfg.bucket_batches:
            batches = bucketed_batches(lengths, self.cfg.batch_size, gen)
        else:
            perm = torch.randperm(len(windows), generator=gen).numpy()
            batches = [perm[i:i + self.cfg.batch_size] for i in range(0, len(perm), self.cfg.batch_size)]
        self.model.train()
        total, count, out_of_time = 0.0, 0, False
        bar = tqdm(batches, desc=f"epoch {self.state.epoch + 1}", leave=False, disable=not self.progress)
        for idx in bar:
            batch = left_pad([windows[i] for i in idx], int(lengths[idx].max())).to(self.device)
            loss = self.model.loss(batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.opt.step()
            self.state.step += 1
            total, count = total + loss.item(), count + 1
            if count % 50 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}")
            if self._out_of_time(started):
                out_of_time = True
                break
        return total / max(count, 1), out_of_time

    def _stop_reason(self, started: float) -> str:
        cfg, st = self.cfg, self.state
        if st.epoch >= cfg.epochs:
            return "epochs"
        if cfg.patience and st.bad_validations >= cfg.patience:
            return "patience"
        if self._out_of_time(started):
            return "time"
        return ""

    def fit(self, windows: list[np.ndarray], valid_histories: Sequence[np.ndarray],
            valid_targets: np.ndarray) -> TrainState:
        """Train until ``epochs``, ``patience`` validations without improvement, or ``max_minutes``.
        A resumed run re-checks these against the current settings (a larger budget trains on)."""
        cfg, st = self.cfg, self.state
        lengths = np.array([len(w) for w in windows])
        started = time.time()
        st.stopped = self._stop_reason(started) if st.epoch else ""
        while not st.stopped:
            t0 = time.time()
            loss, out_of_time = self.train_epoch(windows, lengths, started)
            st.epoch += 1
            train_s = time.time() - t0
            if st.epoch % cfg.val_every and not out_of_time and st.epoch < cfg.epochs:
                continue
            t1 = time.time()
            metrics = self.validate(valid_histories, valid_targets)
            value = metrics[cfg.best_metric]
            improved = value > st.best
            if improved:
                st.best, st.best_epoch, st.bad_validations = value, st.epoch, 0
            else:
                st.bad_validations += 1
            lr = self.opt.param_groups[0]["lr"]
            if (cfg.lr_decay and st.lr_decays < cfg.lr_decays and st.bad_validations >= cfg.lr_decay_patience):
                for group in self.opt.param_groups:
                    group["lr"] *= cfg.lr_decay
                st.lr_decays, st.bad_validations = st.lr_decays + 1, 0
                log.info("retrieval epoch %d: plateau, learning rate %.2g -> %.2g", st.epoch, lr,
                         self.opt.param_groups[0]["lr"])
            st.history.append({"epoch": st.epoch, "step": st.step, "lr": lr, "loss": round(loss, 5),
                               "train_s": round(train_s, 2), "valid_s": round(time.time() - t1, 2),
                               **{k: round(v, 5) for k, v in metrics.items()}})
            log.info("retrieval epoch %d: loss %.4f, valid %s %.4f (best %.4f @ %d), %.1fs train, %.1fs valid",
                     st.epoch, loss, cfg.best_metric, value, st.best, st.best_epoch, train_s, time.time() - t1)
            st.stopped = "time" if out_of_time else self._stop_reason(started)
            st.seconds += time.time() - started
            started = time.time()
            self._checkpoint(improved)
        return st
