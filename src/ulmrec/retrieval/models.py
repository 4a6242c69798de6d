"""Build a retriever from the stage settings, and load a trained one back from ``model.safetensors`` +
``model.yaml``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from safetensors.torch import load_file

from ulmrec.artifacts import RETRIEVER_CARD, RETRIEVER_WEIGHTS
from ulmrec.errors import DataError
from ulmrec.retrieval.base import SequentialRecommender
from ulmrec.retrieval.bert4rec import BERT4Rec, BERT4RecConfig
from ulmrec.retrieval.config import RetrievalConfig
from ulmrec.retrieval.lru import LRURec, LRURecConfig
from ulmrec.retrieval.narm import NARM, NARMConfig
from ulmrec.retrieval.sasrec import SASRec, SASRecConfig

#: model name -> (model class, config class)
REGISTRY: dict[str, tuple[type, type]] = {
    "lrurec": (LRURec, LRURecConfig),
    "sasrec": (SASRec, SASRecConfig),
    "bert4rec": (BERT4Rec, BERT4RecConfig),
    "narm": (NARM, NARMConfig),
}


def _classes(name: str) -> tuple[type, type]:
    return REGISTRY[name]


def model_config(cfg: RetrievalConfig, num_items: int) -> Any:
    """The model's own config dataclass, its :func:`~ulmrec.retrieval.config.stage_setting` fields filled from the
    stage settings (the model's other fields keep their defaults)."""
    _, config_cls = _classes(cfg.model)
    settings = {f.name: getattr(cfg, f.metadata["stage_setting"]) for f in dataclasses.fields(config_cls)
                if "stage_setting" in f.metadata}
    return config_cls(num_items=num_items, **settings)


def build_model(cfg: RetrievalConfig, num_items: int) -> SequentialRecommender:
    model_cls, _ = _classes(cfg.model)
    return model_cls(model_config(cfg, num_items))


def model_card(name: str, model: SequentialRecommender, **extra: Any) -> dict[str, Any]:
    """What ``model.yaml`` holds: the model name and its config (enough to rebuild it)."""
    return {"model": name, "config": dataclasses.asdict(model.cfg), **extra}


def load_retriever(directory: str | Path, device: str = "cpu") -> SequentialRecommender:
    """Rebuild a trained retriever from ``<dir>/model.yaml`` and ``<dir>/model.safetensors``."""
    d = Path(directory)
    card_path, weights = d / RETRIEVER_CARD.name, d / RETRIEVER_WEIGHTS.name
    if not card_path.exists() or not weights.exists():
        raise DataError(f"no trained retriever here ({card_path.name} / {weights.name} missing); run `ulmrec retrieve`",
                        d)
    card = yaml.safe_load(card_path.read_text(encoding="utf-8")) or {}
    if card.get("model") not in REGISTRY:
        raise DataError(f"unknown model {card.get('model')!r}; known: {', '.join(REGISTRY)}", card_path, field="model")
    model_cls, config_cls = _classes(card["model"])
    model = model_cls(config_cls(**card["config"]))
    model.load_state_dict(load_file(str(weights), device=device))
    return model.to(device).eval()
