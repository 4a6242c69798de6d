"""A tiny randomly initialised Llama and a Llama-like tokenizer, built locally (no download).

The tokenizer mimics Llama-2's SentencePiece behaviour: a BPE model over a Metaspace pre-tokenizer, so a word
at the start of a text is ``▁A`` while the same letter after a newline is ``A`` -- the distinction behind
LlamaRec's verbalizer defect (REFERENCE.md).
"""

from __future__ import annotations

import string
from pathlib import Path

CORPUS = [
    "### Instruction:\nGiven the user index and history, recommend the next item from the candidates.",
    "### Input:\nUser ID: <a_1> <b_2> <c_3> <d_4>;\nUser history: (1) Red lipstick (2) Blue shampoo",
    "Candidate pool: (A) Green soap (B) Face cream (C) Nail polish (D) Hair dryer",
    "### Response:\nA", "The user prefers natural skin care products and dislikes strong scents. 5.0 4.0 3.0",
    "Rating: 1.0 2.0 3.0 4.0 5.0 predict the user's rating of the last item of user history out of 5.",
] + [f"({c}) {c} item {i}" for i, c in enumerate(string.ascii_uppercase)] + list(string.printable)


def build_tokenizer(directory: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = list(string.ascii_letters + string.digits + string.punctuation) + ["\n", "▁"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=alphabet, show_progress=False)
    tk.train_from_iterator(CORPUS * 5, trainer=trainer)
    tok = LlamaTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                             add_bos_token=True, add_eos_token=False)
    tok.save_pretrained(directory)
    return tok


def build_tiny_llama(directory: Path, tie: bool = False, max_positions: int = 1024) -> Path:
    """Write a random 2-layer Llama (hidden 32) with the tokenizer above into ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(directory)
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=tie)
    torch.manual_seed(0)
    LlamaForCausalLM(conf).save_pretrained(directory)
    return directory
