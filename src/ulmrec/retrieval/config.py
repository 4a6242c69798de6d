"""Settings of the retrieval stage (paper 4.3, 5.1.4). Owned by the retrieval stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RetrievalConfig:
    model: str = "lrurec"
    """(str) Retriever: lrurec, sasrec, bert4rec, narm."""
    num_candidates: int = 20
    """(int) Candidates per user handed to the ranker."""
