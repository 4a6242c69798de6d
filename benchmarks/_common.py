"""Helpers for benchmark scripts: where the shared data is, machine description, result writing."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from pathlib import Path

from ulmrec.io import write_json, write_text

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()
RESULTS = REPO / "benchmarks" / "results"


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}


def header() -> dict:
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(REPO)
    except ValueError:
        pass
    return {"command": " ".join(shlex.quote(str(a)) for a in [".venv/bin/python", script, *sys.argv[1:]]),
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}


def save(name: str, result: dict, markdown: str) -> None:
    write_json(RESULTS / f"{name}.json", result)
    m = result["machine"]
    write_text(RESULTS / f"{name}.md", f"{markdown}\n\nCommand: `{result['command']}`  \nDate: {result['date']}  \n"
               f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}\n")


def run_dirs(specs: list[str], needs: str = "retrieval/candidates_valid.parquet") -> dict[str, Path]:
    """``name=run_dir`` arguments as ``{name: path}`` (relative paths from the repository), each holding ``needs``."""
    out = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"{spec!r}: expected name=run_dir")
        run = Path(path) if Path(path).is_absolute() else REPO / path
        if not (run / needs).exists():
            raise SystemExit(f"{run}: no {needs} (run the retrieval stage first)")
        out[name] = run
    return out
