"""Readers for the layouts users download, into raw tables for :func:`ulmrec.data.preprocess.preprocess`.

Every reader works line by line and reports bad input as ``file:line: field 'x': problem`` (``on_error=
'raise'``), or drops the line and counts it by reason (``on_error='skip'``). Amazon 2014 metadata lines are
Python literals: they are parsed with :func:`ast.literal_eval`, never ``eval``.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ulmrec.errors import DataError
from ulmrec.io import write_text

log = logging.getLogger("ulmrec")


class ErrorPolicy:
    """Raise on the first bad line, or skip it and count why."""

    def __init__(self, on_error: str = "raise"):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.on_error = on_error
        self.skipped: Counter[str] = Counter()

    def __call__(self, err: DataError, reason: str) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped[reason] += 1

    def report(self) -> dict[str, int]:
        return dict(self.skipped)


def _open_binary(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_lines(path: str | Path, policy: ErrorPolicy | None = None) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text) of a plain or gzip file; blank lines are skipped.

    Non-UTF-8 bytes and a truncated or corrupt gzip stream raise :class:`DataError` naming the line.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path)
    policy = policy or ErrorPolicy()
    lineno = 0
    try:
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    policy(DataError(f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})", path, lineno),
                           "non_utf8")
                    continue
                if text.strip():
                    yield lineno, text.rstrip("\r\n")
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"gzip stream truncated or corrupt after line {lineno} ({e})", path, lineno + 1) from e


def parse_record(text: str, path: Path, lineno: int, policy: ErrorPolicy, literal_ok: bool) -> dict | None:
    """A JSON object, or (``literal_ok``) a Python dict literal as in the 2014 metadata."""
    try:
        obj = json.loads(text)
    except RecursionError:
        policy(DataError("malformed record (nested too deeply)", path, lineno), "malformed")
        return None
    except json.JSONDecodeError as e:
        obj = None
        if literal_ok:
            try:
                obj = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                obj = None
        if obj is None:
            policy(DataError(f"malformed record ({e.msg} at column {e.colno})", path, lineno), "malformed")
            return None
    if not isinstance(obj, dict):
        policy(DataError(f"expected an object, got {type(obj).__name__}", path, lineno), "malformed")
        return None
    return obj


def _require_str(obj: dict, key: str, path: Path, lineno: int, policy: ErrorPolicy) -> str | None:
    v = obj.get(key)
    if v is None:
        policy(DataError("missing", path, lineno, key), f"missing_{key}")
        return None
    if not isinstance(v, str | int) or str(v).strip() == "":
        policy(DataError(f"empty or not a string ({v!r})", path, lineno, key), f"empty_{key}")
        return None
    return str(v).strip()


def _number(obj: dict, key: str, path: Path, lineno: int, policy: ErrorPolicy, required: bool) -> float | None:
    v = obj.get(key)
    if v is None:
        if required:
            policy(DataError("missing", path, lineno, key), f"missing_{key}")
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        policy(DataError(f"not a number ({v!r})", path, lineno, key), f"bad_{key}")
        return None


# --------------------------------------------------------------------------- Amazon reviews (2014 and 2018)
def read_amazon_reviews(path: str | Path, policy: ErrorPolicy) -> pd.DataFrame:
    """``reviews_<Cat>_5.json.gz`` (2014) or ``<Cat>_5.json.gz`` (2018): one review per line with reviewerID,
    asin, overall, unixReviewTime, reviewText (summary is appended when present)."""
    path = Path(path)
    rows: list[tuple] = []
    for lineno, text in iter_lines(path, policy):
        obj = parse_record(text, path, lineno, policy, literal_ok=True)
        if obj is None:
            continue
        user = _require_str(obj, "reviewerID", path, lineno, policy)
        item = _require_str(obj, "asin", path, lineno, policy) if user else None
        if user is None or item is None:
            continue
        ts = _number(obj, "unixReviewTime", path, lineno, policy, required=True)
        if ts is None:
            continue
        rating = _number(obj, "overall", path, lineno, policy, required=False)
        review = obj.get("reviewText")
        review = review.strip() if isinstance(review, str) and review.strip() else None
        rows.append((user, item, int(ts), rating, review, len(rows)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating", "review", "order"])


def read_amazon_meta(path: str | Path, policy: ErrorPolicy, wanted: set[str] | None = None) -> pd.DataFrame:
    """``meta_<Cat>.json.gz``: asin -> title. 2014 lines are Python literals, 2018 lines JSON; both accepted.
    An entry without a title is kept with a missing title (the title filter then drops the item)."""
    path = Path(path)
    rows = []
    for lineno, text in iter_lines(path, policy):
        obj = parse_record(text, path, lineno, policy, literal_ok=True)
        if obj is None:
            continue
        asin = _require_str(obj, "asin", path, lineno, policy)
        if asin is None or (wanted is not None and asin not in wanted):
            continue
        title = obj.get("title")
        title = title.strip() if isinstance(title, str) and title.strip() else None
        rows.append((asin, title))
    return pd.DataFrame(rows, columns=["item_id", "title"])


def read_ratings_csv(path: str | Path, policy: ErrorPolicy) -> pd.DataFrame:
    """``ratings_<Cat>.csv`` (2014): ``user,item,rating,timestamp`` without a header."""
    path = Path(path)
    rows = []
    names = ["user", "item", "rating", "timestamp"]
    for lineno, text in iter_lines(path, policy):
        fields = next(csv.reader(io.StringIO(text)))
        if len(fields) != 4:
            policy(DataError(f"expected 4 comma-separated fields (user,item,rating,timestamp), got {len(fields)}",
                             path, lineno), "malformed")
            continue
        rec: dict[str, Any] = dict(zip(names, fields))
        user = _require_str(rec, "user", path, lineno, policy)
        item = _require_str(rec, "item", path, lineno, policy) if user else None
        if user is None or item is None:
            continue
        rating = _number(rec, "rating", path, lineno, policy, required=True)
        ts = _number(rec, "timestamp", path, lineno, policy, required=True)
        if rating is None or ts is None:
            continue
        rows.append((user, item, int(ts), rating, None, len(rows)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating", "review", "order"])


# --------------------------------------------------------------------------- the authors' JSON-lines layout
def _read_jsonl(path: Path, policy: ErrorPolicy, fields: dict[str, type]) -> list[dict]:
    out = []
    for lineno, text in iter_lines(path, policy):
        obj = parse_record(text, path, lineno, policy, literal_ok=False)
        if obj is None:
            continue
        ok = True
        for key, tp in fields.items():
            v = obj.get(key)
            if v is None:
                policy(DataError("missing", path, lineno, key), f"missing_{key}")
                ok = False
                break
            if not isinstance(v, tp) or (tp is str and not v.strip()) or (tp is list and not v):
                policy(DataError(f"expected a non-empty {tp.__name__}, got {v!r}"[:200], path, lineno, key),
                       f"empty_{key}")
                ok = False
                break
        if ok:
            obj["_line"] = lineno
            out.append(obj)
    return out


def _bad_timestamps(item_ids: list, timestamps: Any) -> str | None:
    """Why ``timestamps`` cannot date ``item_ids`` one to one (None when it can)."""
    if not isinstance(timestamps, list):
        return f"expected a list, got {type(timestamps).__name__}"
    if len(timestamps) != len(item_ids):
        return f"{len(timestamps)} timestamps for {len(item_ids)} item_ids"
    for t in timestamps:
        if isinstance(t, bool) or not isinstance(t, int | float) or t != t or t in (float("inf"), float("-inf")):
            return f"not a number of seconds: {t!r}"[:200]
    return None


def read_timestamps(path: str | Path, policy: ErrorPolicy) -> dict[tuple[str, str], int]:
    """JSON lines {user_id, item_ids, timestamps} -> {(user_id, item_id): unix seconds}."""
    path = Path(path)
    out = {}
    for rec in _read_jsonl(path, policy, {"user_id": str, "item_ids": list, "timestamps": list}):
        if bad := _bad_timestamps(rec["item_ids"], rec["timestamps"]):
            policy(DataError(bad, path, rec["_line"], "timestamps"), "malformed")
            continue
        for i, t in zip(rec["item_ids"], rec["timestamps"]):
            out[(rec["user_id"], str(i))] = int(t)
    return out


def read_item_order(path: str | Path, policy: ErrorPolicy) -> dict[str, int]:
    """Item ids in a tie-break order: JSON lines with ``item_id`` or one id per line -> {item_id: rank}."""
    path = Path(path)
    order: dict[str, int] = {}
    for lineno, text in iter_lines(path, policy):
        if text.lstrip().startswith("{"):
            obj = parse_record(text, path, lineno, policy, literal_ok=False)
            item = _require_str(obj, "item_id", path, lineno, policy) if obj is not None else None
        else:
            item = text.strip()
        if item is not None and item not in order:
            order[item] = len(order)
    return order


def read_ulmrec(directory: str | Path, policy: ErrorPolicy) -> dict[str, pd.DataFrame | None]:
    """``sequences.jsonl.gz`` ({user_id, item_ids}), ``items.jsonl.gz`` ({item_id, title}) and, when present,
    ``preferences.jsonl.gz`` ({user_id, preference}) and ``reference_user_index.jsonl.gz`` ({user_id, index})."""
    d = Path(directory)

    def find(stem: str) -> Path | None:
        for suffix in (".jsonl.gz", ".jsonl"):
            if (d / f"{stem}{suffix}").exists():
                return d / f"{stem}{suffix}"
        return None

    seq_path, items_path = find("sequences"), find("items")
    if seq_path is None:
        raise DataError("sequences.jsonl(.gz) not found", d)
    rows = []
    for rec in _read_jsonl(seq_path, policy, {"user_id": str, "item_ids": list}):
        ts = rec.get("timestamps")
        if ts is not None and (bad := _bad_timestamps(rec["item_ids"], ts)):
            policy(DataError(bad, seq_path, rec["_line"], "timestamps"), "bad_timestamps")
            continue
        for pos, item in enumerate(rec["item_ids"]):
            rows.append((rec["user_id"], str(item), None if ts is None else int(ts[pos]), len(rows)))
    raw = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "order"])
    items = None
    if items_path is not None:
        recs = _read_jsonl(items_path, policy, {"item_id": str})
        items = pd.DataFrame({"item_id": [r["item_id"] for r in recs],
                              "title": [r.get("title") if isinstance(r.get("title"), str) else None for r in recs]})
    prefs = ref = None
    if (p := find("preferences")) is not None:
        # The authors' release has users with an empty sentence: those are dropped and counted, never fatal.
        recs = _read_jsonl(p, policy, {"user_id": str})
        empty = [r for r in recs if not isinstance(r.get("preference"), str) or not r["preference"].strip()]
        if empty:
            policy.skipped["empty_preference"] += len(empty)
            log.warning("%s: %d users have an empty preference sentence; they are left without one", p, len(empty))
        recs = [r for r in recs if isinstance(r.get("preference"), str) and r["preference"].strip()]
        prefs = pd.DataFrame({"user_id": [r["user_id"] for r in recs], "preference": [r["preference"] for r in recs],
                              "provenance": [f"imported from {p}"] * len(recs)})
    if (p := find("reference_user_index")) is not None:
        recs = _read_jsonl(p, policy, {"user_id": str, "index": list})
        ref = pd.DataFrame({"user_id": [r["user_id"] for r in recs], "index": [list(map(str, r["index"])) for r in recs]})
    return {"raw": raw, "items": items, "preferences": prefs, "reference_index": ref}


def read_openp5(directory: str | Path, policy: ErrorPolicy) -> dict[str, pd.DataFrame | None]:
    """OpenP5 ``user_sequence.txt`` (``user item item ...`` in time order) with titles from
    ``products_lookup.csv`` (``,global_product_id,name``) through ``item_id_to_int.json``."""
    d = Path(directory)
    seq = d / "user_sequence.txt"
    rows = []
    for lineno, text in iter_lines(seq, policy):
        parts = text.split()
        if len(parts) < 2:
            policy(DataError("a user with no items", seq, lineno, "item_ids"), "empty_item_ids")
            continue
        for item in parts[1:]:
            rows.append((parts[0], item, len(rows)))
    raw = pd.DataFrame(rows, columns=["user_id", "item_id", "order"])
    items = None
    if (d / "item_id_to_int.json").exists() and (d / "products_lookup.csv").exists():
        to_int = _read_item_id_to_int(d / "item_id_to_int.json")
        name_of = _read_products_lookup(d / "products_lookup.csv")
        items = pd.DataFrame({"item_id": list(to_int), "title": [name_of.get(i) for i in to_int.values()]})
    return {"raw": raw, "items": items, "preferences": None, "reference_index": None}


def _decode_whole(path: Path) -> str:
    """A whole (small) file as UTF-8 text; bad bytes are a :class:`DataError` naming their line."""
    with _open_binary(path) as f:
        try:
            data = f.read()
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            raise DataError(f"gzip stream truncated or corrupt ({e})", path) from e
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 (byte {e.start}: {data[e.start:e.start + 1]!r})", path,
                        data[:e.start].count(b"\n") + 1) from e


def _line_of(text: str, needle: str) -> int | None:
    at = text.find(needle)
    return None if at < 0 else text.count("\n", 0, at) + 1


def _read_item_id_to_int(path: Path) -> dict[str, int]:
    """OpenP5 ``item_id_to_int.json``: ``{"<asin>": <int>, ...}``."""
    text = _decode_whole(path)
    try:
        obj = json.loads(text)
    except RecursionError:
        raise DataError("not valid JSON (nested too deeply)", path) from None
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", path, e.lineno) from e
    if not isinstance(obj, dict):
        raise DataError(f"expected an object {{item_id: integer}}, got {type(obj).__name__}", path, 1)
    out = {}
    for key, value in obj.items():
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
                value = int(value)
            else:
                raise DataError(f"expected an integer, got {value!r}"[:200], path, _line_of(text, json.dumps(key)),
                                str(key))
        out[str(key)] = value
    return out


def _read_products_lookup(path: Path) -> dict[int, str]:
    """OpenP5 ``products_lookup.csv`` (``,global_product_id,name`` with a header) -> {global_product_id: name}."""
    text = _decode_whole(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or "global_product_id" not in header or "name" not in header:
            raise DataError("expected a header with columns global_product_id and name", path, 1)
        id_col, name_col = header.index("global_product_id"), header.index("name")
        out: dict[int, str] = {}
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"expected {len(header)} comma-separated fields, got {len(row)}", path, reader.line_num)
            raw_id = row[id_col].strip()
            if not (raw_id.isascii() and raw_id.lstrip("-").isdigit()):
                raise DataError(f"expected an integer, got {raw_id!r}"[:200], path, reader.line_num, "global_product_id")
            out[int(raw_id)] = row[name_col]
    except csv.Error as e:
        raise DataError(f"not valid CSV ({e})", path, reader.line_num) from e
    return out


# --------------------------------------------------------------------------- RecBole atomic files
def _recbole_header(path: Path) -> list[tuple[str, str]]:
    try:
        with _open_binary(path) as f:
            raw = f.readline()
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"gzip stream truncated or corrupt ({e})", path, 1) from e
    try:
        first = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise DataError(f"header is not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})", path, 1) from e
    cols = []
    for c in first.split("\t"):
        if ":" not in c:
            raise DataError(f"header column {c!r} is not name:type", path, 1)
        name, tp = c.rsplit(":", 1)
        cols.append((name, tp))
    return cols


def read_recbole(directory: str | Path, policy: ErrorPolicy) -> dict[str, pd.DataFrame | None]:
    """RecBole atomic files ``<ds>.inter`` (user_id, item_id, rating?, timestamp?, review?) and ``<ds>.item``
    (item_id, title? or movie_title?)."""
    d = Path(directory)
    inters = sorted(d.glob("*.inter"))
    if not inters:
        raise DataError("no .inter file", d)
    path = inters[0]
    cols = _recbole_header(path)
    names = [n for n, _ in cols]
    for need in ("user_id", "item_id"):
        if need not in names:
            raise DataError(f"header lacks {need}:token", path, 1, need)
    rows = []
    for lineno, text in iter_lines(path, policy):
        if lineno == 1:
            continue
        fields = text.split("\t")
        if len(fields) != len(cols):
            policy(DataError(f"expected {len(cols)} tab-separated fields, got {len(fields)}", path, lineno), "malformed")
            continue
        rec = dict(zip(names, fields))
        user = _require_str(rec, "user_id", path, lineno, policy)
        item = _require_str(rec, "item_id", path, lineno, policy) if user else None
        if user is None or item is None:
            continue
        ts = _number(rec, "timestamp", path, lineno, policy, required=False) if rec.get("timestamp") else None
        rating = _number(rec, "rating", path, lineno, policy, required=False) if rec.get("rating") else None
        rows.append((user, item, None if ts is None else int(ts), rating, rec.get("review") or None, len(rows)))
    raw = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating", "review", "order"])
    items = None
    item_files = sorted(d.glob("*.item"))
    if item_files:
        ipath = item_files[0]
        icols = [n for n, _ in _recbole_header(ipath)]
        if "item_id" not in icols:
            raise DataError("header lacks item_id:token", ipath, 1, "item_id")
        tcol = next((c for c in ("title", "movie_title", "item_title") if c in icols), None)
        recs = []
        for lineno, text in iter_lines(ipath, policy):
            if lineno == 1:
                continue
            fields = text.split("\t")
            if len(fields) != len(icols):
                policy(DataError(f"expected {len(icols)} fields, got {len(fields)}", ipath, lineno), "malformed")
                continue
            rec = dict(zip(icols, fields))
            recs.append((rec["item_id"], rec.get(tcol) if tcol else None))
        items = pd.DataFrame(recs, columns=["item_id", "title"])
    return {"raw": raw, "items": items, "preferences": None, "reference_index": None}


def _recbole_escape(s: Any) -> str:
    return "" if s is None or (isinstance(s, float) and pd.isna(s)) or s is pd.NA else str(s).replace("\t", " ").replace("\n", " ")


def export_recbole(ds, directory: str | Path, name: str) -> list[Path]:
    """Write ``<name>.inter`` and ``<name>.item`` (original ids; chronological order kept)."""
    d = Path(directory)
    inter = ds.interactions.merge(ds.users, on="user_idx").merge(ds.items[["item_idx", "item_id"]], on="item_idx")
    header = ["user_id:token", "item_id:token"]
    cols = ["user_id", "item_id"]
    if ds.has_ratings:
        header.append("rating:float")
        cols.append("rating")
    ts = inter["timestamp"] if ds.has_timestamps else inter["position"]
    inter = inter.assign(timestamp=ts)
    header.append("timestamp:float")
    cols.append("timestamp")
    lines = ["\t".join(header)] + ["\t".join(_recbole_escape(v) for v in row) for row in inter[cols].itertuples(index=False)]
    write_text(d / f"{name}.inter", "\n".join(lines) + "\n")
    ilines = ["item_id:token\ttitle:token_seq"] + [f"{_recbole_escape(i)}\t{_recbole_escape(t)}"
                                                   for i, t in zip(ds.items["item_id"], ds.items["title"])]
    write_text(d / f"{name}.item", "\n".join(ilines) + "\n")
    return [d / f"{name}.inter", d / f"{name}.item"]
