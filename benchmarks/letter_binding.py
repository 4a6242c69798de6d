"""Benchmark: can the LM tell which letter names which candidate? (the binding a letter ranker needs)

A letter ranker ranks by content only if, at the answer position, it can find the letter of the title it
prefers. This probes that step alone on every validation Rank user of a prepared run: the user's 20 validation
candidates (retriever order, titles cut as in the ranking prompts) and the title of one of them, drawn at
random (seeded, every letter equally likely), asked for its letter (the ``letter_lookup`` task's prompt,
``ulmrec.tasks.builders.lookup_sample``). Two prompts per user:

- ``lookup``: candidate pool + item title (the task's own prompt);
- ``in the ranking prompt``: the user's ULMRec next-item input (user index, history, candidates) + the item
  title, under the lookup instruction: the binding in the context the ranker reads;
- ``induction``: no instruction or template, the candidate lines, a line with the item title and `` (``: the
  letter is the next token, what a copying (induction) head predicts when the letter follows its title.

Candidates are shown as the run's ``tasks.candidate_format`` says: ``(A) title`` (the paper) or ``title (A)``
(beyond the paper). The untuned LM gets a row per format.

Rows: the untuned LM and each given adapter (a ``benchmarks/ranker_levers.py`` run directory, its selected
checkpoint). Columns: top-1 accuracy (chance 1/20), the mean reciprocal rank of the right letter, accuracy when
the answer is A vs any other letter, and how often A is predicted. Paired bootstrap 95 % intervals of each
adapter's accuracy against the untuned LM on the same users. Test users are never read::

    .venv/bin/python benchmarks/letter_binding.py --source runs/sample-base --users 300 \\
        "retriever order + skip=runs/bench-levers-lookup/retriever-order--only-prefixes-whose-lis" ...

Adapters trained on lookup samples only come from ``benchmarks/letter_binding_train.sh``.

Writes ``benchmarks/results/letter_binding.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, RESULTS, header, save  # noqa: E402

UNTUNED = "untuned LM"
PROMPTS = ("lookup", "in the ranking prompt", "induction")
FORMAT_LABEL = {"letter_first": "(A) title", "letter_last": "title (A)"}


def untuned_label(fmt: str) -> str:
    return f"{UNTUNED}, {FORMAT_LABEL[fmt]}"


def lora_layout(rc) -> str:
    """``'r 8, q/v, top 8 layers'``: an adapter's LoRA layout from its ranker settings."""
    maps = "/".join(t.removesuffix("_proj") for t in rc.lora_targets)
    maps = "all 7 maps" if len(rc.lora_targets) == 7 else maps
    return f"r {rc.lora_r}, {maps}, " + (f"top {rc.lora_layers} layers" if rc.lora_layers else "all layers")


def induction_text(names: list[str], probe: int, fmt: str) -> str:
    """The candidate lines, then the probed title and `` (``: the next token is its letter when letters follow
    their titles (``letter_last``), a copy an induction head makes; no instruction, no template."""
    from ulmrec.tasks.templates import candidates_text

    return f"{candidates_text(names, fmt)}\n{names[probe]} ("


def probe_samples(run_dir: Path, overrides: list[str], seed: int = 0, users: int = 0):
    """``{prompt: samples}`` (one per validation Rank user, same users and probes in both) and the users."""
    from ranker_levers import valid_samples

    from ulmrec.ranker.engine import base_title_cutter
    from ulmrec.tasks.builders import lookup_sample, ranking_sample
    from ulmrec.tasks.inputs import Titles
    from ulmrec.tasks.templates import INSTRUCTIONS, fields

    cfg, ds, _, ranking = valid_samples(run_dir, overrides)
    fmt = cfg.tasks.candidate_format
    ranking = ranking[:users] if users else ranking
    titles = Titles(ds, base_title_cutter(cfg.ranker))
    rng = np.random.default_rng(seed)
    probes = rng.integers(cfg.tasks.num_candidates, size=len(ranking))
    out = {p: [] for p in PROMPTS}
    for s, k in zip(ranking, probes, strict=True):
        names = titles.many(s.candidates)
        out["lookup"].append(lookup_sample(s.user_idx, list(s.candidates), names, int(k), fmt, split="valid"))
        out["in the ranking prompt"].append(ranking_sample("letter_lookup", s.user_idx, INSTRUCTIONS["letter_lookup"],
                                                           s.input + ";\n" + fields(("Item", names[int(k)])),
                                                           list(s.candidates), int(k), split="valid"))
        out["induction"].append(ranking_sample("letter_lookup", s.user_idx, "", "", list(s.candidates), int(k),
                                               split="valid", text=induction_text(names, int(k), fmt)))
    return cfg, out, [s.user_idx for s in ranking]


