"""Settings of the user-indexing stage (paper 4.1). Owned by the indexing stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IndexConfig:
    levels: int = 4
    """(int) Codebooks (index tokens per user)."""
    codebook_size: int = 256
    """(int) Codes per codebook."""
    code_dim: int = 32
    """(int) Dimension of each code vector."""
