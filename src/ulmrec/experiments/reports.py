"""One report per experiment from the grid's records: ``<out>/<experiment>/`` gets ``table.md``, ``table.csv``,
``table.tex``, ``figure.png`` (where the paper has a figure) and ``raw.json``; ``<out>/README.md`` lists them.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ulmrec.artifacts import USER_INDEX
from ulmrec.evaluation.stage import preference_note
from ulmrec.experiments.grid import ABLATION, EXPERIMENTS, INDEX_CELLS, VARIANTS
from ulmrec.experiments.runner import MAIN, RETRIEVER, UID, Plan, lookup
from ulmrec.experiments.tables import (
    PAPER,
    Table,
    bar_figure,
    mean_std,
    metric_columns,
    metric_values,
    paper_dataset,
    paper_values,
    random_values,
    short,
    write_outputs,
)
from ulmrec.io import write_json, write_text

TRAIN_COLS = [("train_samples", "train samples"), ("steps", "steps")]


def _header(plan: Plan, records: dict[int, dict], what: str) -> str:
    exp = plan.exp
    any_rec = next(iter(records.values()), {})
    users = (f"{any_rec.get('scored_rank_users', '?')} of {any_rec.get('rank_users', '?')} Rank test users per seed "
             f"(test users {any_rec.get('test_users', '?')}, retriever coverage {any_rec.get('coverage', float('nan')):.4f})"
             if any_rec else "no finished run yet")
    samples = "all training samples (one epoch)" if not exp.train_samples else f"a {exp.train_samples}-sample six-task mix"
    return (f"{what}. Base run `{plan.base}` (config {', '.join(plan.presets) or 'default'}; "
            f"overrides {' '.join(plan.overrides) or 'none'}). Ranker trained on {samples}; {users}; "
            f"seeds {exp.seeds} (mean ± sample std over the finished seeds). Written {time.strftime('%Y-%m-%d %H:%M')}."
            f"\n\nPreference sentences: {preference_note(plan.base)}.")


def _variant_label(plan: Plan, name: str) -> str:
    v = VARIANTS[name]
    trained = plan.trained_as(v)
    if trained.name != v.name:
        missing = sorted(set(v.tasks) ^ set(trained.tasks))
        return f"{v.label} (= {trained.label}: {', '.join(missing)} has no samples on this data)"
    return v.label


def _status(plan: Plan, store: dict, names: list[str]) -> str:
    lines = []
    for n in names:
        trained = plan.trained_as(VARIANTS[n]).name
        for seed in plan.exp.seeds:
            rec = store.get(f"{trained}/s{seed}")
            if rec is None:
                lines.append(f"- {n} seed {seed}: not run yet")
            elif "error" in rec:
                lines.append(f"- {n} seed {seed}: FAILED: {rec['error']}")
    return ("Missing runs:\n\n" + "\n".join(lines)) if lines else ""


def report_variants(plan: Plan, store: dict, out: Path, command: str, stem: str, title: str, what: str,
                    names: list[str], model: str = MAIN, retriever_from: str = "full",
                    paper_rows: list[tuple[str, str]] = (), notes: str = "") -> dict[str, dict[str, list[float]]]:
    table = Table(title, metric_columns() + TRAIN_COLS)
    values = {}
    for n in names:
        values[n] = metric_values(lookup(store, plan, n), model)
        table.add(_variant_label(plan, n), values[n])
    ref = lookup(store, plan, retriever_from)
    if ref:
        table.add("Retriever order (LRURec, same users)", metric_values(ref, RETRIEVER, train=False))
    _add_random(table, plan, ref)
    for key, label in paper_rows:
        if vals := paper_values(paper_dataset(plan.dataset), key):
            table.add(label, vals, kind="paper")
    recs = lookup(store, plan, names[0])
    write_outputs(out, stem, _header(plan, recs, what), table, command, "\n\n".join(x for x in (notes, _status(
        plan, store, names)) if x))
    return values


def _add_random(table: Table, plan: Plan, records: dict[int, dict]) -> None:
    """The expected metrics of a random order of the candidates (what an untrained ranker scores)."""
    cov = [r.get("coverage") for r in records.values() if r.get("coverage") is not None]
    n = plan.config(None).tasks.num_candidates
    table.add(f"Random order of the {n} candidates (expected)", random_values(n, float(np.mean(cov)) if cov else None),
              kind="expected")


def write_reports(plan: Plan, names: list[str], store: dict, analyses: dict, out: Path, command: str) -> None:
    out = Path(out)
    index = ["# Experiments (paper Tables 2 and 4, Figures 8-10, section 5.4.3)", "", "Command:", "", "```",
             command, "```", ""]
    for name in names:
        d = out / name
        what = EXPERIMENTS[name][0]
        if name == "ablation":
            vals = report_variants(plan, store, d, command, "table", "Ablation of the alignment tasks (Fig. 8)", what,
                                   ABLATION, notes="Figure 8 in the paper has no printed numbers; compare the order.")
            metrics = ["NDCG@5", "Recall@5", "NDCG@10", "Recall@10"]
            bar_figure(d / "figure.png", [VARIANTS[n].label for n in ABLATION],
                       [("Rank metric", [(short(m), [mean_std(vals[n].get(f"Rank/{m}", []))[:2] for n in ABLATION])
                                         for m in metrics])],
                       f"Fig. 8 (ours): ablation of the alignment tasks, {plan.dataset}, Rank users", command)
        elif name == "index-variants":
            cells = list(INDEX_CELLS.items())
            table = Table("User indexing methods with and without alignment (Fig. 9)", metric_columns() + TRAIN_COLS)
            vals = {}
            for (method, align), v in cells:
                vals[(method, align)] = metric_values(lookup(store, plan, v), MAIN)
                table.add(f"{method} {'w/' if align else 'w/o'} align", vals[(method, align)])
            recs = lookup(store, plan, "full")
            _add_random(table, plan, recs)
            write_outputs(d, "table", _header(plan, recs, what), table, command,
                          "N-ID = user_idx + 1, O-ID = the dataset's user id, P-ID = this project's RQ-VAE index "
                          f"({USER_INDEX.key}). Figure 9 in the paper has no printed numbers.\n\n"
                          + _status(plan, store, [v for _, v in cells]))
            methods = ["N-ID", "O-ID", "P-ID"]
            panels = []
            for m in ("NDCG@10", "Recall@10"):
                panels.append((f"Rank {short(m)}", [(lab, [mean_std(vals[(meth, al)].get(f"Rank/{m}", []))[:2]
                                                          for meth in methods])
                                                   for lab, al in (("w/o align", False), ("w/ align", True))]))
            bar_figure(d / "figure.png", methods, panels, f"Fig. 9 (ours): user indexing methods, {plan.dataset}, Rank users",
                       command)
        elif name == "uid":
            _add_uid_row(plan, store, d, command, what)
        elif name == "main":
            report_variants(plan, store, d, command, "table", f"Rank and Overall on {plan.dataset} (Table 2 rows)", what,
                            ["full", "llamarec"],
                            paper_rows=[("LRURec", "LRURec (paper)"), ("LlamaRec", "LlamaRec (paper, Llama-2-7b)"),
                                        ("ULMRec", "ULMRec (paper, Llama-2-7b)")])
        elif name == "case-study":
            _case_study_report(plan, analyses.get("case-study", {}), d, command, what)
        elif name == "inference-time":
            _timing_report(plan, store, analyses.get("inference-time", {}), d, command, what)
        write_json(d / "raw.json", {"experiment": name, "command": command, "plan": plan.describe(),
                                    "runs": {k: v for k, v in store.items() if k.split("/")[0] in
                                             {plan.trained_as(VARIANTS[x]).name for x in EXPERIMENTS[name][1]}},
                                    "analyses": analyses.get(name, {})})
        index.append(f"- [{name}]({name}/table.md): {what}")
    write_text(out / "README.md", "\n".join(index) + "\n")


def _add_uid_row(plan: Plan, store: dict, d: Path, command: str, what: str) -> None:
    """Table 4 proper: ULMRec and ULMRec-uid on the same users (the full model's two evaluations)."""
    recs = lookup(store, plan, "full")
    table = Table("User index + candidates only, no history (Table 4)", metric_columns())
    table.add("ULMRec (index + history + candidates)", metric_values(recs, MAIN))
    table.add("ULMRec-uid (index + candidates)", metric_values(recs, UID, train=False))
    table.add("Retriever order (LRURec, same users)", metric_values(recs, RETRIEVER, train=False))
    _add_random(table, plan, recs)
    for key in ("ULMRec", "ULMRec-uid"):
        if vals := paper_values(paper_dataset(plan.dataset), key):
            table.add(f"{key} (paper, Llama-2-7b)", vals, kind="paper")
    write_outputs(d, "table", _header(plan, recs, what), table, command,
                  "ULMRec-uid is the same trained model as ULMRec, prompted without the history "
                  "(tasks.prompt=no_history, evaluate.no_history=true). The paper reports Rank metrics only.\n\n"
                  + _status(plan, store, ["full"]))


def _case_study_report(plan: Plan, per_seed: dict[str, list[dict]], d: Path, command: str, what: str) -> None:
    rows = [dict(r, seed=int(k[1:])) for k, rs in per_seed.items() for r in rs]
    levels = sorted({r["level"] for r in rows})
    table = Table("Preference generated from an index prefix (Fig. 10): word overlap with the user's preference",
                  [("overlap", "content-word overlap"), ("distinct", "distinct outputs / users")], digits=3)
    for lv in levels:
        ov = [float(np.nanmean([r["overlap"] for r in rows if r["level"] == lv and r["seed"] == s]))
              for s in sorted({r["seed"] for r in rows})]
        dist = []
        for s in sorted({r["seed"] for r in rows}):
            gen = [r["generated"] for r in rows if r["level"] == lv and r["seed"] == s]
            dist.append(len(set(gen)) / max(1, len(gen)))
        table.add(f"{lv} level{'s' if lv > 1 else ''}", {"overlap": ov, "distinct": dist})
    examples = ["| seed | user | index prefix | generated preference (greedy) | the user's preference |",
                "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["user_idx"], r["level"])):
        cell = [str(r["seed"]), str(r["user_idx"]), f"`{r['index_prefix']}`", r["generated"].replace("|", "/")
                .replace("\n", " "), r["reference"].replace("|", "/")]
        examples.append("| " + " | ".join(cell) + " |")
    header = (f"{what}. The trained full ULMRec model of each seed generates (greedy, at most "
              f"{plan.exp.case_max_new_tokens} new tokens) the answer to the index-to-preference prompt (Fig. 3) "
              f"with only the first 1..4 tokens of the user's index, for {plan.exp.case_users} test users drawn "
              "with the seed. 'content-word overlap' = share of the words (longer than 2 letters, without generic "
              "words) of the user's real preference sentence that the generated text contains; 'distinct' = "
              "distinct generated texts / users at that level (1.0: every user gets a different text).")
    write_outputs(d, "table", header, table, command, extra_md="**Generated texts**\n\n" + "\n".join(examples))
    write_text(d / "examples.csv", "seed,user_idx,level,index_prefix,overlap,generated,reference\n" + "".join(
        ",".join([str(r["seed"]), str(r["user_idx"]), str(r["level"]), _q(r["index_prefix"]),
                  "" if math.isnan(r["overlap"]) else f"{r['overlap']:.4f}", _q(r["generated"]), _q(r["reference"])])
        + "\n" for r in rows))


def _q(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def _timing_report(plan: Plan, store: dict, per_seed: dict[str, dict], d: Path, command: str, what: str) -> None:
    table = Table("Inference time per test user (section 5.4.3)",
                  [("mean_seconds", "s / user (batch 1)"), ("median_seconds", "median s / user"),
                   ("mean_prompt_tokens", "prompt tokens"), ("batched", "s / user (evaluate, batched)"),
                   ("load_seconds", "model load s")], digits=3)
    for prompt, label in (("full", "ULMRec (index + history + candidates)"),
                          ("no_history", "ULMRec-uid (index + candidates)")):
        vals: dict[str, list[float]] = {}
        for s in per_seed.values():
            p = s["prompts"].get(prompt, {})
            for k in ("mean_seconds", "median_seconds", "mean_prompt_tokens"):
                if k in p:
                    vals.setdefault(k, []).append(p[k])
            vals.setdefault("load_seconds", []).append(s["load_seconds"])
        model = MAIN if prompt == "full" else UID
        vals["batched"] = [r["models"][model]["seconds_per_user"] for r in lookup(store, plan, "full").values()
                           if model in r.get("models", {})]
        table.add(label, vals)
    ds = paper_dataset(plan.dataset)
    for key, sec in PAPER.get(ds or "", {}).get("seconds", {}).items():
        table.add(f"{key} (paper: Llama-2-7b, A800 GPU, {ds})", {"mean_seconds": [sec]}, kind="paper")
    loads = [f"{s.get('loadavg_before', float('nan')):.1f}/{s.get('loadavg_after', float('nan')):.1f}"
             for s in per_seed.values()]
    dev = {s.get("device") for s in per_seed.values()}
    threads = {s.get("threads") for s in per_seed.values()}
    header = (f"{what}. Each seed's full model scores {plan.exp.timing_users} test Rank users one at a time "
              f"(tokenizing, one forward pass, the verbalizer; after one warm-up), device {', '.join(map(str, dev))}, "
              f"torch threads {', '.join(map(str, threads))}, on this 2-core CPU shared with other jobs "
              f"(1-minute load average before/after per seed: {', '.join(loads) or '-'}). 'batched' = the evaluate "
              "stage's scoring time per user (ranker.score_batch_size prompts per forward pass).")
    write_outputs(d, "table", header, table, command)
