"""Candidate lists of the ranking tasks (next_item, intent).

- 'sampled' (LlamaRec, dataloader/llm.py ``LLMTrainDataset``): the target plus ``n - 1`` items drawn uniformly
  from 1..N without the items the user saw before the target, shuffled.
- 'retriever': the retriever's top-``n`` for the training prefix (``retrieval/candidates_train.parquet``).
  A list without the target either gets the target in place of its lowest-ranked candidate ('replace') or is
  not used ('skip'); a sample whose answer is not among its letters would teach nothing.
- 'retriever_shuffled': the same lists, always shuffled by a random stream of their own per (task, user,
  position) (:func:`prefix_rng`).
- 'hard_negatives' (:func:`hard_negative_candidates`): the target plus ``n - 1`` negatives drawn without
  replacement from the retriever's top-K for the prefix (``tasks.hard_negative_pool``), the target and the seen
  items removed, topped up with uniform unseen items when fewer than ``n - 1`` remain; shuffled like
  'retriever_shuffled'. ``candidates_train.parquet`` holds ``retrieval.num_candidates`` items per prefix (the
  retriever stage writes its top ``retrieval.num_candidates``, 20 by default), so K is in effect
  ``min(hard_negative_pool, retrieval.num_candidates)``: with the defaults the negatives are the retrieved
  non-targets; raise ``retrieval.num_candidates`` (e.g. to 50) for a real draw among hard negatives.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec import artifacts
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


def prefix_rng(seed: int, task: int, user: int, position: int) -> np.random.Generator:
    """The random stream of one training prefix: the same (seed, task, user, position) always draws the same,
    whichever other samples are built."""
    return np.random.default_rng([int(seed), int(task), 3, int(user), int(position)])


def hard_negative_candidates(rng: np.random.Generator, target: int, retrieved, seen, num_items: int, n: int,
                             pool: int) -> tuple[list[int], int] | None:
    """``(candidates, uniform)``: ``target`` first (unshuffled), then ``n - 1`` distinct negatives drawn
    without replacement from the first ``pool`` items of ``retrieved`` (the retriever's order) after removing
    ``target`` and ``seen``; when fewer than ``n - 1`` remain, all of them plus uniform items from 1..num_items
    that are neither seen, the target nor already chosen (``uniform`` counts those). ``None`` when the catalogue
    has too few such items."""
    target = int(target)
    excluded = set(seen.tolist() if isinstance(seen, np.ndarray) else (int(i) for i in seen))
    excluded.add(target)
    hard = list(dict.fromkeys(int(c) for c in list(retrieved)[:pool] if int(c) not in excluded))
    if len(hard) >= n - 1:
        return [target] + [hard[i] for i in rng.choice(len(hard), n - 1, replace=False)], 0
    filled, uniform = top_up(rng, [target] + hard, excluded, num_items, n)
    return (filled, uniform) if len(filled) == n else None


def read_candidates(path: str | Path, n: int) -> pd.DataFrame:
    """A retriever candidate file (``retrieval/candidates_{split}.parquet``), checked: the columns are there and
    every list has at least ``n`` candidates (fewer would leave letters without an item: a ConfigError)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist; run `ulmrec retrieve` (for training candidates with "
                          f"retrieval settings that write {artifacts.candidates('train').name})")
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


def list_scores(frame: pd.DataFrame, users: Sequence[int], lists: Sequence[Sequence[int]]) -> list[list[float]] | None:
    """The retriever's score of every candidate of ``lists[i]``, the first ``len(lists[i])`` candidates of user
    ``users[i]``'s row of a validation/test candidate file, in that order; ``None`` when the file has no
    ``scores`` column."""
    if "scores" not in frame:
        return None
    by_user = frame.set_index("user_idx")
    out = []
    for u, items in zip(users, lists, strict=True):
        row = by_user.loc[int(u)]
        if [int(c) for c in row["candidates"][:len(items)]] != [int(c) for c in items]:
            raise RuntimeError("a prompt's candidates are not the retriever's list in order")  # a bug, not input
        out.append([float(x) for x in row["scores"][:len(items)]])
    return out


class TrainCandidates:
    """Retriever candidates per training prefix: ``get(user, position)`` -> the first ``n`` (``keep`` when
    larger) item_idx (retriever order) for predicting ``sequence[position]`` from ``sequence[:position]``, or ``None`` when not retrieved.

    ``exclude_user_items``: the user's training items other than the target are removed from each list first
    (``tasks.exclude_user_items``), so a list may hold fewer than ``n`` items.

    Rows are matched by ``(user_idx, position)`` when the file has a ``position`` column (0-based position of
    the target in the user's sequence), otherwise by ``(user_idx, target)`` (sequences have no repeated items
    after preprocessing; with repeats the last training occurrence wins).
    """

    def __init__(self, frame: pd.DataFrame, ds: Dataset, n: int, source: str = artifacts.candidates("train").name,
                 keep: int | None = None, exclude_user_items: bool = False):
        check_candidates(frame, n, source)
        self.n = n
        keep = max(n, keep or n)  # items kept per list ('hard_negatives' reads a pool beyond the letters)
        self._lists: dict[tuple[int, int], np.ndarray] = {}
        # the retriever's score of each kept candidate (when the file has a ``scores`` column): the soft
        # targets of ``ranker.distill_weight``
        self._scores: dict[tuple[int, int], np.ndarray] = {}
        scores = frame["scores"] if "scores" in frame else [None] * len(frame)
        self.hits: set[tuple[int, int]] = set()  # keys whose first n candidates hold the target
        lengths = frame["candidates"].map(len).to_numpy()
        # the shortest list kept (``keep`` at most): the pool 'hard_negatives' can actually draw from
        self.list_length = min(keep, int(lengths.min())) if len(lengths) else 0
        has_pos = "position" in frame
        positions = frame["position"] if has_pos else [None] * len(frame)
        train = ds.train_sequences()
        where: dict[int, dict[int, int]] = {}
        for row, (u, cands, target, pos, score) in enumerate(zip(frame["user_idx"], frame["candidates"],
                                                                 frame["target"], positions, scores, strict=True)):
            u = int(u)
            if not 0 <= u < ds.num_users:
                raise DataError(f"user_idx {u} is not a user of the dataset", source, line=row + 1, field="user_idx")
            if pos is None:
                if u not in where:
                    where[u] = {int(item): p for p, item in enumerate(train[u])}
                pos = where[u].get(int(target))
                if pos is None:
                    continue
            if score is not None and len(score) != len(cands):
                raise DataError(f"{len(score)} scores for {len(cands)} candidates", source, line=row + 1,
                                field="scores")
            kept = np.asarray(cands, dtype=np.int64)
            mask = slice(None)
            if exclude_user_items:  # the user's other training items out, the target stays
                mine = train[u]
                mask = ~np.isin(kept, mine) | (kept == int(target))
                kept = kept[mask]
            kept = kept[:keep]
            self._lists[(u, int(pos))] = kept
            if score is not None:
                self._scores[(u, int(pos))] = np.asarray(score, dtype=np.float64)[mask][:keep]
            if (kept[:n] == int(target)).any():
                self.hits.add((u, int(pos)))

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, user: int, position: int) -> list[int] | None:
        """The kept list (``n`` items, or up to ``keep``) in the retriever's order, or ``None``."""
        got = self._lists.get((int(user), int(position)))
        return None if got is None else got.tolist()

    def scores_of(self, user: int, position: int, items: list[int]) -> list[float] | None:
        """The retriever's scores of ``items`` for this prefix, or ``None`` when the file has no scores or one of
        ``items`` is not in the kept list (e.g. a target put in by ``missing_target=replace``)."""
        key = (int(user), int(position))
        if key not in self._scores:
            return None
        by_item = dict(zip(self._lists[key].tolist(), self._scores[key].tolist(), strict=True))
        got = [by_item.get(int(i)) for i in items]
        return None if any(g is None for g in got) else [float(g) for g in got]

    def users_positions(self, with_target: bool = False) -> dict[int, set[int]]:
        """``{user: positions with a list}`` (``with_target``: only lists that hold the target)."""
        out: dict[int, set[int]] = {}
        for u, p in self.hits if with_target else self._lists:
            out.setdefault(u, set()).add(p)
        return out


def top_up(rng: np.random.Generator, cands: list[int], excluded, num_items: int, n: int) -> tuple[list[int], int]:
    """``(cands, added)``: ``cands`` filled up to ``n`` with distinct uniform items from 1..num_items that are
    neither in ``cands`` nor in ``excluded``, in draw order after them (unchanged when already ``n`` long)."""
    need = n - len(cands)
    if need <= 0:
        return list(cands), 0
    # 0 is no item: sample_candidates puts it first and draws ``need`` real items after it
    extra = sample_candidates(rng, 0, set(int(i) for i in excluded) | set(int(c) for c in cands), num_items, need + 1)
    if extra is None:
        return list(cands), 0
    return list(cands) + extra[1:], need


def place_target(cands: list[int], target: int, missing: str) -> list[int] | None:
    """Retriever candidates made to contain ``target``: unchanged when retrieved; else the last one replaced
    ('replace') or ``None`` ('skip')."""
    if target in cands:
        return list(cands)
    if missing == "skip":
        return None
    return list(cands[:-1]) + [int(target)]
