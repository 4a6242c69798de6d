"""The artifact contract: every file a stage writes into ``<run_dir>/<stage>/`` that another stage or command
reads, declared once.

A writer names its file through the declaration (``write_parquet(out / USER_INDEX.name, table)``: ``out`` is the
stage's partial directory), a reader reaches it through the run directory (``USER_INDEX.path(run_dir)``,
``candidates(split).path(run_dir)``). File names are spelled in this module only: tests/test_architecture.py
fails on an artifact file name written as a literal anywhere else in the package. Each stage lists the
artifacts it reads and writes in its :class:`ulmrec.stage.Stage` (``reads``, ``writes``), and
docs/ARCHITECTURE.md is generated from those lists (``scripts/architecture.py``).

This module is ground level: it imports no stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# ----------------------------------------------------------------------------- stage directories (Stage.name)
DATA = "data"
PREFERENCES = "preferences"
RETRIEVAL = "retrieval"
INDEX = "index"
RANKER = "ranker"
EVALUATE = "evaluate"
AUDIT = "audit"
"""``ulmrec audit`` writes here (a command, not a pipeline stage)."""

# ------------------------------------------------------------------- bookkeeping files of every stage directory
STAGE_RECORD = "stage.json"
"""Fingerprint, params, input digests, result-neutral values, timings and the build's summary."""
STAGE_CONFIG = "config.yaml"
"""The resolved config the stage ran with (the run directory's own ``config.yaml`` for ``ulmrec run``)."""


@dataclass(frozen=True)
class Artifact:
    """One file (or directory) ``<run_dir>/<stage>/<name>``."""

    stage: str
    """The stage directory that holds it."""
    name: str
    """Its path inside the stage directory."""
    what: str
    """One line for docs/ARCHITECTURE.md: columns or content."""
    optional: bool = False
    """Written only under some settings or for some data (see ``what``)."""

    def path(self, run_dir: str | Path) -> Path:
        return Path(run_dir) / self.stage / self.name

    @property
    def key(self) -> str:
        """``<stage>/<name>``: how the artifact is named in messages, reports and fingerprints."""
        return f"{self.stage}/{self.name}"


# ----------------------------------------------------------------------------------------------------- data
INTERACTIONS = Artifact(DATA, "interactions.parquet", "user_idx 0..U-1, item_idx 1..N (0 = padding), position, "
                        "split train/valid/test, timestamp, rating, review")
USERS = Artifact(DATA, "users.parquet", "user_idx, user_id")
ITEMS = Artifact(DATA, "items.parquet", "item_idx, item_id, title")
SOURCE_PREFERENCES = Artifact(DATA, "source_preferences.parquet", "user_idx, preference, provenance (when the "
                              "source ships sentences)", optional=True)
REFERENCE_INDEX = Artifact(DATA, "reference_index.parquet", "user_idx, index: list of 4 tokens (the authors' "
                           "indices, when shipped)", optional=True)
DATA_STATS = Artifact(DATA, "stats.json", "Table 1 statistics and the preprocessing report")

# ---------------------------------------------------------------------------------------------- preferences
PREFERENCE_TABLE = Artifact(PREFERENCES, "preferences.parquet", "user_idx, preference (null when failed), "
                            "status ok/failed, source (import/api/offline/titles + model/prompt version), error")
PREFERENCE_REPORT = Artifact(PREFERENCES, "report.json", "counts, provenance, leak_free, errors, leakage probe")

# ------------------------------------------------------------------------------------------------ retrieval
RETRIEVER_WEIGHTS = Artifact(RETRIEVAL, "model.safetensors", "the trained retriever's weights")
RETRIEVER_CARD = Artifact(RETRIEVAL, "model.yaml", "model name and config (enough to rebuild it), training summary")
SPLITS = ("train", "valid", "test")
_CANDIDATES = {split: Artifact(RETRIEVAL, f"candidates_{split}.parquet",
                               "user_idx, candidates (`list<int32>` item_idx, retriever order), scores "
                               "(`list<float32>`), target, target_rank (0-based, -1 if not retrieved)"
                               + ("; one row per training prefix (with position), only with "
                                  "retrieval.train_candidates" if split == "train" else ""),
                               optional=split == "train")
               for split in SPLITS}
RETRIEVAL_METRICS = Artifact(RETRIEVAL, "metrics.json", "full-ranking valid/test metrics, coverage, training summary")
RETRIEVAL_LOG = Artifact(RETRIEVAL, "train_log.json", "one entry per validation")


def candidates(split: str) -> Artifact:
    """The retriever's top-k for ``split`` ('train': every training prefix, 'valid', 'test')."""
    if split not in _CANDIDATES:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return _CANDIDATES[split]


