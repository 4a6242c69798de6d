"""Training on a tiny random Llama: the loss is on the response only, the best adapter is kept, resume is exact."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import next_item_sample, text_sample
from ulmrec.errors import ConfigError
from ulmrec.ranker import train as train_mod
from ulmrec.ranker.config import RankerConfig
from ulmrec.ranker.model import build_ranker, load_ranker
from ulmrec.ranker.predict import ranks_from_scores, score_samples
from ulmrec.ranker.train import encode_all, response_loss, sample_order, train_ranker
from ulmrec.ranker.verbalizer import encode_sample

INDEX = ["<a_1>", "<b_2>"]


def _cfg(model_dir, **kw) -> RankerConfig:
    base = dict(model=str(model_dir), lr=3e-2, warmup_steps=1, batch_size=2, micro_batch_size=1, max_steps=12,
                eval_every=4, eval_users=0, patience=0, lora_dropout=0.0, num_threads=1, baseline=False,
                dtype="float32", eval_first=False)
    base.update(kw)
    return RankerConfig(**base)


def test_loss_ignores_the_prompt(tiny_llama):
    torch.manual_seed(0)
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    s = next_item_sample(0, n=4, target=1)
    ids, labels = encode_sample(tok, s)
    loss = response_loss(model, encode_all(tok, [s], 1000), tok.pad_token_id, "cpu")
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    target = torch.tensor(labels[1:])
    keep = target != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_padding_does_not_change_the_loss(tiny_llama):
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    model.eval()
    a, b = encode_all(tok, [next_item_sample(0, n=4, target=1), text_sample(1)], 1000)
    for gather in (True, False):  # hidden states gathered before the LM head, or the last logits kept
        pair = response_loss(model, [a, b], tok.pad_token_id, "cpu", gather=gather)
        alone = (response_loss(model, [a], tok.pad_token_id, "cpu", gather=gather)
                 + response_loss(model, [b], tok.pad_token_id, "cpu", gather=gather))
        assert torch.allclose(pair, alone, atol=1e-4)


def _grads(model, batch, pad, **kw):
    model.zero_grad(set_to_none=True)
    response_loss(model, batch, pad, "cpu", **kw).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def test_batched_and_unbatched_gradients_agree(tiny_llama):
    torch.manual_seed(0)
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    with torch.no_grad():  # LoRA B starts at zero: give it weight so every LoRA matrix gets a gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    samples = [next_item_sample(u, n=3 + u % 2, target=u % 3) for u in range(3)] + [text_sample(4)]
    enc = encode_all(tok, samples, 1000)
    together = _grads(model, enc, tok.pad_token_id)
    apart = [_grads(model, [e], tok.pad_token_id) for e in enc]
    assert together
    for name, g in together.items():
        assert torch.allclose(g, sum(a[name] for a in apart), atol=1e-5), name


def test_listwise_loss_is_the_letters_cross_entropy(tiny_llama):
    from ulmrec.ranker.verbalizer import encode_prompt, letter_token_ids

    torch.manual_seed(0)
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    s = next_item_sample(0, n=4, target=2)
    letters = letter_token_ids(tok, 4)
    loss = response_loss(model, encode_all(tok, [s, text_sample(1)], 1000)[:1], tok.pad_token_id, "cpu",
                         letter_ids=letters)
    prompt = encode_prompt(tok, s)
    logits = model(input_ids=torch.tensor([prompt])).logits[0, -1, letters]
    expected = torch.nn.functional.cross_entropy(logits[None], torch.tensor([2]))
    assert torch.allclose(loss, expected, atol=1e-5)
    mixed = response_loss(model, encode_all(tok, [s, text_sample(1)], 1000), tok.pad_token_id, "cpu",
                          letter_ids=letters)
    text_only = response_loss(model, encode_all(tok, [text_sample(1)], 1000), tok.pad_token_id, "cpu")
    assert torch.allclose(mixed, expected + text_only, atol=1e-4)  # non-ranking samples keep Eq. 7


def test_bf16_and_fp32_scores_rank_the_candidates_the_same(tiny_llama, tmp_path):
    samples = [next_item_sample(u, n=4, target=u % 4) for u in range(6)]
    orders = {}
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(0)
        model, tok = build_ranker(_cfg(tiny_llama, dtype=dtype), INDEX, "cpu")
        with torch.no_grad():  # spread the letters' logits as a trained ranker does (random ones nearly tie)
            head = model.get_base_model().get_output_embeddings()
            head = getattr(head, "base_layer", head)
            head.weight.mul_(20.0)
        scores, _ = score_samples(model, tok, samples, batch_size=3, progress=False)
        orders[dtype] = scores.argsort(1)
        assert scores.dtype == torch.float32 or str(scores.dtype) == "float32"
    assert (orders["float32"] == orders["bfloat16"]).all()


def test_scores_do_not_depend_on_batching(tiny_llama):
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    samples = [next_item_sample(u, n=3 + u % 3, target=u % 3) for u in range(5)] + [next_item_sample(9, n=5)]
    one, _ = score_samples(model, tok, samples, batch_size=1, progress=False)
    many, _ = score_samples(model, tok, samples, batch_size=4, progress=False)
    assert one.shape == (6, 5)
    assert (one == many).sum() >= 0 and torch.allclose(torch.tensor(one), torch.tensor(many), atol=1e-4)
    assert not torch.isfinite(torch.tensor(one[0, 3:])).any()


def test_training_learns_the_answer_and_keeps_the_best(tiny_llama, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tiny_llama, max_steps=24, eval_every=8, lr=1e-1)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    valid = [next_item_sample(0, n=4, target=2)]
    before, _ = score_samples(model, tok, valid, progress=False)
    assert ranks_from_scores(before, valid)[0] > 0  # the random model does not know the answer
    train = valid + [text_sample(5)]
    summary = train_ranker(model, tok, train, valid, cfg, tmp_path, seed=1)
    assert summary["steps"] == 24 and summary["train_samples"] == 2
    assert summary["best_valid_NDCG@10"] == 1.0  # memorised: the target ranked first
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if e["event"] == "train"]
    assert losses[-1] < losses[0]
    assert [e["step"] for e in log if e["event"] == "eval"] == [8, 16, 24]
    assert (tmp_path / "train_curves.png").stat().st_size > 1000
    reloaded, tok2 = load_ranker(cfg, tmp_path / "adapter", "cpu")
    scores, _ = score_samples(reloaded, tok2, valid, progress=False)
    assert (ranks_from_scores(scores, valid) == 0).all()


def test_step_zero_is_validated_and_can_be_the_best(tiny_llama, tmp_path):
    torch.manual_seed(0)
    cfg = _cfg(tiny_llama, max_steps=2, eval_every=2, lr=1e-9, eval_first=True)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    valid = [next_item_sample(0, n=4, target=2)]
    summary = train_ranker(model, tok, valid, valid, cfg, tmp_path, seed=1)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if e["event"] == "eval"] == [0, 2]
    assert summary["best_step"] == 0  # a vanishing rate cannot beat the untuned model strictly


def test_resume_after_interruption_matches_uninterrupted(tiny_llama, tmp_path, monkeypatch):
    cfg = _cfg(tiny_llama, max_steps=8, eval_every=3, lora_dropout=0.3, eval_first=True)  # dropout: masks must match
    train = [next_item_sample(u, n=4, target=u % 4) for u in range(3)] + [text_sample(4)]
    valid = [next_item_sample(0, n=4, target=0)]

    torch.manual_seed(0)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    train_ranker(model, tok, train, valid, cfg, tmp_path / "full", seed=3)
    reference = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}

    calls = {"n": 0}
    real = train_mod.response_loss

    def crash_after_five_steps(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5 * cfg.batch_size:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    torch.manual_seed(0)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    monkeypatch.setattr(train_mod, "response_loss", crash_after_five_steps)
    with pytest.raises(KeyboardInterrupt):
        train_ranker(model, tok, train, valid, cfg, tmp_path / "resumed", seed=3)
    monkeypatch.setattr(train_mod, "response_loss", real)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 3

    torch.manual_seed(123)  # a different fresh init: everything must come from the checkpoint
    model, tok = build_ranker(cfg, INDEX, "cpu")
    summary = train_ranker(model, tok, train, valid, cfg, tmp_path / "resumed", seed=3)
    assert summary["steps"] == 8
    logs = [[json.loads(line) for line in (tmp_path / d / "train_log.jsonl").read_text().splitlines()]
            for d in ("full", "resumed")]
    strip = [[{k: v for k, v in e.items() if k not in ("seconds",)} for e in log] for log in logs]
    for e in strip[0] + strip[1]:
        e.get("valid", {}).pop("seconds", None)
    assert strip[0] == strip[1]  # the log is continuous: nothing repeated, nothing missing
    for name, value in model.named_parameters():
        if value.requires_grad:
            assert torch.allclose(value, reference[name], atol=1e-5), (name, (value - reference[name]).abs().max())


def test_index_token_rows_are_trained(tiny_llama_tied, tmp_path):
    cfg = _cfg(tiny_llama_tied, max_steps=3, eval_every=3)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    before = model.get_input_embeddings()(torch.tensor([tok.convert_tokens_to_ids("<a_1>")])).detach().clone()
    train_ranker(model, tok, [text_sample(0, "preference_to_index")], [], cfg, tmp_path)
    after = model.get_input_embeddings()(torch.tensor([tok.convert_tokens_to_ids("<a_1>")])).detach()
    assert not torch.allclose(before, after)


def test_text_mode_adds_no_tokens(tiny_llama):
    _, tok = build_ranker(_cfg(tiny_llama, index_tokens="text"), ["<d_240>"], "cpu")
    assert "<d_240>" not in tok.get_vocab()
    assert len(tok.tokenize("<d_240>")) > 1
    _, tok = build_ranker(_cfg(tiny_llama), ["<d_240>"], "cpu")
    assert tok.tokenize("<d_240>") == ["<d_240>"]


def test_too_long_sample_is_a_config_error_before_training(tiny_llama):
    _, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    with pytest.raises(ConfigError, match="longer than ranker.max_length=20"):
        encode_all(tok, [next_item_sample(0, n=20)], max_length=20)


def test_sample_order_is_a_function_of_the_seed():
    a, b = sample_order(5, 12, seed=7), sample_order(5, 12, seed=7)
    assert (a == b).all() and len(a) == 12 and sorted(a[:5]) == list(range(5))


@pytest.mark.parametrize("tie", [False, True])
def test_index_token_rows_get_gradients_with_lora_on_top_layers_only(tiny_llama, tiny_llama_tied, tie):
    """LoRA in the top layer alone: the backward pass must still run down to the input embedding for the
    index-token rows (and no gradient is computed for the rows' base copy)."""
    cfg = _cfg(tiny_llama_tied if tie else tiny_llama, lora_layers=1)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_A" in n]
    assert lora and all(".layers.1." in n for n in lora)  # the top one of the two layers only
    enc = encode_all(tok, [next_item_sample(0, n=4, target=1)], 1000)  # its prompt holds <a_1> <b_2>
    response_loss(model, enc, tok.pad_token_id, "cpu").backward()
    deltas = [p for n, p in model.named_parameters() if p.requires_grad and "trainable_tokens_delta" in n]
    assert deltas and all(p.grad is not None and p.grad.abs().sum() > 0 for p in deltas)


def test_shared_prefix_cache_gives_the_full_prompts_scores(tiny_llama):
    from ulmrec.ranker.predict import common_prefix
    from ulmrec.ranker.verbalizer import encode_prompts

    torch.manual_seed(0)
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    samples = [next_item_sample(u, n=3 + u % 3, target=u % 3) for u in range(5)]
    assert common_prefix(encode_prompts(tok, samples)) >= 4
    full, _ = score_samples(model, tok, samples, batch_size=2, progress=False, share_prefix=False)
    shared, _ = score_samples(model, tok, samples, batch_size=2, progress=False, share_prefix=True)
    assert torch.allclose(torch.tensor(full), torch.tensor(shared), atol=1e-4)
    assert (full.argsort(1) == shared.argsort(1)).all()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_merged_adapter_scores_like_the_separate_one(tiny_llama_tied, tmp_path, dtype):
    """ranker.merge_adapter folds LoRA and the trained index-token rows into the base weights for scoring:
    the plain model it returns gives the adapter's scores (up to the base dtype's rounding) and the same order."""
    torch.manual_seed(0)
    cfg = _cfg(tiny_llama_tied, max_steps=12, eval_every=12, lr=1e-1, dtype=dtype)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    with torch.no_grad():  # spread the letters' logits as a trained ranker does (random ones nearly tie)
        head = model.get_base_model().get_output_embeddings()
        getattr(head, "base_layer", head).weight.mul_(20.0)
    valid = [next_item_sample(u, n=4, target=u % 4) for u in range(6)]
    train_ranker(model, tok, valid + [text_sample(0, "preference_to_index")], valid, cfg, tmp_path, seed=1)
    separate, tok1 = load_ranker(cfg, tmp_path / "adapter", "cpu")
    merged, tok2 = load_ranker(cfg, tmp_path / "adapter", "cpu", merge=True)
    assert hasattr(separate, "peft_config") and not hasattr(merged, "peft_config")
    a, _ = score_samples(separate, tok1, valid, batch_size=3, progress=False)
    b, _ = score_samples(merged, tok2, valid, batch_size=3, progress=False)
    tol = 1e-4 if dtype == "float32" else 0.1
    assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=tol * max(1.0, float(abs(a[0, 0]))))
    assert (a.argsort(1) == b.argsort(1)).all()
    # the index-token rows went in too: the merged embedding of <a_1> is the trained one
    i = tok1.convert_tokens_to_ids("<a_1>")
    emb = separate.get_input_embeddings()(torch.tensor([i])).float()
    assert torch.allclose(emb, merged.get_input_embeddings()(torch.tensor([i])).float(), atol=1e-2)


