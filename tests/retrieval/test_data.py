from __future__ import annotations

import numpy as np
import torch

from ulmrec.retrieval.data import (
    bucketed_batches,
    left_pad,
    split_histories,
    train_prefixes,
    training_windows,
)


def test_windows_make_every_item_after_the_first_a_target_once():
    seqs = [np.arange(1, n + 1) for n in (1, 2, 5, 11, 23)]
    windows = training_windows(seqs, max_len=4)
    assert all(2 <= len(w) <= 5 for w in windows)
    targets = sorted(int(t) for w in windows for t in w[1:])
    expected = sorted(int(t) for s in seqs for t in s[1:])
    assert targets == expected
    for w in windows:  # windows are contiguous pieces of a sequence
        assert np.all(np.diff(w) == 1)


def test_left_pad_right_aligns_and_truncates():
    x = left_pad([np.array([1, 2, 3]), np.array([4])], length=2)
    assert x.tolist() == [[2, 3], [0, 4]]
    assert left_pad([np.array([5, 6]), np.array([7])]).tolist() == [[5, 6], [0, 7]]


def test_bucketed_batches_cover_everything_once():
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    for gen in (None, torch.Generator().manual_seed(3)):
        batches = bucketed_batches(lengths, 64, gen, pool_batches=4)
        flat = np.concatenate(batches)
        assert sorted(flat.tolist()) == list(range(1000))
        assert max(len(b) for b in batches) <= 64


def test_histories_and_prefixes(ring):
    hv, tv = split_histories(ring, "valid")
    ht, tt = split_histories(ring, "test")
    for u in range(ring.num_users):
        seq = ring.sequences[u]
        assert list(hv[u]) == list(seq[:-2]) and tv[u] == seq[-2]
        assert list(ht[u]) == list(seq[:-1]) and tt[u] == seq[-1]
    users, pos, hist, tgt = train_prefixes(ring)
    assert len(users) == sum(len(s) - 3 for s in ring.sequences)
    for u, p, h, t in zip(users[:20], pos[:20], hist[:20], tgt[:20], strict=True):
        assert list(h) == list(ring.sequences[u][:p]) and t == ring.sequences[u][p]


def test_first_target_windows_make_every_item_a_target_once():
    seqs = [np.arange(1, n + 1) for n in (1, 2, 4, 5, 11, 23)]
    windows = training_windows(seqs, max_len=4, first_target=True)
    assert all(2 <= len(w) <= 5 for w in windows)
    targets = sorted(int(t) for w in windows for t in w[1:] if t)
    assert targets == sorted(int(t) for s in seqs for t in s)
    starts = [w for w in windows if w[0] == 0]  # one window per sequence predicts its first item from nothing
    assert len(starts) == len(seqs) and all(w[1] == 1 for w in starts)
    assert [1, 2, 3, 4] in [w[1:].tolist() for w in starts]  # length 4 fits with its padding ...
    assert any(w.tolist() == [0, 1] for w in starts)  # ... length 5 does not: [0, first] instead
