"""ulmrec.ranker.likelihood: candidate titles scored by their log-probability after the user's history."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import make_run_dir
from ulmrec.data.dataset import Dataset
from ulmrec.ranker.likelihood import TitleLikelihood, continuation_logprobs, history_prompt, title_tokens


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(tiny_llama)).eval(), AutoTokenizer.from_pretrained(str(tiny_llama))


def by_full_forward(model, prefix: list[int], cont: list[int]) -> float:
    """The summed log-probability of ``cont`` after ``prefix`` from one plain forward pass of the whole text."""
    ids = torch.tensor([prefix + cont])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    return float(sum(logp[len(prefix) - 1 + j, t] for j, t in enumerate(cont)))


def test_batched_continuations_equal_one_full_forward_each(lm):
    """Cached prefix + right-padded batch of continuations of different lengths (one of a single token) = the
    plain forward pass of prefix + continuation, one at a time."""
    model, _ = lm
    prefix = [1, 17, 23, 42, 5, 9]
    conts = [[30, 31, 32, 33], [50], [60, 61]]
    got = continuation_logprobs(model, prefix, conts)
    want = [by_full_forward(model, prefix, c) for c in conts]
    assert got.shape == (3,)
    assert np.allclose(got, want, atol=1e-4)
    assert (got < 0).all()


def test_prompt_and_title_tokens(lm):
    _, tok = lm
    assert history_prompt(["a b", "c"], intro="Bought:") == "Bought:\n- a b\n- c\n-"
    assert history_prompt([], intro="Bought:") == "Bought:\n-"
    toks = title_tokens(tok, ["Red lipstick shade", ""], max_tokens=2)
    assert len(toks[0]) == 2 and toks[0] == tok(" Red lipstick shade", add_special_tokens=False)["input_ids"][:2]
    assert len(toks[1]) == 1  # an empty title still scores one token


def test_scores_are_cond_and_pmi_over_the_splits_history(lm, tmp_path):
    """cond = log p(title | the user's history for the split), pmi = cond - log p(title | no history); the
    validation history ends before the validation item (the test item is never seen); -inf past a short list."""
    model, tok = lm
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    scorer = TitleLikelihood(model, tok, ds, history=3, max_title_tokens=4)
    users, cands = [0, 2], [[3, 4, 5], [6, 7]]
    s = scorer.score(users, cands, "valid", progress=False)
    assert s["cond"].shape == (2, 3) and np.isneginf(s["cond"][1, 2]) and np.isneginf(s["pmi"][1, 2])

    bos = [tok.bos_token_id]
    for row, (u, cs) in enumerate(zip(users, cands, strict=True)):
        hist_items = ds.history(u, "valid")[-3:]
        assert ds.sequence(u)[-2] not in list(ds.history(u, "valid"))  # the validation item is not in it
        hist = [tok.decode(title_tokens(tok, [ds.titles[int(i)]], 4)[0]).strip() for i in hist_items]
        prefix = bos + tok(history_prompt(hist), add_special_tokens=False)["input_ids"]
        empty = bos + tok(history_prompt([]), add_special_tokens=False)["input_ids"]
        for col, item in enumerate(cs):
            t = title_tokens(tok, [ds.titles[item]], 4)[0]
            cond = by_full_forward(model, prefix, t)
            assert s["cond"][row, col] == pytest.approx(cond, abs=1e-4)
            assert s["pmi"][row, col] == pytest.approx(cond - by_full_forward(model, empty, t), abs=1e-4)


def test_a_preference_sentence_goes_before_the_history_and_not_into_the_no_history_term(lm, tmp_path):
    """With ``preferences`` the cond prefix starts with the user's preference line; a user without a sentence is
    scored exactly as without preferences, and the no-history term never reads a sentence."""
    model, tok = lm
    assert history_prompt(["a"], intro="Bought:", preference="  likes  red\nlipstick ") == \
        "What this shopper prefers: likes red lipstick\nBought:\n- a\n-"
    assert history_prompt(["a"], intro="Bought:", preference=" ") == "Bought:\n- a\n-"
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    plain = TitleLikelihood(model, tok, ds, history=3, max_title_tokens=4)
    with_pref = TitleLikelihood(model, tok, ds, history=3, max_title_tokens=4, preferences={0: "Loves bright red."})
    users, cands = [0, 2], [[3, 4, 5], [6, 7, 8]]
    a, b = plain.score(users, cands, "valid", progress=False), with_pref.score(users, cands, "valid", progress=False)
    assert np.allclose(a["cond"][1], b["cond"][1]) and np.allclose(a["pmi"][1], b["pmi"][1])  # user 2: none
    assert not np.allclose(a["cond"][0], b["cond"][0])
    assert np.allclose(a["cond"][0] - a["pmi"][0], b["cond"][0] - b["pmi"][0])  # the same no-history term
    hist = [tok.decode(title_tokens(tok, [ds.titles[int(i)]], 4)[0]).strip() for i in ds.history(0, "valid")[-3:]]
    prefix = [tok.bos_token_id] + tok(history_prompt(hist, preference="Loves bright red."),
                                      add_special_tokens=False)["input_ids"]
    t = title_tokens(tok, [ds.titles[3]], 4)[0]
    assert b["cond"][0, 0] == pytest.approx(by_full_forward(model, prefix, t), abs=1e-4)


def test_the_no_history_term_is_computed_once_per_item(lm, tmp_path, monkeypatch):
    model, tok = lm
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    scorer = TitleLikelihood(model, tok, ds, history=2, max_title_tokens=3, uncond_batch=2)
    first = scorer.unconditional([3, 4, 3, 5])
    assert first[0] == first[2]
    import ulmrec.ranker.likelihood as mod

    calls = []
    real = mod.continuation_logprobs
    monkeypatch.setattr(mod, "continuation_logprobs", lambda *a, **k: calls.append(len(a[2])) or real(*a, **k))
    again = scorer.unconditional([5, 4, 3])
    assert calls == [] and np.allclose(again, first[[3, 1, 0]])


def test_bad_settings_are_refused(lm, tmp_path):
    model, tok = lm
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    with pytest.raises(ValueError, match="history and max_title_tokens"):
        TitleLikelihood(model, tok, ds, history=0)


def test_next_title_pairs_come_from_training_sequences_only(tmp_path):
    from ulmrec.ranker.likelihood import next_title_pairs

    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    pairs = next_title_pairs(ds, 200, history=3, seed=1)
    assert pairs == next_title_pairs(ds, 200, history=3, seed=1)
    held = {(u, int(i)) for u in range(ds.num_users) for i in ds.sequence(u)[-2:]}  # validation and test items
    for hist, target in pairs:
        assert 1 <= len(hist) <= 3
        owners = [u for u in range(ds.num_users) if list(ds.history(u, "valid")).count(target)
                  and all(i in list(ds.history(u, "valid")) for i in hist)]
        assert owners and all((u, target) not in held for u in owners)


def test_tuning_lowers_the_next_title_loss_and_moves_only_lora(tiny_llama, tmp_path):
    """A few steps on the tiny run's training pairs: the LoRA weights move, the base weights do not, and the
    loss on the same pairs falls (the tiny model can fit them)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulmrec.ranker.likelihood import train_title_lm

    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    log = train_title_lm(model, tok, ds, steps=30, batch_size=4, lr=1e-2, history=2, max_title_tokens=4, warmup=1,
                         progress=False)
    assert len(log) == 30 and all(np.isfinite(e["loss"]) for e in log)
    assert np.mean([e["loss"] for e in log[-5:]]) < np.mean([e["loss"] for e in log[:5]])
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert any(("lora_B" in n) and p.abs().sum() > 0 for n, p in model.named_parameters())
    with pytest.raises(ValueError, match="no trainable parameters"):
        plain = AutoModelForCausalLM.from_pretrained(str(tiny_llama)).requires_grad_(False)
        train_title_lm(plain, tok, ds, steps=1, progress=False)
    # a time budget stops after the step that passes it (1e-9 s: the first step)
    assert len(train_title_lm(model, tok, ds, steps=5, batch_size=2, history=2, max_title_tokens=4, progress=False,
                              max_seconds=1e-9)) == 1


def test_continuation_sums_keep_the_graph_and_equal_the_no_grad_scores(lm):
    from ulmrec.ranker.likelihood import continuation_sums, head_weight

    model, _ = lm
    prefix, conts = [1, 17, 23, 42], [[30, 31, 32], [50]]
    s = continuation_sums(model, prefix, conts, "cpu", head_weight(model))
    assert s.requires_grad and s.shape == (2,)
    assert np.allclose(s.detach().double().numpy(), continuation_logprobs(model, prefix, conts), atol=1e-5)


def test_listwise_samples_are_training_prefixes_with_the_retrievers_top_k(tmp_path):
    """Every prefix is the start of a user's training sequence and the candidates are the retriever's top k for
    it (the history masked). 'skip' keeps only prefixes whose true next item the retriever listed, where it
    listed it; 'replace' keeps every draw and puts a missed item in the last slot."""
    from ulmrec.ranker.likelihood import listwise_samples
    from ulmrec.retrieval.candidates import rank_next_items
    from ulmrec.retrieval.config import RetrievalConfig
    from ulmrec.retrieval.models import build_model

    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    torch.manual_seed(0)
    retriever = build_model(RetrievalConfig(max_len=8), ds.num_items).eval()
    trains = [list(ds.history(u, "valid")) for u in range(ds.num_users)]
    for missing in ("skip", "replace"):
        samples, info = listwise_samples(ds, retriever, 40, k=6, seed=3, max_len=8, missing=missing)
        again, _ = listwise_samples(ds, retriever, 40, k=6, seed=3, max_len=8, missing=missing)
        assert samples == again and len(samples) == 40 and 0 <= info["target_first"] <= info["retrieved"] < 1
        replaced = 0
        for hist, cands, t in samples:
            assert len(cands) == 6 and len(set(cands)) == 6 and 0 <= t < 6
            owner = [s for s in trains if s[:len(hist)] == hist and len(s) > len(hist)]
            assert owner and owner[0][len(hist)] == cands[t]  # the target is the next TRAINING item
            top = [int(i) for i in rank_next_items(retriever, [np.array(hist)], np.array([cands[t]]), 8, k=6)["candidates"][0]]
            assert cands[:5] == top[:5] and not set(cands[:5]) & set(hist)
            replaced += cands[t] not in top
        if missing == "skip":
            assert replaced == 0
        else:
            assert replaced == round((1 - info["retrieved"]) * 40) > 0
    with pytest.raises(ValueError, match="missing"):
        listwise_samples(ds, retriever, 4, missing="drop")


def test_listwise_tuning_learns_to_rank_the_true_item_and_moves_only_lora(tiny_llama, tmp_path):
    """The tiny LM on a fixed set of candidate lists: the listwise loss on ``cond`` falls and the true item comes
    first; the base weights stay; the first ``pmi`` loss is the cross-entropy of (cond - no-history term) / T as
    the scorer computes them; bad settings are refused. (16 title tokens: the tiny tokenizer spends the first
    few on the words every test title shares.)"""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulmrec.ranker.likelihood import train_title_listwise

    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama)), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    samples = [([1, 2, 3], [5, 6, 7, 8], 2), ([4, 9], [10, 11, 12, 13], 0)] * 2

    scorer = TitleLikelihood(model, tok, ds, history=2, max_title_tokens=16)
    want = []
    for hist, cands, t in samples:
        prefix = scorer._encode(history_prompt([scorer._cut(i) for i in hist[-2:]]))
        pmi = continuation_logprobs(model, prefix, scorer._tokens(cands)) - scorer.unconditional(cands)
        want.append(float(torch.nn.functional.cross_entropy(torch.tensor(pmi / 3.0)[None], torch.tensor([t]))))
    log = train_title_listwise(model, tok, ds, samples, batch_size=4, lr=1e-9, history=2, max_title_tokens=16,
                               temperature=3.0, signal="pmi", progress=False)
    assert log[0]["loss"] == pytest.approx(np.mean(want), rel=1e-4)

    log = train_title_listwise(model, tok, ds, samples * 20, batch_size=4, lr=1e-2, history=2, max_title_tokens=16,
                               warmup=1, temperature=1.0, signal="cond", progress=False)
    assert len(log) == 20 and all(np.isfinite(e["loss"]) and 0 <= e["top1"] <= 1 for e in log)
    assert np.mean([e["loss"] for e in log[-3:]]) < 0.5 * np.mean([e["loss"] for e in log[:3]])
    assert log[-1]["top1"] == 1.0
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    with pytest.raises(ValueError, match="temperature"):
        train_title_listwise(model, tok, ds, samples, temperature=0, progress=False)
    with pytest.raises(ValueError, match="signal"):
        train_title_listwise(model, tok, ds, samples, signal="letters", progress=False)
    assert len(train_title_listwise(model, tok, ds, samples * 5, batch_size=2, history=2, max_title_tokens=4,
                                    progress=False, max_seconds=1e-9)) == 1


