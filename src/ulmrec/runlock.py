"""One command at a time per run directory: ``<run_dir>/.lock``.

Every command that writes into a run directory (each stage, ``ulmrec run``, the experiment runner through
:func:`ulmrec.pipeline.run_stage`) holds an exclusive ``flock`` on ``<run_dir>/.lock`` while it works; the file
names the holder (PID, command, start time). A second command on a busy run directory fails at once with a
:class:`RunDirBusy` naming the holder's PID. The kernel releases the lock when its process dies however it dies
(SIGKILL included), so the lock of a killed process is stale by construction: the next command takes it over and
logs whose it was. The lock is re-entrant within a process (``ulmrec run`` holds it and calls each stage).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ulmrec.errors import ConfigError, UlmrecError

log = logging.getLogger("ulmrec")

LOCK_NAME = ".lock"

_held: dict[str, list] = {}  # realpath of the run dir -> [fd, depth]


class RunDirBusy(UlmrecError):
    """Another process holds the run directory's lock."""


def ensure_run_dir(run_dir: str | Path) -> Path:
    """Create ``run_dir`` (and parents); an unusable path is a :class:`ConfigError` naming the setting."""
    path = Path(run_dir)
    if not str(run_dir).strip():
        raise ConfigError("run_dir: must not be empty (it would write into the current directory)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"run_dir={str(run_dir)!r}: cannot create the directory "
                          f"({err.strerror or err}{': ' + str(err.filename) if err.filename else ''})") from err
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
        holder = json.loads(raw) if raw else {}
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError, RecursionError):
        return {}


def holder(run_dir: str | Path) -> dict:
    """What ``<run_dir>/.lock`` says about its last holder ({} when none or unreadable)."""
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read_holder(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_lock(run_dir: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created when missing) for the duration of the ``with`` block."""
    path = ensure_run_dir(run_dir)
    key = os.path.realpath(path)
    if key in _held:
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    lock_file = path / LOCK_NAME
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ConfigError(f"run_dir={str(run_dir)!r}: cannot write there ({err.strerror or err}: {lock_file})") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"run_dir={str(run_dir)!r}: cannot lock {lock_file} ({err.strerror or err})") from err
            who = _read_holder(fd)
            pid = who.get("pid", "?")
            what = f" (`{who['command']}`, since {who.get('started', '?')})" if who.get("command") else ""
            gone = "" if not isinstance(pid, int) or _pid_alive(pid) else \
                "; that process has exited, so a child it left behind still holds the lock"
            raise RunDirBusy(f"run directory {run_dir} is in use by PID {pid}{what}{gone}; wait for it to finish or "
                             f"stop it (lock file {lock_file})") from None
        previous = _read_holder(fd)
        if previous.get("pid") not in (None, os.getpid()):
            log.warning("run directory %s: taking over the stale lock of PID %s (%s), which is no longer running",
                        run_dir, previous.get("pid"), previous.get("command", "?"))
        me = {"pid": os.getpid(), "command": command or " ".join(["ulmrec", *sys.argv[1:]])[:300],
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(me) + "\n").encode())
    except BaseException:
        os.close(fd)
        raise
    _held[key] = [fd, 1]
    try:
        yield path
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a clean release leaves an empty file: nothing to take over
        os.close(fd)  # releases the flock