def candidates_path(run_dir: str | Path, split: str) -> Path:
    return candidates(split).path(run_dir)


# ---------------------------------------------------------------------------------------------------- index
USER_INDEX = Artifact(INDEX, "user_index.parquet", "user_idx, user_id, codes (`list<int>`), tokens (`list<str>` "
                      "like `<a_167>`)")
INDEX_REPORT = Artifact(INDEX, "report.json", "collisions before/after, codebook use, perplexity, reconstruction "
                        "error, semantic check")
RQVAE_WEIGHTS = Artifact(INDEX, "rqvae.safetensors", "RQ-VAE + Eq. 1 pooling weights, settings in the metadata")
RQVAE_CARD = Artifact(INDEX, "rqvae.yaml", "the indexer's settings, input dim, encoder")
INDEX_LOG = Artifact(INDEX, "train_log.json", "per-epoch losses")


def user_index_path(run_dir: str | Path) -> Path:
    return USER_INDEX.path(run_dir)


# --------------------------------------------------------------------------------------------------- ranker
BASELINE_DIR = "llamarec"
"""The LlamaRec-style ranker's files sit in ``ranker/llamarec/``, the same names as ULMRec's."""
ADAPTER = Artifact(RANKER, "adapter", "ULMRec's LoRA adapter + tokenizer (with the index tokens when added)")
BASELINE_ADAPTER = Artifact(RANKER, f"{BASELINE_DIR}/adapter", "the LlamaRec-style adapter (with ranker.baseline; "
                            "`llamarec/` also holds its train_log.jsonl, train_curves.png, best.json and "
                            "tasks_report.json)",
                            optional=True)
RANKER_LOG = Artifact(RANKER, "train_log.jsonl", "training and validation entries (validation: every user's rank)")
RANKER_CURVES = Artifact(RANKER, "train_curves.png", "loss and validation NDCG@10 curves")
RANKER_BEST = Artifact(RANKER, "best.json", "the kept checkpoint's step, metrics and training summary")
TASKS_REPORT = Artifact(RANKER, "tasks_report.json", "samples per task, validation users, longest prompt")


def adapter_dir(run_dir: str | Path, baseline: bool = False) -> Path:
    return (BASELINE_ADAPTER if baseline else ADAPTER).path(run_dir)


# ------------------------------------------------------------------------------------------------- evaluate
RESULTS = Artifact(EVALUATE, "results.json", "per row: Rank, Overall, seconds; paired differences with bootstrap "
                   "intervals; letter_histogram; fusion; preferences")
RESULTS_TABLE = Artifact(EVALUATE, "results.md", "the Rank and Overall tables")
RANKS = Artifact(EVALUATE, "ranks.parquet", "per user: the target's 0-based rank in every row")
LETTERS = Artifact(EVALUATE, "letters.png", "histograms of the predicted letters")

# ---------------------------------------------------------------------------------------------- ulmrec audit
LEAKAGE = Artifact(AUDIT, "leakage.json", "what the preference sentences / user indices share with held-out items")
LEAKAGE_TABLE = Artifact(AUDIT, "leakage.md", "the same as tables")

# --------------------------------------------------------------------- ulmrec experiment: its work directory
GRID_PLAN = "plan.json"
GRID_RESULTS = "results.json"
GRID_ANALYSES = "analyses.json"

#: Every declared artifact, in pipeline order.
ALL: tuple[Artifact, ...] = (
    INTERACTIONS, USERS, ITEMS, SOURCE_PREFERENCES, REFERENCE_INDEX, DATA_STATS,
    PREFERENCE_TABLE, PREFERENCE_REPORT,
    RETRIEVER_WEIGHTS, RETRIEVER_CARD, _CANDIDATES["valid"], _CANDIDATES["test"], _CANDIDATES["train"],
    RETRIEVAL_METRICS, RETRIEVAL_LOG,
    USER_INDEX, INDEX_REPORT, RQVAE_WEIGHTS, RQVAE_CARD, INDEX_LOG,
    ADAPTER, BASELINE_ADAPTER, RANKER_LOG, RANKER_CURVES, RANKER_BEST, TASKS_REPORT,
    RESULTS, RESULTS_TABLE, RANKS, LETTERS,
    LEAKAGE, LEAKAGE_TABLE,
)

#: The file names no module but this one may spell (tests/test_architecture.py).
FILE_NAMES: frozenset[str] = frozenset(
    {a.name.rsplit("/", 1)[-1] for a in ALL if "." in a.name} | {STAGE_RECORD, STAGE_CONFIG, GRID_PLAN,
                                                                  GRID_RESULTS, GRID_ANALYSES})
