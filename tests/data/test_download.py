import gzip
import http.server
import threading
from functools import partial

import pytest

from ulmrec.cli import main
from ulmrec.data.download import files_for


def test_urls():
    names = [n for n, _ in files_for("beauty", 2014)]
    assert names == ["reviews_Beauty_5.json.gz", "meta_Beauty.json.gz", "ratings_Beauty.csv"]
    assert [n for n, _ in files_for("games", 2018)] == ["Video_Games_5.json.gz", "meta_Video_Games.json.gz"]


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "reviews_Beauty_5.json.gz").write_bytes(gzip.compress(b'{"reviewerID": "u"}\n'))
    (root / "meta_Beauty.json.gz").write_bytes(gzip.compress(b"{'asin': 'i', 'title': 't'}\n"))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_fetch_from_local_mirror(tmp_path, mirror, capsys):
    dest = tmp_path / "dl"
    assert main(["download", "beauty", "--fetch", "--dest", str(dest), "--base-url", mirror]) == 0
    assert (dest / "reviews_Beauty_5.json.gz").read_bytes() == (tmp_path / "mirror" / "reviews_Beauty_5.json.gz").read_bytes()
    assert not list(dest.glob("*.part"))
    assert "ulmrec prepare data.source=amazon2014" in capsys.readouterr().out


def test_unreachable_is_a_clear_error(tmp_path, capsys):
    code = main(["download", "beauty", "--fetch", "--dest", str(tmp_path), "--base-url", "http://127.0.0.1:9"])
    assert code == 2
    assert "could not download" in capsys.readouterr().err
    assert not (tmp_path / "reviews_Beauty_5.json.gz").exists()


def test_export_recbole_cli(tmp_path, capsys):
    assert main(["prepare", f"run_dir={tmp_path}"]) == 0
    assert main(["export-recbole", str(tmp_path), "--name", "beauty-sample"]) == 0
    lines = (tmp_path / "recbole" / "beauty-sample.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert len(lines) == 1 + 17663
