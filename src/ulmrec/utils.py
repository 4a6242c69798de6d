"""Small shared helpers: seeding, devices, the cache directory."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from ulmrec.errors import ConfigError


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu or auto")
    return device


def cache_dir() -> Path:
    """Where converted models and embedding caches live: ``$ULMREC_CACHE`` or ``~/.cache/ulmrec``."""
    d = Path(os.environ.get("ULMREC_CACHE", Path.home() / ".cache" / "ulmrec"))
    d.mkdir(parents=True, exist_ok=True)
    return d
