"""Make the embedded Beauty sample shipped in ``src/ulmrec/data/sample/`` from ``../shared/data``.

Deterministic (fixed seed, sorted output, gzip mtime 0): running it again gives byte-identical files.

Recipe: the full Beauty data as the paper evaluates it (beauty-ulmrec, with the real review dates from
beauty-timestamps-ticoserec and the authors' tie order), restricted to the 1,000 most popular items and a random
9,000 users (seed 0), then the iterative 5-core again. The result is a dense, real subset (about 1.7k users,
875 items, 17.5k interactions) with titles, timestamps, the authors' GPT-3.5 preference sentences and their
reference user indices. Its sequences are the users' real sequences restricted to those items.

    python scripts/make_sample.py [--shared ../shared/data] [--out src/ulmrec/data/sample]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np

from ulmrec.data.config import DataConfig
from ulmrec.data.ingest import ingest
from ulmrec.data.preprocess import k_core
from ulmrec.io import write_bytes, write_text

TOP_ITEMS = 1000
RANDOM_USERS = 9000
SEED = 0


def _jsonl_gz(records: list[dict]) -> bytes:
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    return gzip.compress(body, mtime=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src" / "ulmrec" / "data" / "sample"))
    args = ap.parse_args()
    shared, out = Path(args.shared), Path(args.out)

    ds, _ = ingest(DataConfig(source="ulmrec", path=str(shared / "beauty-ulmrec"),
                              timestamps_path=str(shared / "beauty-timestamps-ticoserec" / "beauty_timestamps.jsonl.gz"),
                              item_order_path=str(shared / "beauty-ulmrec" / "items.jsonl.gz")))
    it = ds.interactions.merge(ds.users, on="user_idx").merge(ds.items, on="item_idx")
    top = set(it["item_id"].value_counts().index[:TOP_ITEMS])
    rng = np.random.default_rng(SEED)
    users = set(rng.choice(ds.users["user_id"].to_numpy(), RANDOM_USERS, replace=False))
    sub = it[it["item_id"].isin(top) & it["user_id"].isin(users)]
    kept, _ = k_core(sub, 5)
    kept = kept.sort_values(["user_idx", "position"])

    seqs = [{"user_id": u, "item_ids": g["item_id"].tolist(), "timestamps": [int(t) for t in g["timestamp"]]}
            for u, g in kept.groupby("user_id", sort=True)]
    item_ids = set(kept["item_id"])
    # keep the authors' item order (their tie-break order), restricted to the kept items
    items = [{"item_id": r.item_id, "title": r.title} for r in ds.items.itertuples() if r.item_id in item_ids]
    order = {json.loads(line)["item_id"]: i for i, line in enumerate(gzip.open(shared / "beauty-ulmrec" / "items.jsonl.gz", "rt"))}
    items.sort(key=lambda r: order[r["item_id"]])
    kept_users = {s["user_id"] for s in seqs}
    prefs = [json.loads(line) for line in gzip.open(shared / "beauty-ulmrec" / "preferences.jsonl.gz", "rt")]
    prefs = sorted((p for p in prefs if p["user_id"] in kept_users), key=lambda p: p["user_id"])
    refs = [json.loads(line) for line in gzip.open(shared / "beauty-ulmrec" / "reference_user_index.jsonl.gz", "rt")]
    refs = sorted((r for r in refs if r["user_id"] in kept_users), key=lambda r: r["user_id"])

    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "sequences.jsonl.gz", _jsonl_gz(seqs))
    write_bytes(out / "items.jsonl.gz", _jsonl_gz(items))
    write_bytes(out / "preferences.jsonl.gz", _jsonl_gz(prefs))
    write_bytes(out / "reference_user_index.jsonl.gz", _jsonl_gz(refs))
    n = sum(len(s["item_ids"]) for s in seqs)
    write_text(out / "SOURCE.md", f"""# Embedded sample: a dense subset of real Amazon Beauty 2014

Made by `python scripts/make_sample.py` from `../shared/data` (beauty-ulmrec: the paper's Beauty exactly as
evaluated; beauty-timestamps-ticoserec: real review dates). Recipe: the {TOP_ITEMS} most popular items, a random
{RANDOM_USERS} users (numpy seed {SEED}), the users' real chronological sequences restricted to those items, then
the iterative 5-core again.

{len(seqs)} users, {len(items)} items, {n} interactions (mean length {n / len(seqs):.2f}).

Files (gzip JSON lines): sequences.jsonl.gz {{user_id, item_ids, timestamps}}; items.jsonl.gz {{item_id, title}}
(in the authors' item-id order); preferences.jsonl.gz {{user_id, preference}} (the authors' GPT-3.5-Turbo
sentences, made from all of a user's reviews); reference_user_index.jsonl.gz {{user_id, index}} (the authors'
user indices, for comparison only). No ratings and no review text: the full Beauty release has none.
Underlying data: Amazon review data 2014 (McAuley et al.), category Beauty.
""")
    print(f"{len(seqs)} users, {len(items)} items, {n} interactions -> {out}")


if __name__ == "__main__":
    main()
