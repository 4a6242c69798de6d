"""Personalized user indexing (paper 4.1): texts -> encoder -> Eq. 1 pooling -> RQ-VAE -> unique user indices.

``from ulmrec.indexing import UserIndexer, index_tokens`` (imported lazily, so that reading the settings in
``ulmrec.indexing.config`` does not import torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {"UserIndexer": "ulmrec.indexing.indexer", "index_tokens": "ulmrec.indexing.unique",
            "collision_stats": "ulmrec.indexing.unique", "resolve_collisions": "ulmrec.indexing.unique"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ulmrec.indexing' has no attribute {name!r}")
