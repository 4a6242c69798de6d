"""Settings of the evaluation stage (paper 5.1.3)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvaluateConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10])
    """(list[int]) Cut-offs for MRR@k, NDCG@k and Recall@k."""
