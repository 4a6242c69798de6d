"""Settings of ``ulmrec experiment``: how big the grid is (seeds, training samples, test users, ...).

Two budgets ship: ``paper`` (the paper's protocol: one epoch over every training sample of every task, all Rank
test users, three seeds, the ranker settings of the config) and ``cpu-small`` (a grid that runs on a 2-core CPU
in about an hour: 32 training samples per variant, 30 test users, two seeds). Command-line flags override single
fields of the chosen budget.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class ExperimentConfig:
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    """(list[int]) One training + evaluation per seed and variant; tables give mean and standard deviation
    (paper 5.1.4: three repeats). The seed also draws the test-user subset when ``test_users`` > 0."""
    train_samples: int = 0
    """(int) Size of the full six-task mix (``tasks.max_samples`` of the full model, each task keeping its share);
    a variant without some tasks keeps the other tasks' counts, so it trains on fewer samples, as in the paper.
    0 = every sample (the paper: one epoch over the whole mix)."""
    batch_size: int = 0
    """(int) ``ranker.batch_size`` of every variant (0 = the config's)."""
    lr: float = 0.0
    """(float) ``ranker.lr`` of every variant (0 = the config's; the paper: 1e-4)."""
    warmup_steps: int = -1
    """(int) ``ranker.warmup_steps`` (-1 = the config's)."""
    eval_every: int = 0
    """(int) ``ranker.eval_every`` (0 = the config's; a value above the step count validates only at the end)."""
    valid_users: int = -1
    """(int) ``ranker.eval_users``, the validation subset that picks the best adapter (-1 = the config's)."""
    test_users: int = 0
    """(int) ``evaluate.max_users``: score a fixed random subset (drawn with the seed) of this many Rank test
    users; Overall = Rank x coverage measured on all users (0 = every Rank user)."""
    threads: int = 0
    """(int) ``ranker.num_threads`` (0 = the config's). On a shared CPU, 1 thread is much faster than 2."""
    case_users: int = 3
    """(int) Users of the case study (Fig. 10): each gets its preference generated from 1..levels index tokens."""
    case_max_new_tokens: int = 48
    """(int) Longest generated preference (greedy decoding) in the case study."""
    timing_users: int = 20
    """(int) Test users timed one at a time (batch size 1) for the inference-time table (paper 5.4.3)."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        for name in ("train_samples", "batch_size", "eval_every", "test_users", "threads", "case_users",
                     "timing_users"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.train_samples == 1:
            raise ValueError("train_samples must be 0 (all) or at least 2")
        if self.lr < 0:
            raise ValueError(f"lr must be >= 0 (0 = the config's), got {self.lr}")
        if self.warmup_steps < -1 or self.valid_users < -1:
            raise ValueError("warmup_steps and valid_users must be >= -1 (-1 = the config's)")
        if self.valid_users == 0:
            raise ValueError("valid_users must be >= 1 (or -1 = the config's); 0 would validate on every user")
        if self.case_max_new_tokens < 1:
            raise ValueError(f"case_max_new_tokens must be >= 1, got {self.case_max_new_tokens}")

    def ranker_overrides(self) -> list[str]:
        """``key=value`` overrides of the ranker and evaluate settings this budget changes."""
        out = ["ranker.baseline=false", "evaluate.baseline=false", f"evaluate.max_users={self.test_users}"]
        for key, value, unset in (("ranker.batch_size", self.batch_size, 0), ("ranker.lr", self.lr, 0.0),
                                  ("ranker.warmup_steps", self.warmup_steps, -1),
                                  ("ranker.eval_every", self.eval_every, 0),
                                  ("ranker.eval_users", self.valid_users, -1),
                                  ("ranker.num_threads", self.threads, 0)):
            if value != unset:
                out.append(f"{key}={value}")
        return out


#: Named budgets; ``--budget NAME`` starts from one, single flags override its fields.
BUDGETS: dict[str, ExperimentConfig] = {
    "paper": ExperimentConfig(),
    "cpu-small": ExperimentConfig(seeds=[1, 2], train_samples=32, batch_size=4, lr=5e-4, warmup_steps=1,
                                  eval_every=1000, valid_users=4, test_users=30, threads=1, case_users=3,
                                  case_max_new_tokens=40, timing_users=10),
}


def budget(name: str, **changes) -> ExperimentConfig:
    """The budget ``name`` with ``changes`` (fields left at None are not changed)."""
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; known: {', '.join(BUDGETS)}")
    changes = {k: v for k, v in changes.items() if v is not None}
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(ExperimentConfig)})
    if unknown:
        raise ValueError(f"unknown experiment setting(s) {', '.join(unknown)}")
    return dataclasses.replace(BUDGETS[name], **changes)