def measure(scores: np.ndarray, samples) -> dict:
    from ulmrec.ranker.predict import ranks_from_scores

    r = ranks_from_scores(scores, samples)
    t = np.array([s.target for s in samples])
    top = np.argmax(np.where(np.isfinite(scores), scores, -np.inf), axis=1)
    return {"accuracy": float(np.mean(r == 0)), "mrr": float(np.mean(1.0 / (r + 1))),
            "accuracy_answer_A": float(np.mean(r[t == 0] == 0)) if np.any(t == 0) else None,
            "accuracy_answer_not_A": float(np.mean(r[t != 0] == 0)),
            "predicted_A": float(np.mean(top == 0)), "correct": (r == 0).astype(int).tolist()}


def score_model(cfg, adapter: Path | None, samples: dict, threads: int, cache: Path) -> dict:
    """The model's columns for every prompt; saved in ``cache`` (same users, probes and candidate format: read back,
    not rescored)."""
    import torch

    from ulmrec.io import write_json
    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.predict import score_samples

    key = {p: [[s.user_idx, s.target] for s in ss] for p, ss in samples.items()}
    fmt = cfg.tasks.candidate_format
    saved = json.loads(cache.read_text()) if cache.exists() else {"key": {}, "result": {}}
    if saved.get("format", "letter_first") != fmt:
        saved = {"key": {}, "result": {}}
    out = {p: saved["result"][p] for p in samples if saved["key"].get(p) == key[p]}
    if len(out) == len(samples):
        return out
    torch.set_num_threads(threads)
    ranker = Ranker.load(cfg.ranker, adapter) if adapter is not None else Ranker.build(cfg.ranker, ())
    for prompt, ss in samples.items():
        if prompt in out:
            continue
        t0 = time.perf_counter()
        desc = f"{adapter.parent.parent.name if adapter else UNTUNED}: {prompt}"
        if prompt == "induction":  # the raw text, no template, no special tokens: the letter is the next token
            encoded = [ranker.tokenizer(s.meta["text"], add_special_tokens=False)["input_ids"] for s in ss]
            scores, _ = score_samples(ranker.model, ranker.tokenizer, ss, ranker.cfg.score_batch_size, ranker.device,
                                      desc=desc, encoded=encoded)
        else:
            scores, _ = ranker.score(ss, desc=desc)
        out[prompt] = {**measure(np.asarray(scores, dtype=np.float64), ss), "seconds": time.perf_counter() - t0}
    write_json(cache, {"key": key, "format": fmt, "result": out})
    return {p: out[p] for p in samples}


