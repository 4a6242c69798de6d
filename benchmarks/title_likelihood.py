"""The ranker's LM read as a language model: candidate title likelihood after the user's history, beside the
retriever (beyond the paper; no training).

The paper's letter-logit ranker, trained on this CPU, learns to copy the retriever's order
(benchmarks/results/ranker_beauty_long.md, ranker_games_long.md); a training-free sentence-encoder similarity of
the titles does beat the retriever (title_signal.md). This benchmark asks whether the same small LM
(SmolLM2-135M-Instruct, zero-shot, bf16) adds ranking signal when it is read as a language model instead:
``ulmrec.ranker.likelihood`` scores each candidate by the log-probability of its title as the next line of the
user's history (``cond``) and by that minus the title's log-probability without a history (``pmi``).

Protocol (every choice on validation users; test read once):
- validation: a fixed random subset of ``--valid-users`` Rank users (seed 11). Each fused row's signal and weight
  are chosen on one half and reported, paired with the retriever's order, on the other half;
- test: the same ``--test-users`` Rank test users as the evaluate stage with ``evaluate.max_users`` (seed 42, i.e.
  ranker_beauty_long.md / ranker_games_long.md); weights chosen on all the validation users.
Rows: the retriever's order; the LM likelihood alone; the retriever + MiniLM title similarity (no LLM, as in the
evaluate stage); the retriever + LM likelihood; the retriever + both. Paired bootstrap 95 % intervals on the same
users. No preference sentence is read, so the shipped GPT-3.5 sentences play no part, except by a tag ending in
``+preference`` (``--tag zero-shot+preference``): the same LM with each user's sentence of the run's preferences
stage on a line before the history; its report splits the gains by whether the sentence matches the test item.

    .venv/bin/python benchmarks/title_likelihood.py score beauty=runs/beauty --split valid test   # resumable
    # a tuned LM: next titles (train_title_lm), or ranking against the retriever's top 20 (train_title_listwise)
    .venv/bin/python benchmarks/title_likelihood.py train beauty=runs/beauty --tag listwise-45min \
        --objective listwise --temperature 20 --signal pmi --steps 2000 --batch-size 4 --max-minutes 45
    .venv/bin/python benchmarks/title_likelihood.py score beauty=runs/beauty --tag listwise-45min
    .venv/bin/python benchmarks/title_likelihood.py report beauty=runs/beauty games=runs/games

``score`` writes ``<run>/bench-title-likelihood/<split>/chunk-*.npz`` (one per ``--chunk`` users, atomically), so a
killed run resumes where it stopped; ``report`` needs every chunk and writes benchmarks/results/<--out>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, run_dirs, save  # noqa: E402

VALID_SEED, TEST_SEED = 11, 42
#: retriever log-softmax + w x cosine (title_signal.py's grid); + v x log-probability (nats, summed over a title)
SIM_GRID = (0, 0.25, 0.5, 1, 2, 3, 5, 8, 12, 20, 30, 50)
LM_GRID = (0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0)
SIGNALS = ("pmi", "cond")


def subset(run: Path, split: str, n_users: int, n_candidates: int = 20):
    """The Rank users of ``split`` (sorted by user), a fixed random ``n_users`` of them (0 = all): the test draw
    is ``build_eval_samples``' (seed 42, the evaluate stage's), so the users are the earlier runs' users."""
    import pandas as pd

    from ulmrec.tasks.eval_samples import rank_users

    cands = pd.read_parquet(run / "retrieval" / f"candidates_{split}.parquet").sort_values("user_idx", kind="stable")
    rows = rank_users(cands, n_candidates)
    if n_users and len(rows) > n_users:
        seed = TEST_SEED if split == "test" else VALID_SEED
        rows = rows.iloc[np.sort(np.random.default_rng([seed, 7]).choice(len(rows), n_users, replace=False))]
    rows = rows.reset_index(drop=True)
    cand = [list(map(int, c[:n_candidates])) for c in rows["candidates"]]
    return {"users": rows["user_idx"].to_numpy(np.int64), "candidates": np.array(cand, dtype=np.int64),
            "retriever": np.array([list(s[:n_candidates]) for s in rows["scores"]], dtype=np.float64),
            "targets": np.array([c.index(int(t)) for c, t in zip(cand, rows["target"], strict=True)]),
            "coverage": float(len(rank_users(cands, n_candidates)) / max(1, len(cands)))}


