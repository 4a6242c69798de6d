"""ranker.distill_title_weight: the distillation teacher = the retriever's score + w x title similarity."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import make_run_dir, next_item_sample, text_sample
from ulmrec.data.dataset import Dataset
from ulmrec.ranker.config import RankerConfig
from ulmrec.ranker.stage import add_title_teacher


def _encode(texts):  # a deterministic, title-dependent embedding (no model)
    rng = np.random.default_rng([len(texts), 7])
    base = rng.normal(size=(16, 8))
    return np.stack([base[sum(map(ord, t)) % 16] + 0.1 * (sum(map(ord, t)) % 5) for t in texts])


def test_teacher_adds_weighted_max_cosine_to_the_prefix_history(tmp_path):
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    train = ds.train_sequences()
    rc = RankerConfig(distill_weight=1.0, distill_title_weight=2.5, distill_title_history=2)
    s = next_item_sample(0, n=4, target=1)
    s.candidates = [int(i) for i in train[3][:2]] + [int(train[0][3]), 39]
    s.meta.update(position=4, teacher=[1.0, 0.5, 0.0, -1.0])
    no_teacher = next_item_sample(1, n=3, target=0)  # sampled candidates: no retriever scores, left alone
    no_teacher.meta["position"] = 2
    text = text_sample(2)
    report = add_title_teacher([s, no_teacher, text], ds, rc, encode=_encode)

    emb = np.asarray(_encode([str(t) for t in ds.titles]), dtype=np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    hist = train[0][:4][-2:]  # the prefix's last 2 items: what the prompt's history ends with
    want = [t + 2.5 * max(float(emb[c] @ emb[h]) for h in hist)
            for t, c in zip([1.0, 0.5, 0.0, -1.0], s.candidates, strict=True)]
    assert s.meta["teacher"] == pytest.approx(want)
    assert s.meta["teacher"][2] == pytest.approx(0.0 + 2.5 * float(emb[train[0][3]] @ emb[train[0][3]]))  # cos 1
    assert "teacher" not in no_teacher.meta and "teacher" not in text.meta
    assert report["samples"] == 1 and report["weight"] == 2.5 and report["history"] == 2


def test_first_prefix_without_history_keeps_the_retriever(tmp_path):
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    s = next_item_sample(0, n=3, target=0)
    s.meta.update(position=0, teacher=[0.3, 0.2, 0.1])
    add_title_teacher([s], ds, RankerConfig(distill_weight=1.0, distill_title_weight=4.0), encode=_encode)
    assert s.meta["teacher"] == [0.3, 0.2, 0.1]


@pytest.mark.parametrize("kwargs, message", [
    ({"distill_title_weight": 1.0}, "distill_weight > 0"),
    ({"distill_weight": 1.0, "distill_title_weight": -1.0}, "distill_title_weight must be >= 0"),
    ({"distill_weight": 1.0, "distill_title_weight": 1.0, "distill_title_history": 0}, "distill_title_history"),
])
def test_bad_title_teacher_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RankerConfig(**kwargs)


def test_an_encoder_that_cannot_load_names_its_setting(tmp_path):
    from ulmrec.errors import ConfigError

    ds = Dataset.load(make_run_dir(tmp_path / "run") / "data")
    rc = RankerConfig(distill_weight=1.0, distill_title_weight=1.0, distill_title_encoder=str(tmp_path / "no-model"))
    s = next_item_sample(0, n=3, target=0)
    s.meta.update(position=2, teacher=[0.3, 0.2, 0.1])
    with pytest.raises(ConfigError, match="ranker.distill_title_encoder="):
        add_title_teacher([s], ds, rc)
    assert s.meta["teacher"] == [0.3, 0.2, 0.1]


def test_the_stage_samples_carry_the_title_teacher(tmp_path, tiny_llama, monkeypatch):
    """ranker.stage.build_samples: with retriever training candidates and distill_title_weight, every scored
    training sample's teacher is the retriever-only teacher + w x title similarity, and the tasks report says so."""
    import pandas as pd

    import ulmrec.indexing.titles as titles
    from helpers import LETTERS, NUM_ITEMS, tiny_config
    from ulmrec.io import write_parquet
    from ulmrec.ranker.model import load_tokenizer
    from ulmrec.ranker.stage import build_samples

    run_dir = make_run_dir(tmp_path / "run")
    ds = Dataset.load(run_dir / "data")
    rows = []
    for u, seq in enumerate(ds.train_sequences()):
        for p in range(1, len(seq)):
            others = [i for i in range(1, NUM_ITEMS + 1) if i not in seq][:LETTERS + 1]
            cands = [*others[:p % LETTERS], int(seq[p]), *others[p % LETTERS:]][:LETTERS + 2]
            rows.append({"user_idx": u, "position": p, "candidates": cands, "target": int(seq[p]),
                         "scores": [float(-i) for i in range(len(cands))]})
    write_parquet(run_dir / "retrieval" / "candidates_train.parquet", pd.DataFrame(rows))
    monkeypatch.setattr(titles, "TextEncoder", lambda *a, **k: type("E", (), {"encode": lambda self, t: _encode(t)})())
    tok = load_tokenizer(tiny_llama)
    common = ["tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
              "ranker.distill_weight=1", "ranker.distill_title_history=2"]
    plain, _, _, _ = build_samples(tiny_config(run_dir, tiny_llama, *common), run_dir, tok)
    fused, _, report, _ = build_samples(tiny_config(run_dir, tiny_llama, *common, "ranker.distill_title_weight=2"),
                                        run_dir, tok)
    emb = np.asarray(_encode([str(t) for t in ds.titles]), dtype=np.float64)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    train, checked = ds.train_sequences(), 0
    for a, b in zip(plain, fused, strict=True):
        assert (a.task, a.user_idx, a.meta.get("position")) == (b.task, b.user_idx, b.meta.get("position"))
        if a.meta.get("teacher") is None:
            assert b.meta.get("teacher") is None
            continue
        hist = train[a.user_idx][:a.meta["position"]][-2:]
        sim = [max(float(emb[c] @ emb[h]) for h in hist) for c in a.candidates]
        assert b.meta["teacher"] == pytest.approx([t + 2 * x for t, x in zip(a.meta["teacher"], sim, strict=True)])
        checked += 1
    assert checked > 0 and report["distill_title"]["samples"] == checked
