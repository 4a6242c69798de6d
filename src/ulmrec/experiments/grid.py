"""The variants the paper's analyses compare, and which experiment needs which (paper 5.3-5.4).

A variant is a change of the ``tasks`` settings (switched-on tasks, identity string, next-item prompt). Every
variant trains its own ranker on top of the same upstream artifacts (data, preferences, retriever candidates,
user indices). Variants whose effective training set is the same (e.g. 'w/o rating' on data without ratings,
where the rating task is skipped anyway) are trained once and reported under both names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ulmrec.tasks.base import TASKS
from ulmrec.tasks.mixing import apply_budget

ALIGNMENT = tuple(t for t in TASKS if t != "next_item")


@dataclass(frozen=True)
class Variant:
    name: str
    """Directory name of the variant's run (``<work>/<name>-s<seed>``)."""
    label: str
    """Row label in tables and figures (the paper's names)."""
    tasks: tuple[str, ...] = TASKS
    """Switched-on tasks (``tasks.enabled``)."""
    identity: str = "index"
    """``tasks.identity``: index (P-ID), numeric (N-ID), original (O-ID), reference."""
    prompt: str = "full"
    """``tasks.prompt`` of the next-item task (training and evaluation)."""

    def overrides(self) -> list[str]:
        return [f"tasks.enabled=[{','.join(self.tasks)}]", f"tasks.identity={self.identity}",
                f"tasks.prompt={self.prompt}"]


def _without(task: str) -> tuple[str, ...]:
    return tuple(t for t in TASKS if t != task)


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("full", "ULMRec"),
    # Fig. 8, in the paper's order and names
    Variant("wo_pref", "w/o pref", _without("index_to_preference")),
    Variant("wo_intent", "w/o intention", _without("intent")),
    Variant("wo_rating", "w/o rating", _without("rating")),
    Variant("wo_history", "w/o history", _without("history_to_index")),
    Variant("wo_turnpref", "w/o turnpref", _without("preference_to_index")),
    Variant("wo_all", "w/o all-align", ("next_item",)),
    # Fig. 9: N-ID and O-ID with and without the alignment tasks (P-ID = full / wo_all)
    Variant("nid_align", "N-ID w/ align", TASKS, "numeric"),
    Variant("nid_noalign", "N-ID w/o align", ("next_item",), "numeric"),
    Variant("oid_align", "O-ID w/ align", TASKS, "original"),
    Variant("oid_noalign", "O-ID w/o align", ("next_item",), "original"),
    # Table 2: the LlamaRec-style ranker (same LM, next-item only, no user index)
    Variant("llamarec", "LlamaRec-style", ("next_item",), "index", "no_index"),
]}

#: Fig. 9 cells: (indexing method, with alignment) -> variant name.
INDEX_CELLS = {("N-ID", False): "nid_noalign", ("N-ID", True): "nid_align",
               ("O-ID", False): "oid_noalign", ("O-ID", True): "oid_align",
               ("P-ID", False): "wo_all", ("P-ID", True): "full"}

ABLATION = ["full", "wo_pref", "wo_intent", "wo_rating", "wo_history", "wo_turnpref", "wo_all"]

#: Experiment name -> (what it reproduces, variants it needs, in run order).
EXPERIMENTS: dict[str, tuple[str, list[str]]] = {
    "main": ("Table 2 (one dataset's rows): retriever order, LlamaRec-style ranker, ULMRec", ["full", "llamarec"]),
    "uid": ("Table 4: ULMRec vs ULMRec-uid (user index + candidates, no history)", ["full"]),
    "case-study": ("Figure 10: the preference generated from an index prefix of 1..4 levels", ["full"]),
    "inference-time": ("Section 5.4.3: inference time per test user", ["full"]),
    "ablation": ("Figure 8: ablation of the alignment tasks", ABLATION),
    "index-variants": ("Figure 9: N-ID / O-ID / P-ID with and without alignment",
                       ["nid_noalign", "nid_align", "oid_noalign", "oid_align", "wo_all", "full"]),
}
#: The order ``all`` runs the experiments in: the cheap analyses of the full model first.
ALL_ORDER = ["uid", "case-study", "inference-time", "ablation", "index-variants", "main"]


def experiment_names() -> list[str]:
    return list(EXPERIMENTS) + ["all"]


def variants_for(names: list[str]) -> list[str]:
    """The variants the experiments ``names`` need, each once, in run order."""
    out: list[str] = []
    for n in names:
        for v in EXPERIMENTS[n][1]:
            if v not in out:
                out.append(v)
    return out


def expand(name: str) -> list[str]:
    if name == "all":
        return list(ALL_ORDER)
    if name not in EXPERIMENTS:
        raise KeyError(name)
    return [name]


# --------------------------------------------------------------------------------------------- budgets
def task_quotas(selected: dict[str, int], budget: int) -> dict[str, int]:
    """Samples per task when the mix of ``selected`` samples is cut to ``budget`` (``tasks.max_samples``'s
    largest-remainder rule, ulmrec.tasks.mixing.apply_budget); ``budget`` 0 keeps everything."""
    kept = apply_budget({t: list(range(n)) for t, n in selected.items() if n > 0}, budget, 0)
    return {t: len(kept.get(t, [])) for t in selected}


def effective_tasks(variant: Variant, available: set[str]) -> tuple[str, ...]:
    """The variant's tasks that can produce samples on this data (e.g. no rating task without ratings)."""
    return tuple(t for t in variant.tasks if t in available)


def variant_budget(variant: Variant, quotas: dict[str, int], budget: int) -> int:
    """``tasks.max_samples`` of a variant: the full mix's per-task counts of the tasks it keeps (0 = no cut)."""
    if not budget:
        return 0
    return sum(quotas.get(t, 0) for t in variant.tasks)


def training_key(variant: Variant, available: set[str]) -> tuple:
    """Variants with the same key train on the same samples: one run serves both."""
    return effective_tasks(variant, available), variant.identity, variant.prompt
