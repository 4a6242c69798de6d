"""Model resolution: presets, local paths, clear errors for what cannot run here."""

from __future__ import annotations

import pytest
import torch

from ulmrec.errors import ConfigError
from ulmrec.ranker.config import RankerConfig
from ulmrec.ranker.model import resolve_model


def test_local_directory_resolves(tiny_llama):
    path, quantize = resolve_model(RankerConfig(model=str(tiny_llama)))
    assert path == str(tiny_llama) and not quantize


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model(RankerConfig(model=str(tmp_path)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_qlora_needs_cuda(tiny_llama):
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        resolve_model(RankerConfig(model=str(tiny_llama), quantization="nf4"))


def test_llama2_preset_without_local_weights_says_how_to_get_them(monkeypatch):
    from ulmrec.ranker import model

    monkeypatch.setattr(model, "_in_hf_cache", lambda name: None)
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        resolve_model(RankerConfig(model="llama-2-7b"))


@pytest.mark.parametrize("field, value", [("lora_r", 0), ("lora_dropout", 1.0),
                                          ("lr", 0.0), ("baseline_max_steps", -2), ("lora_targets", [])])
def test_bad_values_are_rejected(field, value):
    with pytest.raises(ValueError, match="ranker"):
        RankerConfig(**{field: value})
