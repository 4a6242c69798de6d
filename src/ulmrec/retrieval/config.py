"""Settings of the retrieval stage (paper 4.3, 5.1.4). Owned by the retrieval stage.

Defaults follow LlamaRec's LRURec recipe (REFERENCE.md): hidden 64, 2 blocks, dropout 0.2, max length 50,
AdamW lr 1e-3 with weight decay 0.01 (not on biases, norms or the recurrence parameters), gradient clipping
5.0, batch 64, validation on Recall@10 with early stopping. Training is bounded by epochs and early stopping;
``max_minutes`` is an optional wall-clock safety cap (off by default: a cap makes the result depend on load).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODELS = ("lrurec", "sasrec", "bert4rec", "narm")


@dataclass
class RetrievalConfig:
    model: str = "lrurec"
    """(str) Retriever: lrurec, sasrec, bert4rec, narm."""
    num_candidates: int = 20
    """(int) Candidates per user handed to the ranker."""
    train_candidates: bool = False
    """(bool) Also write candidates_train.parquet: top candidates for every prefix of every training sequence."""
    train_candidates_folds: int = 1
    """(int) Cross-fitted training candidates (beyond the paper): with K >= 2 the users are split into K fixed
    random folds and each fold's training prefixes are listed by a retriever trained without that fold's users
    (same settings; early stopping on the other folds' validation items), so a training list is as hard as a
    test list rather than listed by a model that was trained on that very transition. The validation and test
    candidates still come from the retriever trained on every user. 1 = that one retriever lists everything."""
    first_target: bool = False
    """(bool) Also train each sequence's first item as a target, predicted from an empty history (LlamaRec's
    LRU data loader does; causal models only: LRURec, SASRec, NARM)."""
    max_len: int = 50
    """(int) Longest history the model reads (older items are cut; history masking still uses all of them)."""
    hidden: int = 64
    """(int) Embedding and model width."""
    blocks: int = 2
    """(int) Layers (LRU blocks, Transformer blocks; NARM has one GRU layer whatever this says: its own
    ``NARMConfig.layers``)."""
    heads: int = 2
    """(int) Attention heads (SASRec, BERT4Rec)."""
    dropout: float = 0.5
    """(float) Dropout on embeddings and feed-forward blocks. The LRURec paper's 0.5; LlamaRec's code uses 0.2,
    which peaked lower and earlier on validation here (docs/retrieval.md)."""
    attn_dropout: float = 0.5
    """(float) Dropout on the attention / recurrent layer output (LlamaRec's code: 0.2)."""
    mask_prob: float = 0.25
    """(float) BERT4Rec: share of items replaced by the mask token during training."""
    lr: float = 1e-3
    """(float) AdamW learning rate."""
    weight_decay: float = 0.01
    """(float) AdamW weight decay on weight matrices and embeddings (not biases, norms, recurrence params)."""
    adam_eps: float = 1e-9
    """(float) AdamW epsilon (LlamaRec's 1e-9)."""
    grad_clip: float = 5.0
    """(float) Clip the gradient norm to this value (0 = off)."""
    batch_size: int = 64
    """(int) Training windows per optimisation step."""
    bucket_batches: bool = False
    """(bool) Build training batches from windows of similar length (less padding, faster on CPU) instead of
    uniformly random batches (LlamaRec). Off by default: it weights short sequences' positions more and cost
    ~15% valid Recall@10 on Beauty and Games (docs/retrieval.md)."""
    eval_batch_size: int = 1024
    """(int) Users scored at once in full-ranking evaluation (memory: eval_batch_size x items floats)."""
    epochs: int = 200
    """(int) Most training epochs (passes over all training windows)."""
    max_minutes: float = 0.0
    """(float) Optional wall-clock safety cap on training in minutes, counted across resumes (0 = none, the
    default). Budgets are ``epochs`` and ``patience``; a run the cap cuts short depends on the machine's load, so
    it warns loudly and records ``cut_by_wall_clock`` in metrics.json and stage.json. Part of the fingerprint."""
    val_every: int = 1
    """(int) Validate (and checkpoint) every this many epochs."""
    patience: int = 10
    """(int) Stop after this many validations without improvement of best_metric (0 = never stop early)."""
    lr_decay: float = 0.1
    """(float) On a plateau, multiply the learning rate by this factor (0 = constant learning rate, LlamaRec's
    recipe). A plateau is ``lr_decay_patience`` validations without improvement; the patience counter then
    starts again, and after ``lr_decays`` decays early stopping takes over as usual. Measured on full Games and
    Beauty (docs/retrieval.md): better validation Recall@10 than a constant rate, LRURec reaches its targets."""
    lr_decay_patience: int = 3
    """(int) Validations without improvement before the learning rate is decayed (with lr_decay > 0)."""
    lr_decays: int = 2
    """(int) Most learning-rate decays (with lr_decay > 0)."""
    best_metric: str = "Recall@10"
    """(str) Validation metric that picks the best checkpoint, e.g. Recall@10, NDCG@10, MRR@10."""
    metric_ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 50])
    """(list[int]) Cut-offs reported in metrics.json (must contain the k of best_metric)."""
    num_threads: int = 1
    """(int) torch CPU threads (0 = leave torch's default). One is fastest for these small models on a shared
    2-core box (measured: 4x faster per step than two threads under load)."""

    def __post_init__(self) -> None:
        if self.train_candidates_folds < 1:
            raise ValueError(f"retrieval.train_candidates_folds must be >= 1, got {self.train_candidates_folds}")
        if self.model not in MODELS:
            raise ValueError(f"retrieval.model must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in ("num_candidates", "max_len", "hidden", "blocks", "heads", "batch_size", "eval_batch_size",
                     "epochs", "val_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"retrieval.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"retrieval.hidden ({self.hidden}) must be divisible by retrieval.heads ({self.heads})")
        for name in ("dropout", "attn_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"retrieval.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.mask_prob < 1.0:
            raise ValueError(f"retrieval.mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.lr <= 0 or self.weight_decay < 0 or self.adam_eps <= 0 or self.grad_clip < 0:
            raise ValueError("retrieval.lr and adam_eps must be > 0; weight_decay and grad_clip >= 0")
        if self.max_minutes < 0 or self.patience < 0 or self.num_threads < 0:
            raise ValueError("retrieval.max_minutes, patience and num_threads must be >= 0")
        if not 0.0 <= self.lr_decay < 1.0 or self.lr_decay_patience < 1 or self.lr_decays < 0:
            raise ValueError("retrieval.lr_decay must be in [0, 1), lr_decay_patience >= 1 and lr_decays >= 0, got "
                             f"{self.lr_decay}, {self.lr_decay_patience}, {self.lr_decays}")
        if not self.metric_ks or min(self.metric_ks) < 1:
            raise ValueError(f"retrieval.metric_ks must be positive cut-offs, got {self.metric_ks}")
        metric, _, k = self.best_metric.partition("@")
        if metric not in ("MRR", "NDCG", "Recall") or not k.isdigit() or int(k) not in self.metric_ks:
            raise ValueError(f"retrieval.best_metric must look like Recall@10 with k in metric_ks "
                             f"{self.metric_ks}, got {self.best_metric!r}")


def stage_setting(name: str) -> Any:
    """A field of a retriever's model config (``LRURecConfig`` ...) that is the stage setting ``retrieval.<name>``:
    its default is :class:`RetrievalConfig`'s, and :func:`ulmrec.retrieval.models.model_config` fills it from the
    stage's settings, so each such setting is declared once, here. (Fields without it are the model's own.)"""
    default = {f.name: f for f in dataclasses.fields(RetrievalConfig)}[name].default
    if default is dataclasses.MISSING:
        raise ValueError(f"retrieval.{name} has no plain default")
    return field(default=default, metadata={"stage_setting": name})
