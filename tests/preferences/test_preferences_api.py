"""API mode against a real HTTP server on 127.0.0.1 that speaks the chat-completions protocol, with injected
429, 5xx, slow (timed-out), malformed and empty answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from pref_fixtures import api_config, fast_overrides, make_dataset, user_of

from ulmrec.errors import ConfigError
from ulmrec.pipeline import run_stage
from ulmrec.preferences.cache import PreferenceCache
from ulmrec.preferences.history import training_histories
from ulmrec.preferences.local_server import LocalChatServer, Reply, default_answer
from ulmrec.preferences.openai_client import ChatClient, ServerRejected, extract_with_api
from ulmrec.preferences.stage import STAGE

REPLIES = {"ok": Reply(), "429": Reply("status", status=429), "500": Reply("status", status=500),
           "503": Reply("status", status=503), "400": Reply("status", status=400), "slow": Reply("slow", delay=1.5),
           "malformed": Reply("malformed"), "empty": Reply("empty"), "no_choices": Reply("no_choices"),
           "401": Reply("status", status=401)}

# What the server does with each user's 1st, 2nd, ... request (the last entry repeats).
SCRIPT = {0: ["ok"], 1: ["429", "ok"], 2: ["500", "503", "ok"], 3: ["slow", "ok"], 4: ["malformed", "ok"],
          5: ["empty", "ok"], 6: ["no_choices", "ok"], 7: ["empty"], 8: ["500"], 9: ["400"]}


def scripted(script: dict[int, list[str]]):
    def plan(request: dict, attempt: int) -> Reply:
        steps = script.get(user_of(request), ["ok"])
        return REPLIES[steps[min(attempt, len(steps) - 1)]]
    return plan


def asked(server: LocalChatServer) -> Counter:
    return Counter(user_of(r) for r in server.requests)


def test_every_user_ends_with_a_preference_or_a_recorded_failure(tmp_path):
    ds = make_dataset(n_users=10)
    histories = list(training_histories(ds))
    with LocalChatServer(scripted(SCRIPT)) as server, PreferenceCache(tmp_path / "c.sqlite") as cache:
        cfg = api_config(tmp_path, server.base_url, tmp_path / "c.sqlite", timeout=0.4).preferences
        records, stats = extract_with_api(histories, cfg, cache)
        by_user = {r.user_idx: r for r in records}
        assert sorted(by_user) == list(range(10))
        attempts = cfg.max_retries + 1
        assert asked(server) == Counter({0: 1, 1: 2, 2: 3, 3: 2, 4: 2, 5: 2, 6: 2, 7: attempts, 8: attempts, 9: 1})
        prompts = {user_of(r): r for r in server.requests}
        for u in range(7):  # each answer went to the user it was asked for
            assert by_user[u].status == "ok", by_user[u]
            assert by_user[u].preference == default_answer(prompts[u])
            assert by_user[u].source == "api:local-test-model:v1" and by_user[u].error is None
        assert by_user[7].status == "failed" and by_user[7].preference is None
        assert f"gave up after {attempts} attempts" in by_user[7].error and "empty answer" in by_user[7].error
        assert "500" in by_user[8].error
        assert "400" in by_user[9].error and "not retried" in by_user[9].error
        assert stats.ok == 7 and stats.failed == 3 and stats.requests == server.count
        assert stats.errors["timeout"] == 1 and stats.errors["429"] == 1 and stats.errors["malformed"] == 2
        assert len(cache) == 7  # only answers are cached; failures are asked again next time

    # A second run asks only for the three that failed; a third asks nothing.
    with LocalChatServer() as server, PreferenceCache(tmp_path / "c.sqlite") as cache:
        cfg = api_config(tmp_path, server.base_url, tmp_path / "c.sqlite").preferences
        records, stats = extract_with_api(histories, cfg, cache)
        assert asked(server) == Counter({7: 1, 8: 1, 9: 1})
        assert all(r.status == "ok" for r in records) and stats.from_cache == 7
        records2, _ = extract_with_api(histories, cfg, cache)
        assert server.count == 3
        assert sorted((r.user_idx, r.preference) for r in records2) == sorted((r.user_idx, r.preference) for r in records)


def test_concurrency_is_bounded(tmp_path):
    histories = list(training_histories(make_dataset(n_users=24)))
    for concurrency in (1, 4):
        with LocalChatServer(latency=0.05) as server, PreferenceCache(tmp_path / f"{concurrency}.sqlite") as cache:
            cfg = api_config(tmp_path, server.base_url, cache.path, concurrency=concurrency).preferences
            records, _ = extract_with_api(histories, cfg, cache)
            assert server.count == 24 and all(r.status == "ok" for r in records)
            assert server.max_inflight <= concurrency
            assert server.max_inflight >= min(concurrency, 2)


def test_backoff_doubles_and_is_capped(tmp_path):
    with LocalChatServer(lambda r, a: REPLIES["500"]) as server:
        cfg = api_config(tmp_path, server.base_url, tmp_path / "c.sqlite", max_retries=4, backoff_base=0.01,
                         backoff_max=0.03).preferences
        waits = []
        answer = ChatClient(cfg, sleep=waits.append).ask([{"role": "user", "content": "x"}])
        assert answer.preference is None and answer.attempts == 5 and server.count == 5
        assert len(waits) == 4
        assert 0.005 <= waits[0] <= 0.01 and 0.01 <= waits[1] <= 0.02 and all(w <= 0.03 for w in waits)


def test_rejected_key_stops_the_run(tmp_path):
    histories = list(training_histories(make_dataset(n_users=12)))
    with LocalChatServer(lambda r, a: REPLIES["401"]) as server, PreferenceCache(tmp_path / "c.sqlite") as cache:
        cfg = api_config(tmp_path, server.base_url, cache.path, concurrency=2).preferences
        with pytest.raises(ServerRejected, match="401"):
            extract_with_api(histories, cfg, cache)
        assert server.count <= 4  # stopped early, not 12 x retries


def test_missing_api_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ULMREC_TEST_NO_SUCH_KEY", raising=False)
    cfg = api_config(tmp_path, "", tmp_path / "c.sqlite", api_key_env="ULMREC_TEST_NO_SUCH_KEY").preferences
    with pytest.raises(ConfigError, match=r"\$ULMREC_TEST_NO_SUCH_KEY"):
        ChatClient(cfg)


def test_api_key_comes_from_the_named_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("ULMREC_TEST_KEY", "sk-test-123")
    with LocalChatServer() as server:
        cfg = api_config(tmp_path, server.base_url, tmp_path / "c.sqlite", api_key_env="ULMREC_TEST_KEY").preferences
        assert ChatClient(cfg).ask([{"role": "user", "content": "hello"}]).preference
        assert server.authorization == ["Bearer sk-test-123"]


_RUN = """
import sys
from ulmrec.config import load_config
from ulmrec.pipeline import run_stage
from ulmrec.preferences.stage import STAGE
run_stage(STAGE, load_config([], sys.argv[1:]))
"""


def test_killed_run_resumes_asking_only_for_what_is_missing(tmp_path):
    """SIGKILL a real `preferences` run midway, start it again, and count the requests at the server."""
    n = 40
    run_dir, cache_file = tmp_path / "run", tmp_path / "cache.sqlite"
    make_dataset(n_users=n).save(run_dir / "data")
    with LocalChatServer(latency=0.1) as server:
        args = fast_overrides(run_dir, server.base_url, cache_file, concurrency=2)
        proc = subprocess.Popen([sys.executable, "-c", _RUN, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 60
        while server.count < 10 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        first_requests = server.count
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (run_dir / "preferences").exists()  # the killed stage left no finished directory behind

    with PreferenceCache(cache_file) as cache:
        stored = {u: p for (u, _h), p in cache.lookup("local-test-model", "v1").items()}
    assert 0 < len(stored) < n and len(stored) <= first_requests

    with LocalChatServer() as server:
        cfg = api_config(run_dir, server.base_url, cache_file, concurrency=2)
        run_stage(STAGE, cfg)
        asked_again = asked(server)
        # exactly the users without a stored answer, each once
        assert sum(asked_again.values()) == n - len(stored)
        assert set(asked_again.values()) == {1}
        assert not {f"A{u:03d}X" for u in asked_again} & set(stored)
        frame = pd.read_parquet(run_dir / "preferences" / "preferences.parquet")
        assert len(frame) == n and (frame["status"] == "ok").all()
        # nothing lost or duplicated: the answers from before the kill are the ones in the output
        pref_of = dict(zip(frame["user_idx"], frame["preference"]))
        for uid, pref in stored.items():
            assert pref_of[int(uid[1:4])] == pref
        with PreferenceCache(cache_file) as cache:
            assert len(cache) == n

        run_stage(STAGE, cfg, force=True)  # a finished run asks nothing
        assert server.count == n - len(stored)


def test_stop_cancels_a_waiting_retry_at_once(tmp_path):
    with LocalChatServer(lambda r, a: REPLIES["503"]) as server:
        cfg = api_config(tmp_path, server.base_url, tmp_path / "c.sqlite", backoff_base=20.0,
                         backoff_max=60.0).preferences
        client = ChatClient(cfg)
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(client.ask, [{"role": "user", "content": "x"}])
            while server.count < 1:
                time.sleep(0.01)
            t0 = time.time()
            client.stop.set()
            answer = fut.result(timeout=5)
        assert time.time() - t0 < 2 and answer.error == "cancelled" and server.count == 1
