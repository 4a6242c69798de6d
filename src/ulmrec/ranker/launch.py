"""Multi-process training under ``accelerate launch`` (several GPUs, or CPU processes for testing)::

    accelerate launch --multi_gpu --num_processes 4 -m ulmrec.ranker.launch -c beauty ranker.model=llama-2-7b
    ulmrec train -c beauty ranker.model=llama-2-7b   # finds the finished checkpoints and completes the stage

It trains into the ranker stage's partial directory ``<run_dir>/.ranker.partial/``, the one ``ulmrec train``
resumes from (same fingerprint marker as a normal stage run), because ``ulmrec train`` renames the stage
directory only when the stage finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from ulmrec.config import load_config
from ulmrec.ranker.stage import BASELINE_DIR, STAGE, check_settings, train_one
from ulmrec.runlock import run_lock
from ulmrec.stage import accepted_fingerprints, prepare_partial, stage_fingerprint


def main(argv: list[str] | None = None) -> int:
    from accelerate import PartialState

    parser = argparse.ArgumentParser(prog="python -m ulmrec.ranker.launch", description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", action="append", default=[])
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(cfg.run_dir)
    state = PartialState()
    partial = run_dir / f".{STAGE.name}.partial"
    lock = contextlib.nullcontext()
    if state.is_main_process:  # the main process holds the run directory's lock, like every stage command
        lock = run_lock(run_dir, "python -m ulmrec.ranker.launch")
        lock.__enter__()
        fp_obj = stage_fingerprint(STAGE, cfg, run_dir)
        prepare_partial(partial, STAGE, cfg, accepted_fingerprints(STAGE, cfg, run_dir, fp_obj["inputs"]), fp_obj)
    state.wait_for_everyone()
    try:
        check_settings(cfg)
        train_one(cfg, run_dir, partial, baseline=False)
        if cfg.ranker.baseline:
            train_one(cfg, run_dir, partial / BASELINE_DIR, baseline=True)
    finally:
        lock.__exit__(None, None, None)
    if state.is_main_process:
        print(f"trained into {partial}; now run `ulmrec train` with the same settings to complete the stage")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
