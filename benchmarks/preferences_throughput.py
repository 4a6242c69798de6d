"""Throughput of API-mode preference extraction against a local chat-completions server.

The server (ulmrec.preferences.local_server, on 127.0.0.1) answers every request after a fixed latency that
stands in for a real LLM's generation time (default 200 ms). The prompts are the real ones of the embedded
Beauty sample's users (training titles; the sample has no review text). Every run starts from an empty cache,
so every user is one request; requests/s = requests the server received / wall time of the whole extraction
(prompt building, cache lookups and writes included). A last run repeats the fastest setting against the
filled cache: a finished run asks nothing. A fault run injects 429s and 500s on first attempts.

    nice -n 10 .venv/bin/python benchmarks/preferences_throughput.py            # writes benchmarks/results/
    .venv/bin/python benchmarks/preferences_throughput.py --users 40 --concurrency 1 16 --no-write   # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import openai

from ulmrec.config import load_config
from ulmrec.data.ingest import ingest
from ulmrec.io import write_json, write_text
from ulmrec.preferences.cache import PreferenceCache
from ulmrec.preferences.history import training_histories
from ulmrec.preferences.local_server import LocalChatServer, Reply
from ulmrec.preferences.openai_client import extract_with_api

RESULTS = Path(__file__).resolve().parent / "results"


def faulty(rate_429: float, rate_500: float, seed: int = 0):
    """First attempts fail with 429 / 500 at the given rates (chosen per prompt, reproducibly)."""
    def plan(request: dict, attempt: int) -> Reply:
        if attempt > 0:
            return Reply()
        r = random.Random(f"{seed}:{json.dumps(request['messages'])}").random()
        if r < rate_429:
            return Reply("status", status=429)
        if r < rate_429 + rate_500:
            return Reply("status", status=500)
        return Reply()
    return plan


def one_run(histories, concurrency: int, latency: float, tmp: Path, name: str, plan=None, cache_file=None) -> dict:
    cache_file = cache_file or tmp / f"{name}.sqlite"
    with LocalChatServer(plan, latency=latency) as server, PreferenceCache(cache_file) as cache:
        cfg = load_config([], [f"preferences.base_url={server.base_url}", "preferences.model=local-bench",
                               f"preferences.concurrency={concurrency}", "preferences.progress=false",
                               "preferences.backoff_base=0.2", "preferences.backoff_max=2",
                               "preferences.timeout=30"]).preferences
        t0 = time.perf_counter()
        records, stats = extract_with_api(histories, cfg, cache)
        wall = time.perf_counter() - t0
        row = {"run": name, "concurrency": concurrency, "users": len(histories), "requests": server.count,
               "ok": stats.ok, "failed": stats.failed, "from_cache": stats.from_cache, "errors": stats.errors,
               "max_in_flight_at_server": server.max_inflight, "seconds": round(wall, 3),
               "requests_per_s": round(server.count / wall, 2), "users_per_s": round(len(histories) / wall, 2),
               "latency_bound_requests_per_s": round(min(concurrency, len(histories)) / latency, 2)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--latency", type=float, default=0.2, help="server seconds per answer")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    p.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results/")
    args = p.parse_args()

    ds, _ = ingest(load_config(["sample"]).data)
    histories = list(training_histories(ds))[: args.users]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for c in args.concurrency:
            rows.append(one_run(histories, c, args.latency, tmp, f"c{c}"))
        best = max(args.concurrency)
        rows.append(one_run(histories, best, args.latency, tmp, f"c{best}-cached", cache_file=tmp / f"c{best}.sqlite"))
        rows.append(one_run(histories, 16, args.latency, tmp, "c16-faults(10% 429, 5% 500)", plan=faulty(0.10, 0.05)))

    cmd = "nice -n 10 .venv/bin/python benchmarks/preferences_throughput.py " + " ".join(sys.argv[1:])
    meta = {"command": cmd.strip(), "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {platform.system()}, 2 CPU cores shared with other jobs (the project box)",
            "python": platform.python_version(), "openai_sdk": openai.__version__,
            "server": f"ulmrec.preferences.local_server on 127.0.0.1, fixed latency {args.latency * 1000:.0f} ms",
            "prompts": f"first {len(histories)} users of the embedded Beauty sample (titles only), prompt v1",
            "settings": {k: v for k, v in dataclasses.asdict(load_config([]).preferences).items()
                         if k in ("max_reviews", "max_title_chars")}}
    if args.no_write:
        return
    write_json(RESULTS / "preferences_throughput.json", {**meta, "runs": rows})
    lines = ["# Preferences (API mode): throughput against a local server", "",
             f"- Command: `{meta['command']}`", f"- Date: {meta['date']}", f"- Machine: {meta['machine']}",
             f"- Server: {meta['server']}", f"- Prompts: {meta['prompts']}",
             f"- Python {meta['python']}, openai SDK {meta['openai_sdk']}; one run per row, each from an empty "
             "cache except the 'cached' row.", "",
             "- 'bound' is the most a client could get from this server: concurrency / latency.", "",
             "| run | concurrency | users | requests | ok | failed | seconds | requests/s | bound | users/s | max in flight |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['concurrency']} | {r['users']} | {r['requests']} | {r['ok']} | {r['failed']} | "
                     f"{r['seconds']:.2f} | {r['requests_per_s']:.2f} | {r['latency_bound_requests_per_s']:.0f} | "
                     f"{r['users_per_s']:.2f} | "
                     f"{r['max_in_flight_at_server']} |")
    write_text(RESULTS / "preferences_throughput.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
