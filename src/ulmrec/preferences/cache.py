"""A persistent answer cache in SQLite, so no paid request is ever made twice.

Every answer is committed the moment it arrives, keyed by (user id, model, prompt version, prompt hash). A run
that is killed keeps every answer it received; the next run looks them up and asks only for the users still
missing; a finished run asks nothing. The primary key makes a second copy of an answer impossible, and the
prompt hash means a user whose training history changed (other data, other settings) is asked again instead
of being given a stale answer. WAL journaling lets several processes share one file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    user_id        TEXT NOT NULL,
    model          TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    prompt_hash    TEXT NOT NULL,
    preference     TEXT NOT NULL,
    raw            TEXT,
    base_url       TEXT,
    created        REAL NOT NULL,
    PRIMARY KEY (user_id, model, prompt_version, prompt_hash)
)
"""


class PreferenceCache:
    """``put`` stores one answer (committed at once); ``lookup`` returns every stored answer of a model and
    prompt version as ``{(user_id, prompt_hash): preference}``. Safe to call from several threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    def lookup(self, model: str, prompt_version: str) -> dict[tuple[str, str], str]:
        with self._lock:
            rows = self._db.execute("SELECT user_id, prompt_hash, preference FROM answers "
                                    "WHERE model = ? AND prompt_version = ?", (model, prompt_version)).fetchall()
        return {(u, h): p for u, h, p in rows}

    def get(self, user_id: str, model: str, prompt_version: str, prompt_hash: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT preference FROM answers WHERE user_id = ? AND model = ? AND "
                                   "prompt_version = ? AND prompt_hash = ?",
                                   (user_id, model, prompt_version, prompt_hash)).fetchone()
        return None if row is None else row[0]

    def put(self, user_id: str, model: str, prompt_version: str, prompt_hash: str, preference: str,
            raw: str | None = None, base_url: str | None = None) -> bool:
        """Store one answer; returns False (and keeps the first) when that key is already stored."""
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   (user_id, model, prompt_version, prompt_hash, preference, raw, base_url,
                                    time.time()))
        return cur.rowcount == 1

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PreferenceCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
