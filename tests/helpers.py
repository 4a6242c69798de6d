"""Helpers of the ranker and evaluation tests, all built locally (no download).

- A tiny randomly initialised Llama with a Llama-like tokenizer: a BPE model over a Metaspace pre-tokenizer,
  so a word at the start of a text is ``▁A`` while the same letter after a newline is ``A`` -- the distinction
  behind LlamaRec's verbalizer defect (REFERENCE.md).
- Stand-in instruction samples, and a complete tiny run directory with the artifacts the ranker and evaluation
  stages read (ARCHITECTURE.md).
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.io import write_parquet
from ulmrec.tasks.base import Sample

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


LENGTHS = [7, 5, 9, 6, 5, 8, 6, 5]
NUM_ITEMS = 40
LETTERS = 4
NOT_RETRIEVED = {1, 5}  # users whose valid and test targets are left out of their candidates


def make_run_dir(run_dir: Path) -> Path:
    rng = np.random.default_rng(0)
    rows, seqs = [], []
    for u, n in enumerate(LENGTHS):
        items = rng.choice(np.arange(1, NUM_ITEMS + 1), size=n, replace=False)
        seqs.append(items)
        for pos, item in enumerate(items):
            split = "test" if pos == n - 1 else "valid" if pos == n - 2 else "train"
            rows.append((u, int(item), pos, split, 1_600_000_000 + pos, float(1 + (u + pos) % 5), f"review {u}-{pos}"))
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "position", "split", "timestamp", "rating", "review"])
    inter = inter.astype({"user_idx": "int32", "item_idx": "int32", "position": "int32", "rating": "Float32"})
    users = pd.DataFrame({"user_idx": np.arange(len(LENGTHS), dtype="int32"),
                          "user_id": [f"U{u:03d}" for u in range(len(LENGTHS))]})
    items = pd.DataFrame({"item_idx": np.arange(1, NUM_ITEMS + 1, dtype="int32"),
                          "item_id": [f"B{i:04d}" for i in range(1, NUM_ITEMS + 1)],
                          "title": [f"Lipstick shade {i} by Brand {i % 7}" for i in range(1, NUM_ITEMS + 1)]})
    Dataset(inter, users, items).save(run_dir / "data")
    for split, back in (("valid", 2), ("test", 1)):
        recs = []
        for u, seq in enumerate(seqs):
            target = int(seq[-back])
            others = [int(i) for i in rng.permutation(np.arange(1, NUM_ITEMS + 1)) if i not in seq][:LETTERS + 2]
            cands = others if u in NOT_RETRIEVED else others[:u % LETTERS] + [target] + others[u % LETTERS:]
            cands = cands[:LETTERS + 2]
            rank = cands.index(target) if target in cands else -1
            recs.append({"user_idx": u, "candidates": cands, "scores": [float(-i) for i in range(len(cands))],
                         "target": target, "target_rank": rank})
        write_parquet(run_dir / "retrieval" / f"candidates_{split}.parquet", pd.DataFrame(recs))
    write_parquet(run_dir / "index" / "user_index.parquet", pd.DataFrame({
        "user_idx": np.arange(len(LENGTHS)), "user_id": users["user_id"],
        "codes": [[u, u + 1, u % 3, 7] for u in range(len(LENGTHS))],
        "tokens": [[f"<a_{u}>", f"<b_{u + 1}>", f"<c_{u % 3}>", "<d_7>"] for u in range(len(LENGTHS))]}))
    write_parquet(run_dir / "preferences" / "preferences.parquet", pd.DataFrame({
        "user_idx": np.arange(len(LENGTHS)), "preference": [f"Likes shade {u} lipstick." for u in range(len(LENGTHS))],
        "status": "ok", "source": "test", "error": None}))
    return run_dir


def tiny_config(run_dir: Path, model_dir: Path, *overrides: str):
    return load_config(None, [f"run_dir={run_dir}", f"ranker.model={model_dir}", "device=cpu",
                              f"tasks.num_candidates={LETTERS}", f"retrieval.num_candidates={LETTERS + 2}",
                              "tasks.max_history=3", "ranker.max_steps=4", "ranker.eval_every=2",
                              "ranker.batch_size=2", "ranker.warmup_steps=1", "ranker.num_threads=1",
                              "ranker.max_length=512", *overrides])


def next_item_sample(user: int, n: int = 5, target: int = 2, index: str = "<a_1> <b_2>") -> Sample:
    """A next-item sample over ``n`` lettered candidates, the true one at ``target``."""
    cands = list(range(10 + user, 10 + user + n))
    pool = " ".join(f"({string.ascii_uppercase[i]}) item {c}" for i, c in enumerate(cands))
    return Sample(task="next_item", user_idx=user, instruction="Recommend the next item.",
                  input=f"User ID: {index};\nUser history: (1) item 3 (2) item 4\nCandidate pool: {pool}",
                  response=string.ascii_uppercase[target], candidates=cands, target=target)


def text_sample(user: int, task: str = "index_to_preference") -> Sample:
    return Sample(task=task, user_idx=user, instruction="Given the user index, predict the preference.",
                  input="User ID: <a_1> <b_2>", response="The user prefers natural skin care.")


def load_benchmark(name: str):
    """The module of ``benchmarks/<name>.py`` (its directory on the path while it loads, for ``_common``)."""
    import importlib.util
    import sys

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(bench))
