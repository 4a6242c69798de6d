"""Settings of the preferences stage (paper 4.2.2). Owned by the preferences stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class PreferencesConfig:
    mode: Literal["import", "api", "offline"] = "import"
    """(str) 'import' precomputed sentences, 'api' ask an OpenAI-compatible server, 'offline' deterministic stand-in."""
