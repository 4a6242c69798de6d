"""benchmarks/ranker_levers.py's fusion column: w chosen on one half of the validation users, reported on the other."""

from __future__ import annotations

import numpy as np

from helpers import load_benchmark


def _module():
    return load_benchmark("ranker_levers")


def _scored(lm: np.ndarray, retr: np.ndarray, targets: np.ndarray) -> dict:
    return {"scores": lm.tolist(), "retriever_scores": retr.tolist(), "targets": targets.tolist()}


def test_fusion_row_halves_the_users_and_pairs_against_the_retriever():
    mod = _module()
    rng = np.random.default_rng(1)
    n, c = 200, 20
    retr = np.sort(rng.random((n, c)), axis=1)[:, ::-1].copy()  # retriever order: descending scores
    targets = rng.integers(0, c, n)
    retr_ranks = targets.copy()  # letters are in retriever order, so the target's rank is its letter
    # an LM that knows the answer: the fused order beats the retriever's with any weight the grid offers
    oracle = np.full((n, c), -5.0)
    oracle[np.arange(n), targets] = 5.0
    row = mod.fusion_row(_scored(oracle, retr, targets), retr_ranks.tolist())
    assert row["choose_users"] == 100 and row["report_users"] == 100
    assert row["vs_retriever"]["lo"] > 0 and row["weight"] < 10
    # an LM that scores every letter the same: any weight > 0 gives the retriever's order, w = 0 only ties
    noise = np.zeros((n, c))
    row = mod.fusion_row(_scored(noise, retr, targets), retr_ranks.tolist())
    assert row["weight"] > 0 and abs(row["vs_retriever"]["mean"]) < 1e-9


