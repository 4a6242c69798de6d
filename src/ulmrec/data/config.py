"""Settings of the data stage (ingestion + preprocessing, paper 5.1.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["sample", "ulmrec", "openp5", "amazon2014", "ratings2014", "amazon2018", "recbole"]


@dataclass
class DataConfig:
    source: Source = "sample"
    """(str) Input layout: 'sample' (the Beauty subset shipped in the package), 'ulmrec' (sequences/items/
    preferences JSON lines as in the authors' release), 'openp5' (user_sequence.txt + products_lookup.csv +
    item_id_to_int.json), 'amazon2014' (reviews_<Cat>_5.json.gz + meta_<Cat>.json.gz), 'ratings2014'
    (ratings_<Cat>.csv + meta), 'amazon2018' (<Cat>_5.json.gz + meta_<Cat>.json.gz), 'recbole' (.inter/.item/.user)."""
    path: str = ""
    """(str) The main input: a directory (ulmrec, openp5, recbole) or the reviews/ratings file (amazon*)."""
    meta_path: str = ""
    """(str) Item metadata file with titles (amazon*); empty: none (then titles cannot be filtered on)."""
    timestamps_path: str = ""
    """(str) Optional JSON lines {user_id, item_ids, timestamps} that adds real times to 'ulmrec'/'openp5' data."""
    item_order_path: str = ""
    """(str) Optional item list (JSON lines with item_id, or one id per line): interactions with the same
    timestamp are ordered by position in this list. LlamaRec breaks such ties by its own hash-seeded item ids;
    give the authors' items.jsonl.gz (which is in that id order) to reproduce their exact sequences."""
    k_core: int = 5
    """(int) Iterative k-core: drop users and items with fewer than k interactions until none remain."""
    drop_items_without_title: bool = True
    """(bool) Drop items whose title is missing or empty before the k-core (LlamaRec recipe)."""
    require_titles: bool = True
    """(bool) Fail when the source has no titles at all (the ranker needs them)."""
    on_error: Literal["raise", "skip"] = "raise"
    """(str) A malformed input line: 'raise' stops with file:line: field; 'skip' drops it and counts it."""

    def __post_init__(self) -> None:
        if self.k_core < 1:
            raise ValueError(f"k_core must be >= 1, got {self.k_core}")
