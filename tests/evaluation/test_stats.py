import time

import numpy as np
import pytest

from ulmrec.evaluation.stats import (
    choose_fusion_weight,
    fuse,
    letter_histogram,
    letter_histogram_markdown,
    paired_bootstrap,
    paired_markdown,
    paired_table,
    parse_metric,
    per_user_metric,
    permute_rows,
    plot_letter_histograms,
    position_check_permutations,
    retriever_rank_scores,
    shown_targets,
    unshuffle_ranks,
    unshuffle_scores,
)
from ulmrec.metrics import metrics_from_ranks, per_user_metrics, target_rank


# ----------------------------------------------------------------------------------------- per-user values
def test_per_user_metric_known_values_and_mean_matches_metrics_from_ranks():
    ranks = np.array([0, 1, 4, 9, 10, -1])
    assert per_user_metric(ranks, "MRR@10").tolist() == pytest.approx([1, 1 / 2, 1 / 5, 1 / 10, 0, 0])
    assert per_user_metric(ranks, "NDCG@5").tolist() == pytest.approx([1, 1 / np.log2(3), 1 / np.log2(6), 0, 0, 0])
    assert per_user_metric(ranks, "Recall@10").tolist() == [1, 1, 1, 1, 0, 0]
    rng = np.random.default_rng(0)
    r = rng.integers(-1, 20, 500)
    means = metrics_from_ranks(r, (5, 10))
    for name, values in per_user_metrics(r, (5, 10)).items():
        assert values.mean() == pytest.approx(means[name], abs=1e-12)
        assert per_user_metric(r, name).tolist() == values.tolist()


@pytest.mark.parametrize("bad", ["NDCG", "ndcg@10", "NDCG@0", "Precision@5", "NDCG@x"])
def test_unknown_metric_names(bad):
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric(bad)


def test_bad_ranks():
    with pytest.raises(ValueError, match=">= -1"):
        per_user_metric([0, -2])
    with pytest.raises(ValueError, match="one-dimensional"):
        per_user_metric(np.zeros((2, 2), dtype=int))


# ----------------------------------------------------------------------------------------- paired bootstrap
def hits(rng, n, p):
    """Ranks 0 (hit) with probability p, else -1: Recall@10 per user is a Bernoulli(p)."""
    return np.where(rng.random(n) < p, 0, -1)


def test_bootstrap_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered, reps = 0, 100
    for rep in range(reps):
        a, b = hits(rng, 400, 0.5), hits(rng, 400, 0.4)  # true Recall@10 difference 0.1
        res = paired_bootstrap(a, b, metrics=["Recall@10"], n_boot=400, seed=rep)["Recall@10"]
        covered += res["lo"] <= 0.1 <= res["hi"]
    assert 0.88 <= covered / reps <= 0.995


def test_bootstrap_clear_effect_excludes_zero():
    rng = np.random.default_rng(2)
    b = rng.integers(-1, 20, 3000)
    a = np.where(rng.random(3000) < 0.3, 0, b)  # A puts the target first for 30% of the users, else as B
    res = paired_bootstrap(a, b, n_boot=1000, seed=0)
    for m in ("NDCG@10", "Recall@10", "MRR@10"):
        s = res[m]
        assert s["mean"] == pytest.approx(per_user_metric(a, m).mean() - per_user_metric(b, m).mean())
        assert s["mean"] == pytest.approx(s["a"] - s["b"])
        assert 0 < s["lo"] <= s["mean"] <= s["hi"]
        assert s["p"] == pytest.approx(1 / 1001)  # no sign flip comes near the observed mean
        assert s["n"] == 3000


def test_bootstrap_identical_inputs_give_exactly_zero():
    r = np.random.default_rng(3).integers(-1, 20, 500)
    res = paired_bootstrap(r, r.copy(), n_boot=300, seed=5)
    for s in res.values():
        assert s["mean"] == 0.0 and s["lo"] == 0.0 and s["hi"] == 0.0 and s["p"] == 1.0


def test_bootstrap_no_effect_interval_contains_zero_and_p_is_large():
    rng = np.random.default_rng(4)
    a, b = rng.integers(-1, 20, 2000), rng.integers(-1, 20, 2000)  # same distribution
    s = paired_bootstrap(a, b, n_boot=1000, seed=0)["NDCG@10"]
    assert s["lo"] < 0 < s["hi"] and s["p"] > 0.05


