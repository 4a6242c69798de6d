"""Candidate lists of the ranking tasks (next_item, intent).

- 'sampled' (LlamaRec, dataloader/llm.py ``LLMTrainDataset``): the target plus ``n - 1`` items drawn uniformly
  from 1..N without the items the user saw before the target, shuffled.
- 'retriever': the retriever's top-``n`` for the training prefix (``retrieval/candidates_train.parquet``).
  A list without the target either gets the target in place of its lowest-ranked candidate ('replace') or is
  not used ('skip'); a sample whose answer is not among its letters would teach nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError, DataError

CANDIDATE_COLUMNS = ("user_idx", "candidates", "target")


def sample_candidates(rng: np.random.Generator, target: int, seen, num_items: int, n: int) -> list[int] | None:
    """``target`` plus ``n - 1`` distinct items from 1..num_items that are neither ``target`` nor in ``seen``
    (unshuffled, target first); ``None`` when fewer than ``n - 1`` such items exist."""
    excluded = set(seen.tolist() if isinstance(seen, np.ndarray) else (int(i) for i in seen))
    excluded.add(int(target))
    free = num_items - sum(1 for i in excluded if 1 <= i <= num_items)
    if free < n - 1:
        return None
    out = [int(target)]
    chosen = set(out)
    if free < 4 * n:  # a small catalogue: draw from the explicit pool
        pool = np.array([i for i in range(1, num_items + 1) if i not in excluded])
        return out + [int(i) for i in rng.choice(pool, n - 1, replace=False)]
    while len(out) < n:
        for item in rng.integers(1, num_items + 1, size=2 * n):
            item = int(item)
            if item not in excluded and item not in chosen:
                out.append(item)
                chosen.add(item)
                if len(out) == n:
                    break
    return out


def read_candidates(path: str | Path, n: int) -> pd.DataFrame:
    """A retriever candidate file (``retrieval/candidates_{split}.parquet``), checked: the columns are there and
    every list has at least ``n`` candidates (fewer would leave letters without an item: a ConfigError)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist; run `ulmrec retrieve` (for training candidates with "
                          "retrieval settings that write candidates_train.parquet)")
    frame = pd.read_parquet(path)
    return check_candidates(frame, n, str(path))


def check_candidates(frame: pd.DataFrame, n: int, source: str = "candidates") -> pd.DataFrame:
    for name in CANDIDATE_COLUMNS:
        if name not in frame:
            raise DataError(f"missing column (columns: {', '.join(map(str, frame.columns))})", source, field=name)
    lengths = frame["candidates"].map(len).to_numpy()
    if len(lengths) and lengths.min() < n:
        row = int(np.argmin(lengths))
        raise ConfigError(f"{source}: row {row + 1} has {int(lengths[row])} candidates but tasks.num_candidates="
                          f"{n} letters are asked for; lower tasks.num_candidates or retrieve more candidates")
    return frame


class TrainCandidates:
    """Retriever candidates per training prefix: ``get(user, position)`` -> the first ``n`` item_idx (retriever
    order) for predicting ``sequence[position]`` from ``sequence[:position]``, or ``None`` when not retrieved.

    Rows are matched by ``(user_idx, position)`` when the file has a ``position`` column (0-based position of
    the target in the user's sequence), otherwise by ``(user_idx, target)`` (sequences have no repeated items
    after preprocessing; with repeats the last training occurrence wins).
    """

    def __init__(self, frame: pd.DataFrame, ds: Dataset, n: int, source: str = "candidates_train.parquet"):
        check_candidates(frame, n, source)
        self.n = n
        self._lists: dict[tuple[int, int], list[int]] = {}
        self.hits: set[tuple[int, int]] = set()  # keys whose list holds the target
        has_pos = "position" in frame
        positions = frame["position"] if has_pos else [None] * len(frame)
        train = ds.train_sequences()
        where: dict[int, dict[int, int]] = {}
        for row, (u, cands, target, pos) in enumerate(zip(frame["user_idx"], frame["candidates"], frame["target"],
                                                          positions, strict=True)):
            u = int(u)
            if not 0 <= u < ds.num_users:
                raise DataError(f"user_idx {u} is not a user of the dataset", source, line=row + 1, field="user_idx")
            if pos is None:
                if u not in where:
                    where[u] = {int(item): p for p, item in enumerate(train[u])}
                pos = where[u].get(int(target))
                if pos is None:
                    continue
            self._lists[(u, int(pos))] = [int(c) for c in cands[:n]]
            if int(target) in self._lists[(u, int(pos))]:
                self.hits.add((u, int(pos)))

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, user: int, position: int) -> list[int] | None:
        return self._lists.get((int(user), int(position)))

    def users_positions(self, with_target: bool = False) -> dict[int, set[int]]:
        """``{user: positions with a list}`` (``with_target``: only lists that hold the target)."""
        out: dict[int, set[int]] = {}
        for u, p in self.hits if with_target else self._lists:
            out.setdefault(u, set()).add(p)
        return out


def place_target(cands: list[int], target: int, missing: str) -> list[int] | None:
    """Retriever candidates made to contain ``target``: unchanged when retrieved; else the last one replaced
    ('replace') or ``None`` ('skip')."""
    if target in cands:
        return list(cands)
    if missing == "skip":
        return None
    return list(cands[:-1]) + [int(target)]
