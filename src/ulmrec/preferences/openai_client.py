"""Preference extraction through any OpenAI-compatible chat-completions server (paper 4.2.2).

One request per user (the paper asks GPT-3.5-Turbo once per user), sent with the official ``openai`` SDK to
OpenAI, vLLM, Ollama, llama.cpp or any server speaking the same protocol. Requests run in a bounded thread pool;
429, 5xx, timeouts, connection errors, malformed and empty answers are retried with exponential backoff;
401/403/404 stop the run at once (every other request would fail the same way). Each answer is committed to a
:class:`~ulmrec.preferences.cache.PreferenceCache` as it arrives, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import openai
from tqdm.auto import tqdm

from ulmrec.errors import ConfigError, UlmrecError
from ulmrec.preferences.cache import PreferenceCache
from ulmrec.preferences.config import PreferencesConfig
from ulmrec.preferences.history import UserHistory
from ulmrec.preferences.prompts import build_messages, clean_answer, prompt_hash
from ulmrec.preferences.table import PreferenceRecord

log = logging.getLogger("ulmrec")

_jitter = random.Random()


class ServerRejected(UlmrecError):
    """The server refused in a way no retry can fix (bad key, no access, unknown model or URL)."""


@dataclass
class Answer:
    """The outcome of asking for one user's preference."""

    preference: str | None
    raw: str | None
    error: str | None
    attempts: int
    errors: dict[str, int] = field(default_factory=dict)
    """How many attempts failed, by kind ('429', '5xx', 'timeout', 'connection', 'malformed', 'empty', ...)."""


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind, self.retry_after = kind, retry_after


