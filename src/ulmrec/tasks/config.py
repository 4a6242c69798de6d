"""Settings of the six alignment tasks (paper 4.2, Figures 2-7). Owned by the tasks package."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TasksConfig:
    max_history: int = 20
    """(int) History titles shown in a prompt (paper 4.3: at most 20, the most recent)."""
    num_candidates: int = 20
    """(int) Candidates per ranking prompt, lettered A, B, ... (paper: 20, A..T)."""