def test_training_windows_are_each_users_last_training_items_every_user_once_per_pass(tmp_path):
    from ulmrec.ranker.likelihood import training_windows

    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    eligible = [u for u in range(ds.num_users) if len(ds.history(u, "valid")) >= 2]
    windows = training_windows(ds, 2 * len(eligible) + 3, length=4, seed=2)
    assert windows == training_windows(ds, 2 * len(eligible) + 3, length=4, seed=2)
    tails = sorted(tuple(int(i) for i in ds.history(u, "valid")[-4:]) for u in eligible)
    assert sorted(map(tuple, windows[:len(eligible)])) == tails  # one pass: every user once
    assert sorted(map(tuple, windows[len(eligible):2 * len(eligible)])) == tails
    assert all(2 <= len(w) <= 4 for w in windows)
    with pytest.raises(ValueError, match="length >= 2"):
        training_windows(ds, 5, length=1)


def test_window_spans_hold_the_scorers_tokens_of_every_title_after_the_first(lm, tmp_path):
    from ulmrec.ranker.likelihood import TitleLikelihood, pair_tokens, window_tokens

    model, tok = lm
    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    scorer = TitleLikelihood(model, tok, ds, history=3, max_title_tokens=5)
    items = [int(i) for i in ds.history(0, "valid")[-4:]]
    ids, spans = window_tokens(scorer, items)
    assert len(spans) == len(items) - 1
    for (a, b), item in zip(spans, items[1:], strict=True):
        assert ids[a:b] == scorer._tokens([item])[0]
    # the last span's prefix reads as the scorer's prompt over the items before it (up to the spaces a cut title
    # ends with: the scorer strips them from its history lines)
    pair_ids, pair_spans = pair_tokens(scorer, (items[:-1], items[-1]))
    a, b = spans[-1]
    assert tok.decode(ids[:a]).replace(" ", "") == tok.decode(pair_ids[:pair_spans[0][0]]).replace(" ", "")
    assert pair_ids[pair_spans[0][0]:pair_spans[0][1]] == ids[a:b]


def test_every_title_tuning_lowers_the_loss(tiny_llama, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulmrec.ranker.likelihood import train_title_lm

    ds = Dataset.load(make_run_dir(tmp_path) / "data")
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_llama)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    log = train_title_lm(model, tok, ds, steps=30, batch_size=4, lr=1e-2, history=2, max_title_tokens=4, warmup=1,
                         progress=False, every_title=True)
    assert len(log) == 30 and all(np.isfinite(e["loss"]) for e in log)
    assert np.mean([e["loss"] for e in log[-5:]]) < np.mean([e["loss"] for e in log[:5]])