def ranker_config(lora_layers: int, targets: list[str]):
    """The ranker settings of the tuned LM: SmolLM2-135M-Instruct, bf16 where the CPU has it, LoRA r 8."""
    from ulmrec.config import load_config

    return load_config(None, ["ranker.model=smollm2-135m-instruct", f"ranker.lora_layers={lora_layers}",
                              f"ranker.lora_targets=[{', '.join(targets)}]", "device=cpu"]).ranker


PREF = "+preference"


def base_tag(tag: str) -> str:
    """The LM of a tag: ``zero-shot+preference`` reads the zero-shot LM with each user's preference sentence."""
    return tag.removesuffix(PREF)


def tag_dir(run: Path, tag: str) -> Path:
    """Where a model's scores live: the zero-shot LM's directly under bench-title-likelihood/, a tuned one's in
    its own folder beside its adapter."""
    root = run / "bench-title-likelihood"
    return root if tag == "zero-shot" else root / tag


def train(run: Path, tag: str, steps: int, batch_size: int, lr: float, history: int, max_title_tokens: int,
          lora_layers: int, targets: list[str], max_minutes: float = 0.0, objective: str = "next-title",
          temperature: float = 1.0, signal: str = "pmi", missing: str = "skip") -> None:
    """LoRA-tune the LM and save the adapter into ``tag_dir/adapter`` with its loss log. ``objective``:
    ``next-title`` (``train_title_lm``: the next title against the whole vocabulary), ``every-title`` (the same
    loss on every title of a window of the user's last training titles, ``every_title``) or ``listwise``
    (``train_title_listwise``: a softmax over the run retriever's top 20 for each training prefix)."""
    from ulmrec.data.dataset import Dataset
    from ulmrec.io import write_json
    from ulmrec.ranker.likelihood import listwise_samples, train_title_listwise, train_title_lm
    from ulmrec.ranker.model import build_ranker, save_adapter

    ds = Dataset.load(run / "data")
    model, tok = build_ranker(ranker_config(lora_layers, targets), [], "cpu")
    extra = {}
    t0 = time.perf_counter()
    if objective == "listwise":
        from ulmrec.config import load_config
        from ulmrec.retrieval.models import load_retriever

        max_len = load_config([str(run / "config.yaml")]).retrieval.max_len
        samples, info = listwise_samples(ds, load_retriever(run / "retrieval"), steps * batch_size, max_len=max_len,
                                         missing=missing)
        extra = {"objective": "listwise", "temperature": temperature, "signal": signal, "candidates": len(samples[0][1]),
                 "samples_retriever": info, "sampling_seconds": round(time.perf_counter() - t0, 1)}
        log = train_title_listwise(model, tok, ds, samples, batch_size=batch_size, lr=lr, history=history,
                                   max_title_tokens=max_title_tokens, temperature=temperature, signal=signal,
                                   max_seconds=60 * max_minutes)
    else:
        if objective == "every-title":
            extra = {"objective": "every-title"}
        log = train_title_lm(model, tok, ds, steps=steps, batch_size=batch_size, lr=lr, history=history,
                             max_title_tokens=max_title_tokens, max_seconds=60 * max_minutes,
                             every_title=objective == "every-title")
    steps = len(log)  # fewer than asked when the time budget ran out
    seconds = time.perf_counter() - t0
    out = tag_dir(run, tag)
    save_adapter(model, tok, out / "adapter")
    write_json(out / "train.json", {"steps": steps, "batch_size": batch_size, "lr": lr, "history": history,
                                    "max_title_tokens": max_title_tokens, "lora_layers": lora_layers,
                                    "lora_targets": targets, "seconds": round(seconds, 1),
                                    "seconds_per_sample": round(seconds / (steps * batch_size), 4), **extra,
                                    "log": log})
    print(f"{run.name} {tag}: {steps} steps in {seconds:.0f} s, loss {log[0]['loss']:.3f} -> "
          f"{np.mean([e['loss'] for e in log[-20:]]):.3f}", file=sys.stderr)


