"""Leakage audit of the preference sentences (issue #13) on full Beauty and Games.

    taskset -c 1 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/leakage.py [--datasets beauty games] [--build-index]

For each dataset, two run directories under runs/leakage/ (git-ignored): ``<ds>-shipped`` (the authors' GPT-3.5
sentences, ``preferences.mode=import``) and ``<ds>-titles`` (the leak-free source, ``preferences.mode=titles``).
Each is prepared, gets its preferences, and is audited with ``ulmrec.preferences.audit.audit_run`` (the same
code as ``ulmrec audit``). The prefix analysis uses every index the run has: the authors' reference indices
shipped with the data always, and, with ``--build-index``, this project's own index built by the index stage
from that run's sentences (2-4 min per dataset and arm on one core here; a current index is not rebuilt).
Writes benchmarks/results/leakage_<ds>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from _common import REPO, header, save

from ulmrec.config import load_config
from ulmrec.pipeline import get_stage, run_stage
from ulmrec.preferences.audit import TARGETS, audit_run, to_markdown

ARMS = {"shipped": ["preferences.mode=import"], "titles": ["preferences.mode=titles"]}
ARM_TEXT = {"shipped": "authors' GPT-3.5 sentences, shipped with the data (`preferences.mode=import`)",
            "titles": "leak-free: training-period titles only (`preferences.mode=titles`)"}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run_arm(ds: str, arm: str, seed: int, null_samples: int, n_boot: int, build_index: bool) -> dict:
    run_dir = REPO / "runs" / "leakage" / f"{ds}-{arm}"
    cfg = load_config([ds], [f"run_dir={run_dir}", *ARMS[arm]])
    t0 = time.perf_counter()
    run_stage(get_stage("data"), cfg)
    run_stage(get_stage("preferences"), cfg)
    index_seconds = None
    if build_index:
        index_seconds = run_stage(get_stage("index"), cfg)["seconds"]  # the stage's own time, also when current
    t1 = time.perf_counter()
    result = audit_run(run_dir, seed=seed, null_samples=null_samples, n_boot=n_boot,
                       label=f"{ds.capitalize()}, {ARM_TEXT[arm]}")
    result["seconds"] = {"stages_this_call": round(t1 - t0, 1), "index_stage": index_seconds,
                         "audit": round(time.perf_counter() - t1, 1)}
    result["run_dir"] = str(run_dir.relative_to(REPO))
    return result


def _r(x: dict) -> str:
    return f"{100 * x['rate']:.2f} [{100 * x['ci95'][0]:.2f}, {100 * x['ci95'][1]:.2f}]"


def summary_table(results: dict[str, dict]) -> list[str]:
    lines = ["| sentences | match | validation item | test item | training item (null) | untouched item (null) |",
             "|---|---|---:|---:|---:|---:|"]
    for arm, res in results.items():
        for m in ("bigram", "novel_word"):
            rates = res["matches"]["matchers"][m]["rates"]
            name = "title bigram" if m == "bigram" else "title word in no other training title"
            lines.append(f"| {arm} | {name} | " + " | ".join(_r(rates[t]) for t in TARGETS) + " |")
    return lines


def findings(results: dict[str, dict]) -> list[str]:
    """Plain sentences computed from the figures (nothing here is typed in by hand)."""
    out = []
    for arm, res in results.items():
        for m in ("bigram", "novel_word"):
            r = res["matches"]["matchers"][m]["rates"]
            d = res["matches"]["matchers"][m]["differences"]
            ratio = (f"{r['test']['rate'] / r['untouched']['rate']:.1f}x" if r["untouched"]["rate"] else
                     "n/a, the null is 0")
            out.append(f"- {arm}, {'title bigram' if m == 'bigram' else 'novel title word'}: test item "
                       f"{100 * r['test']['rate']:.2f} %, validation {100 * r['valid']['rate']:.2f} %, training "
                       f"{100 * r['train']['rate']:.2f} %, untouched {100 * r['untouched']['rate']:.2f} % (test / "
                       f"untouched = {ratio}; test - training = {100 * d['test-train']['diff']:+.2f} pp "
                       f"[{100 * d['test-train']['ci95'][0]:+.2f}, {100 * d['test-train']['ci95'][1]:+.2f}]).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["beauty", "games"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--null-samples", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--build-index", action="store_true", help="also run the index stage in each run directory")
    args = ap.parse_args()
    os.chdir(REPO)  # the presets' data.path is relative to the repository
    for ds in args.datasets:
        load_before = uptime()
        results = {arm: run_arm(ds, arm, args.seed, args.null_samples, args.bootstrap, args.build_index) for arm in ARMS}
        result = {**header(), "uptime_before": load_before, "uptime_after": uptime(), "dataset": ds,
                  "seed": args.seed, "null_samples": args.null_samples, "bootstrap_resamples": args.bootstrap,
                  "arms": results}
        md = [f"# Leakage audit: {ds.capitalize()} (issue #13)", "",
              "Share of users (%) whose preference sentence matches an item, bootstrap 95 % intervals over users "
              "(definitions: `src/ulmrec/preferences/audit.py`; every table below is the run's own "
              "`audit/leakage.md`).", "", *summary_table(results), "",
              *findings(results), ""]
        for res in results.values():
            md += [to_markdown(res, level=2), f"Run directory `{res['run_dir']}`; seconds: {res['seconds']}.", ""]
        md += [f"Load before: `{load_before}`  \nLoad after: `{result['uptime_after']}`"]
        save(f"leakage_{ds}", result, "\n".join(md))
        print(f"leakage_{ds}: written")


if __name__ == "__main__":
    main()
