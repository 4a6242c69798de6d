import gzip
import json

import pandas as pd
import pytest

from ulmrec.data.config import DataConfig
from ulmrec.data.dataset import Dataset
from ulmrec.data.ingest import ingest
from ulmrec.data.readers import (
    ErrorPolicy,
    export_recbole,
    read_amazon_meta,
    read_amazon_reviews,
    read_recbole,
)
from ulmrec.errors import DataError


def review(u, i, t, r=5.0, text="nice"):
    return {"reviewerID": u, "asin": i, "overall": r, "unixReviewTime": t, "reviewText": text}


def write_lines(path, lines, gz=True):
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def small_amazon(tmp_path, gz=True, meta_literal=True):
    lines = [json.dumps(review(f"u{u}", f"i{i}", 100 * i + u)) for u in range(3) for i in range(3)]
    rev = write_lines(tmp_path / ("reviews.json.gz" if gz else "reviews.json"), lines, gz)
    meta_lines = [repr({"asin": f"i{i}", "title": f"Item {i}", "categories": [["Beauty"]]}) if meta_literal
                  else json.dumps({"asin": f"i{i}", "title": f"Item {i}"}) for i in range(3)]
    meta = write_lines(tmp_path / "meta.json.gz", meta_lines, gz)
    return rev, meta


@pytest.mark.parametrize("gz", [True, False])
def test_amazon_2014_reviews_and_literal_meta(tmp_path, gz):
    rev, meta = small_amazon(tmp_path, gz=gz)
    ds, report = ingest(DataConfig(source="amazon2014", path=str(rev), meta_path=str(meta), k_core=3))
    assert (ds.num_users, ds.num_items, len(ds.interactions)) == (3, 3, 9)
    assert ds.has_ratings and ds.has_timestamps and ds.has_reviews
    assert ds.titles[1:].tolist() == ["Item 0", "Item 1", "Item 2"]


def test_meta_literal_is_not_eval(tmp_path):
    evil = write_lines(tmp_path / "meta.json", ["{'asin': 'i0', 'title': __import__('os').getcwd()}"], gz=False)
    with pytest.raises(DataError, match=r"meta.json:1: malformed"):
        read_amazon_meta(evil, ErrorPolicy())


def test_malformed_line_names_file_line_field(tmp_path):
    good = json.dumps(review("u", "i", 1))
    p = write_lines(tmp_path / "r.json", [good, "{not json", good], gz=False)
    with pytest.raises(DataError, match=r"r.json:2: malformed"):
        read_amazon_reviews(p, ErrorPolicy())
    p = write_lines(tmp_path / "r2.json", [good, json.dumps({"asin": "i", "unixReviewTime": 3})], gz=False)
    with pytest.raises(DataError, match=r"r2.json:2: field 'reviewerID': missing"):
        read_amazon_reviews(p, ErrorPolicy())
    p = write_lines(tmp_path / "r3.json", [json.dumps(review("", "i", 1))], gz=False)
    with pytest.raises(DataError, match=r"r3.json:1: field 'reviewerID': empty"):
        read_amazon_reviews(p, ErrorPolicy())
    p = write_lines(tmp_path / "r4.json", [json.dumps(review("u", "i", "yesterday"))], gz=False)
    with pytest.raises(DataError, match=r"r4.json:1: field 'unixReviewTime': not a number"):
        read_amazon_reviews(p, ErrorPolicy())


def test_skip_mode_counts(tmp_path):
    good = json.dumps(review("u", "i", 1))
    p = write_lines(tmp_path / "r.json", [good, "{bad", json.dumps({"asin": "i"}), good], gz=False)
    policy = ErrorPolicy("skip")
    df = read_amazon_reviews(p, policy)
    assert len(df) == 2
    assert policy.report() == {"malformed": 1, "missing_reviewerID": 1}


def test_non_utf8_bytes(tmp_path):
    p = tmp_path / "r.json"
    p.write_bytes(json.dumps(review("u", "i", 1)).encode() + b"\n" + b'{"reviewerID": "\xff\xfe"}\n')
    with pytest.raises(DataError, match=r"r.json:2: not valid UTF-8"):
        read_amazon_reviews(p, ErrorPolicy())


def test_truncated_gzip(tmp_path):
    rev, _ = small_amazon(tmp_path)
    data = rev.read_bytes()
    (tmp_path / "cut.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut.json.gz:\d+: gzip stream truncated"):
        read_amazon_reviews(tmp_path / "cut.json.gz", ErrorPolicy())


def test_missing_titles_is_an_error_unless_allowed(tmp_path):
    rev, _ = small_amazon(tmp_path)
    with pytest.raises(DataError, match="no item titles"):
        ingest(DataConfig(source="amazon2018", path=str(rev), k_core=3))
    ds, _ = ingest(DataConfig(source="amazon2018", path=str(rev), k_core=3, require_titles=False))
    assert ds.num_users == 3


def test_ratings_csv(tmp_path):
    lines = [f"u{u},i{i},{1 + (u + i) % 5}.0,{100 * i + u}" for u in range(3) for i in range(3)]
    p = write_lines(tmp_path / "ratings.csv", lines, gz=False)
    _, meta = small_amazon(tmp_path)
    ds, _ = ingest(DataConfig(source="ratings2014", path=str(p), meta_path=str(meta), k_core=3))
    assert ds.has_ratings and not ds.has_reviews
    bad = write_lines(tmp_path / "bad.csv", ["u,i,5.0"], gz=False)
    with pytest.raises(DataError, match=r"bad.csv:1: expected 4"):
        ingest(DataConfig(source="ratings2014", path=str(bad), meta_path=str(meta)))


def test_users_below_k_are_dropped_and_counted(tmp_path):
    lines = [json.dumps(review(f"u{u}", f"i{i}", i)) for u in range(3) for i in range(3)]
    lines.append(json.dumps(review("lonely", "i0", 9)))
    rev = write_lines(tmp_path / "r.json.gz", lines)
    _, meta = small_amazon(tmp_path)
    ds, report = ingest(DataConfig(source="amazon2014", path=str(rev), meta_path=str(meta), k_core=3))
    assert "lonely" not in set(ds.users["user_id"])
    assert report["dropped_users"] == 1


def test_recbole_round_trip(tmp_path):
    rev, meta = small_amazon(tmp_path)
    ds, _ = ingest(DataConfig(source="amazon2014", path=str(rev), meta_path=str(meta), k_core=3))
    out = tmp_path / "rb"
    export_recbole(ds, out, "toy")
    head = (out / "toy.inter").read_text().splitlines()[0]
    assert head == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    tables = read_recbole(out, ErrorPolicy())
    ds2, _ = ingest(DataConfig(source="recbole", path=str(out), k_core=3))
    assert [s.tolist() for s in ds2.sequences] == [s.tolist() for s in ds.sequences]
    assert ds2.titles.tolist() == ds.titles.tolist()
    assert len(tables["raw"]) == 9


def test_dataset_save_load(tmp_path):
    rev, meta = small_amazon(tmp_path)
    ds, _ = ingest(DataConfig(source="amazon2014", path=str(rev), meta_path=str(meta), k_core=3))
    ds.save(tmp_path / "d")
    back = Dataset.load(tmp_path / "d")
    pd.testing.assert_frame_equal(back.interactions, ds.interactions)
    assert back.stats() == ds.stats()