def load_lm(run: Path, tag: str):
    """(model, tokenizer): the untuned SmolLM2 for 'zero-shot', else the base with the tag's adapter."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ulmrec.io import read_json
    from ulmrec.ranker.model import cpu_has_bf16, load_ranker, smollm2_path

    tag = base_tag(tag)
    if tag == "zero-shot":
        path = smollm2_path()
        tok = AutoTokenizer.from_pretrained(str(path))
        dtype = torch.bfloat16 if cpu_has_bf16() else torch.float32
        return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).eval(), tok
    info = read_json(tag_dir(run, tag) / "train.json")
    model, tok = load_ranker(ranker_config(info["lora_layers"], info["lora_targets"]), tag_dir(run, tag) / "adapter",
                             "cpu")
    return model.eval(), tok


def score(run: Path, splits: list[str], n_users: dict, history: int, max_title_tokens: int, chunk: int,
          tag: str = "zero-shot") -> None:
    """LM title-likelihood scores for each split's subset, saved chunk by chunk (resumable)."""
    from ulmrec.data.dataset import Dataset
    from ulmrec.io import atomic_path
    from ulmrec.ranker.likelihood import TitleLikelihood

    ds = Dataset.load(run / "data")
    model, tok = load_lm(run, tag)
    prefs = None
    if tag.endswith(PREF):  # the run's preference sentences (the preferences stage's), as the ULMRec prompts read
        from ulmrec.io import write_json
        from ulmrec.preferences.audit import load_sentences

        prefs, desc = load_sentences(run, ds)
        tag_dir(run, tag).mkdir(parents=True, exist_ok=True)
        write_json(tag_dir(run, tag) / "preferences.json", desc)
    scorer = TitleLikelihood(model, tok, ds, history=history, max_title_tokens=max_title_tokens, preferences=prefs)
    for split in splits:
        sub = subset(run, split, n_users[split])
        out = tag_dir(run, tag) / split
        out.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(sub["users"]), chunk):
            f = out / f"chunk-{start:06d}.npz"
            if f.exists():
                continue
            t0 = time.perf_counter()
            users, cands = sub["users"][start:start + chunk], sub["candidates"][start:start + chunk]
            s = scorer.score(list(users), [list(c) for c in cands], split)
            with atomic_path(f) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, users=users, seconds=time.perf_counter() - t0, **s)
            print(f"{run.name} {split} {start + len(users)}/{len(sub['users'])}: "
                  f"{(time.perf_counter() - t0) / len(users):.3f} s/user", file=sys.stderr, flush=True)


def load_scores(run: Path, split: str, users: np.ndarray, tag: str = "zero-shot") -> tuple[dict, float]:
    """The saved chunks of ``split`` for exactly ``users`` (an error when any is missing), and seconds per user."""
    d = tag_dir(run, tag) / split
    parts = [np.load(f) for f in sorted(d.glob("chunk-*.npz"))] if d.exists() else []
    got = np.concatenate([p["users"] for p in parts]) if parts else np.zeros(0, np.int64)
    if not np.array_equal(got, users):
        raise SystemExit(f"{d}: scores for {len(got)} of {len(users)} users; run `score --tag {tag}` first")
    secs = sum(float(p["seconds"]) for p in parts) / max(1, len(users))
    return {s: np.concatenate([p[s] for p in parts]) for s in SIGNALS}, secs


def _ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    from ulmrec.metrics import target_rank

    return target_rank(scores, targets, np.isfinite(scores)).numpy()


def _fused(retriever: np.ndarray, terms: list[np.ndarray], weights: list[float]) -> np.ndarray:
    from ulmrec.evaluation.stats import fuse_terms

    return fuse_terms(retriever, terms, weights) if terms else retriever


def choose(sub: dict, idx: np.ndarray, lm: dict | None, sim: np.ndarray | None) -> dict:
    """Signal and weights with the best mean NDCG@10 on the users ``idx`` (ties: the smaller weights, then pmi)."""
    from ulmrec.evaluation.stats import choose_fusion_weights

    best = None
    for name in (SIGNALS if lm is not None else (None,)):
        terms, grids = [], []
        if sim is not None:
            terms.append(sim[idx]), grids.append(SIM_GRID)
        if lm is not None:
            terms.append(lm[name][idx]), grids.append(LM_GRID)
        ws, by = choose_fusion_weights(sub["retriever"][idx], terms, sub["targets"][idx], grids)
        value = max(by.values())
        if best is None or value > best["valid_NDCG@10"]:
            best = {"signal": name, "w_sim": ws[0] if sim is not None else 0.0,
                    "w_lm": ws[-1] if lm is not None else 0.0, "valid_NDCG@10": value}
    return best


RETRIEVER, SIM_ALONE, SIM = "Retriever order", "Title similarity alone (MiniLM, no LLM)", \
    "Retriever + title similarity (no LLM)"