def test_bootstrap_is_deterministic_given_the_seed_and_checks_its_inputs():
    rng = np.random.default_rng(5)
    a, b = rng.integers(-1, 20, 300), rng.integers(-1, 20, 300)
    assert paired_bootstrap(a, b, seed=7, n_boot=200) == paired_bootstrap(a, b, seed=7, n_boot=200)
    assert paired_bootstrap(a, b, seed=7, n_boot=200) != paired_bootstrap(a, b, seed=8, n_boot=200)
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(a, b, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        paired_bootstrap(a, b, alpha=1.5)


def test_bootstrap_3000_users_2000_resamples_is_fast():
    rng = np.random.default_rng(6)
    a, b = rng.integers(-1, 20, 3000), rng.integers(-1, 20, 3000)
    t0 = time.perf_counter()
    paired_bootstrap(a, b, n_boot=2000)
    assert time.perf_counter() - t0 < 5  # < 1 s on an idle core; loose for a shared machine


def test_paired_table_and_markdown():
    rng = np.random.default_rng(7)
    retr = rng.integers(-1, 20, 400)
    ranks = {"Retriever order": retr, "ULMRec": np.where(rng.random(400) < 0.5, 0, retr),
             "LlamaRec-style": retr.copy()}
    table = paired_table(ranks, n_boot=200)
    assert list(table) == ["ULMRec - Retriever order", "LlamaRec-style - Retriever order", "ULMRec - LlamaRec-style"]
    assert table["LlamaRec-style - Retriever order"]["NDCG@10"]["mean"] == 0.0
    assert table["ULMRec - LlamaRec-style"] == paired_bootstrap(ranks["ULMRec"], retr, n_boot=200)
    md = paired_markdown(table)
    lines = md.strip().split("\n")
    assert lines[0] == ("| comparison | NDCG@10 diff [95% CI] | Recall@10 diff [95% CI] | MRR@10 diff [95% CI] |")
    s = table["ULMRec - Retriever order"]["Recall@10"]
    assert f"**{s['mean']:+.4f}** [{s['lo']:+.4f}, {s['hi']:+.4f}]" in lines[2]
    assert "| LlamaRec-style - Retriever order | +0.0000 [+0.0000, +0.0000] p=1 |" in md
    # an extra pair whose model was not evaluated is left out; a missing reference is an error
    assert list(paired_table({"Retriever order": retr, "ULMRec": retr}, n_boot=10)) == ["ULMRec - Retriever order"]
    with pytest.raises(ValueError, match="reference model"):
        paired_table({"ULMRec": retr}, n_boot=10)


# ----------------------------------------------------------------------------------------- letter histograms
def test_letter_histogram_counts_padding_and_ties():
    inf = -np.inf
    scores = np.array([[0.1, 0.9, 0.0, inf],
                       [2.0, 1.0, 0.5, 0.0],
                       [inf, inf, inf, inf],  # nothing scored: not counted
                       [-5.0, -6.0, -1.0, inf],
                       [1.0, 1.0, 0.0, 0.0],  # tie: the earliest letter
                       [-1.0, -2.0, -3.0, -0.5]])
    assert letter_histogram(scores).tolist() == [2, 1, 1, 1]
    with pytest.raises(ValueError, match="NaN"):
        letter_histogram(np.array([[np.nan, 1.0]]))


def test_letter_histogram_markdown_and_png(tmp_path):
    hists = {"ULMRec": np.array([3, 1, 0, 0]), "Retriever order": np.array([4, 0, 0, 0])}
    md = letter_histogram_markdown(hists)
    assert md.split("\n")[0] == "| model | A | B | C | D | users |"
    assert "| ULMRec | 75.0 | 25.0 | 0.0 | 0.0 | 4 |" in md
    out = plot_letter_histograms(hists, tmp_path / "plots" / "letters.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["letters.png"]  # no temporary file left


# ----------------------------------------------------------------------------------------- fusion
def random_scores(rng, n, c, pad=True):
    s = rng.normal(size=(n, c))
    if pad:
        s[:, -3:][rng.random((n, 3)) < 0.5] = -np.inf
    return s


def test_fuse_weight_zero_is_the_lm_order_and_a_huge_weight_the_retriever_order():
    rng = np.random.default_rng(8)
    lm, retr = random_scores(rng, 50, 10), rng.normal(size=(50, 10))
    valid = np.isfinite(lm)
    f0 = fuse(lm, retr, 0)
    assert np.array_equal(np.isfinite(f0), valid)
    assert np.allclose(np.exp(f0).sum(1), 1.0)  # the log-softmax over the valid candidates
    assert np.array_equal(np.argsort(-f0, axis=1, kind="stable"), np.argsort(-lm, axis=1, kind="stable"))
    big = fuse(lm, retr, 1e9)
    order = np.argsort(-np.where(valid, retr, -np.inf), axis=1, kind="stable")
    assert np.array_equal(np.argsort(-big, axis=1, kind="stable"), order)
    # position scores broadcast: a huge weight gives back the retriever's own order among the valid candidates
    pos = fuse(lm, retriever_rank_scores(10), 1e9)
    expected = np.argsort(-np.where(valid, retriever_rank_scores(10), -np.inf), axis=1, kind="stable")
    assert np.array_equal(np.argsort(-pos, axis=1, kind="stable"), expected)


def test_fuse_rejects_mismatched_padding_and_shapes():
    lm = np.array([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="padding"):
        fuse(lm, np.array([[0.0, -np.inf, 1.0]]), 1.0)
    with pytest.raises(ValueError, match="do not match"):
        fuse(lm, np.zeros(4), 1.0)
    assert np.isneginf(fuse(np.full((1, 3), -np.inf), np.zeros(3), 1.0)).all()


def test_retriever_rank_scores():
    s = retriever_rank_scores(4)
    assert s.tolist() == pytest.approx([0.0, -np.log(2), -np.log(3), -np.log(4)])
    assert np.all(np.diff(s) < 0)


def test_choose_fusion_weight():
    rng = np.random.default_rng(9)
    n, c = 300, 20
    targets = rng.integers(0, c, n)
    informative = rng.normal(size=(n, c))
    informative[np.arange(n), targets] += 3.0
    noise = rng.normal(size=(n, c))
    # the retriever carries nothing (constant): every weight ties, the smallest wins
    w, values = choose_fusion_weight(informative, np.zeros(c), targets)
    assert w == 0.0 and len(set(values.values())) == 1 and sorted(values) == [0, 0.1, 0.2, 0.5, 1, 2, 5, 10]
    assert choose_fusion_weight(informative, np.zeros(c), targets, grid=(1, 0.5))[0] == 0.5
    # noise only hurts a good LM
    w, values = choose_fusion_weight(informative, noise, targets)
    assert w == 0.0 and values[0.0] > values[10.0]
    # an uninformative LM and an informative retriever: the largest weight
    w, values = choose_fusion_weight(noise, informative, targets)
    assert w == 10.0 and values[10.0] > values[0.0]
    # misses count 0 whatever the weight
    miss = np.full(n, -1)
    assert set(choose_fusion_weight(informative, noise, miss)[1].values()) == {0.0}
    with pytest.raises(ValueError, match="grid"):
        choose_fusion_weight(informative, noise, targets, grid=(-1, 0))
    with pytest.raises(ValueError, match="targets"):
        choose_fusion_weight(informative, noise, targets[:-1])


# ----------------------------------------------------------------------------------------- position checks
def test_permutations_are_seeded_permutations():
    p = position_check_permutations(100, 20, seed=3)
    assert p.shape == (100, 20) and p.dtype == np.int64
    assert np.array_equal(np.sort(p, axis=1), np.tile(np.arange(20), (100, 1)))
    assert np.array_equal(p, position_check_permutations(100, 20, seed=3))
    assert not np.array_equal(p, position_check_permutations(100, 20, seed=4))
    assert (p != np.arange(20)).any(1).all()


def test_identity_permutation_gives_the_same_ranks():
    rng = np.random.default_rng(10)
    scores, targets = random_scores(rng, 60, 20), rng.integers(-1, 17, 60)
    scores[:, :3] = np.round(scores[:, :3])  # some ties
    identity = np.tile(np.arange(20), (60, 1))
    expected = target_rank(scores, targets, np.isfinite(scores)).numpy()
    assert np.array_equal(unshuffle_ranks(scores, identity, targets), expected)


def test_permutation_round_trip():
    rng = np.random.default_rng(11)
    n, c = 60, 20
    scores, targets = random_scores(rng, n, c), rng.integers(-1, 17, n)
    scores[:, :5] = np.round(scores[:, :5])
    cands = rng.integers(1, 1000, (n, c))
    perm = position_check_permutations(n, c, seed=0)
    shown = permute_rows(scores, perm)
    assert np.array_equal(unshuffle_scores(shown, perm), scores)
    expected = target_rank(scores, targets, np.isfinite(scores)).numpy()
    assert np.array_equal(unshuffle_ranks(shown, perm, targets), expected)
    # the target item sits where shown_targets says, and lists of lists permute the same way
    shown_cands = permute_rows(cands, perm)
    pos = shown_targets(targets, perm)
    hit = targets >= 0
    assert np.array_equal(shown_cands[hit, pos[hit]], cands[hit, targets[hit]]) and (pos[~hit] == -1).all()
    assert permute_rows(cands.tolist(), perm) == shown_cands.tolist()
    with pytest.raises(ValueError, match="0..C-1"):
        permute_rows(scores, np.zeros((n, c), dtype=int))


def test_evaluate_fingerprint_covers_the_validation_candidates_and_the_preference_provenance(tmp_path):
    """The fusion weight is chosen on candidates_valid and results.json names the sentences used: a change to
    either must re-run the stage (both are among its fingerprinted inputs)."""
    from ulmrec import artifacts as art
    from ulmrec.config import load_config
    from ulmrec.pipeline import get_stage

    stage = get_stage("evaluate")
    cfg = load_config(["sample"], [f"run_dir={tmp_path}"])
    for path in (art.candidates_path(tmp_path, "valid"), art.PREFERENCE_REPORT.path(tmp_path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    inputs = stage.inputs(cfg, tmp_path)
    assert art.candidates_path(tmp_path, "valid") in inputs
    assert art.PREFERENCE_REPORT.path(tmp_path) in inputs
    title = load_config(["sample"], [f"run_dir={tmp_path}", "evaluate.fusion=false", "evaluate.title_similarity=true"])
    assert art.candidates_path(tmp_path, "valid") in stage.inputs(title, tmp_path)  # its weight is chosen there too
    lm = load_config(["sample"], [f"run_dir={tmp_path}", "evaluate.fusion=false", "evaluate.title_similarity=false",
                                  "evaluate.title_likelihood=true"])
    assert art.candidates_path(tmp_path, "valid") in stage.inputs(lm, tmp_path)  # so is the likelihood's
    off = load_config(["sample"], [f"run_dir={tmp_path}", "evaluate.fusion=false", "evaluate.title_similarity=false",
                                   "evaluate.title_likelihood=false"])
    assert art.candidates_path(tmp_path, "valid") not in stage.inputs(off, tmp_path)


def test_fuse_terms_adds_each_weighted_term_to_the_lm_log_softmax():
    from ulmrec.evaluation.stats import choose_fusion_weights, fuse, fuse_terms, log_softmax_rows

    lm = np.array([[1.0, 2.0, -np.inf], [0.0, 1.0, 3.0]])
    retr = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 3.0]])
    sim = np.array([[0.5, 0.1, 0.0], [0.2, 0.9, 0.1]])
    got = fuse_terms(lm, [retr, sim], [2.0, 3.0])
    want = log_softmax_rows(lm) + 2.0 * retr + 3.0 * sim
    assert np.isneginf(got[0, 2]) and np.allclose(got[np.isfinite(lm)], want[np.isfinite(lm)])
    assert np.array_equal(fuse_terms(lm, [retr], [2.0]), fuse(lm, retr, 2.0))
    with pytest.raises(ValueError, match="term 1"):
        fuse_terms(lm, [retr, sim[:, :2]], [1.0, 1.0])
    with pytest.raises(ValueError, match="2 score terms for 1"):
        fuse_terms(lm, [retr, sim], [1.0])
    # the LM alone ranks both targets (columns 0 and 1) second; the similarity puts both first
    (w_r, w_s), by = choose_fusion_weights(lm, [retr, sim], [0, 1], [[0, 1], [0, 10]])
    assert len(by) == 4 and by[f"{w_r:g},{w_s:g}"] == max(by.values()) == 1.0
    assert by["0,0"] == pytest.approx(1 / np.log2(3)) and (w_r, w_s) == (0.0, 10.0)
    ties, _ = choose_fusion_weights(np.zeros((1, 2)), [np.zeros((1, 2)), np.zeros((1, 2))], [0], [[0, 1], [0, 1]])
    assert ties == (0.0, 0.0)  # ties keep the smallest weights
