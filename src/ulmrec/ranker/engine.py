"""The ranker library: one object that the train, evaluate, recommend and experiment commands share.

    ranker = Ranker.load(cfg, run_dir / "ranker" / "adapter")        # base LM + adapter + tokenizer
    scores, seconds = ranker.score(samples)                            # (N, C) letter scores
    fresh = Ranker.build(cfg, index_tokens=["<a_1>", ...])             # a new LoRA ranker
    summary = fresh.train(train_samples, valid_samples, out_dir)

It also holds what building a ranker's inputs needs at every call site: the title cutter (LlamaRec's 32-token
titles), the identities and their index tokens, and the LlamaRec-style baseline's task settings.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ulmrec.config import Config
from ulmrec.ranker import predict  # called as predict.score_samples, so that a test can patch it
from ulmrec.ranker.config import RankerConfig
from ulmrec.ranker.model import (
    build_ranker,
    load_ranker,
    load_tokenizer,
    model_layers,
    resolve_model,
    with_init_layout,
)
from ulmrec.ranker.train import train_ranker
from ulmrec.tasks import read_identities
from ulmrec.tasks.base import Sample
from ulmrec.utils import resolve_device

log = logging.getLogger("ulmrec")

INDEX_TOKEN = re.compile(r"<[^<>\s]+>")


# ----------------------------------------------------------------------------------------- inputs
def baseline_tasks(cfg: Config):
    """The LlamaRec-style ranker's tasks: next-item prediction only, without the user index."""
    return dataclasses.replace(cfg.tasks, enabled=["next_item"], prompt="no_index")


def title_cutter(tokenizer, max_tokens: int):
    """Cut a title to its first ``max_tokens`` tokens (LlamaRec: 32), as text."""

    def cut(title: str) -> str:
        ids = tokenizer(title, add_special_tokens=False)["input_ids"]
        return title if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]).strip()

    return cut


def base_title_cutter(cfg: RankerConfig):
    """The title cutter of the base model's tokenizer (index tokens never occur in titles)."""
    path, _ = resolve_model(cfg)
    return title_cutter(load_tokenizer(path), cfg.max_title_tokens)


def index_tokens_of(identities: dict[int, str]) -> list[str]:
    """The distinct ``<...>`` tokens of the identity strings (nothing for numeric or original ids)."""
    return sorted({t for s in identities.values() for t in INDEX_TOKEN.findall(s)})


def load_identities(cfg: Config, ds, run_dir: Path) -> dict[int, str]:
    """Each user's identity string for ``cfg.tasks.identity`` (the user index by default)."""
    return read_identities(cfg.tasks.identity, ds, run_dir)


def set_threads(cfg: RankerConfig) -> None:
    if cfg.num_threads:
        import torch

        torch.set_num_threads(cfg.num_threads)


# ----------------------------------------------------------------------------------------- the ranker
@dataclass
class Ranker:
    """A causal LM with a LoRA adapter, its tokenizer (with the index tokens) and the settings it runs with."""

    model: object
    tokenizer: object
    cfg: RankerConfig
    device: str

    @classmethod
    def load(cls, cfg: RankerConfig, adapter_dir: Path, device: str | None = None, trainable: bool = False) -> Ranker:
        """A trained ranker from ``adapter_dir`` (``ulmrec train`` writes ``<run_dir>/ranker/adapter``); for
        scoring (not ``trainable``) the adapter is merged into the base weights when ``cfg.merge_adapter``."""
        device = _device(device)
        set_threads(cfg)
        model, tok = load_ranker(cfg, Path(adapter_dir), device, trainable=trainable,
                                 merge=cfg.merge_adapter and not trainable)
        if not trainable:
            model.eval()
        return cls(model, tok, cfg, device)

    @classmethod
    def build(cls, cfg: RankerConfig, index_tokens: Sequence[str] = (), device: str | None = None,
              init: Path | None = None) -> Ranker:
        """A fresh LoRA ranker; ``index_tokens`` join the vocabulary when ``cfg.index_tokens == 'added'``.
        ``init``: an adapter folder whose LoRA layout and weights the new LoRA starts from (``ranker.init_adapter``,
        :func:`ulmrec.ranker.model.init_adapter_dir`); the ranker's settings then carry that layout."""
        device = _device(device)
        set_threads(cfg)
        if init is not None:
            path, _ = resolve_model(cfg)
            cfg = with_init_layout(cfg, Path(init), model_layers(path))
        model, tok = build_ranker(cfg, list(index_tokens), device, init=init)
        return cls(model, tok, cfg, device)

    def score(self, samples: Sequence[Sample], batch_size: int | None = None, progress: bool = True,
              desc: str = "scoring") -> tuple[np.ndarray, float]:
        """``(scores (N, C), seconds)``: the verbalizer's letter scores of every sample (-inf past its
        candidates), tokenized in bulk, length-sorted batches of ``batch_size`` (default
        ``ranker.score_batch_size``)."""
        return predict.score_samples(self.model, self.tokenizer, samples, batch_size or self.cfg.score_batch_size,
                                     self.device, progress=progress, desc=desc, share_prefix=self.cfg.share_prefix)

    def ranks(self, samples: Sequence[Sample], **kwargs) -> np.ndarray:
        """0-based rank of each sample's target under :meth:`score`."""
        scores, _ = self.score(samples, **kwargs)
        return predict.ranks_from_scores(scores, samples)

    def train(self, train_samples: list[Sample], valid_samples: list[Sample], out_dir: Path, seed: int = 42,
              max_steps: int | None = None, name: str = "ranker") -> dict:
        """Alignment tuning in place (:func:`ulmrec.ranker.train.train_ranker`); the best adapter ends up in
        ``out_dir/adapter``."""
        return train_ranker(self.model, self.tokenizer, train_samples, valid_samples, self.cfg, Path(out_dir),
                            seed=seed, max_steps=max_steps, name=name)


def _device(device: str | None) -> str:
    return resolve_device(device or "auto")
