"""Paired statistics for "does the ranker beat its own retriever?": bootstrap intervals, letter histograms,
score fusion and position checks. Pure numpy/scipy, vectorised, deterministic given a seed.

Conventions as in :mod:`ulmrec.metrics`: a rank is the target's 0-based position in a model's
order, ``-1`` = a miss (scores 0 on every metric); scores are ``(N, C)`` floats, one row per user and one
column per candidate (letter A, B, ...), ``-inf`` marking padding.

- :func:`paired_bootstrap` compares two models on the *same* users: the percentile bootstrap over users
  (resampling users with replacement) gives the interval of the mean difference, a paired sign-flip
  randomisation test its two-sided p-value.
- :func:`fuse` / :func:`choose_fusion_weight`: the LM's log-softmax over the candidates plus ``w`` times a
  retriever score; the weight is chosen on validation users only.
- :func:`position_check_permutations` and its helpers score the same users with their candidates shown in
  another order and map the result back, to measure position bias.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from ulmrec.metrics import METRICS, per_user_metrics, target_rank

DEFAULT_METRICS = ("NDCG@10", "Recall@10", "MRR@10")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CHUNK_ELEMENTS = 1_000_000  # resample indices held at once (rows x users per chunk)


# ----------------------------------------------------------------------------------------- per-user values
def parse_metric(metric: str) -> tuple[str, int]:
    """``"NDCG@10"`` -> ``("NDCG", 10)``; ValueError for anything else."""
    name, _, k = str(metric).partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)} followed by @k, e.g. NDCG@10")
    return name, int(k)


def _ranks(ranks, what: str = "ranks") -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional (one rank per user), got shape {r.shape}")
    if r.size and (not np.issubdtype(r.dtype, np.integer) and not np.all(np.mod(r, 1) == 0)):
        raise ValueError(f"{what} must be integer ranks (0-based, -1 = miss)")
    r = r.astype(np.int64)
    if r.size and r.min() < -1:
        raise ValueError(f"{what} must be >= -1 (0-based ranks, -1 = miss), got {int(r.min())}")
    return r


def per_user_metric(ranks: np.ndarray | Sequence[int], metric: str = "NDCG@10") -> np.ndarray:
    """One value of ``metric`` (``MRR@k``, ``NDCG@k``, ``Recall@k``) per user (float64), from 0-based target
    ranks (-1 = miss, 0); the formulas are :func:`ulmrec.metrics.per_user_metrics`'."""
    name, k = parse_metric(metric)
    return per_user_metrics(_ranks(ranks), [k])[f"{name}@{k}"]


