from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from ulmrec.retrieval.config import RetrievalConfig
from ulmrec.retrieval.data import split_histories, training_windows
from ulmrec.retrieval.models import build_model
from ulmrec.retrieval.train import Trainer, make_optimizer


def _fit(ring, cfg, directory):
    torch.manual_seed(0)
    trainer = Trainer(build_model(cfg, ring.num_items), cfg, directory, seed=0, progress=False)
    hv, tv = split_histories(ring, "valid")
    return trainer, trainer.fit(training_windows(ring.train_sequences(), cfg.max_len), hv, tv)


def test_resume_continues_exactly(ring, tmp_path):
    base = dict(max_len=8, hidden=16, batch_size=16, patience=0)
    _, straight = _fit(ring, RetrievalConfig(epochs=4, **base), tmp_path / "a")
    _fit(ring, RetrievalConfig(epochs=2, **base), tmp_path / "b")
    trainer, resumed = _fit(ring, RetrievalConfig(epochs=4, **base), tmp_path / "b")  # resumes from epoch 2
    assert resumed.epoch == 4 and resumed.step == straight.step
    assert [h["Recall@10"] for h in resumed.history] == [h["Recall@10"] for h in straight.history]
    a, b = load_file(str(tmp_path / "a" / "last.safetensors")), load_file(str(tmp_path / "b" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)


def test_weight_decay_only_on_matrices():
    model = build_model(RetrievalConfig(), num_items=10)
    decay, no_decay = make_optimizer(model, RetrievalConfig()).param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert any(p is model.item_bias for p in no_decay["params"])


def test_time_budget_stops_training(ring, tmp_path):
    _, state = _fit(ring, RetrievalConfig(max_len=8, hidden=16, epochs=1000, max_minutes=1e-4), tmp_path)
    assert state.stopped == "time" and state.epoch == 1


@pytest.mark.parametrize("bad", [{"model": "gru4rec"}, {"best_metric": "Recall@7"}, {"dropout": 1.0},
                                 {"hidden": 63}, {"batch_size": 0}, {"lr_decay": 1.0}, {"lr_decay_patience": 0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        RetrievalConfig(**bad)


def test_learning_rate_decays_on_plateau_and_resumes(ring, tmp_path, monkeypatch):
    """A flat validation curve: improve once, then lr x0.5 after every 2 flat validations (twice), then early
    stopping after 3 more; a run interrupted in the middle resumes with the decayed learning rate."""
    monkeypatch.setattr(Trainer, "validate", lambda self, h, t: {"Recall@10": 0.1})
    base = dict(max_len=8, hidden=16, batch_size=16, lr=1e-3, lr_decay=0.5, lr_decay_patience=2, lr_decays=2,
                patience=3)
    trainer, state = _fit(ring, RetrievalConfig(epochs=100, **base), tmp_path / "a")
    assert state.stopped == "patience" and state.epoch == 8 and state.lr_decays == 2
    assert [h["lr"] for h in state.history] == [1e-3] * 3 + [5e-4] * 2 + [2.5e-4] * 3
    assert trainer.opt.param_groups[1]["lr"] == 2.5e-4  # every group decays
    _fit(ring, RetrievalConfig(epochs=4, **base), tmp_path / "b")
    _, resumed = _fit(ring, RetrievalConfig(epochs=100, **base), tmp_path / "b")
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in state.history]


def test_constant_learning_rate_without_decay(ring, tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "validate", lambda self, h, t: {"Recall@10": 0.1})
    _, state = _fit(ring, RetrievalConfig(max_len=8, hidden=16, patience=3, epochs=100, lr_decay=0.0), tmp_path)
    assert state.epoch == 4 and {h["lr"] for h in state.history} == {1e-3}