def paired_accuracy(a: list[int], b: list[int], resamples: int = 2000, seed: int = 0) -> dict:
    """Mean of a - b (per-user 0/1 correctness) with a paired bootstrap 95 % interval (users resampled)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    idx = np.random.default_rng(seed).integers(len(d), size=(resamples, len(d)))
    means = d[idx].mean(axis=1)
    return {"mean": float(d.mean()), "lo": float(np.percentile(means, 2.5)), "hi": float(np.percentile(means, 97.5))}


def markdown(r: dict) -> str:
    lines = [f"# Letter binding: which letter names a given candidate? ({r['users']} validation users of "
             f"`{r['source']}`)", "",
             "Each user's 20 validation candidates (retriever order) and the title of one of them (drawn at random, "
             "every letter equally likely), answered by the letter's logit among the 20 letters. Chance: top-1 "
             "0.05. Paired bootstrap 95 % intervals of the accuracy difference on the same users: 'vs untuned, "
             "(A) title' against the untuned LM in the paper's format, 'vs untuned, same format' against the "
             "untuned LM in the row's own format (the training effect).", ""]
    for prompt in PROMPTS:
        lines += [f"## Prompt: {prompt}", "",
                  "| model | LoRA | candidates | top-1 accuracy | vs untuned, (A) title [95 % CI] | vs untuned, same format "
                  "[95 % CI] | MRR | accuracy, answer A | accuracy, answer not A | predicted A | s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, m in r["models"].items():
            x = m[prompt]
            ci = [f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" if d else ""
                  for d in (x.get("vs_untuned_paper_format"), x.get("vs_untuned"))]
            a = "" if x["accuracy_answer_A"] is None else f"{x['accuracy_answer_A']:.3f}"
            lines.append(f"| {name} | {m.get('lora', '-')} | {FORMAT_LABEL[m['format']]} | {x['accuracy']:.3f} | {ci[0]} | {ci[1]} | "
                         f"{x['mrr']:.3f} | {a} | "
                         f"{x['accuracy_answer_not_A']:.3f} | {x['predicted_A']:.3f} | {x['seconds']:.0f} |")
        lines.append("")
    lines += [r["note"], "", f"Load average before/after: {r['loadavg_before']:.2f} / {r['loadavg_after']:.2f}"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapters", nargs="*", help="[label=]run directory of a trained adapter (ranker/adapter is scored)")
    ap.add_argument("--source", required=True, help="a prepared run (data/, retrieval/, index/) for the prompts")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="letter_binding")
    ap.add_argument("--users", type=int, default=0, help="the first N validation users only (a smoke test; 0: all)")
    args = ap.parse_args()
    source = Path(args.source)
    load0 = os.getloadavg()[0]
    models, users = {}, None
    for fmt in FORMAT_LABEL:  # the untuned LM in each candidate format (the paper's cache name kept)
        cfg, samples, own_users = probe_samples(source, [f"tasks.candidate_format={fmt}"], users=args.users)
        users = users or own_users
        name = "letter_binding_untuned.json" if fmt == "letter_first" else f"letter_binding_untuned_{fmt}.json"
        models[untuned_label(fmt)] = {**score_model(cfg, None, samples, args.threads, source / name), "format": fmt}
    from ulmrec.config import load_config

    for spec in args.adapters:
        label, _, path = spec.rpartition("=")
        run = Path(path)
        label = label or run.name
        rcfg = load_config([str(run / "ranker" / "config.yaml")])
        fmt = rcfg.tasks.candidate_format  # the prompts show the candidates as the adapter was trained on them
        _, own, own_users = probe_samples(run, [f"tasks.candidate_format={fmt}"], users=args.users)
        if own_users != users:
            raise SystemExit(f"{run}: its validation users differ from {source}'s")
        models[label] = {**score_model(rcfg, run / "ranker" / "adapter", own, args.threads, run / "letter_binding.json"),
                         "format": fmt, "lora": lora_layout(rcfg.ranker)}
    paper = models[untuned_label("letter_first")]
    for m in models.values():
        for prompt in PROMPTS:
            if m is not paper:
                m[prompt]["vs_untuned_paper_format"] = paired_accuracy(m[prompt]["correct"], paper[prompt]["correct"])
            base = models[untuned_label(m["format"])]
            if m is not base:
                m[prompt]["vs_untuned"] = paired_accuracy(m[prompt]["correct"], base[prompt]["correct"])
    r = {**header(), "source": str(source.resolve().relative_to(REPO) if source.resolve().is_relative_to(REPO) else source),
         "users": len(users), "loadavg_before": load0, "models": models, "loadavg_after": os.getloadavg()[0],
         "note": "Every adapter: bf16, lr 1e-3, batch 2, the levers' ranker.index_token_grad=all, its LoRA layout in "
                 "the LoRA column (the sample preset's: r 8 on q/v of the top 8 of 30 layers); its training is named "
                 "by its label. "
                 "Preferences: none in these prompts except through the user index of the 'in the ranking prompt' "
                 "variant (the shipped GPT-3.5 sentences shaped the index and the adapters' training). "
                 "Nothing here is timed for comparison; the s column is this run's scoring wall clock."}
    save(args.out, r, markdown(r))
    print((RESULTS / f"{args.out}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
