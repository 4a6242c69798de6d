"""The SQLite answer cache: persistent, one answer per key, safe across threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ulmrec.preferences.cache import PreferenceCache


def test_answers_persist_and_are_never_duplicated(tmp_path):
    path = tmp_path / "sub" / "cache.sqlite"
    with PreferenceCache(path) as cache:
        assert cache.put("u1", "m", "v1", "h1", "likes tea")
        assert not cache.put("u1", "m", "v1", "h1", "likes coffee")  # the first answer is kept
        assert cache.put("u1", "m", "v1", "h2", "likes milk")  # another prompt is another key
        assert cache.put("u1", "m2", "v1", "h1", "likes juice")
        assert cache.put("u1", "m", "v2", "h1", "likes water")
    with PreferenceCache(path) as cache:
        assert len(cache) == 4
        assert cache.get("u1", "m", "v1", "h1") == "likes tea"
        assert cache.get("u2", "m", "v1", "h1") is None
        assert cache.lookup("m", "v1") == {("u1", "h1"): "likes tea", ("u1", "h2"): "likes milk"}


def test_concurrent_writers(tmp_path):
    with PreferenceCache(tmp_path / "c.sqlite") as cache:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: cache.put(f"u{i % 50}", "m", "v1", "h", f"p{i}"), range(200)))
        assert len(cache) == 50
