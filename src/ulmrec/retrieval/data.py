"""Batches for the retrievers: training windows, left padding and length-bucketed batching.

Sequences are left-padded with 0 so that the last column is always the most recent item. Batches are built
from sequences of similar length (shuffled within large pools, then the batches themselves shuffled), so a
batch of short sequences is not padded to 50: on Beauty (mean length 8.9) this is most of the speed-up over
padding every batch to the maximum length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ulmrec.data.dataset import Dataset


def training_windows(sequences: Sequence[np.ndarray], max_len: int, first_target: bool = False) -> list[np.ndarray]:
    """Cut each training sequence into windows of at most ``max_len + 1`` items (``max_len`` inputs, each
    predicting the next item), the last window ending at the sequence's end and earlier ones stepping back by
    ``max_len`` (LlamaRec's sliding window of size 1.0), so every item after the first is a target once.
    Sequences with fewer than 2 items give no window.

    ``first_target``: the first item is a target too, predicted from an empty history (a padding input), as
    LlamaRec's LRU data loader does (its labels are the whole sequence, its inputs the sequence shifted by one
    behind padding): each sequence is cut as if it started with a 0, so every item is a target once."""
    windows = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if first_target:
            seq = np.concatenate([np.zeros(1, dtype=np.int64), seq])
        end = len(seq)
        while end > 1:
            start = max(0, end - max_len - 1)
            windows.append(seq[start:end])
            end = start + 1  # the next window's last item is this window's first input
    return windows


def left_pad(seqs: Sequence[np.ndarray], length: int | None = None) -> torch.Tensor:
    """(B, length) LongTensor, each sequence's last ``length`` items right-aligned, 0 before them."""
    length = length or max((len(s) for s in seqs), default=1)
    out = np.zeros((len(seqs), max(length, 1)), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[row, -len(s):] = s
    return torch.from_numpy(out)


def bucketed_batches(lengths: np.ndarray, batch_size: int, generator: torch.Generator | None = None,
                     pool_batches: int = 50) -> list[np.ndarray]:
    """Index batches of similar length. With a ``generator``: shuffle, sort within pools of
    ``pool_batches`` batches, then shuffle the batches. Without: sorted by length (deterministic)."""
    n = len(lengths)
    if generator is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    perm = torch.randperm(n, generator=generator).numpy()
    pool = batch_size * pool_batches
    batches = []
    for i in range(0, n, pool):
        chunk = perm[i:i + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[k] for k in order]


def split_histories(ds: Dataset, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Every user's history for ``split`` ('valid': train items; 'test': train + valid) and the targets."""
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    cut = 2 if split == "valid" else 1
    histories = [s[:-cut] for s in ds.sequences]
    targets = np.array([s[-cut] for s in ds.sequences], dtype=np.int64)
    return histories, targets


def train_prefixes(ds: Dataset) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """Every prefix of every training sequence with at least one item: (user_idx, position of the target,
    histories, targets)."""
    users, positions, histories, targets = [], [], [], []
    for u, seq in enumerate(ds.train_sequences()):
        for t in range(1, len(seq)):
            users.append(u)
            positions.append(t)
            histories.append(seq[:t])
            targets.append(seq[t])
    return (np.array(users, dtype=np.int64), np.array(positions, dtype=np.int64), histories,
            np.array(targets, dtype=np.int64))