def _grads_of(model, key: str) -> list:
    return [None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
            if p.requires_grad and key in n]


def test_index_token_grad_non_ranking_trains_the_rows_from_alignment_samples_only(tiny_llama):
    """ranker.index_token_grad=non_ranking: a next-item sample's loss reaches LoRA but not the index-token rows
    of the input embedding, and the lowest decoder layer sees no input that needs a gradient (the backward
    stops at the LoRA layers); an alignment sample still trains the rows; a mixed micro-batch gives the sum of
    the single samples. (Untied model: the output layer's own index rows still see every softmax.)"""
    cfg = _cfg(tiny_llama, lora_layers=1, index_token_grad="non_ranking")
    model, tok = build_ranker(cfg, INDEX, "cpu")
    rank_s, text_s = encode_all(tok, [next_item_sample(0, n=4, target=1), text_sample(1, "preference_to_index")], 1000)
    seen = []
    layer0 = model.get_base_model().get_decoder().layers[0]
    hook = layer0.register_forward_pre_hook(lambda m, args, kwargs: seen.append(
        (args[0] if args else kwargs["hidden_states"]).requires_grad), with_kwargs=True)
    response_loss(model, [rank_s], tok.pad_token_id, "cpu", detach_ranking=True).backward()
    assert seen == [False]
    assert all(g is None or not g.abs().sum() for g in _grads_of(model, "embed_tokens.token_adapter"))
    lora_rank = _grads_of(model, "lora_")
    assert any(g is not None and g.abs().sum() > 0 for g in lora_rank)  # (lora_A's is 0 while lora_B is 0)
    model.zero_grad()
    response_loss(model, [text_s], tok.pad_token_id, "cpu", detach_ranking=True).backward()
    delta_text, lora_text = _grads_of(model, "embed_tokens.token_adapter"), _grads_of(model, "lora_")
    assert all(g is not None and g.abs().sum() > 0 for g in delta_text)
    model.zero_grad()
    response_loss(model, [rank_s, text_s], tok.pad_token_id, "cpu", detach_ranking=True).backward()
    hook.remove()
    for mixed, one in zip(_grads_of(model, "embed_tokens.token_adapter"), delta_text, strict=True):
        assert torch.allclose(mixed, one, atol=1e-5)
    for mixed, a, b in zip(_grads_of(model, "lora_"), lora_rank, lora_text, strict=True):
        assert torch.allclose(mixed, (0 if a is None else a) + (0 if b is None else b), atol=1e-5)
    model.zero_grad()  # the default ('all') keeps the paper's path: the ranking sample trains the rows
    response_loss(model, [rank_s], tok.pad_token_id, "cpu").backward()
    assert all(g is not None and g.abs().sum() > 0 for g in _grads_of(model, "embed_tokens.token_adapter"))


