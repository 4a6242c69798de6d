"""``ulmrec recommend --user ID``: the ranked candidate titles for one user from a trained run.

The user's test-time candidates (``retrieval/candidates_test.parquet``) are ranked by the trained ULMRec
adapter (``--baseline``: the LlamaRec-style one) from the user's history without the held-out test item, which
is marked in the output when it is among the candidates::

    ulmrec recommend -c beauty --user A1YJEY40YUW4SE
    ulmrec recommend -c sample --user 17 --top 5
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ulmrec.artifacts import adapter_dir, candidates_path
from ulmrec.config import load_config
from ulmrec.data.dataset import Dataset
from ulmrec.errors import ConfigError
from ulmrec.ranker.engine import Ranker, base_title_cutter, load_identities
from ulmrec.tasks import build_eval_samples


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="the user's original id (e.g. a reviewerID) or user_idx")
    parser.add_argument("--top", default="10", help="how many titles to print, a whole number >= 1 (default 10)")
    parser.add_argument("--baseline", action="store_true", help="rank with the LlamaRec-style adapter instead")
    parser.add_argument("-c", "--config", action="append", default=[], metavar="PRESET_OR_YAML",
                        help="preset name or YAML file of the run (repeatable)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="settings, e.g. run_dir=runs/beauty")


def find_user(ds, user: str) -> int:
    ids = ds.users["user_id"].astype(str).to_numpy()
    hit = np.flatnonzero(ids == user)
    if len(hit):
        return int(ds.users["user_idx"].to_numpy()[hit[0]])
    if user.isascii() and user.isdigit() and int(user) < ds.num_users:  # ASCII only: int('١٢') is 12
        return int(user)
    raise ConfigError(f"no user {user!r} (neither an original user id nor a user_idx below {ds.num_users})")


def recommend(cfg, user: str, top: int = 10, baseline: bool = False) -> pd.DataFrame:
    """Ranked candidates of one user: rank, item_idx, title, score, held_out (the test item)."""
    run_dir = Path(cfg.run_dir)
    adapter = adapter_dir(run_dir, baseline)
    if not (adapter / "adapter_config.json").exists():
        raise ConfigError(f"no trained ranker in {adapter}; run `ulmrec train` (or `ulmrec run`) for this run_dir")
    ds = Dataset.load(run_dir)
    u = find_user(ds, str(user))
    cands = pd.read_parquet(candidates_path(run_dir, "test"))
    row = cands[cands["user_idx"] == u]
    if row.empty:
        raise ConfigError(f"user {user!r} has no candidates in {candidates_path(run_dir, 'test')}")
    n = cfg.tasks.num_candidates
    # build the prompt as for evaluation; the target field only marks the held-out item, it is not shown
    items = [int(i) for i in row["candidates"].iloc[0][:n]]
    test_item = int(ds.test_targets()[u])
    shown = row.assign(candidates=[items], target=[test_item if test_item in items else items[0]])
    prompt = "no_index" if baseline else cfg.tasks.prompt
    tasks = dataclasses.replace(cfg.tasks, prompt=prompt)
    cut = base_title_cutter(cfg.ranker)
    identities = {} if baseline else load_identities(cfg, ds, run_dir)
    truth = ds.test_targets().copy()
    truth[u] = int(shown["target"].iloc[0])
    ds_view = _with_test_target(ds, u, truth[u])
    sample = build_eval_samples(ds_view, "test", shown, tasks, identities=identities, title_fn=cut, prompt=prompt)[0]
    ranker = Ranker.load(cfg.ranker, adapter, cfg.device)
    scores, _ = ranker.score([sample], batch_size=1, progress=False)
    order = np.argsort(-scores[0][:len(items)], kind="stable")[:top]
    return pd.DataFrame({"rank": np.arange(1, len(order) + 1), "item_idx": [items[i] for i in order],
                         "title": [ds.titles[items[i]] for i in order], "score": scores[0][order],
                         "held_out": [items[i] == test_item for i in order]})


def _with_test_target(ds, u: int, item: int):
    """``ds`` whose user ``u`` has ``item`` as test item (the candidates builder checks the target)."""
    if int(ds.test_targets()[u]) == item:
        return ds
    inter = ds.interactions.copy()
    last = inter.index[(inter["user_idx"] == u) & (inter["split"] == "test")]
    inter.loc[last, "item_idx"] = item
    return dataclasses.replace(ds, interactions=inter)


def main(args: argparse.Namespace) -> int:
    top = str(args.top).strip()
    if not (top.isascii() and top.isdigit() and int(top) >= 1):
        raise ConfigError(f"--top must be a whole number >= 1, got {args.top!r}")
    cfg = load_config(args.config, args.overrides)
    table = recommend(cfg, args.user, int(top), args.baseline)
    for r in table.itertuples():
        mark = "  <- held-out test item" if r.held_out else ""
        print(f"{r.rank:>3}. {r.title}  (item {r.item_idx}, score {r.score:.3f}){mark}")
    return 0
