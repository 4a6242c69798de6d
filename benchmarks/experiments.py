"""The paper's ablations and analyses on the real Games data, CPU-sized: ``ulmrec experiment all --budget cpu-small``.

Runs (or finds current) the base run's upstream stages in runs/experiments/games-base, then every variant and
seed (resumable: run it again after an interruption), and writes the tables and figures to
benchmarks/results/experiments/ plus ``machine.json`` (machine, date, wall time) there.

    nice -n 10 .venv/bin/python benchmarks/experiments.py > runs/experiments/grid.log 2>&1 &
    .venv/bin/python benchmarks/experiments.py --report-only      # tables from the finished runs
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, header  # noqa: E402

from ulmrec.cli import build_parser  # noqa: E402
from ulmrec.experiments import main  # noqa: E402
from ulmrec.io import read_json, write_json  # noqa: E402

OUT = RESULTS / "experiments"
FLAGS = ["--budget", "cpu-small", "-c", "games", "--base", "runs/experiments/games-base",
         "--out", str(OUT.relative_to(Path.cwd())) if OUT.is_relative_to(Path.cwd()) else str(OUT)]
#: The base run's upstream settings (CPU-sized retriever training; one torch thread each).
OVERRIDES = ["retrieval.max_minutes=12", "retrieval.num_threads=1", "index.threads=1"]


def run(extra: list[str]) -> int:
    argv = ["experiment", *FLAGS, *extra, "all", *OVERRIDES]  # flags first: the overrides follow the name
    args = build_parser().parse_args(argv)
    args.command_line = "ulmrec " + shlex.join(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    t0 = time.time()
    code = main(args)
    if "--dry-run" not in extra:
        info = header()
        prev = read_json(OUT / "machine.json") if (OUT / "machine.json").exists() else {}
        grid_seconds = prev.get("grid_wall_seconds", prev.get("wall_seconds_total", 0.0))
        if "--report-only" not in extra:
            grid_seconds += time.time() - t0
        if "--report-only" in extra:
            info.update(grid_command=prev.get("grid_command", prev.get("command")),
                        grid_equivalent=prev.get("grid_equivalent", prev.get("equivalent")))
        else:
            info.update(grid_command=info["command"], grid_equivalent=args.command_line)
        info.update(equivalent=args.command_line, grid_wall_seconds=round(grid_seconds, 1),
                    grid_calls=prev.get("grid_calls", []) + ([] if "--report-only" in extra else
                                                             [{"date": info["date"], "seconds": round(time.time() - t0, 1)}]))
        write_json(OUT / "machine.json", info)
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
