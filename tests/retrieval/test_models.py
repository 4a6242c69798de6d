"""Every retriever: padding invariance, a finite loss, and it learns a simple sequential pattern."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ulmrec.retrieval.config import MODELS, RetrievalConfig
from ulmrec.retrieval.data import left_pad, split_histories, training_windows
from ulmrec.retrieval.models import build_model
from ulmrec.retrieval.train import Trainer


@pytest.mark.parametrize("name", MODELS)
def test_padding_does_not_change_predictions(name):
    torch.manual_seed(0)
    model = build_model(RetrievalConfig(model=name, max_len=12), num_items=25).eval()
    x = left_pad([np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8, 9, 10, 11])])
    more = torch.cat([torch.zeros(3, 4, dtype=torch.long), x], dim=1)
    torch.testing.assert_close(model.predict(x), model.predict(more), rtol=1e-5, atol=1e-5)
    real = x != 0
    torch.testing.assert_close(model.encode_grouped(x)[real], model.encode(x)[real], rtol=1e-5, atol=1e-5)
    scores = model.predict(x)
    assert scores.shape == (3, 26) and torch.isinf(scores[:, 0]).all()
    loss = model.train().loss(x)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", MODELS)
def test_learns_the_ring_pattern(name, ring, tmp_path):
    cfg = RetrievalConfig(model=name, max_len=8, hidden=32, batch_size=16, epochs=30, patience=0, lr=5e-3, lr_decay=0.0,
                          dropout=0.1, attn_dropout=0.1, weight_decay=0.0, best_metric="Recall@5")
    torch.manual_seed(0)
    model = build_model(cfg, ring.num_items)
    trainer = Trainer(model, cfg, tmp_path, seed=0, progress=False)
    hv, tv = split_histories(ring, "valid")
    before = trainer.validate(hv, tv)["Recall@5"]
    state = trainer.fit(training_windows(ring.train_sequences(), cfg.max_len), hv, tv)
    assert state.stopped == "epochs" and state.epoch == 30
    assert state.best > max(0.5, before + 0.3), (before, state.best)


@pytest.mark.parametrize("name", ["lrurec", "sasrec", "narm"])
def test_first_item_target_trains_from_an_empty_history(name):
    """With first_target, a window [0, a, b] trains a from the padding input: the loss over the grouped batch
    equals the loss of encode() on the whole batch (so grouping keeps the padding column it needs)."""
    torch.manual_seed(0)
    model = build_model(RetrievalConfig(model=name, max_len=6, dropout=0.0, attn_dropout=0.0), num_items=9)
    windows = training_windows([np.array([3, 4, 5]), np.array([6, 7, 8, 9, 1, 2, 3])], max_len=6,
                               first_target=True)
    batch = left_pad(windows)
    inputs, labels = batch[:, :-1], batch[:, 1:]
    keep = labels != 0
    assert keep.sum() == 10  # all 3 + 7 items are targets
    full = torch.nn.functional.cross_entropy(model.item_scores(model.encode(inputs)[keep]), labels[keep])
    loss = model.loss(batch)
    torch.testing.assert_close(loss, full, rtol=1e-5, atol=1e-6)
    if name != "narm":  # the padding input's own embedding is trained only through that position
        loss.backward()
        assert model.item_embedding.weight.grad[0].abs().sum() > 0
        model.zero_grad()
        model.loss(left_pad(training_windows([np.array([3, 4, 5])], max_len=6))).backward()
        assert model.item_embedding.weight.grad[0].abs().sum() == 0