def _retry_after(err: openai.APIStatusError) -> float | None:
    headers = err.response.headers if err.response is not None else {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            if headers.get(name) is not None:
                return float(headers[name]) / scale
        except ValueError:
            pass
    return None


def api_key(cfg: PreferencesConfig) -> str:
    key = os.environ.get(cfg.api_key_env, "")
    if key:
        return key
    if cfg.base_url:
        log.warning("preferences: $%s is not set; sending a placeholder key to %s", cfg.api_key_env, cfg.base_url)
        return "no-key"
    raise ConfigError(f"preferences.mode=api needs an API key in ${cfg.api_key_env} (or set preferences.base_url "
                      "to a local OpenAI-compatible server, or preferences.api_key_env to another variable)")


class ChatClient:
    """Asks one question with retries. ``sleep`` is injectable so tests never wait on real backoffs; setting
    ``stop`` makes every waiting or retrying ``ask`` give up at once (used on Ctrl-C and fatal errors)."""

    def __init__(self, cfg: PreferencesConfig, sleep: Callable[[float], None] | None = None):
        for name in ("httpx", "httpx2"):  # one INFO line per request would bury the progress bar
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
        self.cfg = cfg
        self.stop = threading.Event()
        self.sleep = sleep or self.stop.wait
        self.client = openai.OpenAI(base_url=cfg.base_url or None, api_key=api_key(cfg), max_retries=0,
                                    timeout=cfg.timeout)

    def _once(self, messages: list[dict]) -> tuple[str, str]:
        cfg = self.cfg
        try:
            resp = self.client.chat.completions.create(model=cfg.model, messages=messages,
                                                       temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
            raise ServerRejected(f"{self.client.base_url} refused the request ({err.status_code}): {err.message}; "
                                 "check preferences.base_url, preferences.model and the API key") from err
        except openai.RateLimitError as err:
            raise _Retryable("429", f"429 rate limited: {err.message}", _retry_after(err)) from err
        except openai.APITimeoutError as err:
            raise _Retryable("timeout", f"no answer within {cfg.timeout:g} s") from err
        except openai.APIConnectionError as err:
            raise _Retryable("connection", f"connection error: {err}") from err
        except openai.APIStatusError as err:
            if err.status_code >= 500 or err.status_code in (408, 409):
                raise _Retryable(f"{err.status_code // 100}xx", f"{err.status_code} {err.message}") from err
            raise  # other 4xx: this request is wrong (e.g. too long); not worth retrying
        except (ValueError, openai.APIResponseValidationError) as err:  # a 200 whose body is not a completion
            raise _Retryable("malformed", f"malformed answer ({type(err).__name__}: {err})") from err
        choices = getattr(resp, "choices", None)
        if not choices:
            raise _Retryable("malformed", "malformed answer (no choices)")
        message = getattr(choices[0], "message", None)
        raw = getattr(message, "content", None)
        if not isinstance(raw, str):
            raise _Retryable("empty", "empty answer (no content)")
        text = clean_answer(raw)
        if not text:
            raise _Retryable("empty", "empty answer")
        return text, raw

    def ask(self, messages: list[dict]) -> Answer:
        cfg, errors = self.cfg, {}
        for attempt in range(cfg.max_retries + 1):
            if self.stop.is_set():
                return Answer(None, None, "cancelled", attempt, errors)
            try:
                text, raw = self._once(messages)
                return Answer(text, raw, None, attempt + 1, errors)
            except _Retryable as err:
                errors[err.kind] = errors.get(err.kind, 0) + 1
                last = str(err)
                if attempt == cfg.max_retries:
                    break
                delay = min(cfg.backoff_max, cfg.backoff_base * 2 ** attempt) * _jitter.uniform(0.5, 1.0)
                if err.retry_after is not None:
                    delay = min(cfg.backoff_max, max(delay, err.retry_after))
                self.sleep(delay)
            except openai.APIStatusError as err:
                errors[str(err.status_code)] = errors.get(str(err.status_code), 0) + 1
                return Answer(None, None, f"{err.status_code} {err.message} (not retried)", attempt + 1, errors)
        return Answer(None, None, f"gave up after {cfg.max_retries + 1} attempts; last error: {last}",
                      cfg.max_retries + 1, errors)


@dataclass
class ApiStats:
    users: int = 0
    from_cache: int = 0
    asked: int = 0
    requests: int = 0
    ok: int = 0
    failed: int = 0
    prompt_kinds: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["requests_per_second"] = round(self.requests / self.seconds, 3) if self.seconds > 0 else None
        d["seconds"] = round(self.seconds, 3)
        return d


def api_source(cfg: PreferencesConfig) -> str:
    return f"api:{cfg.model}:{cfg.prompt_version}"


def extract_with_api(histories: list[UserHistory], cfg: PreferencesConfig, cache: PreferenceCache,
                     client: ChatClient | None = None) -> tuple[list[PreferenceRecord], ApiStats]:
    """One record per history: cached answers first, then one request per missing user, ``cfg.concurrency`` at
    a time. Every answer is in the cache before it is counted, so stopping at any moment loses nothing."""
    source, stats = api_source(cfg), ApiStats(users=len(histories))
    t0 = time.perf_counter()
    known = cache.lookup(cfg.model, cfg.prompt_version)
    records: list[PreferenceRecord] = []
    pending: list[tuple[UserHistory, str]] = []
    for h in histories:
        if not h.titles:
            records.append(PreferenceRecord.failed(h.user_idx, source, "no training interactions to ask about"))
            continue
        messages, kind = _messages(h, cfg)
        stats.prompt_kinds[kind] = stats.prompt_kinds.get(kind, 0) + 1
        digest = prompt_hash(messages)
        if (h.user_id, digest) in known:
            records.append(PreferenceRecord.ok(h.user_idx, known[(h.user_id, digest)], source))
            stats.from_cache += 1
        else:
            pending.append((h, digest))
    stats.asked = len(pending)
    log.info("preferences: %d users, %d answers cached, %d to ask %s (model %s, prompt %s, concurrency %d)",
             len(histories), stats.from_cache, len(pending), cfg.base_url or "the OpenAI API", cfg.model,
             cfg.prompt_version, cfg.concurrency)
    if pending:
        client = client or ChatClient(cfg)
        records.extend(_ask_all(pending, cfg, cache, client, stats))
    stats.ok = sum(r.status == "ok" for r in records)
    stats.failed = len(records) - stats.ok
    stats.seconds = time.perf_counter() - t0
    return records, stats


def _messages(h: UserHistory, cfg: PreferencesConfig) -> tuple[list[dict], str]:
    return build_messages(h, cfg.prompt_version, max_items=cfg.max_reviews, max_review_chars=cfg.max_review_chars,
                          max_title_chars=cfg.max_title_chars)


def _ask_all(pending: list[tuple[UserHistory, str]], cfg: PreferencesConfig, cache: PreferenceCache,
             client: ChatClient, stats: ApiStats) -> list[PreferenceRecord]:
    source, out = api_source(cfg), []
    todo = iter(pending)
    inflight: dict[Future, tuple[UserHistory, str]] = {}
    bar = tqdm(total=len(pending), desc="preferences", unit="user", disable=not cfg.progress)
    pool = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix="preferences")

    def submit_more() -> None:
        # Prompts are built as they are sent, so memory stays flat for any number of users.
        while len(inflight) < 2 * cfg.concurrency:
            item = next(todo, None)
            if item is None:
                return
            inflight[pool.submit(client.ask, _messages(item[0], cfg)[0])] = item

    try:
        submit_more()
        while inflight:
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in done:
                h, digest = inflight.pop(fut)
                ans = fut.result()  # ServerRejected propagates and stops the run
                stats.requests += ans.attempts
                for k, v in ans.errors.items():
                    stats.errors[k] = stats.errors.get(k, 0) + v
                if ans.preference is not None:
                    cache.put(h.user_id, cfg.model, cfg.prompt_version, digest, ans.preference, ans.raw,
                              cfg.base_url or None)
                    out.append(PreferenceRecord.ok(h.user_idx, ans.preference, source))
                else:
                    out.append(PreferenceRecord.failed(h.user_idx, source, ans.error))
                bar.update(1)
            bar.set_postfix(ok=sum(r.status == "ok" for r in out), failed=sum(r.status != "ok" for r in out),
                            refresh=False)
            submit_more()
    finally:  # normal end, Ctrl-C or a fatal error: answers already stored stay stored
        client.stop.set()
        bar.close()
        pool.shutdown(wait=False, cancel_futures=True)
    return out
