"""Settings of the evaluation stage (paper 5.1.3)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvaluateConfig:
    ks: list[int] = field(default_factory=lambda: [5, 10])
    """(list[int]) Cut-offs for MRR@k, NDCG@k and Recall@k."""
    max_users: int = 0
    """(int) Score a fixed random subset of this many Rank test users (0 = all of them); Overall is then
    Rank x coverage, the coverage measured on all test users."""
    baseline: bool = True
    """(bool) Also evaluate the LlamaRec-style adapter (ranker/llamarec/) when the ranker stage trained one."""
    no_history: bool = False
    """(bool) Also evaluate ULMRec with the user index and candidates only, no history (paper Table 4, ULMRec-uid)."""
    chunk_users: int = 100
    """(int) Users scored between two saved partial results (an interrupted evaluation resumes from them)."""
    zero_shot: bool = True
    """(bool) Also score the untuned LM (LlamaRec-style prompt, no adapter): the paper's "Llama-2" row."""
    position_check: bool = True
    """(bool) Also score ULMRec on the same users with their candidate lists shuffled: a ranker that only
    copies the retriever's order falls to chance there."""
    fusion: bool = True
    """(bool) Also report "ULMRec + retriever": log-softmax of the letter scores + w x the retriever's score,
    w chosen on validation users only (w = 0 allowed). Beyond the paper; never replaces the ULMRec row."""
    fusion_users: int = 200
    """(int) Validation Rank users the fusion weight is chosen on (0 = all)."""
    fusion_grid: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0])
    """(list[float]) Candidate fusion weights (ties go to the smaller)."""
    title_similarity: bool = False
    """(bool) Also report two rows beyond the paper: "Retriever + title similarity" (no LLM: the retriever's
    score + w x the cosine similarity of each candidate's title to the user's last tasks.max_history history
    titles, the most similar one, embedded with title_encoder; w chosen on every validation Rank user) and
    "ULMRec + retriever + title similarity" (the fusion row + w x that similarity; both weights chosen on the
    fusion_users validation users). The first shows the signal the titles hold beyond the retriever, the second
    whether the LLM adds anything beyond it."""
    title_encoder: str = "all-MiniLM-L6-v2"
    """(str) sentence-transformers model (name or directory) of title_similarity; the default loads the packaged
    copy offline."""
    title_grid: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 12.0])
    """(list[float]) Candidate weights of the title similarity (ties go to the smaller)."""
    title_likelihood: bool = False
    """(bool) Also report rows beyond the paper that read the ranker LM (ranker.model; untuned unless
    likelihood_tuning_steps) as a language
    model instead of through the letters (ulmrec.ranker.likelihood): each candidate scored by the
    log-probability of its title after the user's last tasks.max_history history titles (likelihood_signal).
    "Retriever + LM title likelihood" = the retriever's score + w x that score, w chosen on likelihood_users
    validation Rank users; with title_similarity also "Retriever + title similarity + LM title likelihood"
    (both weights chosen on the same users), which shows whether the LM adds anything beyond the similarity."""
    likelihood_signal: str = "auto"
    """(str) 'pmi': log p(title | history) - log p(title | no history), what the history adds to how likely the
    title is anyway; 'cond': log p(title | history); 'auto': both are scored (one pass) and the one whose fused
    row is better on the likelihood_users validation users is used (the untuned LM chose 'pmi', the tuned one
    'cond' in benchmarks/results/title_likelihood.md)."""
    likelihood_users: int = 200
    """(int) Validation Rank users the title-likelihood weights are chosen on (0 = all)."""
    likelihood_title_tokens: int = 12
    """(int) Tokens of each title scored (history titles are cut to as many)."""
    likelihood_grid: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
                                                                  0.2, 0.3, 0.5, 0.75, 1.0])
    """(list[float]) Candidate weights of the title likelihood (nats summed over a title; ties go to the smaller)."""
    likelihood_tuning_steps: int = 0
    """(int) 0: the title-likelihood rows read the untuned LM. > 0: first tune a LoRA (ranker.lora_*) of the same
    LM for this many steps of 8 windows of a user's last tasks.max_history + 1 TRAINING titles, the loss on every
    title after a window's first (ulmrec.ranker.likelihood.train_title_lm with every_title; no validation or test
    item), saved in the stage's folder, and read that LM instead. On this CPU 1,150-1,340 steps fill the 60
    minutes of one core that benchmarks/results/title_likelihood.md gave it."""
    likelihood_tuning_lr: float = 1e-3
    """(float) Learning rate of that tuning (AdamW, 20 warm-up steps, then constant)."""
    likelihood_adapter: str = ""
    """(str) A folder holding a title-LM adapter trained earlier (adapter/ and train.json: an evaluate stage's
    title_lm/, or a `benchmarks/title_likelihood.py train` tag folder): the title-likelihood rows read the LM
    with that adapter (its own LoRA layout) instead of tuning one. Exclusive with likelihood_tuning_steps."""
    bootstrap: int = 2000
    """(int) Bootstrap resamples of the users for the paired 95 % intervals."""

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"evaluate.ks must be a non-empty list of cut-offs >= 1, got {self.ks}")
        if self.max_users < 0:
            raise ValueError(f"evaluate.max_users must be >= 0 (0 = all), got {self.max_users}")
        if self.fusion_users < 0 or self.bootstrap < 100:
            raise ValueError("evaluate.fusion_users must be >= 0 and evaluate.bootstrap >= 100")
        if not self.fusion_grid or any(w < 0 for w in self.fusion_grid):
            raise ValueError(f"evaluate.fusion_grid must be a non-empty list of weights >= 0, got {self.fusion_grid}")
        if not self.title_grid or any(w < 0 for w in self.title_grid):
            raise ValueError(f"evaluate.title_grid must be a non-empty list of weights >= 0, got {self.title_grid}")
        if self.likelihood_signal not in ("pmi", "cond", "auto"):
            raise ValueError(f"evaluate.likelihood_signal must be 'pmi', 'cond' or 'auto', got "
                             f"{self.likelihood_signal!r}")
        if self.likelihood_users < 0 or self.likelihood_title_tokens < 1:
            raise ValueError("evaluate.likelihood_users must be >= 0 and evaluate.likelihood_title_tokens >= 1")
        if not self.likelihood_grid or any(w < 0 for w in self.likelihood_grid):
            raise ValueError(f"evaluate.likelihood_grid must be a non-empty list of weights >= 0, got "
                             f"{self.likelihood_grid}")
        if self.likelihood_tuning_steps < 0 or self.likelihood_tuning_lr <= 0:
            raise ValueError("evaluate.likelihood_tuning_steps must be >= 0 and evaluate.likelihood_tuning_lr > 0")
        if self.likelihood_adapter and self.likelihood_tuning_steps:
            raise ValueError("evaluate.likelihood_adapter and evaluate.likelihood_tuning_steps > 0 both set: the "
                             "title-likelihood rows read one LM (set one of them)")
        if self.chunk_users < 1:
            raise ValueError(f"evaluate.chunk_users must be >= 1, got {self.chunk_users}")