def test_distillation_adds_the_soft_target_cross_entropy(tiny_llama):
    from ulmrec.ranker.verbalizer import encode_prompt, letter_token_ids

    torch.manual_seed(0)
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    model.eval()
    s = next_item_sample(0, n=4, target=2)
    s.meta["teacher"] = [3.0, 1.0, 2.5, -1.0]
    plain = next_item_sample(1, n=3, target=0)  # no retriever scores: hard loss only
    letters = letter_token_ids(tok, 4)
    enc = encode_all(tok, [s, plain, text_sample(2)], 1000)
    assert enc[0].teacher == (3.0, 1.0, 2.5, -1.0) and enc[1].teacher is None and enc[2].teacher is None
    hard = response_loss(model, enc, tok.pad_token_id, "cpu")
    logits = model(input_ids=torch.tensor([encode_prompt(tok, s)])).logits[0, -1, letters]
    for temp in (1.0, 2.0):
        p = torch.softmax(torch.tensor(s.meta["teacher"]) / temp, 0)
        soft = -(p * torch.log_softmax(logits, 0)).sum()
        for gather in (True, False):
            got = response_loss(model, enc, tok.pad_token_id, "cpu", gather=gather, distill=0.5,
                                distill_letters=letters, temperature=temp)
            assert torch.allclose(got, hard + 0.5 * soft, atol=1e-4), (temp, gather)
    # a 3-candidate sample's soft targets cover its own letters only
    short = next_item_sample(3, n=3, target=1)
    short.meta["teacher"] = [0.0, 1.0, 2.0]
    e = encode_all(tok, [short], 1000)
    z = model(input_ids=torch.tensor([encode_prompt(tok, short)])).logits[0, -1, letters[:3]]
    soft = -(torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0) * torch.log_softmax(z, 0)).sum()
    got = response_loss(model, e, tok.pad_token_id, "cpu", distill=1.0, distill_letters=letters)
    assert torch.allclose(got, response_loss(model, e, tok.pad_token_id, "cpu") + soft, atol=1e-4)