#: the control of the '+preference' rows: the same sentence read by the sentence encoder instead of the LM
PSIM = "Retriever + preference similarity (MiniLM, no LLM)"


def names(tag: str) -> tuple[str, str, str]:
    """The three rows of one LM: alone, + retriever, + retriever + similarity."""
    return (f"LM title likelihood alone ({tag})", f"Retriever + LM title likelihood ({tag})",
            f"Retriever + title similarity + LM title likelihood ({tag})")


def pairs(tags: list[str]) -> list[tuple[str, str]]:
    out = [(SIM_ALONE, RETRIEVER), (SIM, RETRIEVER)]
    for tag in tags:
        alone, fused, both = names(tag)
        out += [(alone, RETRIEVER), (fused, RETRIEVER), (both, RETRIEVER), (fused, SIM), (both, SIM)]
    if "zero-shot" in tags:
        for tag in (t for t in tags if base_tag(t) != "zero-shot"):
            out += [(names(tag)[i], names("zero-shot")[i]) for i in range(3)]
    for tag in (t for t in tags if t.endswith(PREF) and base_tag(t) in tags):  # what the sentence adds
        out += [(names(tag)[i], names(base_tag(tag))[i]) for i in range(3)]
    if any(t.endswith(PREF) for t in tags):
        out.insert(2, (PSIM, RETRIEVER))
        out += [(names(t)[1], PSIM) for t in tags if t.endswith(PREF)]
    return out


def pick_all(sub: dict, idx: np.ndarray, lms: dict, sim: np.ndarray, psim: np.ndarray | None = None) -> dict:
    """Every choice, on the users ``idx`` only: the similarity weight (and the preference similarity's), and per
    LM its signal alone and its signal + weights fused."""
    from ulmrec.metrics import metrics_from_ranks

    out = {"sim": choose(sub, idx, None, sim), "lm": {}}
    if psim is not None:
        out["psim"] = choose(sub, idx, None, psim)
    for tag, lm in lms.items():
        alone = {s: metrics_from_ranks(_ranks(lm[s][idx], sub["targets"][idx]), (10,))["NDCG@10"] for s in SIGNALS}
        out["lm"][tag] = {"alone": max(SIGNALS, key=lambda s: (alone[s], -SIGNALS.index(s))),
                          "alone_valid_NDCG@10": alone, "fused": choose(sub, idx, lm, None),
                          "with_similarity": choose(sub, idx, lm, sim)}
    return out


def rows_for(sub: dict, lms: dict, sim: np.ndarray, picks: dict, idx: np.ndarray,
             psim: np.ndarray | None = None) -> dict:
    """Ranks on the users ``idx`` of every row, with the choices of ``picks``."""
    retr, t = sub["retriever"][idx], sub["targets"][idx]
    out = {RETRIEVER: _ranks(retr, t), SIM_ALONE: _ranks(sim[idx], t),
           SIM: _ranks(_fused(retr, [sim[idx]], [picks["sim"]["w_sim"]]), t)}
    if psim is not None:
        out[PSIM] = _ranks(_fused(retr, [psim[idx]], [picks["psim"]["w_sim"]]), t)
    for tag, lm in lms.items():
        p = picks["lm"][tag]
        alone, fused, both = names(tag)
        f, b = p["fused"], p["with_similarity"]
        out[alone] = _ranks(lm[p["alone"]][idx], t)
        out[fused] = _ranks(_fused(retr, [lm[f["signal"]][idx]], [f["w_lm"]]), t)
        out[both] = _ranks(_fused(retr, [sim[idx], lm[b["signal"]][idx]], [b["w_sim"], b["w_lm"]]), t)
    return out