def test_stopped_curve_reads_the_unfinished_stage_log(tmp_path):
    import json

    import pytest

    mod = _module()
    log = tmp_path / ".ranker.partial" / "train_log.jsonl"
    log.parent.mkdir()
    rows = [{"event": "eval", "step": 0, "valid": {"NDCG@10": 0.28, "users": 100}},
            {"event": "train", "step": 10, "loss": 2.0},
            {"event": "eval", "step": 150, "valid": {"NDCG@10": 0.19, "users": 100}},
            {"event": "train", "step": 160, "loss": 1.9}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert mod.stopped_curve(tmp_path) == {"evals": [[0, 0.28], [150, 0.19]], "selection_users": 100, "last_step": 160}
    with pytest.raises(SystemExit, match="no unfinished ranker stage"):
        mod.stopped_curve(tmp_path / "missing")


def test_title_lm_levers_need_the_title_lm_and_get_its_path(tmp_path):
    import pytest

    mod = _module()
    levers = {k: v for k, v in mod.LEVERS.items() if k.startswith("from the every-title LM")}
    assert len(levers) == 3
    plain = {mod.SKIP_RECIPE: mod.LEVERS[mod.SKIP_RECIPE]}
    assert mod.with_title_lm(plain, None) == plain  # nothing to fill: no --title-lm needed
    with pytest.raises(SystemExit, match="need --title-lm"):
        mod.with_title_lm(levers, None)
    with pytest.raises(SystemExit, match="no adapter/ there"):
        mod.with_title_lm(levers, tmp_path)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    filled = mod.with_title_lm(levers, tmp_path)
    for over in filled.values():
        assert f"ranker.init_adapter={tmp_path.resolve()}" in over and not any("{" in o for o in over)


def test_teacher_orders_rank_by_retriever_plus_weighted_title_similarity(tmp_path, monkeypatch):
    """The title-similarity teacher's own order: w = 0 is the retriever's order exactly; w > 0 ranks by the
    candidate-file score + w x max cosine to the last history titles (checked by hand)."""
    import pandas as pd

    import ulmrec.indexing.titles as titles
    from helpers import LETTERS, NOT_RETRIEVED, make_run_dir
    from ulmrec.data.dataset import Dataset

    mod = _module()
    lever = "title teacher"
    run_dir = make_run_dir(tmp_path / mod.slug(lever))
    brand = lambda t: np.eye(7)[int(t.rsplit(" ", 1)[-1]) % 7]  # noqa: E731  "... by Brand k" -> one-hot
    monkeypatch.setattr(titles, "TextEncoder", lambda *a, **k: type("E", (), {
        "encode": lambda self, ts: np.stack([brand(t) if "Brand" in t else np.ones(7) for t in ts])})())
    common = [f"tasks.num_candidates={LETTERS}", f"retrieval.num_candidates={LETTERS + 2}", "tasks.max_history=3",
              "ranker.distill_title_history=2"]
    levers = {lever: ["ranker.distill_weight=1", "ranker.distill_title_weight=5"]}
    frame = pd.read_parquet(run_dir / "retrieval" / "candidates_valid.parquet")
    users = [u for u in frame["user_idx"] if u not in NOT_RETRIEVED]
    retr = [int(frame.set_index("user_idx").loc[u, "target_rank"]) for u in users]
    out = mod.teacher_orders(tmp_path, levers, common, [0.0, 5.0], np.asarray(retr))
    assert out["0"]["vs_retriever"]["mean"] == 0.0
    ds = Dataset.load(run_dir)
    want = []
    for u in users:
        row = frame.set_index("user_idx").loc[u]
        cands, score = list(row["candidates"][:LETTERS]), np.asarray(row["scores"][:LETTERS])
        hist = ds.history(u, "valid")[-2:]
        sim = np.array([max(float(brand(ds.titles[c]) @ brand(ds.titles[h])) for h in hist) for c in cands])
        fused = score + 5.0 * sim
        t = cands.index(int(row["target"]))
        want.append(int((fused >= fused[t]).sum()) - 1)
    from ulmrec.metrics import metrics_from_ranks

    assert out["5"]["valid"] == metrics_from_ranks(np.asarray(want), (5, 10))
    assert want != retr  # the title term moved some targets


def test_top1_is_a_counts_rows_whose_best_letter_is_the_first():
    mod = _module()
    assert mod.top1_is_a([[3.0, 1.0, None], [0.0, 2.0, 1.0], [5.0, None, 4.0], [1.0, 1.5, 0.5]]) == 0.5
    assert mod.top1_is_a([]) == 0.0


def test_title_teacher_levers_pair_with_the_retriever_teacher_of_their_weight():
    mod = _module()
    levers = {k: v for k, v in mod.LEVERS.items() if "distill" in k}
    for name, over in levers.items():
        twin = mod.retriever_teacher(name, levers)
        if "title" in name:
            assert twin is not None and "title" not in twin
            assert [o for o in over if o.startswith("ranker.distill_weight=")] == \
                [o for o in levers[twin] if o.startswith("ranker.distill_weight=")]
        else:
            assert twin is None


def test_every_lever_has_its_own_run_directory():
    mod = _module()
    slugs = [mod.slug(k) for k in mod.LEVERS]
    assert len(set(slugs)) == len(slugs)


def test_a_title_teacher_without_a_same_weight_twin_pairs_with_another_weight():
    mod = _module()
    w1 = "retriever order + skip, distillation from the retriever's scores (weight 1, T 1)"
    levers = {k: mod.LEVERS[k] for k in (w1, "title-similarity teacher (distill 3): retriever order + skip, soft "
                                             "targets retriever + 3 x title sim",
                                         "retriever order, only prefixes whose list holds the target")}
    assert mod.retriever_teacher(next(k for k in levers if "title" in k), levers) == w1


def test_prepare_lever_dir_keeps_an_interrupted_lever_and_refuses_a_busy_one(tmp_path):
    import subprocess
    import sys
    import textwrap

    import pytest

    mod = _module()
    source, run = tmp_path / "source", tmp_path / "runs" / "lever"
    for sub in ("data", "retrieval", "index"):
        (source / sub).mkdir(parents=True)
        (source / sub / "f.txt").write_text(sub)
    mod.prepare_lever_dir(run, source)
    assert {p.name for p in run.iterdir() if not p.name.startswith(".")} == {"data", "retrieval", "index"}
    # an interrupted lever: its checkpoint stays, nothing is copied over what is there
    (run / ".ranker.partial" / "checkpoint").mkdir(parents=True)
    (run / "data" / "f.txt").write_text("kept")
    mod.prepare_lever_dir(run, source)
    assert (run / ".ranker.partial" / "checkpoint").is_dir() and (run / "data" / "f.txt").read_text() == "kept"
    # another process training the lever holds its run directory: refused, nothing touched
    holder = textwrap.dedent("""
        import sys
        from ulmrec.runlock import run_lock
        with run_lock(sys.argv[1], command="holder-test"):
            print("held", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit, match="lever"):
            mod.prepare_lever_dir(run, source)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert (run / ".ranker.partial" / "checkpoint").is_dir()
