"""The ranker stage on a complete tiny run directory: artifacts, the baseline adapter, errors before training."""

from __future__ import annotations

import json

import pytest

from helpers import LETTERS, make_run_dir, tiny_config
from ulmrec.errors import ConfigError
from ulmrec.pipeline import get_stage, run_stage
from ulmrec.ranker import stage as ranker_stage


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_llama):
    run_dir = make_run_dir(tmp_path_factory.mktemp("run"))
    cfg = tiny_config(run_dir, tiny_llama)
    record = run_stage(get_stage("ranker"), cfg)
    return run_dir, cfg, record


def test_stage_writes_both_adapters(trained_run):
    run_dir, _, record = trained_run
    out = run_dir / "ranker"
    for sub in (out, out / "llamarec"):
        assert (sub / "adapter" / "adapter_config.json").exists()
        assert (sub / "best.json").exists() and (sub / "train_log.jsonl").exists()
        assert not (sub / "checkpoint").exists()
    summary = record["summary"]
    assert summary["ulmrec"]["steps"] == 4 and summary["llamarec"]["steps"] == 4
    assert set(summary["llamarec"]["tasks"]) == {"next_item"}
    assert {"next_item", "index_to_preference", "preference_to_index", "history_to_index"} <= set(summary["ulmrec"]["tasks"])
    report = json.loads((out / "tasks_report.json").read_text())
    assert report["index_tokens_added"] == len({f"<a_{u}>" for u in range(8)} | {f"<b_{u + 1}>" for u in range(8)}
                                               | {f"<c_{u % 3}>" for u in range(8)} | {"<d_7>"})
    assert report["valid_users"] == 6  # two users' validation targets were not retrieved


def test_stage_is_skipped_when_current(trained_run):
    run_dir, cfg, _ = trained_run
    assert run_stage(get_stage("train"), cfg)["skipped"]


@pytest.mark.parametrize("override, message", [
    ("ranker.model=/nonexistent/model", "not a model directory"),
    ("ranker.model=no-such-org/no-such-model", "neither a local directory nor a model in the local"),
    (f"tasks.num_candidates={LETTERS + 3}", "retrieval.num_candidates"),
    ("ranker.max_length=5000", "longer than the model allows"),
    ("ranker.distill_weight=0.5", "does not read them"),  # sampled training candidates carry no scores
    ("ranker.residual_weight=1", "does not read them"),
])
def test_bad_settings_fail_before_training(tmp_path, tiny_llama, override, message, monkeypatch):
    run_dir = make_run_dir(tmp_path)
    called = []
    monkeypatch.setattr(ranker_stage, "train_one", lambda *a, **k: called.append(1))
    with pytest.raises(ConfigError, match=message):
        run_stage(get_stage("ranker"), tiny_config(run_dir, tiny_llama, override))
    assert not called


def test_prompt_longer_than_allowed_fails_before_training(tmp_path, tiny_llama, monkeypatch):
    from ulmrec.ranker import train as train_mod

    run_dir = make_run_dir(tmp_path)
    monkeypatch.setattr(train_mod, "response_loss", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ConfigError, match="ranker.max_length=40"):
        run_stage(get_stage("ranker"), tiny_config(run_dir, tiny_llama, "ranker.max_length=40"))


@pytest.mark.parametrize("user", ["U002", "2", "U001"])
def test_recommend_ranks_the_candidates(trained_run, user, capsys):
    import argparse

    from ulmrec.ranker.recommend import add_arguments, main, recommend

    run_dir, cfg, _ = trained_run
    table = recommend(cfg, user, top=10)
    assert len(table) == LETTERS and list(table["rank"]) == [1, 2, 3, 4]
    assert table["score"].is_monotonic_decreasing
    assert table["held_out"].sum() == (0 if user == "U001" else 1)  # user 1's test item was not retrieved
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = ["--user", user, "--top", "2", f"run_dir={run_dir}", f"ranker.model={cfg.ranker.model}",
            f"tasks.num_candidates={LETTERS}", "ranker.max_title_tokens=32"]
    assert main(parser.parse_args(args)) == 0
    assert capsys.readouterr().out.count("(item ") == 2


def test_recommend_unknown_user(trained_run):
    from ulmrec.ranker.recommend import recommend

    with pytest.raises(ConfigError, match="no user 'nobody'"):
        recommend(trained_run[1], "nobody")


def test_residual_selection_reads_the_validation_lists_scores(tmp_path):
    """ranker.residual_weight: each validation prompt carries the retriever's scores of its own lettered
    candidates (letter order); a candidate file without scores is a one-line DataError naming the file."""
    import pandas as pd

    from ulmrec.errors import DataError
    from ulmrec.ranker.stage import attach_retriever_scores

    run_dir = make_run_dir(tmp_path)
    path = run_dir / "retrieval" / "candidates_valid.parquet"
    cands = pd.read_parquet(path)
    from ulmrec.data.dataset import Dataset
    from ulmrec.tasks import build_eval_samples

    cfg = tiny_config(run_dir, tmp_path)
    ids = {u: f"<a_{u}>" for u in range(8)}
    samples = build_eval_samples(Dataset.load(run_dir), "valid", cands, cfg.tasks, identities=ids)
    attach_retriever_scores(samples, cands, path)
    for s in samples:
        row = cands.set_index("user_idx").loc[s.user_idx]
        assert s.meta["teacher"] == [float(x) for x in row["scores"][:LETTERS]]
    with pytest.raises(DataError, match=r"candidates_valid.parquet: field 'scores'"):
        attach_retriever_scores(samples, cands.drop(columns="scores"), path)