def measure(run: Path, n_users: dict, history: int, tags: list[str]) -> dict:
    from ulmrec.data.dataset import Dataset
    from ulmrec.evaluation import title_signal as ts
    from ulmrec.evaluation.stage import overall_from_rank
    from ulmrec.evaluation.stats import paired_bootstrap
    from ulmrec.indexing.titles import TextEncoder
    from ulmrec.io import read_json
    from ulmrec.metrics import metrics_from_ranks
    from ulmrec.preferences.audit import load_sentences

    ds = Dataset.load(run / "data")
    encoder = TextEncoder("all-MiniLM-L6-v2")
    emb = ts.title_embeddings(ds, encode=encoder.encode)
    sentences = load_sentences(run, ds)[0] if any(t.endswith(PREF) for t in tags) else None
    subs, lms, sims, psims, secs = {}, {}, {}, {"valid": None, "test": None}, {}
    for split in ("valid", "test"):
        subs[split] = sub = subset(run, split, n_users[split])
        lms[split] = {}
        for tag in tags:
            lms[split][tag], secs[f"{tag} {split}"] = load_scores(run, split, sub["users"], tag)
        sims[split] = ts.title_similarity(ds, list(sub["users"]), [list(c) for c in sub["candidates"]], split, emb,
                                          history, how="max")
        if sentences is not None:
            psims[split] = ts.text_similarity([sentences.get(int(u)) for u in sub["users"]],
                                              [list(c) for c in sub["candidates"]], emb, encoder.encode)
    out = {"run": str(run), "seconds_per_user": secs, "tags": tags,
           "training": {t: training_summary(read_json(tag_dir(run, t) / "train.json"))
                        for t in tags if base_tag(t) == t and t != "zero-shot"},
           "preferences": {t: read_json(tag_dir(run, t) / "preferences.json") for t in tags if t.endswith(PREF)}}
    # validation: choose on one half, report on the other
    v = subs["valid"]
    perm = np.random.default_rng(0).permutation(len(v["users"]))
    pick, held = np.sort(perm[: len(perm) // 2]), np.sort(perm[len(perm) // 2:])
    half = pick_all(v, pick, lms["valid"], sims["valid"], psims["valid"])
    ranks = rows_for(v, lms["valid"], sims["valid"], half, held, psims["valid"])
    out["valid"] = {"users": int(len(v["users"])), "choose_users": int(len(pick)), "report_users": int(len(held)),
                    "picks": half, "models": {k: metrics_from_ranks(r, (5, 10)) for k, r in ranks.items()},
                    "paired": {f"{a} - {b}": paired_bootstrap(ranks[a], ranks[b], metrics=("NDCG@10",), seed=0)
                               for a, b in pairs(tags)}}
    # test: every choice made on all validation users, test read once
    t = subs["test"]
    picks = pick_all(v, np.arange(len(v["users"])), lms["valid"], sims["valid"], psims["valid"])
    ranks = rows_for(t, lms["test"], sims["test"], picks, np.arange(len(t["users"])), psims["test"])
    models = {}
    for k, r in ranks.items():
        rank = metrics_from_ranks(r, (5, 10))
        models[k] = {"Rank": rank, "Overall": overall_from_rank(rank, t["coverage"])}
    out["test"] = {"users": int(len(t["users"])), "coverage": t["coverage"], "picks": picks, "models": models,
                   "paired": {f"{a} - {b}": paired_bootstrap(ranks[a], ranks[b],
                                                             metrics=("NDCG@10", "MRR@10", "Recall@10"), seed=0)
                              for a, b in pairs(tags)}}
    if out["preferences"]:
        out["test"]["by_sentence_match"] = by_sentence_match(ds, sentences, t["users"], ranks, tags)
    return out


def training_summary(info: dict, window: int = 50) -> dict:
    """A tuned LM's train.json without its per-step log, plus the mean loss (and, for listwise runs, the
    fraction of lists whose true item scored highest) over its first and last ``window`` steps."""
    log = info.get("log", [])
    out = {k: v for k, v in info.items() if k != "log"}
    if log:
        keys = [k for k in ("loss", "top1") if k in log[0]]
        out["curve"] = {part: {k: float(np.mean([e[k] for e in steps])) for k in keys}
                        for part, steps in (("first", log[:window]), ("last", log[-window:]))}
        out["curve"]["window"] = min(window, len(log))
    return out


def by_sentence_match(ds, sentences: dict[int, str], users: np.ndarray, ranks: dict, tags: list[str]) -> dict:
    """The preference rows' gains split by whether the user's sentence matches their test item (the leakage
    audit's matchers, ``ulmrec.preferences.audit.MATCH_GROUPS``). The history-title similarity (no sentence) is
    split the same way as the control: users whose test item resembles their history gain from it too. A sentence gain far above that
    control where the sentence names the test item, and none elsewhere, is the sentences' leak; a word of the test
    title that no training title has (``novel_word``) cannot have come from the training history at all."""
    from ulmrec.evaluation.stats import paired_bootstrap
    from ulmrec.preferences.audit import held_out_matches, match_groups

    match = held_out_matches(ds, sentences, users, "test")
    out = {"matched_users": int(match["any"].sum()), "users": int(len(users)),
           "rate_by_matcher": {m: float(v.mean()) for m, v in match.items()}, "groups": {}}
    compare = [(SIM, RETRIEVER)] + ([(PSIM, RETRIEVER)] if PSIM in ranks else [])
    for tag in (t for t in tags if t.endswith(PREF)):
        for i in range(3):
            compare += [(names(tag)[i], RETRIEVER)]
            if base_tag(tag) in tags:
                compare += [(names(tag)[i], names(base_tag(tag))[i])]
    for group, sel in match_groups(match).items():
        out["groups"][group] = {"users": int(sel.sum()), "paired": {} if not sel.any() else {
            f"{a} - {b}": paired_bootstrap(ranks[a][sel], ranks[b][sel], metrics=("NDCG@10",), seed=0)["NDCG@10"]
            for a, b in compare}}
    return out


def _ci(d: dict) -> str:
    return f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"


def plot(result: dict, path: Path) -> None:
    """A forest plot of each test row's paired NDCG@10 difference to the retriever order (mean and bootstrap 95 %
    interval), one panel per dataset, the rows in the table's order: the table is long, the picture is not."""
    import io
    import textwrap

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ulmrec.io import write_bytes

    names = list(result["datasets"])
    suffix = f" - {RETRIEVER}"
    rows = [k[:-len(suffix)] for k in result["datasets"][names[0]]["test"]["paired"] if k.endswith(suffix)]
    fig = Figure(figsize=(5 * len(names) + 4, 0.32 * len(rows) + 1.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        paired = result["datasets"][name]["test"]["paired"]
        for y, row in enumerate(rows):
            d = paired.get(row + suffix, {}).get("NDCG@10")
            if d is None:
                continue
            color = "C2" if d["lo"] > 0 else ("C3" if d["hi"] < 0 else "C7")
            ax.errorbar(d["mean"], y, xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", color=color,
                        ms=4, capsize=2)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_title(f"{name}: {result['datasets'][name]['test']['users']} test users", fontsize=9)
        ax.set_xlabel("Rank NDCG@10 minus the retriever order")
        ax.grid(axis="x", lw=0.3)
    axes[0].set_yticks(range(len(rows)), [textwrap.shorten(r, 75) for r in rows], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("Paired difference to the retriever's order, bootstrap 95 % interval (green: above 0, red: below, "
                 "grey: contains 0)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes(path, buf.getvalue())


def markdown(result: dict) -> str:
    from ulmrec.paper import TABLE2
    from ulmrec.paper import row as paper_row

    a = result["args"]
    lines = ["# The LM's title likelihood beside the retriever (SmolLM2-135M-Instruct; beyond the paper)", "",
             f"Each candidate scored by `ulmrec.ranker.likelihood`: the log-probability of its title (first "
             f"{a['max_title_tokens']} tokens) as the next line after the user's last {a['history']} history titles "
             "(`cond`), minus the same title's log-probability with no history (`pmi`). `zero-shot` is the untuned "
             "LM; a tuned LM is the same LM with a LoRA adapter trained on the users' training sequences "
             "(`train`; no validation or test item): on next titles against the whole vocabulary, or, for a "
             "`listwise` tag, on ranking the true next title above the retriever's other top candidates for the "
             "same training prefix (how: the Tuning lines). Fused rows: retriever log-softmax + w x MiniLM "
             "cosine + v x LM score; every signal and weight is chosen on validation users only. "
             + ("Rows tagged `+preference` read the same LM with each user's preference sentence on a line before "
                "the history (which sentences: below each table); no other row reads one. No row reads a user "
                "index. " if any(t.endswith(PREF) for r in result["datasets"].values() for t in r["tags"]) else
                "No preference sentence and no user index is read (the shipped GPT-3.5 sentences play no part). ")
             + "Every row of a table is on the same users; intervals are paired bootstrap 95 % intervals of the "
             "difference.", ""]
    for name, r in result["datasets"].items():
        t, v = r["test"], r["valid"]
        lines += [f"## {name}: test, {t['users']} Rank users (coverage {t['coverage']:.4f})", "",
                  "| row | Rank N@10 | Rank R@10 | Rank M@10 | Overall N@10 | Overall R@10 | N@10 vs retriever order |",
                  "|---|---|---|---|---|---|---|"]
        for k, m in t["models"].items():
            key = f"{k} - {RETRIEVER}"
            diff = _ci(t["paired"][key]["NDCG@10"]) if key in t["paired"] else ""
            lines.append(f"| {k} | {m['Rank']['NDCG@10']:.4f} | {m['Rank']['Recall@10']:.4f} | "
                         f"{m['Rank']['MRR@10']:.4f} | {m['Overall']['NDCG@10']:.4f} | {m['Overall']['Recall@10']:.4f} "
                         f"| {diff} |")
        for model in ("LRURec", "LlamaRec", "ULMRec") if name in TABLE2 else ():
            rk, ov = paper_row(name, model, "Rank"), paper_row(name, model, "Overall")
            what = "retriever" if model == "LRURec" else "Llama-2-7b, trained"
            lines.append(f"| paper Table 2: {model} ({what}) | {rk['NDCG@10']:.4f} | {rk['Recall@10']:.4f} | "
                         f"{rk['MRR@10']:.4f} | {ov['NDCG@10']:.4f} | {ov['Recall@10']:.4f} | |")
        lines += ["", "Other paired differences on the test users (NDCG@10):", ""]
        lines += [f"- {k}: {_ci(d['NDCG@10'])}" for k, d in t["paired"].items() if not k.endswith(f" - {RETRIEVER}")]
        pk = t["picks"]
        chosen = [f"retriever + similarity w={pk['sim']['w_sim']:g}"]
        for tag, p in pk["lm"].items():
            f, b = p["fused"], p["with_similarity"]
            chosen.append(f"{tag}: alone `{p['alone']}`, + retriever `{f['signal']}` v={f['w_lm']:g}, + retriever + "
                          f"similarity `{b['signal']}` w={b['w_sim']:g} v={b['w_lm']:g}")
        lines += ["", f"Chosen on all {v['users']} validation users: " + "; ".join(chosen) + "."]
        if t.get("by_sentence_match"):
            bm = t["by_sentence_match"]
            lines += ["", f"Preference rows by whether the user's sentence matches their test item (title bigram, "
                      f"novel title word or brand, the leakage audit's matchers): {bm['matched_users']} of "
                      f"{bm['users']} users match. The history-title similarity row reads no sentence: it is the "
                      "control for users whose test item resembles their history. NDCG@10 differences within each "
                      "group:", "",
                      "| difference | " + " | ".join(f"{g} ({x['users']} users)" for g, x in bm["groups"].items())
                      + " |", "|---|" + "---|" * len(bm["groups"])]
            keys = dict.fromkeys(k for x in bm["groups"].values() for k in x["paired"])
            lines += [f"| {k} | " + " | ".join(_ci(x["paired"][k]) if k in x["paired"] else "" for x in
                                             bm["groups"].values()) + " |" for k in keys]
        lines += ["", f"Validation (choices made on {v['choose_users']} users, reported on the other "
                  f"{v['report_users']}):", "", "| row | N@10 | vs retriever order |", "|---|---|---|"]
        for k, m in v["models"].items():
            key = f"{k} - {RETRIEVER}"
            lines.append(f"| {k} | {m['NDCG@10']:.4f} | {_ci(v['paired'][key]['NDCG@10']) if key in v['paired'] else ''} |")
        lines += ["", "Other paired differences on the held validation half (NDCG@10):", ""]
        lines += [f"- {k}: {_ci(d['NDCG@10'])}" for k, d in v["paired"].items() if not k.endswith(f" - {RETRIEVER}")]
        lines += ["", "Scoring seconds per user (one thread, bf16; the history prefix once + 20 title continuations in "
                  "one batch; the no-history term cached per item): "
                  + ", ".join(f"{k} {x:.3f}" for k, x in r["seconds_per_user"].items()) + "."]
        for tag, info in r.get("preferences", {}).items():
            lines.append(f"`{tag}` reads each user's preference sentence ({info.get('file')}, "
                         f"{info.get('provenance')}) on a line before the history.")
        for tag, info in r.get("training", {}).items():
            what, unit = "next-title pairs", "pair"
            if info.get("objective") == "every-title":
                what, unit = (f"windows of a user's last {info['history'] + 1} training titles, the loss on every "
                              "title after the window's first (users in a shuffled order, each once per epoch)"), "window"
            if info.get("objective") == "listwise":
                got = info.get("samples_retriever", {})
                how = ("only prefixes whose true next item the retriever listed" if got.get("missing") == "skip"
                       else "the true next item in the last slot where the retriever missed it")  # (the first runs)
                what, unit = (f"training prefixes, each a softmax over the retriever's top {info['candidates']} of "
                              f"`{info['signal']}` / {info['temperature']:g} ({how}: it listed "
                              f"{got.get('retrieved', float('nan')):.0%} of the prefixes drawn)"), "prefix"
            lines.append(f"Tuning `{tag}`: {info['steps']} steps x {info['batch_size']} {what}, lr "
                         f"{info['lr']:g}, LoRA r 8 on {', '.join(info['lora_targets'])} of the top "
                         f"{info['lora_layers']} layers, {info['seconds']:.0f} s of one core "
                         f"({info['seconds_per_sample']:.3f} s per {unit})"
                         + (f"; over the first / last {c['window']} steps: loss {c['first']['loss']:.3f} / "
                            f"{c['last']['loss']:.3f}" + (f", true item first in {c['first']['top1']:.1%} / "
                                                          f"{c['last']['top1']:.1%} of the lists" if "top1" in
                                                          c["first"] else "")
                            if (c := info.get("curve")) else "") + ".")
        lines.append("")
    lines.append(f"Load average before/after the report: {result['load_before'][0]:.2f} / {result['load_after'][0]:.2f} "
                 "(scoring runs: see the notes).")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("train", "score", "report"))
    ap.add_argument("runs", nargs="+", help="name=run_dir (data/ and retrieval/ of a finished run)")
    ap.add_argument("--split", nargs="+", default=["valid", "test"], choices=("valid", "test"))
    ap.add_argument("--valid-users", type=int, default=600)
    ap.add_argument("--test-users", type=int, default=1500)
    ap.add_argument("--history", type=int, default=10, help="history titles (the benchmarks' tasks.max_history)")
    ap.add_argument("--max-title-tokens", type=int, default=12, help="tokens per title (the benchmarks' ranker value)")
    ap.add_argument("--chunk", type=int, default=100)
    ap.add_argument("--tag", default="zero-shot", help="train/score: zero-shot, or a tuned adapter's tag")
    ap.add_argument("--tags", nargs="+", default=["zero-shot"], help="report: the LMs whose rows to show")
    ap.add_argument("--steps", type=int, default=300, help="train: optimizer steps")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="train: stop after this many minutes (0 = no cap)")
    ap.add_argument("--objective", choices=("next-title", "every-title", "listwise"), default="next-title",
                    help="train: the next title against the vocabulary, or against the retriever's top 20")
    ap.add_argument("--temperature", type=float, default=1.0, help="train --objective listwise: softmax temperature")
    ap.add_argument("--signal", choices=SIGNALS, default="pmi", help="train --objective listwise: the score ranked")
    ap.add_argument("--missing", choices=("skip", "replace"), default="skip",
                    help="train --objective listwise: prefixes whose target the retriever missed")
    ap.add_argument("--lora-layers", type=int, default=8, help="train: LoRA in the top N layers (0 = all)")
    ap.add_argument("--lora-targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"])
    ap.add_argument("--out", default="title_likelihood")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    n_users = {"valid": args.valid_users, "test": args.test_users}
    runs = run_dirs(args.runs, "retrieval/candidates_test.parquet")
    if args.action in ("train", "score"):
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        for run in runs.values():
            if args.action == "train":
                if args.tag == "zero-shot":
                    raise SystemExit("train: name the tuned model with --tag (not zero-shot)")
                train(run, args.tag, args.steps, args.batch_size, args.lr, args.history, args.max_title_tokens,
                      args.lora_layers, args.lora_targets, args.max_minutes, args.objective,
                      args.temperature, args.signal, args.missing)
            else:
                score(run, args.split, n_users, args.history, args.max_title_tokens, args.chunk, args.tag)
        return 0
    load_before = os.getloadavg()
    datasets = {}
    for name, run in runs.items():
        datasets[name] = measure(run, n_users, args.history, args.tags)
        try:
            datasets[name]["run"] = str(run.resolve().relative_to(REPO))
        except ValueError:
            pass
    result = {**header(), "args": {"valid_users": args.valid_users, "test_users": args.test_users,
                                   "history": args.history, "max_title_tokens": args.max_title_tokens},
              "datasets": datasets, "load_before": load_before, "load_after": os.getloadavg(), "note": args.note,
              "preferences": ("read by the '+preference' rows and the preference similarity only (which sentences: "
                              "datasets.<name>.preferences)") if any(t.endswith(PREF) for t in args.tags)
              else "none read"}
    save(args.out, result, markdown(result) + f"\n\n![paired differences]({args.out}.png)")
    plot(result, REPO / "benchmarks" / "results" / f"{args.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