# ----------------------------------------------------------------------------------------- paired bootstrap
def _chunks(total: int, users: int) -> Iterable[tuple[int, int]]:
    step = max(1, _CHUNK_ELEMENTS // max(1, users))
    for start in range(0, total, step):
        yield start, min(total, start + step)


def paired_bootstrap(a_ranks: np.ndarray | Sequence[int], b_ranks: np.ndarray | Sequence[int],
                     metrics: Sequence[str] = DEFAULT_METRICS, n_boot: int = 2000, seed: int = 0,
                     alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """Model A minus model B on the same users (``a_ranks[i]`` and ``b_ranks[i]`` belong to one user).

    Returns ``{metric: {"mean", "lo", "hi", "p", "a", "b", "n", "alpha"}}``: ``mean`` = mean over users of
    A's value minus B's; ``lo``/``hi`` = the ``alpha/2`` and ``1 - alpha/2`` percentiles of that mean over
    ``n_boot`` bootstrap resamples of the users (with replacement; the same resamples for every metric);
    ``p`` = two-sided p-value of a paired sign-flip randomisation test (each user's difference flipped in sign
    at random, ``n_boot`` times; ``(1 + #{|flipped mean| >= |mean|}) / (1 + n_boot)``, so identical inputs
    give 1); ``a``/``b`` = the two models' means, ``n`` = users.
    """
    a, b = _ranks(a_ranks, "a_ranks"), _ranks(b_ranks, "b_ranks")
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs the same users: {len(a)} ranks for A, {len(b)} for B")
    if len(a) == 0:
        raise ValueError("paired comparison needs at least one user")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    metrics = list(metrics)
    if not metrics:
        raise ValueError("no metrics asked for")
    va = np.stack([per_user_metric(a, m) for m in metrics])  # (M, N)
    vb = np.stack([per_user_metric(b, m) for m in metrics])
    d = va - vb
    n = d.shape[1]
    observed = d.mean(1)
    boot = np.empty((n_boot, len(metrics)))
    boot_rng, flip_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    for start, stop in _chunks(n_boot, n):
        idx = boot_rng.integers(0, n, size=(stop - start, n))
        boot[start:stop] = d[:, idx].mean(-1).T
    extreme = np.zeros(len(metrics), dtype=np.int64)
    tol = 1e-12 * np.maximum(1.0, np.abs(observed))  # |flipped| equal to |observed| up to rounding counts as extreme
    for start, stop in _chunks(n_boot, n):
        signs = flip_rng.integers(0, 2, size=(stop - start, n)).astype(np.float64) * 2 - 1
        flipped = signs @ d.T / n  # (chunk, M)
        extreme += (np.abs(flipped) >= np.abs(observed) - tol).sum(0)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    p = (1 + extreme) / (1 + n_boot)
    return {m: {"mean": float(observed[i]), "lo": float(lo[i]), "hi": float(hi[i]), "p": float(p[i]),
                "a": float(va[i].mean()), "b": float(vb[i].mean()), "n": int(n), "alpha": float(alpha)}
            for i, m in enumerate(metrics)}


def paired_table(ranks_by_model: Mapping[str, np.ndarray | Sequence[int]], reference: str = "Retriever order",
                 extra_pairs: Sequence[tuple[str, str]] = (("ULMRec", "LlamaRec-style"),),
                 metrics: Sequence[str] = DEFAULT_METRICS, n_boot: int = 2000, seed: int = 0,
                 alpha: float = 0.05) -> dict[str, dict[str, dict[str, float]]]:
    """``{"<A> - <B>": paired_bootstrap(A, B)}`` for every model A against ``reference``, then every pair of
    ``extra_pairs`` whose two models are both in ``ranks_by_model`` (an absent one, e.g. no baseline ranker,
    is left out). Every comparison uses the same ``seed``."""
    if reference not in ranks_by_model:
        raise ValueError(f"reference model {reference!r} is not among {', '.join(map(repr, ranks_by_model))}")
    pairs = [(name, reference) for name in ranks_by_model if name != reference]
    pairs += [(a, b) for a, b in extra_pairs if a in ranks_by_model and b in ranks_by_model and (a, b) not in pairs]
    return {f"{a} - {b}": paired_bootstrap(ranks_by_model[a], ranks_by_model[b], metrics, n_boot, seed, alpha)
            for a, b in pairs}


def paired_markdown(table: Mapping[str, Mapping[str, Mapping[str, float]]], digits: int = 4) -> str:
    """A Markdown table of :func:`paired_table`: ``| comparison | NDCG@10 diff [95% CI] | ... |``, each cell
    ``+0.0123 [-0.0040, +0.0290] p=0.14``; a bold difference is one whose interval excludes 0."""
    if not table:
        return ""
    first = next(iter(table.values()))
    metrics = list(first)
    level = round(100 * (1 - next(iter(first.values())).get("alpha", 0.05)), 2)
    lines = ["| comparison | " + " | ".join(f"{m} diff [{level:g}% CI]" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for name, row in table.items():
        cells = []
        for m in metrics:
            s = row[m]
            diff = f"{s['mean']:+.{digits}f}"
            if s["lo"] > 0 or s["hi"] < 0:
                diff = f"**{diff}**"
            cells.append(f"{diff} [{s['lo']:+.{digits}f}, {s['hi']:+.{digits}f}] p={s['p']:.3g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- letter histograms
def _scores(scores, what: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"{what} must be (users, candidates), got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError(f"{what} contain NaN")
    return s


def letter_histogram(scores: np.ndarray) -> np.ndarray:
    """How often each letter (column A, B, ...) has the highest score: int64 counts of length C.

    Padding (``-inf``) never wins; a row without any finite score is not counted; a tie for the top goes to
    the earliest letter (``np.argmax``), so a constant scorer shows up as "always A".
    """
    s = _scores(scores)
    valid = np.isfinite(s).any(1)
    top = s[valid].argmax(1) if s.shape[1] else np.zeros(0, dtype=np.int64)
    return np.bincount(top, minlength=s.shape[1]).astype(np.int64)


def letter_histogram_markdown(hist_by_model: Mapping[str, np.ndarray | Sequence[int]]) -> str:
    """``| model | A | B | ... | users |`` with each letter's share of the model's top-1 picks (percent)."""
    if not hist_by_model:
        return ""
    width = max(len(h) for h in hist_by_model.values())
    letters = LETTERS[:width]
    lines = ["| model | " + " | ".join(letters) + " | users |", "|---|" + "---|" * (width + 1)]
    for name, hist in hist_by_model.items():
        h = np.zeros(width, dtype=np.int64)
        h[:len(hist)] = np.asarray(hist, dtype=np.int64)
        total = int(h.sum())
        shares = [f"{100 * c / total:.1f}" if total else "-" for c in h]
        lines.append(f"| {name} | " + " | ".join(shares) + f" | {total} |")
    return "\n".join(lines) + "\n"


def plot_letter_histograms(hist_by_model: Mapping[str, np.ndarray | Sequence[int]], path: str | Path) -> Path:
    """A grouped bar chart (share of top-1 picks per letter, one colour per model) written as PNG to ``path``
    atomically (a temporary file in the same folder, then ``os.replace``). Uses the Agg canvas directly, so
    no global matplotlib backend is changed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if not hist_by_model:
        raise ValueError("no histogram to plot")
    width = max(len(h) for h in hist_by_model.values())
    fig = Figure(figsize=(max(6.0, 0.45 * width * max(1, len(hist_by_model)) / 2 + 2), 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bar = 0.8 / len(hist_by_model)
    x = np.arange(width)
    for i, (name, hist) in enumerate(hist_by_model.items()):
        h = np.zeros(width)
        h[:len(hist)] = np.asarray(hist, dtype=np.float64)
        total = h.sum()
        ax.bar(x + (i - (len(hist_by_model) - 1) / 2) * bar, 100 * h / total if total else h, bar,
               label=f"{name} ({int(total)})")
    ax.axhline(100 / width, color="grey", linewidth=0.8, linestyle="--", label="uniform")
    ax.set_xticks(x, list(LETTERS[:width]))
    ax.set_xlabel("letter with the highest score")
    ax.set_ylabel("% of users")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------------------- fusion
def retriever_rank_scores(n_candidates: int) -> np.ndarray:
    """A retriever score from the candidate's position when its raw scores are not at hand:
    ``-log(position + 1)`` (natural log) for positions 0..C-1, i.e. 0, -0.69, -1.10, ...: decreasing, so the
    retriever's order is kept, with the gaps shrinking down the list like a log-rank prior. Shape ``(C,)``;
    it broadcasts against ``(N, C)`` in :func:`fuse`."""
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    return -np.log1p(np.arange(n_candidates, dtype=np.float64))


def _log_softmax(s: np.ndarray, valid: np.ndarray) -> np.ndarray:
    masked = np.where(valid, s, -np.inf)
    norm = logsumexp(masked, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        out = masked - norm
    return np.where(valid, out, -np.inf)


def log_softmax_rows(scores: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Row-wise log-softmax over each row's finite entries (the candidates a model scored), ``-inf`` elsewhere."""
    s = _scores(scores)
    return _log_softmax(s, np.isfinite(s))


def fuse(lm_scores: np.ndarray, retriever_scores: np.ndarray, w: float) -> np.ndarray:
    """``log_softmax(lm) + w * retriever`` over each row's valid candidates (the LM's finite scores), ``-inf``
    elsewhere. ``retriever_scores`` is ``(N, C)`` (raw retriever scores of the same candidates, same order)
    or ``(C,)`` (e.g. :func:`retriever_rank_scores`), finite wherever the LM score is; ``w = 0`` keeps the
    LM's order, a very large ``w`` the retriever's."""
    lm = _scores(lm_scores, "lm_scores")
    retr = np.asarray(retriever_scores, dtype=np.float64)
    try:
        retr = np.broadcast_to(retr, lm.shape)
    except ValueError:
        raise ValueError(f"retriever scores of shape {retr.shape} do not match the LM scores {lm.shape}") from None
    if not np.isfinite(w):
        raise ValueError(f"fusion weight must be finite, got {w!r}")
    valid = np.isfinite(lm)
    if not np.isfinite(retr[valid]).all():
        raise ValueError("retriever scores are not finite at every candidate the LM scored (padding differs)")
    return np.where(valid, _log_softmax(lm, valid) + w * np.where(valid, retr, 0.0), -np.inf)


def choose_fusion_weight(lm_scores: np.ndarray, retriever_scores: np.ndarray, targets: np.ndarray | Sequence[int],
                         grid: Sequence[float] = (0, 0.1, 0.2, 0.5, 1, 2, 5, 10),
                         metric: str = "NDCG@10") -> tuple[float, dict[float, float]]:
    """The fusion weight of ``grid`` with the best mean ``metric``, and ``{w: metric}`` for every weight.

    Use it on VALIDATION users only, then apply the chosen weight to test: choosing on test would report a
    maximum over the grid, not a held-out number. ``targets`` = the target's column (0-based) in each row,
    -1 = not among the candidates (counts 0). Ranks use the pessimistic tie rule of
    :func:`ulmrec.metrics.target_rank`. ``w = 0`` (the LM alone) is allowed; ties go to the smaller
    weight, so a retriever score that changes nothing leaves ``w`` at the grid's smallest value.
    """
    (best,), by = _grid_search(lm_scores, [retriever_scores], targets, [grid], metric)
    return best, {w: v for (w,), v in by.items()}


def fuse_terms(lm_scores: np.ndarray, terms: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``log_softmax(lm) + sum_j weights[j] x terms[j]`` over each row's valid candidates (the LM's finite
    scores), ``-inf`` elsewhere; each term is ``(N, C)`` or ``(C,)`` like :func:`fuse`'s retriever scores, and one
    term is :func:`fuse`."""
    if len(terms) != len(weights) or not len(terms):
        raise ValueError(f"{len(terms)} score terms for {len(weights)} weights")
    out = fuse(lm_scores, terms[0], weights[0])
    valid = np.isfinite(out)
    for j, (term, w) in enumerate(zip(terms[1:], weights[1:], strict=True), start=1):
        t = np.asarray(term, dtype=np.float64)
        try:
            t = np.broadcast_to(t, out.shape)
        except ValueError:
            raise ValueError(f"score term {j} of shape {t.shape} does not match the LM scores {out.shape}") from None
        if not np.isfinite(w) or not np.isfinite(t[valid]).all():
            raise ValueError(f"score term {j} and its weight must be finite at every candidate the LM scored")
        out = out + w * np.where(valid, t, 0.0)
    return np.where(valid, out, -np.inf)


def choose_fusion_weights(lm_scores: np.ndarray, terms: Sequence[np.ndarray], targets: np.ndarray | Sequence[int],
                          grids: Sequence[Sequence[float]], metric: str = "NDCG@10") -> tuple[tuple[float, ...], dict]:
    """:func:`choose_fusion_weight` for several score terms at once: the weight tuple of the grids' product with
    the best mean ``metric`` (ties keep the tuple that comes first, smallest weights first) and
    ``{"w1,w2,...": metric}``. VALIDATION users only."""
    best, by = _grid_search(lm_scores, terms, targets, grids, metric)
    return best, {",".join(f"{w:g}" for w in ws): v for ws, v in by.items()}


def _grid_search(lm_scores, terms, targets, grids, metric) -> tuple[tuple[float, ...], dict[tuple, float]]:
    """The checks and the search of :func:`choose_fusion_weight(s)`: ``{weight tuple: metric}`` over the grids'
    product (each grid sorted), the best tuple (strictly better only: ties keep the earlier, smaller one)."""
    import itertools

    parse_metric(metric)
    lm = _scores(lm_scores, "lm_scores")
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    if len(t) != len(lm):
        raise ValueError(f"{len(t)} targets for {len(lm)} score rows")
    if len(t) and (t.min() < -1 or t.max() >= lm.shape[1]):
        raise ValueError(f"targets must be column indices 0..{lm.shape[1] - 1} or -1")
    if len(grids) != len(terms):
        raise ValueError(f"{len(grids)} grids for {len(terms)} score terms")
    for g in grids:
        if not len(g) or any(not np.isfinite(w) or w < 0 for w in g):
            raise ValueError(f"the grid must hold finite weights >= 0, got {list(g)!r}")
    valid = np.isfinite(lm)
    values: dict[tuple, float] = {}
    best = None
    for ws in itertools.product(*[sorted({float(w) for w in g}) for g in grids]):
        ranks = target_rank(fuse_terms(lm, terms, ws), t, valid).numpy()
        values[ws] = float(per_user_metric(ranks, metric).mean()) if len(ranks) else float("nan")
        if best is None or values[ws] > values[best]:
            best = ws
    return best, values


# ----------------------------------------------------------------------------------------- position checks
def position_check_permutations(n_users: int, n_candidates: int, seed: int) -> np.ndarray:
    """``(N, C)`` int64, each row a random permutation of 0..C-1 (seeded): row i shows the user's original
    candidate ``perm[i, j]`` at position (letter) j. Use with :func:`permute_rows` to build the shown lists
    and :func:`unshuffle_scores` / :func:`unshuffle_ranks` to map the model's scores back."""
    if n_users < 0 or n_candidates < 0:
        raise ValueError(f"n_users and n_candidates must be >= 0, got {n_users}, {n_candidates}")
    rng = np.random.default_rng([int(seed), 0x705])
    return rng.permuted(np.tile(np.arange(n_candidates, dtype=np.int64), (n_users, 1)), axis=1)


def _check_perm(perm: np.ndarray, rows: int) -> np.ndarray:
    perm = np.asarray(perm, dtype=np.int64)
    if perm.ndim != 2 or len(perm) != rows:
        raise ValueError(f"permutations must be (users, candidates) with {rows} rows, got shape {perm.shape}")
    if not np.array_equal(np.sort(perm, axis=1), np.broadcast_to(np.arange(perm.shape[1]), perm.shape)):
        raise ValueError("every row of the permutations must hold 0..C-1 once each")
    return perm


def permute_rows(values: np.ndarray | Sequence[Sequence], perm: np.ndarray) -> np.ndarray | list[list]:
    """The shown order: ``out[i][j] = values[i][perm[i, j]]``. An array (e.g. scores, candidate ids) gives an
    array; a list of lists (e.g. each sample's candidates) gives a list of lists."""
    if isinstance(values, np.ndarray):
        perm = _check_perm(perm, len(values))
        if values.shape[:2] != perm.shape:
            raise ValueError(f"values of shape {values.shape} do not match permutations {perm.shape}")
        return np.take_along_axis(values, perm, axis=1)
    perm = _check_perm(perm, len(values))
    out = []
    for row, p in zip(values, perm, strict=True):
        if len(row) != len(p):
            raise ValueError(f"a list of {len(row)} candidates for a permutation of {len(p)}")
        out.append([row[j] for j in p])
    return out


def shown_targets(targets: np.ndarray | Sequence[int], perm: np.ndarray) -> np.ndarray:
    """Where each user's target column (original order; -1 = none) is shown after permuting."""
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    perm = _check_perm(perm, len(t))
    inverse = np.argsort(perm, axis=1)
    out = np.take_along_axis(inverse, np.maximum(t, 0)[:, None], axis=1)[:, 0]
    return np.where(t >= 0, out, -1)


def unshuffle_scores(shown_scores: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Scores of the shown order back in the original candidate order (the inverse of :func:`permute_rows`)."""
    s = np.asarray(shown_scores)
    perm = _check_perm(perm, len(s))
    if s.shape != perm.shape:
        raise ValueError(f"scores of shape {s.shape} do not match permutations {perm.shape}")
    out = np.empty_like(s)
    np.put_along_axis(out, perm, s, axis=1)
    return out


def unshuffle_ranks(shown_scores: np.ndarray, perm: np.ndarray, targets: np.ndarray | Sequence[int]) -> np.ndarray:
    """The target's 0-based rank (-1 where ``targets`` is -1) from scores of permuted lists, with ``targets``
    the target's column in the ORIGINAL order; padding (``-inf``) never outranks the target and ties are
    pessimistic, as in :func:`ulmrec.metrics.target_rank`. Compare with the ranks of the original
    order through :func:`paired_bootstrap` to measure position bias."""
    scores = unshuffle_scores(_scores(shown_scores, "shown_scores"), perm)
    t = np.asarray(targets, dtype=np.int64).reshape(-1)
    return target_rank(scores, t, np.isfinite(scores)).numpy()
