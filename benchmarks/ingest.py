"""Time ingestion + preprocessing of the full Beauty and Games data (issue: foundation).

    .venv/bin/python benchmarks/ingest.py [--repeats 3]

Writes benchmarks/results/ingest.{json,md}.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from _common import SHARED, header, save

from ulmrec.data.config import DataConfig
from ulmrec.data.ingest import ingest

CASES = {
    "Beauty from raw OpenP5 (title join, empty-title drop, 5-core, real dates, authors' tie order)": DataConfig(
        source="openp5", path=str(SHARED / "beauty-openp5"),
        timestamps_path=str(SHARED / "beauty-timestamps-ticoserec" / "beauty_timestamps.jsonl.gz"),
        item_order_path=str(SHARED / "beauty-ulmrec" / "items.jsonl.gz")),
    "Beauty, authors' layout (sequences, titles, preferences, reference indices)": DataConfig(
        source="ulmrec", path=str(SHARED / "beauty-ulmrec")),
    "Games, authors' layout (sequences, titles, preferences, reference indices)": DataConfig(
        source="ulmrec", path=str(SHARED / "games-ulmrec")),
    "All_Beauty 2018 raw reviews (text, ratings, dates)": DataConfig(
        source="amazon2018", path=str(SHARED / "all-beauty-2018" / "All_Beauty_5.json.gz"), require_titles=False),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for name, cfg in CASES.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ds, _ = ingest(cfg)
            times.append(time.perf_counter() - t0)
        s = ds.stats()
        rows.append({"case": name, "seconds_median": round(statistics.median(times), 3),
                     "seconds_all": [round(t, 3) for t in times], "users": s["users"], "items": s["items"],
                     "interactions": s["interactions"], "mean_length": s["mean_length"]})
        print(rows[-1])
    result = {**header(), "repeats": args.repeats, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "rows": rows}
    md = ["# Ingestion + preprocessing time", "",
          "| input | users | items | interactions | mean length | seconds (median) |", "|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['users']:,} | {r['items']:,} | {r['interactions']:,} | {r['mean_length']:.2f} | "
           f"{r['seconds_median']:.2f} |" for r in rows]
    md += ["", f"Peak RSS of the whole benchmark process: {result['peak_rss_mb']} MB. Paper Table 1: Beauty 22,332 / "
           "12,086 / 198k / 8.87; Games 15,264 / 7,676 / 148k / 9.69."]
    save("ingest", result, "\n".join(md))


if __name__ == "__main__":
    main()
