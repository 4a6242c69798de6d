"""Benchmark: ``ulmrec run -c sample`` twice, in two fresh run directories, side by side (one core each).

For each run: wall clock, peak memory (max RSS of the process tree), every stage's own seconds; and the two
runs' artifact digests side by side (SHA-256 of the candidates, the retriever's weights, the user index and
the evaluation ranks; the adapters tensor by tensor, since safetensors' header order is not guaranteed)::

    .venv/bin/python benchmarks/sample_run.py

Writes ``benchmarks/results/sample_run.{json,md}``. The embedding cache (``$ULMREC_CACHE``) is shared, so only
a cold first run pays for the MiniLM encoding; the result records whether it was warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, header, save  # noqa: E402

FILES = ["retrieval/candidates_valid.parquet", "retrieval/candidates_test.parquet", "retrieval/model.safetensors",
         "index/user_index.parquet", "evaluate/ranks.parquet"]
STAGES = ["data", "preferences", "retrieval", "index", "ranker", "evaluate"]


def main() -> int:
    base = REPO / "runs" / "bench-sample-run"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    load_before = os.getloadavg()
    procs = {}
    for core, name in enumerate(("a", "b")):
        cmd = ["/usr/bin/time", "-v", "taskset", "-c", str(core % (os.cpu_count() or 1)),
               str(REPO / ".venv" / "bin" / "ulmrec"), "run", "-c", "sample", f"run_dir={base / name}"]
        log = open(base / f"{name}.log", "w")  # noqa: SIM115
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), time.time())
    out = {**header(), "loadavg_before": load_before, "runs": {}}
    for name, (proc, start) in procs.items():
        code = proc.wait()
        wall = time.time() - start
        text = (base / f"{name}.log").read_text(errors="replace")
        rss = next((int(line.split(":")[1]) for line in text.splitlines() if "Maximum resident set size" in line), 0)
        stages = {s: json.loads((base / name / s / "stage.json").read_text())["seconds"] for s in STAGES
                  if (base / name / s / "stage.json").exists()}
        out["runs"][name] = {"exit": code, "wall_seconds": round(wall, 1), "peak_rss_gib": round(rss / 2**20, 2),
                             "stage_seconds": stages}
    out["loadavg_after"] = os.getloadavg()
    out["digests"] = {rel: [_sha(base / n / rel) for n in ("a", "b")] for rel in FILES}
    out["adapters_equal"] = {a: _tensors_equal(base / "a" / a, base / "b" / a)
                             for a in ("ranker/adapter", "ranker/llamarec/adapter")}
    out["results"] = (base / "a" / "evaluate" / "results.md").read_text()
    res = [json.loads((base / n / "evaluate" / "results.json").read_text()) for n in ("a", "b")]
    out["rank_ndcg10"] = {n: {k: v["Rank"]["NDCG@10"] for k, v in r["models"].items()} for n, r in zip("ab", res, strict=True)}
    out["identical"] = all(x == y for x, y in out["digests"].values()) and all(out["adapters_equal"].values()) \
        and out["rank_ndcg10"]["a"] == out["rank_ndcg10"]["b"]
    save("sample_run", out, markdown(out))
    return 0 if all(r["exit"] == 0 for r in out["runs"].values()) else 1


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "missing"


def _tensors_equal(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    ta, tb = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    return ta.keys() == tb.keys() and all(bool((ta[k] == tb[k]).all()) for k in ta)


def markdown(r: dict) -> str:
    a, b = r["runs"]["a"], r["runs"]["b"]
    lines = ["# `ulmrec run -c sample`: the whole pipeline on the embedded sample, twice", "",
             "Two runs in fresh run directories at the same time, one pinned to each core (so each had a core of its "
             f"own); load average before/after {r['loadavg_before'][0]:.2f} / {r['loadavg_after'][0]:.2f}.", "",
             f"**Wall clock: {a['wall_seconds']} s and {b['wall_seconds']} s** (setup not included; "
             f"`bash scripts/setup.sh` on a machine that has the packages takes seconds); peak RSS "
             f"{a['peak_rss_gib']} / {b['peak_rss_gib']} GiB; exit {a['exit']} / {b['exit']}.", "",
             "| stage | run a s | run b s |", "|---|---|---|"]
    for s in STAGES:
        lines.append(f"| {s} | {a['stage_seconds'].get(s, '-')} | {b['stage_seconds'].get(s, '-')} |")
    lines += ["", "## Same seed, same artifacts", "", "| artifact | run a | run b |", "|---|---|---|"]
    for rel, (x, y) in r["digests"].items():
        lines.append(f"| {rel} | `{x}` | `{y}` |")
    for k, v in r["adapters_equal"].items():
        lines.append(f"| {k} (tensors) | {'equal' if v else 'DIFFERENT'} | |")
    lines += ["", f"Identical: **{'yes' if r['identical'] else 'no'}**.", "", "## The evaluate stage's results.md (run a)",
              "", r["results"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
