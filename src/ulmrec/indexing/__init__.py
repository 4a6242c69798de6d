"""Personalized user indexing (paper 4.1): texts -> encoder -> Eq. 1 pooling -> RQ-VAE -> unique user indices.

``from ulmrec.indexing import UserIndexer, index_tokens``.
"""

from __future__ import annotations

from ulmrec.indexing.indexer import UserIndexer
from ulmrec.indexing.unique import collision_stats, index_tokens, resolve_collisions

__all__ = ["UserIndexer", "index_tokens", "collision_stats", "resolve_collisions"]
