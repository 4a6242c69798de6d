"""The run-directory lock: a second process fails at once naming the holder; a killed holder's lock is taken over."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from ulmrec.cli import main
from ulmrec.runlock import LOCK_NAME, RunDirBusy, holder, run_lock

HOLDER = textwrap.dedent("""
    import sys
    from ulmrec.runlock import run_lock
    with run_lock(sys.argv[1], command="holder-test"):
        print("held", flush=True)
        sys.stdin.read()  # until the test closes stdin, or kills us
""")


def _hold(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_process_fails_at_once_naming_the_pid_then_takes_over_a_killed_holder(tmp_path, capsys, caplog):
    run_dir = tmp_path / "run"
    proc = _hold(run_dir)
    try:
        assert holder(run_dir)["pid"] == proc.pid
        assert main(["prepare", f"run_dir={run_dir}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by PID {proc.pid}" in err[0] and "holder-test" in err[0], err
        assert not (run_dir / "data").exists() and not (run_dir / ".data.partial").exists()
        with pytest.raises(RunDirBusy, match=f"PID {proc.pid}"):
            with run_lock(run_dir):
                pass
    finally:
        proc.kill()  # SIGKILL: the holder cannot clean up
        proc.wait()
    assert holder(run_dir)["pid"] == proc.pid  # the file still names the dead holder ...
    with caplog.at_level(logging.WARNING, logger="ulmrec"):
        assert main(["prepare", f"run_dir={run_dir}"]) == 0  # ... but its lock died with it
    assert f"stale lock of PID {proc.pid}" in caplog.text
    assert (run_dir / "data" / "stage.json").exists()
    assert holder(run_dir) == {}  # released cleanly


def test_clean_release_and_reentrancy(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ulmrec"):
        with run_lock(tmp_path, command="outer"):
            assert holder(tmp_path)["command"] == "outer"
            with run_lock(tmp_path):  # ulmrec run holds it and runs each stage under it
                pass
            assert holder(tmp_path)["command"] == "outer"
        assert (tmp_path / LOCK_NAME).read_text() == ""
        with run_lock(tmp_path):
            pass
    assert "stale" not in caplog.text


def test_lock_is_released_for_another_process(tmp_path):
    proc = _hold(tmp_path)
    proc.stdin.close()  # the holder leaves its with-block normally
    assert proc.wait(timeout=30) == 0
    with run_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] != proc.pid
