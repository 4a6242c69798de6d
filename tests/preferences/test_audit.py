"""``ulmrec audit``: it finds a planted leak, reports none on a leak-free fixture, and says what it skipped."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ulmrec.cli import main as cli_main
from ulmrec.data.dataset import Dataset
from ulmrec.preferences.audit import (
    audit_run,
    bootstrap_ci,
    content_words,
    prefix_sharing,
    sentence_matches,
)

_LETTERS = np.array(list("bcdfghjklmnpqrstvwxz"))


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(_LETTERS, 7))


def distinct_dataset(n_users: int = 60, length: int = 6, seed: int = 0, shared_test: int | None = None) -> Dataset:
    """Every title is three made-up words no other title has; ``shared_test=g`` gives each block of ``g``
    consecutive users one common test item (the rest stays distinct)."""
    rng = np.random.default_rng(seed)
    rows, titles = [], []

    def new_item() -> int:
        titles.append(" ".join(_word(rng).capitalize() for _ in range(3)))
        return len(titles)

    group_item: dict[int, int] = {}
    for u in range(n_users):
        for pos in range(length):
            split = "train" if pos < length - 2 else ("valid" if pos == length - 2 else "test")
            if split == "test" and shared_test:
                g = u // shared_test
                item = group_item.setdefault(g, new_item())
            else:
                item = new_item()
            rows.append({"user_idx": u, "item_idx": item, "position": pos, "split": split})
    inter = pd.DataFrame(rows).astype({"user_idx": np.int32, "item_idx": np.int32, "position": np.int32})
    inter["split"] = pd.Categorical(inter["split"], categories=["train", "valid", "test"])
    users = pd.DataFrame({"user_idx": np.arange(n_users, dtype=np.int32), "user_id": [f"U{u}" for u in range(n_users)]})
    items = pd.DataFrame({"item_idx": np.arange(1, len(titles) + 1, dtype=np.int32),
                          "item_id": [f"I{i}" for i in range(1, len(titles) + 1)],
                          "title": pd.array(titles, dtype="string")})
    return Dataset(inter, users, items)


def _rates(res: dict, matcher: str) -> dict[str, float]:
    return {t: v["rate"] for t, v in res["matchers"][matcher]["rates"].items()}


def test_content_words_fold_plurals_and_drop_filler():
    assert content_words("The Shampoos &amp; 2 oz Conditioners for curly HAIR") == ["shampoo", "conditioner",
                                                                                 "curly", "hair"]
    assert content_words("glass") == ["glass"]


def test_planted_leak_is_found():
    ds = distinct_dataset()
    sentences = {u: f"The user prefers {ds.titles[s[-1]]} items." for u, s in enumerate(ds.sequences)}
    res = sentence_matches(ds, sentences, seed=1, n_boot=200)
    for m in ("bigram", "novel_word", "brand"):
        r = _rates(res, m)
        assert r["test"] == 1.0
        assert r["valid"] == 0.0 and r["train"] == 0.0 and r["untouched"] == 0.0
        lo, hi = res["matchers"][m]["differences"]["test-untouched"]["ci95"]
        assert lo > 0.9


def test_leak_free_fixture_reports_no_leak():
    ds = distinct_dataset()
    # a sentence that names every training title of the user and nothing else
    sentences = {u: "The user prefers " + "; ".join(ds.titles[i] for i in s[:-2]) for u, s in enumerate(ds.sequences)}
    res = sentence_matches(ds, sentences, seed=1, n_boot=200)
    for m in ("bigram", "novel_word", "brand"):
        r = _rates(res, m)
        assert r["test"] == 0.0 and r["valid"] == 0.0 and r["untouched"] == 0.0
        assert res["matchers"][m]["differences"]["test-untouched"]["ci95"] == [0.0, 0.0]
    # the training null does match (so the zeros above are not a matcher that never fires)...
    assert _rates(res, "bigram")["train"] == 1.0 and _rates(res, "brand")["train"] == 1.0
    # a training title's made-up words are in no other training title, and the sentence names them
    assert _rates(res, "novel_word")["train"] == 1.0


def test_template_words_do_not_count_as_quoted():
    ds = distinct_dataset(n_users=3)
    ds.items.loc[ds.items["item_idx"] == int(ds.sequences[0][-1]), "title"] = "Especially Recently Yours"
    res = sentence_matches(ds, {0: "The user prefers puzzles, especially recently."}, n_boot=20)
    assert _rates(res, "novel_word")["test"] == 0.0


def test_brand_and_category_columns_are_used_when_present():
    ds = distinct_dataset(n_users=20)
    ds.items["brand"] = "Acme"
    ds.items["categories"] = [["Beauty", "Hair Care", "Shampoos"]] * len(ds.items)
    res = sentence_matches(ds, dict.fromkeys(range(20), "The user prefers hair care shampoos by acme."), n_boot=20)
    assert res["brand"].startswith("brand column") and "categories" in res["category"]
    assert _rates(res, "brand")["test"] == 1.0
    assert _rates(res, "category")["test"] == 1.0  # "Shampoos", the finest category
    res = sentence_matches(ds, dict.fromkeys(range(20), "The user prefers hair care."), n_boot=20)
    assert _rates(res, "category")["test"] == 0.0 and _rates(res, "brand")["test"] == 0.0


def test_prefix_sharing_finds_users_grouped_by_their_test_item():
    ds = distinct_dataset(n_users=40, shared_test=4)  # users 4k..4k+3 share a test item
    grouped = np.empty(40, dtype=object)
    grouped[:] = [(f"<a_{u // 4}>", f"<b_{u}>", "<c_0>", "<d_0>") for u in range(40)]
    scattered = np.empty(40, dtype=object)
    scattered[:] = [(f"<a_{u % 10}>", f"<b_{u}>", "<c_0>", "<d_0>") for u in range(40)]  # a group: 10 apart
    r = prefix_sharing(ds, grouped, n_boot=200)["levels"]["1"]["targets"]
    assert r["test"]["rate"] == 1.0 and r["test"]["lift"] > 5 and r["test"]["lift_ci95"][0] > 5
    assert r["last_train"]["rate"] == 0.0 and r["first_train"]["rate"] == 0.0
    r = prefix_sharing(ds, scattered, n_boot=200)["levels"]["1"]["targets"]
    assert r["test"]["rate"] == 0.0


def test_bootstrap_ci_covers_the_mean():
    rng = np.random.default_rng(0)
    x = (rng.random(500) < 0.3).astype(float)
    lo, hi = bootstrap_ci(x, rng, 300)
    assert lo < x.mean() < hi and hi - lo < 0.15


def test_audit_run_writes_tables_and_says_what_it_skipped(tmp_path):
    ds = distinct_dataset(n_users=30)
    ds.preferences = pd.DataFrame({"user_idx": np.arange(30, dtype=np.int32),
                                   "preference": [f"The user prefers {ds.titles[s[-1]]}" for s in ds.sequences],
                                   "provenance": "imported from planted.jsonl"})
    ds.save(tmp_path / "run" / "data")
    res = audit_run(tmp_path / "run", n_boot=50)
    assert res["prefix_sharing"] is None and "ulmrec index" in res["prefix_sharing_skipped"]
    saved = json.loads((tmp_path / "run" / "audit" / "leakage.json").read_text())
    assert saved["matches"]["matchers"]["bigram"]["rates"]["test"]["rate"] == 1.0
    md = (tmp_path / "run" / "audit" / "leakage.md").read_text()
    assert "planted.jsonl" in md and "Index prefixes: skipped" in md
    assert not list((tmp_path / "run" / "audit").glob(".*.tmp"))
    assert res["ranker_gains"] is None and "Ranker gains" not in md  # not evaluated


def test_ranker_gains_split_an_evaluated_runs_rows_by_sentence_match(tmp_path):
    """A row that is better only for users whose sentence names their test item shows its gain in that group
    alone; a row better for everyone shows it in every group; the audit table carries the section."""
    ds = distinct_dataset(n_users=40)
    named = [f"The user prefers {ds.titles[s[-1]]}" for s in ds.sequences[:20]]
    ds.preferences = pd.DataFrame({"user_idx": np.arange(40, dtype=np.int32),
                                   "preference": named + ["The user prefers quiet evenings"] * 20})
    ds.save(tmp_path / "run" / "data")
    (tmp_path / "run" / "evaluate").mkdir()
    pd.DataFrame({"user_idx": np.arange(40), "target": 0, "Retriever order": 5,
                  "Leaky": [0] * 20 + [5] * 20, "Better": 4}).to_parquet(tmp_path / "run" / "evaluate" / "ranks.parquet")
    res = audit_run(tmp_path / "run", n_boot=50)
    g = res["ranker_gains"]["groups"]
    assert g["sentence matches the test item"]["users"] == 20 and g["no match"]["users"] == 20
    assert g["sentence has a test-title word no training title has"]["users"] == 20
    up = 1.0 - 1.0 / np.log2(7)
    leaky, better = (g["sentence matches the test item"]["rows"][k] for k in ("Leaky", "Better"))
    assert leaky["diff"] == pytest.approx(up) and leaky["ci95"][0] == pytest.approx(up)
    assert g["no match"]["rows"]["Leaky"]["diff"] == 0.0
    assert better["diff"] == pytest.approx(1 / np.log2(6) - 1 / np.log2(7)) == g["no match"]["rows"]["Better"]["diff"]
    md = (tmp_path / "run" / "audit" / "leakage.md").read_text()
    assert "Ranker gains by whether the sentence names the test item" in md and "| Leaky | +" in md


def test_audit_reads_the_reference_index_and_the_runs_index(tmp_path):
    ds = distinct_dataset(n_users=20, shared_test=2)
    ds.preferences = pd.DataFrame({"user_idx": np.arange(20, dtype=np.int32), "preference": "The user prefers x"})
    ds.reference_index = pd.DataFrame({"user_idx": np.arange(20, dtype=np.int32),
                                       "index": [[f"<a_{u // 2}>", f"<b_{u}>", "<c_1>", "<d_1>"] for u in range(20)]})
    ds.save(tmp_path / "run" / "data")
    (tmp_path / "run" / "index").mkdir()
    pd.DataFrame({"user_idx": np.arange(20), "codes": [[u % 3, u, 0, 0] for u in range(20)]}).to_parquet(
        tmp_path / "run" / "index" / "user_index.parquet")
    res = audit_run(tmp_path / "run", n_boot=50)
    names = sorted(res["prefix_sharing"])
    assert len(names) == 2 and any("reference" in n for n in names) and any("user_index" in n for n in names)
    ref = next(v for k, v in res["prefix_sharing"].items() if "reference" in k)
    assert ref["levels"]["1"]["targets"]["test"]["rate"] == 1.0


def test_cli_audit_one_line_error_without_data(tmp_path, capsys):
    assert cli_main(["audit", f"run_dir={tmp_path / 'nothing'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ulmrec: error:") and "ulmrec prepare" in err and "\n" not in err


def test_cli_audit_writes_the_report(tmp_path, capsys):
    ds = distinct_dataset(n_users=10)
    ds.preferences = pd.DataFrame({"user_idx": np.arange(10, dtype=np.int32), "preference": "The user prefers x"})
    ds.save(tmp_path / "run" / "data")
    assert cli_main(["audit", f"run_dir={tmp_path / 'run'}", "--bootstrap", "20"]) == 0
    assert (tmp_path / "run" / "audit" / "leakage.md").exists()
    assert "leakage audit" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--null-samples", "0"], ["--bootstrap", "3"]])
def test_cli_audit_rejects_bad_options(tmp_path, capsys, bad):
    assert cli_main(["audit", f"run_dir={tmp_path}", *bad]) == 2
    assert "ulmrec: error:" in capsys.readouterr().err


def test_cli_audit_one_line_error_without_sentences(tmp_path, capsys):
    distinct_dataset(n_users=5).save(tmp_path / "run" / "data")  # no preferences stage, none shipped
    assert cli_main(["audit", f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "preferences.parquet" in err and "ulmrec preferences" in err and "\n" not in err
    assert not (tmp_path / "run" / "audit").exists()


def test_held_out_matches_flags_the_users_whose_sentence_names_their_held_out_item():
    """A sentence quoting the user's test title matches it (bigram, novel word, brand = first word); one quoting a
    training title or nothing does not; users without a sentence match nothing; 'valid' looks at the item before."""
    from ulmrec.preferences.audit import held_out_matches

    ds = distinct_dataset(n_users=4)
    title = {int(i): str(t) for i, t in zip(ds.items["item_idx"], ds.items["title"], strict=True)}
    seq = [list(map(int, ds.sequences[u])) for u in range(4)]
    sentences = {0: f"The user likes {title[seq[0][-1]]}.", 1: f"The user likes {title[seq[1][0]]}.",
                 3: f"The user likes {title[seq[3][-2]]}."}
    got = held_out_matches(ds, sentences, [0, 1, 2, 3], "test")
    assert got["any"].tolist() == [True, False, False, False]
    assert got["bigram"][0] and got["novel_word"][0] and got["brand"][0]
    valid = held_out_matches(ds, sentences, [0, 1, 2, 3], "valid")
    assert valid["any"].tolist() == [False, False, False, True]
