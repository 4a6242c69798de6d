"""ranker.init_adapter: the trained adapters start from an earlier adapter's LoRA, in its layout."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from helpers import make_run_dir, tiny_config
from ulmrec.errors import ConfigError
from ulmrec.pipeline import get_stage, run_stage
from ulmrec.ranker.engine import Ranker
from ulmrec.ranker.model import init_adapter_dir, save_adapter


def _lora(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in model.state_dict().items() if "lora_" in k}


def _make_init(folder, cfg, layers: int = 1, targets=("q_proj", "k_proj", "o_proj"), r: int = 4):
    """An adapter in another layout than the ranker's defaults, with non-zero B (as if tuned), in folder/adapter."""
    lay = dataclasses.replace(cfg.ranker, lora_r=r, lora_alpha=8, lora_targets=list(targets), lora_layers=layers)
    ranker = Ranker.build(lay, (), "cpu")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in ranker.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    save_adapter(ranker.model, ranker.tokenizer, folder / "adapter")
    return _lora(ranker.model)


def test_build_starts_from_the_adapter_in_its_layout(tmp_path, tiny_llama):
    cfg = tiny_config(tmp_path, tiny_llama)
    want = _make_init(tmp_path / "init", cfg)
    init = init_adapter_dir(dataclasses.replace(cfg.ranker, init_adapter=str(tmp_path / "init")))
    assert init == tmp_path / "init" / "adapter"
    ranker = Ranker.build(cfg.ranker, ["<a_1>", "<b_2>"], "cpu", init=init)
    assert (ranker.cfg.lora_r, ranker.cfg.lora_alpha, ranker.cfg.lora_layers) == (4, 8, 1)
    assert ranker.cfg.lora_targets == ["k_proj", "o_proj", "q_proj"]
    got = _lora(ranker.model)
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert all(p.dtype == torch.float32 for p in ranker.model.parameters() if p.requires_grad)
    # the index tokens are still added and trainable beside the copied LoRA
    assert len(ranker.tokenizer) == len(Ranker.build(cfg.ranker, (), "cpu").tokenizer) + 2
    assert any("trainable_tokens" in n for n, p in ranker.model.named_parameters() if p.requires_grad)


def test_the_folder_itself_may_be_the_adapter(tmp_path, tiny_llama):
    cfg = tiny_config(tmp_path, tiny_llama)
    _make_init(tmp_path / "init", cfg)
    rc = dataclasses.replace(cfg.ranker, init_adapter=str(tmp_path / "init" / "adapter"))
    assert init_adapter_dir(rc) == tmp_path / "init" / "adapter"
    assert init_adapter_dir(cfg.ranker) is None


def test_stage_trains_from_the_adapter_and_retrains_when_it_changes(tmp_path, tiny_llama):
    run_dir = make_run_dir(tmp_path / "run")
    base = tiny_config(run_dir, tiny_llama)
    _make_init(tmp_path / "init", base, layers=2, targets=("q_proj", "v_proj", "up_proj"))
    cfg = tiny_config(run_dir, tiny_llama, f"ranker.init_adapter={tmp_path / 'init'}")
    record = run_stage(get_stage("ranker"), cfg)
    for key in ("ulmrec", "llamarec"):
        init = record["summary"][key]["init_adapter"]
        assert init["lora_layers"] == 2 and init["lora_r"] == 4  # the top 2 of 2 layers
        assert init["lora_targets"] == ["q_proj", "up_proj", "v_proj"]
    for sub in ("ranker/adapter", "ranker/llamarec/adapter"):
        conf = json.loads((run_dir / sub / "adapter_config.json").read_text())
        assert sorted(conf["target_modules"]) == ["q_proj", "up_proj", "v_proj"] and conf["r"] == 4
    assert run_stage(get_stage("ranker"), cfg)["skipped"]
    _make_init(tmp_path / "init", base, layers=2, targets=("q_proj", "v_proj", "up_proj"), r=4)  # same layout
    w = tmp_path / "init" / "adapter" / "adapter_model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(w)
    save_file({k: v * 2 for k, v in tensors.items()}, w)  # other starting weights: the stage is stale
    assert not run_stage(get_stage("ranker"), cfg)["skipped"]


def test_a_missing_adapter_fails_before_training(tmp_path, tiny_llama, monkeypatch):
    from ulmrec.ranker import stage as ranker_stage

    run_dir = make_run_dir(tmp_path)
    monkeypatch.setattr(ranker_stage, "train_one", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError, match="ranker.init_adapter=.*no adapter there"):
        run_stage(get_stage("ranker"), tiny_config(run_dir, tiny_llama, f"ranker.init_adapter={tmp_path / 'none'}"))
    assert not (run_dir / "ranker").exists()


def test_an_adapter_of_other_layers_or_another_model_is_refused(tmp_path, tiny_llama):
    cfg = tiny_config(tmp_path, tiny_llama)
    _make_init(tmp_path / "init", cfg)
    conf_path = tmp_path / "init" / "adapter" / "adapter_config.json"
    conf = json.loads(conf_path.read_text())
    conf_path.write_text(json.dumps({**conf, "layers_to_transform": [0]}))  # the bottom layer, not the top one
    with pytest.raises(ConfigError, match="not the top layers"):
        Ranker.build(cfg.ranker, (), "cpu", init=tmp_path / "init" / "adapter")
    conf_path.write_text(json.dumps({**conf, "r": 2}))  # shapes no longer fit
    with pytest.raises(ConfigError, match="does not fit ranker.model"):
        Ranker.build(cfg.ranker, (), "cpu", init=tmp_path / "init" / "adapter")
