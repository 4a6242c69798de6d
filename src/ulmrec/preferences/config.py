"""Settings of the preferences stage (paper 4.2.2). Owned by the preferences stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ulmrec.preferences.prompts import PROMPT_TEMPLATES

#: Settings that change how the work is done but not what comes out; they are left out of the stage's
#: fingerprint, so changing them never invalidates finished preferences.
OPERATIONAL = ("api_key_env", "concurrency", "max_retries", "backoff_base", "backoff_max", "timeout",
               "cache_path", "progress")


@dataclass
class PreferencesConfig:
    mode: Literal["import", "api", "offline", "titles"] = "import"
    """(str) 'import' precomputed sentences (data/source_preferences.parquet or ``import_path``; the shipped
    Beauty/Games sentences see the validation and test period, see docs/preferences.md), 'api' ask an
    OpenAI-compatible server (OpenAI, vLLM, Ollama, ...) once per user, 'offline' a deterministic keyword
    stand-in that needs no server (training titles, reviews and ratings), 'titles' the leak-free source for
    data without training-period reviews: a sentence from the user's training-period titles only (keywords,
    favourite brand, most recent training title; provenance 'leak-free: training-period titles only')."""
    fallback: Literal["none", "offline"] = "none"
    """(str) Users left without a preference (not in the imported file, or the server failed for them):
    'none' records them as failed (preference null), 'offline' gives them the offline stand-in sentence
    (their ``source`` then says 'offline:...')."""
    import_path: str = ""
    """(str) mode=import: a JSON-lines file (optionally .gz) of {"user_id": ..., "preference": ...} keyed by the
    original user id. Empty: the sentences the data source shipped (data/source_preferences.parquet)."""

    # ---- api
    base_url: str = ""
    """(str) The server's OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 (vLLM),
    http://127.0.0.1:11434/v1 (Ollama). Empty: the openai SDK's default (OPENAI_BASE_URL or api.openai.com)."""
    model: str = "gpt-3.5-turbo"
    """(str) Model name sent with every request (the paper used GPT-3.5-Turbo)."""
    api_key_env: str = "OPENAI_API_KEY"
    """(str) Name of the environment variable holding the API key (the key itself never goes into a config).
    When it is unset and ``base_url`` is given, a placeholder key is sent (local servers ignore it)."""
    prompt_version: str = "v1"
    """(str) Prompt template (src/ulmrec/preferences/prompts.py); part of the cache key and of ``source``."""
    temperature: float = 0.0
    """(float) Sampling temperature of the server (0: as deterministic as the server allows)."""
    max_tokens: int = 96
    """(int) Most tokens in one answer (one sentence needs about 40)."""
    max_reviews: int = 20
    """(int) At most this many of the user's most recent training interactions go into the prompt."""
    max_review_chars: int = 500
    """(int) Each review is cut to this many characters (0: no reviews in the prompt, titles only)."""
    max_title_chars: int = 120
    """(int) Each item title is cut to this many characters (api prompts; the quoted title of mode=titles)."""
    concurrency: int = 8
    """(int) Requests in flight at once (threads)."""
    max_retries: int = 5
    """(int) Retries per user after a 429, a 5xx, a timeout, a connection error, a malformed or empty answer;
    then the user is recorded as failed with the last error."""
    backoff_base: float = 1.0
    """(float) Seconds before the first retry; doubled at each retry (with jitter), at most ``backoff_max``.
    A 429 with a Retry-After header waits as long as the server asks (at most ``backoff_max``)."""
    backoff_max: float = 30.0
    """(float) Longest wait between two retries, in seconds."""
    timeout: float = 60.0
    """(float) Seconds to wait for one answer before it counts as a timeout (and is retried)."""
    cache_path: str = ""
    """(str) SQLite file that keeps every answer, keyed by (user id, model, prompt version, prompt hash), so a
    killed run resumes without asking again and a finished one asks nothing. Empty: $ULMREC_CACHE/preferences.sqlite
    (default ~/.cache/ulmrec), shared by every run directory."""
    progress: bool = True
    """(bool) Show a progress bar."""

    # ---- offline
    offline_keywords: int = 3
    """(int) mode=offline / titles: how many characteristic title words name the user's interests."""

    def __post_init__(self) -> None:
        if self.prompt_version not in PROMPT_TEMPLATES:
            raise ValueError(f"prompt_version {self.prompt_version!r} is not one of {sorted(PROMPT_TEMPLATES)}")
        if not self.model.strip():
            raise ValueError("model must not be empty")
        if not self.api_key_env.strip():
            raise ValueError("api_key_env must name an environment variable")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        for name in ("max_tokens", "max_reviews", "concurrency", "max_title_chars", "offline_keywords"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_review_chars", "max_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("backoff_base", "backoff_max", "timeout"):
            if getattr(self, name) < 0 or (name == "timeout" and self.timeout == 0):
                raise ValueError(f"{name} must be {'> 0' if name == 'timeout' else '>= 0'}, got {getattr(self, name)}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")

    def output_params(self) -> dict:
        """The settings that decide the stage's output (the stage fingerprint)."""
        d = dataclasses.asdict(self)
        for name in OPERATIONAL:
            d.pop(name)
        if self.mode != "api":
            for name in ("base_url", "model", "prompt_version", "temperature", "max_tokens", "max_reviews",
                         "max_review_chars") + (() if self.mode == "titles" else ("max_title_chars",)):
                d.pop(name)
        if self.mode != "import":
            d.pop("import_path")
        return d