@pytest.mark.parametrize("setting, bad", [("distill_weight", {"distill_temperature": 0}),
                                          ("residual_weight", {"residual_weight": -1})])
def test_retriever_score_settings_need_scored_samples(tiny_llama, tmp_path, setting, bad):
    """distill_weight and residual_weight read the retriever's scores: training samples without them stop with a
    ConfigError before a step; an impossible value is refused when the settings are made."""
    cfg = _cfg(tiny_llama, **{setting: 0.5}, max_steps=2)
    model, tok = build_ranker(cfg, INDEX, "cpu")
    with pytest.raises(ConfigError, match=setting):
        train_ranker(model, tok, [next_item_sample(0, n=4, target=1)], [], cfg, tmp_path / "out")
    with pytest.raises(ValueError, match=next(iter(bad))):
        _cfg(tiny_llama, **bad)


def test_residual_adds_the_retrievers_log_softmax_to_the_letter_logits(tiny_llama):
    """ranker.residual_weight: the answer position's letter logits get w x log_softmax(teacher) before the loss
    (Eq. 7 over the vocabulary, or the list-wise loss); samples without scores and the later response tokens
    keep their plain loss; w = 0 is the plain loss."""
    from ulmrec.ranker.verbalizer import encode_prompt, letter_token_ids

    torch.manual_seed(0)
    model, tok = build_ranker(_cfg(tiny_llama), INDEX, "cpu")
    model.eval()
    s = next_item_sample(0, n=4, target=2)
    s.meta["teacher"] = [3.0, 1.0, 2.5, -1.0]
    plain = next_item_sample(1, n=3, target=0)
    letters = letter_token_ids(tok, 4)
    enc = encode_all(tok, [s, plain, text_sample(2)], 1000)
    w, teacher = 0.7, torch.tensor(s.meta["teacher"])
    ids, labels = encode_sample(tok, s)
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    target = torch.tensor(labels[1:])
    keep = (target != -100).nonzero()[:, 0]
    fused = logits[keep].clone()
    fused[0, letters] += w * torch.log_softmax(teacher, 0)  # the first response token is the letter
    own = torch.nn.functional.cross_entropy(fused, target[keep])
    others = (response_loss(model, enc[1:], tok.pad_token_id, "cpu"))
    for gather in (True, False):
        got = response_loss(model, enc, tok.pad_token_id, "cpu", gather=gather, residual=w, residual_letters=letters)
        assert torch.allclose(got, own + others, atol=1e-4), gather
        zero = response_loss(model, enc, tok.pad_token_id, "cpu", gather=gather, residual=0.0,
                             residual_letters=letters)
        assert torch.allclose(zero, response_loss(model, enc, tok.pad_token_id, "cpu", gather=gather), atol=1e-6)
    # list-wise: cross-entropy over the 4 letters of (logits + w x log_softmax(teacher))
    z = model(input_ids=torch.tensor([encode_prompt(tok, s)])).logits[0, -1, letters].float()
    expected = torch.nn.functional.cross_entropy((z + w * torch.log_softmax(teacher, 0))[None], torch.tensor([2]))
    got = response_loss(model, enc[:1], tok.pad_token_id, "cpu", letter_ids=letters, residual=w,
                        residual_letters=letters)
    assert torch.allclose(got, expected, atol=1e-4)
    # a 3-candidate sample's residual covers its own letters only
    short = next_item_sample(3, n=3, target=1)
    short.meta["teacher"] = [0.0, 1.0, 2.0]
    z = model(input_ids=torch.tensor([encode_prompt(tok, short)])).logits[0, -1, letters[:3]].float()
    expected = torch.nn.functional.cross_entropy((z + torch.log_softmax(torch.tensor([0.0, 1.0, 2.0]), 0))[None],
                                                 torch.tensor([1]))
    got = response_loss(model, encode_all(tok, [short], 1000), tok.pad_token_id, "cpu", letter_ids=letters,
                        residual=1.0, residual_letters=letters)
    assert torch.allclose(got, expected, atol=1e-4)


