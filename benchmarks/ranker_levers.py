"""Benchmark: which training lever moves the LLM ranker's validation NDCG@10 (ranker-quality issue).

Every lever is one ULMRec adapter trained with the same seed and step budget on a copy of a prepared run
(``--source``: data/, retrieval/ with candidates_train.parquet, index/), two at a time (one per core, one
thread each). Each adapter (the best validation checkpoint on the ``ranker.eval_users`` selection users, step
0 included) is then scored on every validation Rank user; rows are compared with the paired bootstrap on those
same users, against the first lever (the reference recipe) and against the retriever's own order. Test users
are never read::

    .venv/bin/python benchmarks/ranker_levers.py --source runs/sample-base --steps 300

Writes ``benchmarks/results/ranker_levers.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402

#: Every lever names its training candidates, so the table does not depend on what the sample preset picks.
SAMPLED = ["tasks.train_candidates=sampled", "tasks.shuffle_candidates=true"]
#: LoRA on all 7 linear maps of all 30 layers ("full LoRA"), the layout that learns the letter lookup.
FULL_LORA = ["ranker.lora_layers=0", "ranker.lora_targets=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"]
LEVERS = {
    "reference: sampled candidates, Eq. 7 loss, lr 1e-3": SAMPLED,
    "today's engine path (fp32 weights, LoRA on all layers)": [*SAMPLED, "ranker.dtype=float32", "ranker.lora_layers=0"],
    "retriever top-20 candidates (retriever order)": ["tasks.train_candidates=retriever", "tasks.shuffle_candidates=false"],
    "retriever top-20, shuffled": ["tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=true"],
    "list-wise loss over the letters": [*SAMPLED, "ranker.next_item_loss=listwise"],
    "retriever order, only prefixes whose list holds the target": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip"],
    "retriever order + list-wise loss": ["tasks.train_candidates=retriever", "tasks.shuffle_candidates=false",
                                         "ranker.next_item_loss=listwise"],
    "retriever order + skip, lr 3e-4": ["tasks.train_candidates=retriever", "tasks.shuffle_candidates=false",
                                        "tasks.missing_target=skip", "ranker.lr=3e-4"],
    "retriever order + skip, lr 3e-3": ["tasks.train_candidates=retriever", "tasks.shuffle_candidates=false",
                                        "tasks.missing_target=skip", "ranker.lr=3e-3"],
    # task ratios: the same step budget spent on next-item prompts only, or with three times the alignment share
    "retriever order + skip, next-item task only (w/o all-align)": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.enabled=[next_item]"],
    "retriever order + skip, index rows trained by non-ranking samples only": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.index_token_grad=non_ranking"],
    # the retriever's scores as soft targets over the letters, beside the hard label (ranker.distill_weight)
    "retriever order + skip, distillation from the retriever's scores (weight 1, T 1)": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.distill_weight=1.0"],
    "distillation from the retriever's scores, weight 3 (T 1): retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.distill_weight=3.0"],
    "retriever order + skip + distillation, next-item task only (weight 1, T 1)": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.enabled=[next_item]", "ranker.distill_weight=1.0"],
    # capacity: LoRA on every linear map of the top 8 layers, or on q/v of all 30 layers
    "retriever order + skip, LoRA on all 7 linear maps (top 8 layers)": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.lora_targets=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"],
    "retriever order + skip, LoRA on q/v of all 30 layers": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.lora_layers=0"],
    # exposure: the retriever that lists the training prefixes was trained on them (Beauty: the target in the
    # top-20 for 52 % of training prefixes vs 13 % of test users); cross-fitted lists come from retrievers that
    # never saw the user (retrieval.train_candidates_folds), validation/test candidates unchanged
    "retriever order + skip, cross-fitted training lists (2 folds)": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "retrieval.train_candidates_folds=2"],
    # beyond the paper: 'title (A)' instead of '(A) title', so each letter token follows (and can attend to) the
    # title it names (benchmarks/letter_binding.py: with the letter first the LM cannot find a title's letter)
    "letter after the title, retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last"],
    "letter after the title, retriever top-20 shuffled + skip": [
        "tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=true", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last"],
    # capacity for the binding: letter_binding.py's lookup-only adapters learn which letter names a title with LoRA
    # on all 7 maps of all 30 layers (top-1 0.353, chance 0.05) and not with q/v of the top 8 (0.057)
    "retriever order + skip, LoRA on all 7 maps of all 30 layers": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        *FULL_LORA],
    # ... and with the letter after its title (tasks.candidate_format=letter_last), where the same lookup adapters
    # reach 0.923; "full LoRA" = all 7 maps of all 30 layers
    "title (A), full LoRA, retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last",
        *FULL_LORA],
    # false negatives: the retriever that writes the training-prefix lists was trained on those sequences and
    # lists the user's own later items (2.5 of the 19 negatives on the sample); evaluation lists hold none
    "retriever order + skip, the user's other training items excluded": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.exclude_user_items=true"],
    # ... with the letter after its title (the format in which the untuned LM can find a title's letter), and with
    # the list order taken away: the cleanest test of whether the false negatives are what kept the shuffled levers
    # below random
    "title (A), own later items excluded: retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last", "tasks.exclude_user_items=true"],
    "shuffled title (A), own later items excluded: retriever top-20 + skip": [
        "tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=true", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last", "tasks.exclude_user_items=true"],
    # the list order taken away: a letter ranker that gains here reads the titles (its fusion row shows whether
    # that adds to the retriever)
    "title (A), full LoRA, retriever top-20 shuffled + skip": [
        "tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=true", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last",
        *FULL_LORA],
    "title (A) + a lookup sample per prefix, full LoRA, retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.candidate_format=letter_last", "tasks.ratios.letter_lookup=.inf",
        *FULL_LORA],
    "retriever order + skip + a lookup sample per prefix, LoRA on all 7 maps of all 30 layers": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.ratios.letter_lookup=.inf",
        *FULL_LORA],
    # the LM trained as a correction of the retriever: w x log_softmax(retriever scores) added to the letter
    # logits in the loss and in checkpoint selection (ranker.residual_weight); read through the fused column
    "retriever order + skip, residual on the retriever's scores (weight 1)": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.residual_weight=1.0"],
    "retriever top-20 shuffled + skip, residual on the retriever's scores (weight 1)": [
        "tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=true", "tasks.missing_target=skip",
        "ranker.residual_weight=1.0"],
    # the LoRA started from a title LM tuned on the training titles (ranker.init_adapter, --title-lm): the letter
    # ranker begins with the item knowledge whose absence makes it copy the list order
    "from the every-title LM: retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.init_adapter={title_lm}"],
    "from the every-title LM: retriever top-20 shuffled + skip": [
        "tasks.train_candidates=retriever_shuffled", "tasks.shuffle_candidates=true", "tasks.missing_target=skip",
        "ranker.init_adapter={title_lm}"],
    "from the every-title LM, next-item task only: retriever order + skip": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.enabled=[next_item]", "ranker.init_adapter={title_lm}"],
    # a content-aware teacher (ranker.distill_title_weight): soft targets from the retriever's score + 3 x the
    # title similarity to the prefix's history (3 = the weight of the evaluation's "Retriever + title similarity"
    # row chosen on the sample's validation users), so the letters are taught where that order departs from the list
    "title-similarity teacher (distill 1): retriever order + skip, soft targets retriever + 3 x title sim": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.distill_weight=1.0", "ranker.distill_title_weight=3.0"],
    "title-similarity teacher (distill 3): retriever order + skip, soft targets retriever + 3 x title sim": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "ranker.distill_weight=3.0", "ranker.distill_title_weight=3.0"],
    # letter binding (tasks.ratios.letter_lookup, beyond the paper): beside each next-item prefix, its candidate
    # list with one candidate's title given and its letter asked for (benchmarks/letter_binding.py measures it)
    "letter lookup, retriever order + skip: a lookup sample per prefix": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        "tasks.ratios.letter_lookup=.inf"],
    "retriever order + skip, alignment tasks x3": [
        "tasks.train_candidates=retriever", "tasks.shuffle_candidates=false", "tasks.missing_target=skip",
        *[f"tasks.ratios.{t}=3" for t in ("index_to_preference", "preference_to_index", "history_to_index",
                                          "rating", "intent")]],
}


#: The recipe the later levers vary one setting of (retriever order + skip); they also get a paired column against it.
SKIP_RECIPE = "retriever order, only prefixes whose list holds the target"
#: Where the levers' run directories live (``--runs`` puts another budget's adapters elsewhere).
RUNS = REPO / "runs" / "bench-levers"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:40]


def prepare_lever_dir(run_dir: Path, source: Path) -> None:
    """Copy the source's data/, retrieval/, index/, preferences/ into a lever's run directory where missing, under
    the run directory's lock: a lever another process is training stops this call (RunDirBusy), and an
    interrupted lever keeps its ``.ranker.partial`` checkpoints, so its ``--one`` job resumes instead of
    starting over. Folders already there are kept: remove a lever's run directory by hand to rebuild it from
    another source."""
    from ulmrec.runlock import RunDirBusy, run_lock

    try:
        with run_lock(run_dir, "ranker_levers.py: preparing the lever's run directory"):
            for sub in ("data", "retrieval", "index", "preferences"):
                if (source / sub).exists() and not (run_dir / sub).exists():
                    tmp = run_dir / f".{sub}.copying"
                    shutil.rmtree(tmp, ignore_errors=True)
                    shutil.copytree(source / sub, tmp)
                    os.replace(tmp, run_dir / sub)
    except RunDirBusy as e:
        raise SystemExit(f"{run_dir}: {e}") from None


def one(name: str, source: str, overrides: list[str], base: Path = RUNS) -> int:
    """Train one lever (``ulmrec train``, skipped when current) and save its validation ranks."""
    from ulmrec.config import load_config
    from ulmrec.io import write_json
    from ulmrec.pipeline import get_stage, run_stage

    run_dir = base / slug(name)
    over = [f"run_dir={run_dir}", *overrides]
    t0 = time.time()
    if any(o.startswith("retrieval.") and o != "retrieval.train_candidates=true" for o in overrides):
        before = (run_dir / "retrieval" / "candidates_valid.parquet").read_bytes()
        run_stage(get_stage("retrieval"), load_config(["sample"], over))  # this lever's own training lists
        if (run_dir / "retrieval" / "candidates_valid.parquet").read_bytes() != before:
            raise SystemExit(f"{name}: the retrieval stage wrote other validation candidates than the source's")
    run_stage(get_stage("ranker"), load_config(["sample"], over))
    ranks, info = score_valid(run_dir, overrides)
    write_json(run_dir / "valid_ranks.json", {**info, "ranks": ranks, "wall_seconds": round(time.time() - t0, 1),
                                              "loadavg": os.getloadavg()})
    return 0


def rescore(name: str, overrides: list[str], base: Path = RUNS) -> int:
    """Score a finished lever's adapter again and add its letter scores to valid_ranks.json (levers scored
    before the fusion column saved ranks only)."""
    from ulmrec.io import write_json

    run_dir = base / slug(name)
    saved = json.loads((run_dir / "valid_ranks.json").read_text())
    ranks, info = score_valid(run_dir, overrides)
    if ranks != saved["ranks"]:
        raise SystemExit(f"{name}: scoring again gave other ranks than the saved ones")
    write_json(run_dir / "valid_ranks.json", {**saved, **{k: info[k] for k in ("scores", "retriever_scores", "targets")}})
    return 0


def main() -> int:
    head = sys.argv[:sys.argv.index("--")] if "--" in sys.argv else sys.argv
    runs = Path(head[head.index("--runs") + 1]) if "--runs" in head else RUNS
    if len(sys.argv) > 2 and sys.argv[1] == "--rescore":
        return rescore(sys.argv[2], sys.argv[sys.argv.index("--") + 1:], runs)
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        rest = sys.argv[sys.argv.index("--") + 1:]
        return one(sys.argv[2], sys.argv[sys.argv.index("--source") + 1], rest, runs)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-users", type=int, default=100)
    ap.add_argument("--only", nargs="*", default=None, help="lever names (default all)")
    ap.add_argument("--cores", type=int, nargs="*", default=[0, 1], help="one job per listed core at a time")
    ap.add_argument("--no-report", action="store_true", help="train and score only (another call reports)")
    ap.add_argument("--rescore", action="store_true",
                    help="first score the selected levers saved without letter scores again (the fusion column)")
    ap.add_argument("--runs", type=Path, default=RUNS, help="the levers' run directories (default runs/bench-levers)")
    ap.add_argument("--out", default="ranker_levers", help="results name under benchmarks/results/")
    ap.add_argument("--compare", type=Path, default=None,
                    help="another --runs directory (e.g. a shorter budget): each lever found there too is paired "
                         "against itself on the same validation users")
    ap.add_argument("--stopped", nargs="*", default=[],
                    help="levers (name prefixes) stopped before their last step: never retrained, reported by their "
                         "selection curve only")
    ap.add_argument("--title-lm", type=Path, default=None,
                    help="the title LM the 'from the every-title LM' levers begin with (ranker.init_adapter): a "
                         "benchmarks/title_likelihood.py tag folder")
    ap.add_argument("--note", action="append", default=[],
                    help="a sentence the report carries as it is (e.g. where a lever resumed from a checkpoint)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    base = args.runs.resolve()
    common = ["ranker.baseline=false", f"ranker.max_steps={args.steps}", f"ranker.eval_every={args.eval_every}",
              f"ranker.eval_users={args.eval_users}", f"ranker.batch_size={args.batch_size}", "ranker.patience=0",
              "ranker.num_threads=1", "retrieval.train_candidates=true",
              "ranker.index_token_grad=all",  # the table's recipe, whatever the sample preset trains with
              *args.overrides]
    slugs = [slug(k) for k in LEVERS]
    if len(set(slugs)) != len(slugs):  # a run directory per lever: two names must not share one
        raise SystemExit(f"two levers share a run directory name: {sorted(x for x in slugs if slugs.count(x) > 1)}")
    levers = {k: v for k, v in LEVERS.items() if not args.only or any(k.startswith(o) for o in args.only)}
    levers = with_title_lm(levers, args.title_lm)
    load_before = os.getloadavg()
    stopped = [k for k in levers if any(k.startswith(o) for o in args.stopped)]
    queue = [kv for kv in levers.items() if kv[0] not in stopped and not (base / slug(kv[0]) / "valid_ranks.json").exists()]
    running, wall = {}, {}
    free = list(args.cores)
    while queue or running:
        while queue and free:
            name, over = queue.pop(0)
            run_dir = base / slug(name)
            prepare_lever_dir(run_dir, Path(args.source))
            core = free.pop(0)
            cmd = ["taskset", "-c", str(core), sys.executable, str(Path(__file__).resolve()), "--one", name,
                   "--source", args.source, "--runs", str(base), "--", *common, *over]
            log = open(base / f"{slug(name)}.log", "w")  # noqa: SIM115
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), time.time(), core)
        time.sleep(5)
        for name in list(running):
            proc, start, core = running[name]
            if proc.poll() is not None:
                if proc.returncode != 0:
                    print(f"{name} failed: see {base / (slug(name) + '.log')}", file=sys.stderr)
                    return 1
                wall[name] = round(time.time() - start, 1)
                free.append(core)
                del running[name]
    if args.rescore:
        for name, over in levers.items():
            if "scores" not in json.loads((base / slug(name) / "valid_ranks.json").read_text()):
                cmd = ["taskset", "-c", str(args.cores[0]), sys.executable, str(Path(__file__).resolve()),
                       "--rescore", name, "--runs", str(base), "--", *common, *over]
                subprocess.run(cmd, check=True, cwd=REPO)
    if args.no_report:
        return 0
    title_lm = None
    if args.title_lm is not None and any("ranker.init_adapter=" in o for v in levers.values() for o in v):
        info = json.loads((args.title_lm / "train.json").read_text())
        title_lm = {"path": str(args.title_lm), **{k: v for k, v in info.items() if k != "log"}}
    result = {**header(), "source": args.source, "common_overrides": common, "levers": levers, "title_lm": title_lm,
              "loadavg_before": load_before, "rows": {}, "notes": args.note,
              "stopped": {name: stopped_curve(base / slug(name)) for name in stopped}}
    levers = {k: v for k, v in levers.items() if k not in stopped}  # the table: finished levers only
    ranks = {}
    for name in levers:
        saved = json.loads((base / slug(name) / "valid_ranks.json").read_text())
        ranks[name] = saved.pop("ranks")
        result["retriever_ranks"] = saved.pop("retriever_ranks")
        scored = {k: saved.pop(k, None) for k in ("scores", "retriever_scores", "targets")}
        if scored["scores"] is not None:
            saved["fusion"] = fusion_row(scored, result["retriever_ranks"])
            saved["top1_is_A"] = top1_is_a(scored["scores"])
        result["rows"][name] = saved
    result["loadavg_after"] = os.getloadavg()
    import numpy as np

    from ulmrec.evaluation.stats import paired_bootstrap
    from ulmrec.metrics import metrics_from_ranks

    retr = np.asarray(result["retriever_ranks"])
    result["retriever_valid"] = metrics_from_ranks(retr, (5, 10))
    zero_path = base / "zero_shot_ranks.json"
    if not zero_path.exists():  # runs made before the zero-shot row: score it now on the same users

        from ulmrec.io import write_json
        from ulmrec.ranker.engine import Ranker

        cfg, _, _, samples = valid_samples(base / slug(next(iter(levers))), [*common, *next(iter(levers.values()))])
        write_json(zero_path, {"ranks": Ranker.build(cfg.ranker, ()).ranks(samples, desc="zero-shot").tolist()})
    zero = np.asarray(json.loads(zero_path.read_text())["ranks"])
    result["zero_shot_valid"] = metrics_from_ranks(zero, (5, 10))
    result["zero_shot_vs_retriever"] = paired_bootstrap(zero, retr, metrics=("NDCG@10",), seed=0)["NDCG@10"]
    result["preferences"] = ("shipped GPT-3.5 sentences of the sample (written from all reviews: they see the "
                             "validation and test period; benchmarks/results/leakage_beauty.md)")
    ref = next(iter(levers))
    skip = SKIP_RECIPE if SKIP_RECIPE in levers else None
    result["paired"] = {"Zero-shot (untuned LM) - Retriever order": {"NDCG@10": result["zero_shot_vs_retriever"]}}
    for name in levers:
        row = result["rows"][name]
        row["vs_retriever"] = paired_bootstrap(ranks[name], retr, metrics=("NDCG@10",), seed=0)["NDCG@10"]
        row["vs_reference"] = paired_bootstrap(ranks[name], ranks[ref], metrics=("NDCG@10",), seed=0)["NDCG@10"]
        result["paired"][f"{name} - Retriever order"] = {"NDCG@10": row["vs_retriever"]}
        result["paired"][f"{name} - {ref}"] = {"NDCG@10": row["vs_reference"]}
        other = args.compare / slug(name) / "valid_ranks.json" if args.compare else None
        if other and other.exists():
            theirs = json.loads(other.read_text())
            row["vs_compare"] = {**paired_bootstrap(ranks[name], theirs["ranks"], metrics=("NDCG@10",), seed=0)["NDCG@10"],
                                 "runs": str(args.compare), "their_best_step": theirs["best_step"],
                                 "their_NDCG@10": theirs["valid"]["NDCG@10"]}
            result["paired"][f"{name} - the same lever in {args.compare}"] = {"NDCG@10": row["vs_compare"]}
        if skip and name != skip:
            row["vs_skip"] = paired_bootstrap(ranks[name], ranks[skip], metrics=("NDCG@10",), seed=0)["NDCG@10"]
            result["paired"][f"{name} - {skip}"] = {"NDCG@10": row["vs_skip"]}
        twin = retriever_teacher(name, levers)
        if twin is not None:
            row["vs_retriever_teacher"] = {**paired_bootstrap(ranks[name], ranks[twin], metrics=("NDCG@10",),
                                                              seed=0)["NDCG@10"], "lever": twin}
            result["paired"][f"{name} - {twin}"] = {"NDCG@10": row["vs_retriever_teacher"]}
    teachers = sorted({_title_weight(v) for v in levers.values()} - {0.0})
    if teachers:  # the teachers' own orders (no LM) on the same users: what a perfect student would reach
        result["teacher_orders"] = teacher_orders(base, levers, common, teachers, retr)
        for w, t in result["teacher_orders"].items():
            result["paired"][f"Teacher order (retriever + {w} x title similarity) - Retriever order"] = {
                "NDCG@10": t["vs_retriever"]}
    save(args.out, result, markdown(result))
    return 0


def top1_is_a(scores: list[list[float | None]]) -> float:
    """Share of users whose highest letter score is A's (the first candidate, the retriever's top item)."""
    import numpy as np

    s = np.asarray([[-np.inf if x is None else x for x in row] for row in scores], dtype=np.float64)
    return float((s.argmax(1) == 0).mean()) if len(s) else 0.0


def retriever_teacher(name: str, levers: dict[str, list[str]]) -> str | None:
    """The lever that is ``name`` without its title-similarity teacher (the same overrides less
    ``ranker.distill_title_weight``: the retriever-only teacher at the same distillation weight), or ``None``."""
    if not _title_weight(levers[name]):
        return None
    plain = sorted(o for o in levers[name] if not o.startswith("ranker.distill_title_weight="))
    twin = next((k for k, v in levers.items() if k != name and sorted(v) == plain), None)
    if twin is None:  # else the retriever-only teacher at another distillation weight, the same otherwise
        def rest(v: list[str]) -> list[str]:
            return sorted(o for o in v if not o.startswith(("ranker.distill_title_weight=", "ranker.distill_weight=")))
        twin = next((k for k, v in levers.items() if k != name and not _title_weight(v) and rest(v) == rest(plain)
                     and any(o.startswith("ranker.distill_weight=") for o in v)), None)
    return twin


def _title_weight(overrides: list[str]) -> float:
    return next((float(o.split("=", 1)[1]) for o in overrides if o.startswith("ranker.distill_title_weight=")), 0.0)


def teacher_orders(base: Path, levers: dict[str, list[str]], common: list[str], weights: list[float],
                   retr) -> dict:
    """Each title-similarity teacher's own order on the validation users (retriever score + w x title similarity,
    the soft targets' logits; no LM): its NDCG@10 and the paired difference to the retriever's order."""
    import numpy as np

    from ulmrec.evaluation.stats import paired_bootstrap
    from ulmrec.indexing.titles import title_embeddings, title_similarity
    from ulmrec.metrics import metrics_from_ranks, target_rank
    from ulmrec.tasks.candidate_lists import list_scores

    name = next(k for k, v in levers.items() if _title_weight(v))
    cfg, ds, frame, samples = valid_samples(base / slug(name), [*common, *levers[name]])
    users, lists = [s.user_idx for s in samples], [s.candidates for s in samples]
    scores = np.asarray(list_scores(frame, users, lists), dtype=np.float64)
    emb = title_embeddings(ds, cfg.ranker.distill_title_encoder)
    sim = title_similarity(ds, users, lists, "valid", emb, cfg.ranker.distill_title_history)
    targets = np.asarray([-1 if s.target is None else s.target for s in samples])
    out = {}
    for w in weights:
        fused = scores + w * sim
        ranks = target_rank(fused, targets, np.isfinite(fused)).numpy()
        if len(ranks) != len(retr):
            raise SystemExit(f"teacher order: {len(ranks)} validation users, the levers have {len(retr)}")
        out[f"{w:g}"] = {"valid": metrics_from_ranks(ranks, (5, 10)), "history": cfg.ranker.distill_title_history,
                         "vs_retriever": paired_bootstrap(ranks, retr, metrics=("NDCG@10",), seed=0)["NDCG@10"]}
    return out


def with_title_lm(levers: dict[str, list[str]], title_lm: Path | None) -> dict[str, list[str]]:
    """The levers with ``{title_lm}`` (the 'from the every-title LM' levers' ranker.init_adapter) filled in."""
    if not any("{title_lm}" in o for v in levers.values() for o in v):
        return levers
    if title_lm is None:
        raise SystemExit("the 'from the every-title LM' levers need --title-lm (or leave them out with --only)")
    if not (title_lm / "adapter" / "adapter_config.json").exists():
        raise SystemExit(f"--title-lm {title_lm}: no adapter/ there (a benchmarks/title_likelihood.py tag folder)")
    return {k: [o.replace("{title_lm}", str(title_lm.resolve())) for o in v] for k, v in levers.items()}


def fusion_row(scored: dict, retriever_ranks: list[int]) -> dict:
    """LM letter log-probability + w x retriever score (evaluation's "ULMRec + retriever"): w chosen on a fixed
    random half of the validation users, NDCG@10 paired against the retriever's order on the other half."""
    import numpy as np

    from ulmrec.evaluation.stats import choose_fusion_weight, fuse, paired_bootstrap
    from ulmrec.metrics import target_rank

    lm = np.array([[np.nan if x is None else x for x in row] for row in scored["scores"]], dtype=np.float64)
    lm = np.where(np.isnan(lm), -np.inf, lm)
    retr = np.asarray(scored["retriever_scores"], dtype=np.float64)[:, :lm.shape[1]]
    t = np.asarray(scored["targets"])
    perm = np.random.default_rng(0).permutation(len(t))
    pick, held = np.sort(perm[: len(t) // 2]), np.sort(perm[len(t) // 2:])
    w, grid = choose_fusion_weight(lm[pick], retr[pick], t[pick])
    fused_r = target_rank(fuse(lm[held], retr[held], w), t[held], np.isfinite(lm[held])).numpy()
    d = paired_bootstrap(fused_r, np.asarray(retriever_ranks)[held], metrics=("NDCG@10",), seed=0)["NDCG@10"]
    return {"weight": w, "choose_users": len(pick), "report_users": len(held), "vs_retriever": d, "grid_NDCG@10": grid}


def valid_samples(run_dir: Path, overrides: list[str]):
    """``(cfg, dataset, candidate frame, samples)``: every validation Rank user's ULMRec prompt of a lever's run
    directory under the sample preset + ``overrides`` (what every scoring here reads)."""
    import pandas as pd

    from ulmrec.config import load_config
    from ulmrec.data.dataset import Dataset
    from ulmrec.ranker.engine import base_title_cutter, load_identities
    from ulmrec.tasks import build_eval_samples

    cfg = load_config(["sample"], [f"run_dir={run_dir}", *overrides])
    ds = Dataset.load(run_dir)
    frame = pd.read_parquet(run_dir / "retrieval" / "candidates_valid.parquet")
    samples = build_eval_samples(ds, "valid", frame, cfg.tasks, identities=load_identities(cfg, ds, run_dir),
                                 title_fn=base_title_cutter(cfg.ranker), max_users=0, seed=cfg.seed)
    return cfg, ds, frame, samples


def score_valid(run_dir: Path, overrides: list[str]) -> tuple[list[int], dict]:
    """The trained adapter's ranks on every validation Rank user, and its training summary."""

    from ulmrec.evaluation.stage import retriever_ranks
    from ulmrec.metrics import metrics_from_ranks
    from ulmrec.ranker.engine import Ranker
    from ulmrec.ranker.predict import ranks_from_scores

    cfg, ds, cands, samples = valid_samples(run_dir, overrides)
    ranker = Ranker.load(cfg.ranker, run_dir / "ranker" / "adapter")
    scores, _ = ranker.score(samples, desc=run_dir.name)
    r = ranks_from_scores(scores, samples)
    zero = run_dir.parent / "zero_shot_ranks.json"  # the untuned LM on the same users, ULMRec prompt, once
    if not zero.exists():
        from ulmrec.io import write_json

        write_json(zero, {"ranks": Ranker.build(cfg.ranker, ()).ranks(samples, desc="zero-shot").tolist()})
    import numpy as np

    best = json.loads((run_dir / "ranker" / "best.json").read_text())
    by_user = cands.set_index("user_idx").loc[[s.user_idx for s in samples]].reset_index()
    info = {"valid_users": len(samples), "best_step": best["best_step"], "train_seconds": best["train_seconds"],
            "selection_NDCG@10": best["best_valid_NDCG@10"], "valid": metrics_from_ranks(r, (5, 10)),
            "letters_top1": np.bincount(r == 0, minlength=2).tolist(),
            "retriever_ranks": retriever_ranks(by_user, cfg.tasks.num_candidates).tolist(),
            # letter scores and the retriever's scores of the same candidates: the fusion column
            "scores": [[float(x) if np.isfinite(x) else None for x in row] for row in scores],
            "retriever_scores": [[float(x) for x in row[:cfg.tasks.num_candidates]] for row in by_user["scores"]],
            "targets": [int(s.target) for s in samples]}
    return r.tolist(), info


def stopped_curve(run_dir: Path) -> dict:
    """A lever stopped before its last step: its selection-user NDCG@10 at every validation so far (step 0 =
    the untuned LM) and the last step it trained, from the unfinished stage's log."""
    log = run_dir / ".ranker.partial" / "train_log.jsonl"
    if not log.exists():
        raise SystemExit(f"{run_dir}: no unfinished ranker stage to report (expected {log})")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    evals = [[r["step"], r["valid"]["NDCG@10"]] for r in rows if r.get("event") == "eval"]
    return {"evals": evals, "selection_users": next(r["valid"]["users"] for r in rows if r.get("event") == "eval"),
            "last_step": max(r["step"] for r in rows)}


def markdown(r: dict) -> str:
    rv = r["retriever_valid"]
    steps = next((o.split("=", 1)[1] for o in r["common_overrides"] if o.startswith("ranker.max_steps=")), "?")
    lines = [f"# Ranker levers on validation users (ULMRec, SmolLM2-135M, the Beauty sample, {steps} steps)", "",
             f"Every row: same seed and budget ({', '.join(r['common_overrides'])}); the adapter selected on the "
             "selection users (step 0 included) scored on every validation Rank user "
             f"({next(iter(r['rows'].values()))['valid_users']}). Retriever order on the same users: NDCG@10 "
             f"{rv['NDCG@10']:.4f}. Differences: paired bootstrap 95 % intervals.", "",
             "| lever | best step | valid NDCG@10 | vs reference [95 % CI] | vs retriever order + skip [95 % CI] | "
             "vs retriever order [95 % CI] | + retriever (fused) vs retriever order [95 % CI] | top-1 = A | train s | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    z = r["zero_shot_vs_retriever"]
    lines.append(f"| zero-shot: the untuned LM (ULMRec prompt) | - | {r['zero_shot_valid']['NDCG@10']:.4f} | | | "
                 f"{z['mean']:+.4f} [{z['lo']:+.4f}, {z['hi']:+.4f}] | | | 0 | |")

    def ci(x: dict | None) -> str:
        return "" if x is None else f"{x['mean']:+.4f} [{x['lo']:+.4f}, {x['hi']:+.4f}]"

    def fused(f: dict | None) -> str:
        return "" if f is None else f"{ci(f['vs_retriever'])} (w {f['weight']:g})"

    for name, row in r["rows"].items():
        lines.append(f"| {name} | {row['best_step']} | {row['valid']['NDCG@10']:.4f} | {ci(row['vs_reference'])} | "
                     f"{ci(row.get('vs_skip'))} | {ci(row['vs_retriever'])} | {fused(row.get('fusion'))} | "
                     f"{'' if row.get('top1_is_A') is None else format(row['top1_is_A'], '.2f')} | "
                     f"{row['train_seconds']} | {row['loadavg'][0]:.1f} |")
    lines += ["", f"Preferences in the ULMRec prompts: {r['preferences']}.",
              f"Load average before/after: {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f}. Each lever "
              "was trained by its own `--one` job (two at a time, one core each); the load column is the 1-minute "
              "load when that job finished.",
              "Fused column: letter log-probability + w x the retriever's score (the evaluate stage's \"ULMRec + "
              "retriever\"), w chosen on a fixed random half of the validation users, the paired difference to "
              "the retriever's order on the other half. Top-1 = A: share of users whose highest letter is A (the "
              "retriever's first candidate)."]
    if r.get("title_lm"):
        t = r["title_lm"]
        lines += ["", f"The 'from the every-title LM' levers start their LoRA (`ranker.init_adapter`, its layout: "
                  f"{len(t.get('lora_targets', []))} linear maps of the top {t.get('lora_layers')} layers) from the title LM "
                  f"`{t['path']}`: {t.get('objective', 'next-title')} loss, {t['steps']} steps of {t['batch_size']} "
                  f"training windows, {t['seconds']:.0f} s of one core, not counted in the train s column."]
    for w, t in r.get("teacher_orders", {}).items():
        lines += ["", f"The title-similarity teacher's own order (retriever score + {w} x the max cosine of a candidate's "
                  f"title to the last {t['history']} history titles; no LM, the logits of the soft targets) on the same "
                  f"users: NDCG@10 {t['valid']['NDCG@10']:.4f}, {ci(t['vs_retriever'])} vs the retriever's order: "
                  "what a student that learned the teacher perfectly would reach."]
    for name, row in r["rows"].items():
        if "vs_retriever_teacher" in row:
            lines += ["", f"{name}: minus the same recipe with the retriever-only teacher "
                      f"({row['vs_retriever_teacher'].get('lever', 'weight 1')}), same users: "
                      f"{ci(row['vs_retriever_teacher'])}."]
    for name, row in r["rows"].items():
        if "vs_compare" in row:
            c = row["vs_compare"]
            lines += ["", f"{name}: minus the same lever in {c['runs']} (best step {c['their_best_step']}, NDCG@10 "
                      f"{c['their_NDCG@10']:.4f}), same users: {ci(c)}."]
    for note in r.get("notes", []):
        lines += ["", note]
    for name, st in r.get("stopped", {}).items():
        curve = ", ".join(f"{step}: {v:.3f}" for step, v in st["evals"])
        lines += ["", f"Stopped at step {st['last_step']} (not in the table, never scored on all validation users): "
                  f"{name}. NDCG@10 on the {st['selection_users']} selection users by step (step 0 = the untuned "
                  f"LM): {curve}."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
