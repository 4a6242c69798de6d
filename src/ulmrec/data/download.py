"""``ulmrec download``: the public Amazon review files of a category, and how to ingest them.

The files are large and served by their authors (McAuley lab); this command prints their URLs and, with
``--fetch``, downloads them atomically (a partial download never looks like a finished file), resuming from a
``.part`` file when the server allows it. ``--base-url`` points at a mirror.
"""

from __future__ import annotations

import argparse
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ulmrec.errors import UlmrecError

BASE_2014 = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles"
BASE_2018 = "https://jmcauley.ucsd.edu/data/amazon_v2"

#: Short names -> the category spelling of each release.
CATEGORIES = {
    "beauty": ("Beauty", "All_Beauty"),
    "games": ("Video_Games", "Video_Games"),
    "toys": ("Toys_and_Games", "Toys_and_Games"),
    "sports": ("Sports_and_Outdoors", "Sports_and_Outdoors"),
}


def files_for(category: str, year: int, base_url: str | None = None) -> list[tuple[str, str]]:
    """[(file name, url)] for a category (short name or the release's own spelling)."""
    c14, c18 = CATEGORIES.get(category.lower(), (category, category))
    if year == 2014:
        base = (base_url or BASE_2014).rstrip("/")
        names = [f"reviews_{c14}_5.json.gz", f"meta_{c14}.json.gz", f"ratings_{c14}.csv"]
        return [(n, f"{base}/{n}") for n in names]
    if year == 2018:
        base = (base_url or BASE_2018).rstrip("/")
        return [(f"{c18}_5.json.gz", f"{base}/categoryFilesSmall/{c18}_5.json.gz"),
                (f"meta_{c18}.json.gz", f"{base}/metaFiles2/meta_{c18}.json.gz")]
    raise UlmrecError(f"unknown release year {year}; use 2014 or 2018")


def fetch(url: str, dest: Path, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part`` (resumed with a Range request when possible)."""
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resumed = have and resp.status == 206
            total = resp.length + (have if resumed else 0) if resp.length else None
            mode = "ab" if resumed else "wb"
            with open(part, mode) as f, tqdm(total=total, initial=have if resumed else 0, unit="B",
                                             unit_scale=True, desc=dest.name) as bar:
                while block := resp.read(1 << 20):
                    f.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise UlmrecError(f"could not download {url}: {err}. Download it by hand into {dest.parent} "
                          f"(or pass --base-url for a mirror); {part.name} is kept for resuming") from err
    os.replace(part, dest)
    return dest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("category", help=f"short name ({', '.join(CATEGORIES)}) or the release's own category name")
    p.add_argument("--year", type=int, default=2014, choices=[2014, 2018])
    p.add_argument("--dest", default="downloads", help="directory for the files")
    p.add_argument("--fetch", action="store_true", help="download (default: only print URLs and the next command)")
    p.add_argument("--base-url", default=None, help="a mirror serving the same file layout")


def main(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    files = files_for(args.category, args.year, args.base_url)
    for name, url in files:
        print(f"{url}  ->  {dest / name}")
    if args.fetch:
        dest.mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(dest).free < 2 << 30:
            print("warning: less than 2 GiB free at", dest)
        for name, url in files:
            if args.year == 2014 and name.startswith("ratings_"):
                continue  # the 5-core reviews carry the ratings already
            fetch(url, dest / name)
    reviews, meta = dest / files[0][0], dest / files[1][0]
    source = "amazon2014" if args.year == 2014 else "amazon2018"
    print(f"\nthen: ulmrec prepare data.source={source} data.path={reviews} data.meta_path={meta} run_dir=runs/{args.category}")
    return 0