def test_residual_selection_ranks_the_fused_scores():
    """Checkpoint selection under ranker.residual_weight ranks letter score + w x log_softmax(retriever score):
    a large w gives the retriever's order whatever the letters say; padding stays -inf."""
    import numpy as np

    samples = [next_item_sample(u, n=3, target=t) for u, t in enumerate((0, 2))]
    samples[0].meta["teacher"] = [5.0, 0.0, 0.0]  # the retriever puts the target first
    samples[1].meta["teacher"] = [0.0, 0.0, 5.0]
    letters = np.array([[0.0, 1.0, 2.0, -np.inf], [2.0, 1.0, 0.0, -np.inf]])  # the LM puts both targets last
    assert ranks_from_scores(letters, samples).tolist() == [2, 2]
    fused = train_mod.residual_scores(letters, samples, 10.0)
    assert ranks_from_scores(fused, samples).tolist() == [0, 0]
    assert np.isneginf(fused[:, 3]).all()
    small = train_mod.residual_scores(letters, samples, 0.1)
    assert ranks_from_scores(small, samples).tolist() == [2, 2]
    t = np.array([5.0, 0.0, 0.0])
    assert np.allclose(small[0, :3], letters[0, :3] + 0.1 * (t - np.log(np.exp(t).sum())))

