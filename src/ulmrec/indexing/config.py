"""Settings of the user-indexing stage (paper 4.1). Owned by the indexing stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class IndexConfig:
    # --- texts and encoder (paper: "BERT(W_u)")
    text_source: Literal["auto", "reviews", "preferences", "titles"] = "auto"
    """(str) What describes a user: 'auto' = training reviews, falling back per user to the preference sentence
    (preferences stage, else the one shipped with the data), then to training-history titles; 'reviews' = only
    reviews (error when the data has none); 'preferences' (then titles); 'titles'. Only split=='train' text."""
    encoder: str = "all-MiniLM-L6-v2"
    """(str) sentence-transformers model name or directory; 'all-MiniLM-L6-v2' loads the packaged copy offline."""
    encoder_batch_size: int = 64
    """(int) Texts per encoder batch."""
    max_seq_length: int = 0
    """(int) Tokens per text for the encoder; 0 keeps the model's own limit (256 for MiniLM)."""
    embedding_cache: bool = True
    """(bool) Cache text embeddings on disk (ulmrec cache dir, keyed by model and text hash) and reuse them."""
    # --- Eq. 1 pooling
    pooling: Literal["attention", "mean"] = "attention"
    """(str) 'attention': Eq. 1, softmax(e_w^T A e_o) over the user's texts with a learnable A (starts at zero,
    i.e. the mean); 'mean': plain mean of the texts (A fixed at zero)."""
    # --- RQ-VAE (Eq. 2-6)
    levels: int = 4
    """(int) Codebooks (index tokens per user)."""
    codebook_size: int = 256
    """(int) Codes per codebook."""
    code_dim: int = 32
    """(int) Dimension of each code vector."""
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128, 64])
    """(list[int]) Hidden widths of the MLP encoder (the decoder mirrors it). LC-Rec uses
    [2048, 1024, 512, 256, 128, 64]; the paper gives none. The smaller default trains much faster on CPU and
    reached lower loss and fewer collisions in a fixed budget (docs/indexing.md)."""
    beta: float = 0.25
    """(float) Commitment weight beta of Eq. 5."""
    epochs: int = 100
    """(int) Training epochs over all users."""
    batch_size: int = 256
    """(int) Users per training batch."""
    lr: float = 1e-3
    """(float) AdamW learning rate."""
    weight_decay: float = 1e-4
    """(float) AdamW weight decay."""
    kmeans_iters: int = 50
    """(int) Lloyd iterations of the per-level k-means codebook initialisation (on all users' residuals)."""
    standardize: bool = True
    """(bool) Standardize text and ID embeddings per dimension (statistics of the texts) before Eq. 1. Sentence
    embeddings share a large common direction; without this the RQ-VAE collapsed onto one code per level."""
    sinkhorn: bool = False
    """(bool) Assign last-level codes by Sinkhorn balancing (LC-Rec) in training and indexing."""
    sinkhorn_epsilon: float = 0.003
    """(float) Sinkhorn entropy weight (LC-Rec's sk_epsilon)."""
    sinkhorn_iters: int = 50
    """(int) Sinkhorn iterations."""
    checkpoint_every: int = 25
    """(int) Save a resumable checkpoint every N epochs (0 = never)."""
    threads: int = 1
    """(int) torch CPU threads for this stage, encoder and RQ-VAE (0 = torch's default). On the shared 2-core box
    one thread trained the RQ-VAE 10x and ran MiniLM 1.9x faster than two (docs/indexing.md)."""

    def __post_init__(self) -> None:
        for name in ("levels", "codebook_size", "code_dim", "epochs", "batch_size", "encoder_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"index.{name} must be >= 1, got {getattr(self, name)}")
        if self.levels > 26:
            raise ValueError(f"index.levels must be <= 26 (one letter per level), got {self.levels}")
        if any(h < 1 for h in self.hidden_dims):
            raise ValueError(f"index.hidden_dims must be positive widths, got {self.hidden_dims}")
        for name in ("beta", "weight_decay", "max_seq_length", "kmeans_iters", "checkpoint_every", "threads",
                     "sinkhorn_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"index.{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"index.lr must be > 0, got {self.lr}")
        if self.sinkhorn and self.sinkhorn_epsilon <= 0:
            raise ValueError(f"index.sinkhorn_epsilon must be > 0 when index.sinkhorn is on, got {self.sinkhorn_epsilon}")
        if not self.encoder:
            raise ValueError("index.encoder must name a model or a directory")
