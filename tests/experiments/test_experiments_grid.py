"""The experiment machinery on a tiny run (random 2-layer Llama, 8 users): planning, variant runs that share the
base run's upstream stages, resuming, aliases, reports (Markdown, CSV, LaTeX, PNG), case study and timing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from helpers import LETTERS, build_tiny_llama, make_run_dir
from ulmrec.errors import ConfigError
from ulmrec.experiments import run_experiments
from ulmrec.experiments.config import ExperimentConfig, budget
from ulmrec.experiments.grid import VARIANTS, expand, task_quotas, variants_for
from ulmrec.experiments.runner import Plan, link_upstream, plan_budgets
from ulmrec.experiments.tables import Table, mean_std


def tiny_overrides(model: Path) -> list[str]:
    return [f"ranker.model={model}", "device=cpu", f"tasks.num_candidates={LETTERS}",
            f"retrieval.num_candidates={LETTERS + 2}", "tasks.max_history=3", "ranker.max_length=512"]


def tiny_exp(**kw) -> ExperimentConfig:
    base = dict(seeds=[1], train_samples=8, batch_size=2, lr=1e-3, warmup_steps=1, eval_every=1000, valid_users=2,
                test_users=0, threads=1, case_users=2, case_max_new_tokens=4, timing_users=2)
    base.update(kw)
    return ExperimentConfig(**base)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = build_tiny_llama(tmp_path_factory.mktemp("tiny"))
    base = make_run_dir(tmp_path_factory.mktemp("base") / "run")
    return model, base


@pytest.fixture(scope="module")
def grid(tiny, tmp_path_factory):
    """`uid`, `case-study` and `inference-time` with two seeds: one variant (full), trained twice."""
    model, base = tiny
    root = tmp_path_factory.mktemp("grid")
    store = run_experiments("uid", [], tiny_overrides(model), base, root / "work", root / "out",
                            tiny_exp(seeds=[1, 2]), "ulmrec experiment uid (test)", prepare=False)
    for name in ("case-study", "inference-time"):
        run_experiments(name, [], tiny_overrides(model), base, root / "work", root / "out", tiny_exp(seeds=[1, 2]),
                        f"ulmrec experiment {name} (test)", prepare=False)
    return root, store


# --------------------------------------------------------------------------------------------- settings
def test_budget_presets_and_validation():
    small = budget("cpu-small")
    assert small.train_samples > 0 and small.test_users > 0 and len(small.seeds) >= 2
    assert budget("paper").train_samples == 0 and budget("paper").seeds == [1, 2, 3]
    assert budget("cpu-small", seeds=[7], test_users=None).seeds == [7]
    assert "ranker.baseline=false" in small.ranker_overrides()
    assert f"evaluate.max_users={small.test_users}" in small.ranker_overrides()
    assert not any(o.startswith("ranker.lr") for o in budget("paper").ranker_overrides())
    for bad in ({"seeds": []}, {"seeds": [1, 1]}, {"train_samples": -1}, {"valid_users": 0}, {"lr": -1.0}):
        with pytest.raises(ValueError):
            ExperimentConfig(**bad)
    with pytest.raises(ValueError, match="unknown budget"):
        budget("huge")


def test_grid_names_and_order():
    assert expand("all")[0] == "uid" and set(expand("all")) == {"main", "uid", "case-study", "inference-time",
                                                                 "ablation", "index-variants"}
    v = variants_for(["uid", "ablation", "index-variants"])
    assert v[0] == "full" and len(v) == len(set(v)) and "wo_all" in v and "nid_align" in v
    with pytest.raises(KeyError):
        expand("nope")
    assert VARIANTS["wo_all"].tasks == ("next_item",)
    assert "tasks.identity=numeric" in VARIANTS["nid_noalign"].overrides()


def test_quotas_keep_shares_and_ablations_drop_one_task():
    selected = {"next_item": 630, "index_to_preference": 100, "history_to_index": 100, "intent": 170}
    q = task_quotas(selected, 100)
    assert sum(q.values()) == 100 and q["next_item"] == 63 and q["intent"] == 17
    assert task_quotas(selected, 0) == selected
    plan = Plan([], [], Path("b"), Path("w"), tiny_exp(train_samples=100))
    plan.available, plan.quotas = set(selected), q
    cfg_full = plan.config(VARIANTS["full"], 1)
    cfg_wo = plan.config(VARIANTS["wo_intent"], 1)
    assert cfg_full.tasks.max_samples == 100 and cfg_wo.tasks.max_samples == 100 - q["intent"]
    assert cfg_wo.tasks.enabled == [t for t in cfg_full.tasks.enabled if t != "intent"]
    assert cfg_full.evaluate.no_history and not cfg_wo.evaluate.no_history
    assert cfg_full.seed == 1 and Path(cfg_full.run_dir) == Path("w") / "full-s1"


def test_variants_without_samples_are_aliases():
    plan = Plan([], [], Path("b"), Path("w"), tiny_exp())
    plan.available = {"next_item", "index_to_preference", "preference_to_index", "history_to_index", "intent"}
    assert plan.trained_as(VARIANTS["wo_rating"]).name == "full"  # no ratings: the same training set
    assert plan.run_dir(VARIANTS["wo_rating"], 3) == Path("w") / "full-s3"
    assert plan.trained_as(VARIANTS["wo_intent"]).name == "wo_intent"
    plan.available.add("rating")
    assert plan.trained_as(VARIANTS["wo_rating"]).name == "wo_rating"


def test_mean_std_and_table_formats():
    m, s, n = mean_std([0.1, 0.3, float("nan")])
    assert (round(m, 6), round(s, 6), n) == (0.2, round(0.1414213562, 6), 2)
    assert mean_std([0.5])[2] == 1 and mean_std([0.5])[1] != mean_std([0.5])[1]  # one seed: std is nan
    t = Table("T", [("a", "A"), ("b", "B")])
    t.add("x", {"a": [0.1, 0.3], "b": [1.0]})
    t.add("ref", {"a": [0.25]}, kind="paper")
    md = t.markdown()
    assert "0.2000 ± 0.1414" in md and "| ref | 0.2500 | – | paper |" in md
    rows = list(csv.reader(line for line in t.csv("cmd --x").splitlines() if not line.startswith("#")))
    assert rows[0][:4] == ["row", "kind", "a_mean", "a_std"] and rows[1][2] == "0.200000"
    assert "% command: cmd --x" in t.latex("cmd --x") and r"0.2000$\pm$0.1414" in t.latex("cmd --x")


def test_link_upstream_refuses_a_real_directory(tmp_path):
    base = tmp_path / "base"
    (base / "data").mkdir(parents=True)
    run = tmp_path / "v"
    link_upstream(base, run)
    assert (run / "data").is_symlink() and (run / "data").resolve() == (base / "data").resolve()
    link_upstream(base, run)  # idempotent
    (run / "retrieval").mkdir()
    (base / "retrieval").mkdir()
    with pytest.raises(ConfigError, match="real directory"):
        link_upstream(base, run)


# --------------------------------------------------------------------------------------------- on the tiny run
def test_plan_counts_tasks_on_the_base_run(tiny):
    model, base = tiny
    plan = plan_budgets(Plan([], tiny_overrides(model), base, base.parent / "w", tiny_exp()))
    assert {"next_item", "index_to_preference", "rating"} <= plan.available
    assert sum(plan.quotas.values()) == 8


def test_grid_trains_each_seed_and_shares_the_upstream(grid):
    root, store = grid
    assert set(store) == {"full/s1", "full/s2"}
    for rec in store.values():
        assert "error" not in rec, rec.get("traceback")
        run = Path(rec["run_dir"])
        assert (run / "data").is_symlink() and (run / "ranker" / "adapter").is_dir()
        assert rec["train"]["train_samples"] <= 8 and rec["models"]["ULMRec"]["Rank"]["NDCG@10"] >= 0
        assert set(rec["models"]) >= {"ULMRec", "ULMRec-uid (no history)", "Retriever order"}
    plan = json.loads((root / "work" / "plan.json").read_text())
    assert plan["command"].startswith("ulmrec experiment")


def test_reports_name_the_command_and_aggregate_seeds(grid):
    root, store = grid
    md = (root / "out" / "uid" / "table.md").read_text()
    assert "ulmrec experiment uid (test)" in md and "ULMRec-uid (index + candidates)" in md
    assert "Preference sentences: " in md  # which sentences the grid read (the shipped ones see the test period)
    vals = [store[f"full/s{s}"]["models"]["ULMRec"]["Rank"]["NDCG@10"] for s in (1, 2)]
    m, s, _ = mean_std(vals)
    row = next(r for r in csv.reader((root / "out" / "uid" / "table.csv").read_text().splitlines()[2:])
               if r[0].startswith("ULMRec (index"))
    header = (root / "out" / "uid" / "table.csv").read_text().splitlines()[2].split(",")
    assert float(row[header.index("Rank/NDCG@10_mean")]) == pytest.approx(m, abs=1e-6)
    assert row[-1] == "2"
    assert "% command:" in (root / "out" / "uid" / "table.tex").read_text()
    assert "(paper" not in md  # the tiny run is neither of the paper's datasets: no paper rows


def test_paper_rows_only_for_the_papers_datasets():
    from ulmrec.experiments.tables import paper_dataset, paper_values

    assert paper_dataset("games") == "games" and paper_dataset("runs/experiments/beauty-base") == "beauty"
    assert paper_dataset("sample-run") is None and paper_values(None, "ULMRec") == {}
    assert paper_values("games", "ULMRec-uid")["Rank/NDCG@10"] == [0.3233]
    assert "Overall/NDCG@10" not in paper_values("games", "ULMRec-uid")


def test_case_study_and_timing(grid):
    root, _ = grid
    raw = json.loads((root / "out" / "case-study" / "raw.json").read_text())
    rows = raw["analyses"]["s1"]
    assert [r["level"] for r in rows[:4]] == [1, 2, 3, 4]
    assert rows[0]["index_prefix"].count("<") == 1 and rows[3]["index_prefix"].count("<") == 4
    assert "Generated texts" in (root / "out" / "case-study" / "table.md").read_text()
    t = json.loads((root / "out" / "inference-time" / "raw.json").read_text())["analyses"]
    assert set(t) == {"s1", "s2"} and t["s1"]["prompts"]["full"]["mean_seconds"] > 0
    assert t["s1"]["prompts"]["no_history"]["mean_prompt_tokens"] < t["s1"]["prompts"]["full"]["mean_prompt_tokens"]


def test_resume_skips_finished_runs(grid, tiny, monkeypatch):
    """A second call finds every stage current: nothing is trained again."""
    root, store = grid
    model, base = tiny
    from ulmrec.experiments import runner

    calls = []
    original = runner.run_variant
    monkeypatch.setattr(runner, "run_variant", lambda *a, **k: calls.append(a[1].name) or original(*a, **k))
    import ulmrec.ranker.stage as ranker_stage

    monkeypatch.setattr(ranker_stage, "train_one", lambda *a, **k: pytest.fail("retrained a finished variant"))
    again = run_experiments("uid", [], tiny_overrides(model), base, root / "work", root / "out", tiny_exp(seeds=[1, 2]),
                            "ulmrec experiment uid (test)", prepare=False)
    assert calls == ["full", "full"]
    assert again["full/s1"]["models"] == store["full/s1"]["models"]


@pytest.mark.slow
def test_whole_grid_with_figures(tiny, tmp_path):
    model, base = tiny
    store = run_experiments("all", [], tiny_overrides(model), base, tmp_path / "work", tmp_path / "out", tiny_exp(),
                            "ulmrec experiment all (test)", prepare=False)
    assert not [k for k, r in store.items() if "error" in r]
    for name in ("ablation", "index-variants"):
        png = tmp_path / "out" / name / "figure.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "w/o all-align" in (tmp_path / "out" / "ablation" / "table.md").read_text()
    assert (tmp_path / "out" / "README.md").exists()


def test_cli_dry_run_prints_the_plan(tiny, tmp_path, capsys):
    from ulmrec.cli import main as cli_main

    model, base = tiny
    code = cli_main(["experiment", "--budget", "cpu-small", "--seeds", "5", "--base", str(base), "--work",
                     str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--no-prepare", "--dry-run", "ablation",
                     *tiny_overrides(model)])
    out = capsys.readouterr().out
    assert code == 0 and "ulmrec experiment --budget cpu-small" in out
    assert "wo_all" in out and "tasks.max_samples=" in out and "seeds: [5]" in out
    assert not (tmp_path / "w").exists()  # a dry run trains nothing


def test_cli_rejects_bad_settings(tiny, capsys):
    from ulmrec.cli import main as cli_main

    _, base = tiny
    assert cli_main(["experiment", "--seeds", "1", "1", "--base", str(base), "--dry-run", "uid"]) == 2
    assert "seeds must be distinct" in capsys.readouterr().err


def test_random_order_row_is_the_mean_over_every_target_position():
    import numpy as np

    from ulmrec.experiments.tables import random_values
    from ulmrec.metrics import metrics_from_ranks

    for n in (4, 20):
        exact = metrics_from_ranks(np.arange(n), (5, 10))
        rnd = random_values(n, coverage=0.5)
        for key, value in exact.items():
            assert rnd[f"Rank/{key}"][0] == pytest.approx(value)
        assert rnd["Overall/NDCG@10"][0] == pytest.approx(exact["NDCG@10"] * 0.5)
