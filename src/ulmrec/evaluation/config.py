"""Settings of the evaluation stage (paper 5.1.3)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvaluateConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10])
    """(list[int]) Cut-offs for MRR@k, NDCG@k and Recall@k."""
    max_users: int = 0
    """(int) Score a fixed random subset of this many Rank test users (0 = all of them); Overall is then
    Rank x coverage, the coverage measured on all test users."""
    baseline: bool = True
    """(bool) Also evaluate the LlamaRec-style adapter (ranker/llamarec/) when the ranker stage trained one."""
    no_history: bool = False
    """(bool) Also evaluate ULMRec with the user index and candidates only, no history (paper Table 4, ULMRec-uid)."""
    chunk_users: int = 100
    """(int) Users scored between two saved partial results (an interrupted evaluation resumes from them)."""

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"evaluate.ks must be a non-empty list of cut-offs >= 1, got {self.ks}")
        if self.max_users < 0:
            raise ValueError(f"evaluate.max_users must be >= 0 (0 = all), got {self.max_users}")
        if self.chunk_users < 1:
            raise ValueError(f"evaluate.chunk_users must be >= 1, got {self.chunk_users}")
