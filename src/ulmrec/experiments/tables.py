"""Tables (Markdown, CSV, LaTeX) and figures (matplotlib PNG) of the experiments; mean and standard deviation
over seeds; every file names the exact command that made it.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ulmrec import paper
from ulmrec.io import write_bytes, write_text

RANK_COLS = ["MRR@5", "NDCG@5", "Recall@5", "MRR@10", "NDCG@10", "Recall@10"]
OVERALL_COLS = ["NDCG@10", "Recall@10"]
SHORT = {"MRR": "M", "NDCG": "N", "Recall": "R"}

def _row(rank: list[float], overall: tuple[float, float] | None = None) -> dict[str, dict[str, float]]:
    out = {"Rank": dict(zip(RANK_COLS, rank, strict=True))}
    if overall:
        out["Overall"] = {"NDCG@10": overall[0], "Recall@10": overall[1]}
    return out


def _paper(dataset: str, method: str) -> dict[str, dict[str, float]]:
    vals = paper.TABLE2[dataset][method]["Overall"]
    return _row(list(paper.TABLE2[dataset][method]["Rank"]), (vals[4], vals[5]))


#: The paper's numbers as printed (Table 2, Table 4: Games only; section 5.4.3: seconds per test user), from
#: :mod:`ulmrec.paper`.
PAPER = {
    "games": {"LRURec": _paper("games", "LRURec"), "LlamaRec": _paper("games", "LlamaRec"),
              "ULMRec": _paper("games", "ULMRec"), "ULMRec-uid": _row(list(paper.TABLE4_UID_GAMES)),
              "seconds": paper.SECONDS_PER_USER["games"]},
    "beauty": {"LRURec": _paper("beauty", "LRURec"), "LlamaRec": _paper("beauty", "LlamaRec"),
               "ULMRec": _paper("beauty", "ULMRec"), "seconds": paper.SECONDS_PER_USER["beauty"]},
}


def paper_dataset(name: str) -> str | None:
    """'games' / 'beauty' when ``name`` (presets or run directory) says which of the paper's datasets it is."""
    low = name.lower()
    return next((d for d in PAPER if d in low), None)


def short(col: str) -> str:
    m, k = col.split("@")
    return f"{SHORT.get(m, m)}@{k}"


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (nan for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], float)
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


def fmt(mean: float, std: float, digits: int = 4, sep: str = " ± ") -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f"{sep}{std:.{digits}f}")


class Table:
    """Rows of ``{column: [value per seed]}`` (or fixed reference values) rendered three ways."""

    def __init__(self, title: str, columns: list[tuple[str, str]], digits: int = 4,
                 col_digits: dict[str, int] | None = None):
        self.title = title
        self.columns = columns  # (key, header)
        self.digits = digits
        self.col_digits = {"train_samples": 0, "steps": 0, "train_seconds": 0, **(col_digits or {})}
        self.rows: list[tuple[str, dict[str, list[float]], str]] = []  # (label, values, kind)

    def add(self, label: str, values: dict[str, list[float]], kind: str = "measured") -> None:
        self.rows.append((label, values, kind))

    def stats(self) -> list[tuple[str, str, dict[str, tuple[float, float, int]]]]:
        return [(label, kind, {k: mean_std(values.get(k, [])) for k, _ in self.columns})
                for label, values, kind in self.rows]

    def markdown(self) -> str:
        head = "| | " + " | ".join(h for _, h in self.columns) + " | seeds |"
        lines = [head, "|" + "---|" * (len(self.columns) + 2)]
        for label, kind, st in self.stats():
            n = max((c for _, _, c in st.values()), default=0)
            cells = [fmt(m, s, self.col_digits.get(k, self.digits)) for k, (m, s, _) in st.items()]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {n if kind == 'measured' else kind} |")
        return "\n".join(lines)

    def csv(self, command: str) -> str:
        buf = io.StringIO()
        buf.write(f"# {self.title}\n# command: {command}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["row", "kind"] + [f"{k}_{s}" for k, _ in self.columns for s in ("mean", "std")] + ["seeds"])
        for label, kind, st in self.stats():
            n = max((c for _, _, c in st.values()), default=0)
            w.writerow([label, kind] + [f"{x:.6f}" if not math.isnan(x) else "" for m, s, _ in st.values()
                                        for x in (m, s)] + [n])
        return buf.getvalue()

    def latex(self, command: str) -> str:
        def esc(s: str) -> str:
            return s.replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("@", "@")

        cols = "l" + "c" * len(self.columns)
        out = [f"% {self.title}", f"% command: {command}", r"\begin{tabular}{" + cols + "}", r"\toprule",
               " & ".join([""] + [esc(h) for _, h in self.columns]) + r" \\", r"\midrule"]
        for label, kind, st in self.stats():
            cells = [fmt(m, s, self.col_digits.get(k, self.digits), sep=r"$\pm$") for k, (m, s, _) in st.items()]
            name = esc(label) + (f" ({kind})" if kind != "measured" and kind not in label else "")
            out.append(" & ".join([name] + [c.replace("–", "--") for c in cells]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", ""]
        return "\n".join(out)


def metric_columns(with_overall: bool = True) -> list[tuple[str, str]]:
    cols = [(f"Rank/{c}", f"Rank {short(c)}") for c in RANK_COLS]
    if with_overall:
        cols += [(f"Overall/{c}", f"Overall {short(c)}") for c in OVERALL_COLS]
    return cols


def metric_values(records: dict[int, dict[str, Any]], model: str, train: bool = True) -> dict[str, list[float]]:
    """``{'Rank/NDCG@10': [per seed], ...}`` of ``model`` in the evaluate results of each seed's record."""
    out: dict[str, list[float]] = {}
    for rec in records.values():
        entry = rec.get("models", {}).get(model)
        if entry is None:
            continue
        for part in ("Rank", "Overall"):
            for k, v in entry.get(part, {}).items():
                out.setdefault(f"{part}/{k}", []).append(v)
        if entry.get("seconds_per_user") is not None:
            out.setdefault("seconds_per_user", []).append(entry["seconds_per_user"])
    if not train:
        return out
    runs = [r.get("train", {}) for r in records.values()]
    for key in ("train_samples", "steps", "train_seconds"):
        vals = [t[key] for t in runs if t.get(key) is not None]
        if vals:
            out[key] = vals
    return out


def paper_values(dataset: str | None, name: str) -> dict[str, list[float]]:
    """The paper's numbers of row ``name`` for ``dataset`` ({} when the paper has none)."""
    ref = PAPER.get(dataset or "", {}).get(name)
    if not ref:
        return {}
    return {f"{part}/{k}": [v] for part, d in ref.items() for k, v in d.items()}


def random_values(n: int, coverage: float | None = None) -> dict[str, list[float]]:
    """Expected metrics of a uniformly random order of ``n`` candidates (the target equally likely at each
    rank); Overall = Rank x ``coverage`` when given."""
    out = {}
    for k in (5, 10):
        kk = min(k, n)
        out[f"Rank/MRR@{k}"] = [sum(1 / r for r in range(1, kk + 1)) / n]
        out[f"Rank/NDCG@{k}"] = [sum(1 / math.log2(r + 1) for r in range(1, kk + 1)) / n]
        out[f"Rank/Recall@{k}"] = [kk / n]
    if coverage is not None and not math.isnan(coverage):
        for k in ("NDCG@10", "Recall@10"):
            out[f"Overall/{k}"] = [out[f"Rank/{k}"][0] * coverage]
    return out


def write_outputs(out_dir: Path, stem: str, header: str, table: Table, command: str, notes: str = "",
                  extra_md: str = "") -> None:
    """``<stem>.md`` (with the command, the table and notes), ``<stem>.csv`` and ``<stem>.tex``."""
    md = [f"# {table.title}", "", header, "", "Command:", "", "```", command, "```", "", table.markdown(), ""]
    if notes:
        md += [notes, ""]
    if extra_md:
        md += [extra_md, ""]
    write_text(out_dir / f"{stem}.md", "\n".join(md))
    write_text(out_dir / f"{stem}.csv", table.csv(command))
    write_text(out_dir / f"{stem}.tex", table.latex(command))


# --------------------------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def bar_figure(path: Path, groups: list[str], panels: list[tuple[str, list[tuple[str, list[tuple[float, float]]]]]],
               title: str, command: str) -> None:
    """Grouped bars, one subplot per panel: ``panels`` = [(y label, [(legend label, [(mean, std) per group])])];
    error bars = standard deviation over seeds; the command is printed under the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(series) for _, series in panels)
    width = 0.8 / max(1, n)
    x = np.arange(len(groups))
    long = max(len(g) for g in groups) > 8
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 0.55 * len(groups) * max(2, n) * 0.6 + 2.5) * len(panels)
                                                      / max(1, len(panels) - 0.4 * (len(panels) - 1)), 4.0),
                             squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, (ylabel, series) in zip(axes[0], panels, strict=True):
        for i, (label, vals) in enumerate(series):
            means = [m for m, _ in vals]
            stds = [0.0 if math.isnan(s) else s for _, s in vals]
            bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=label,
                          color=colors[i % len(colors)], edgecolor="black", linewidth=0.4)
            for b, m, sd in zip(bars, means, stds, strict=True):
                if not math.isnan(m):  # above the error bar
                    ax.annotate(f"{m:.3f}", (b.get_x() + b.get_width() / 2, m + sd), ha="center", va="bottom",
                                fontsize=6, xytext=(0, 2), textcoords="offset points", rotation=90)
        ax.set_xticks(x)
        ax.set_xticklabels(groups, rotation=25 if long else 0, ha="right" if long else "center", fontsize=8)
        ax.set_ylabel(ylabel)
        tops = [m + (0 if math.isnan(s) else s) for _, vals in series for m, s in vals if not math.isnan(m)]
        ax.set_ylim(0, max(tops + [0.01]) * 1.3)
        ax.legend(fontsize=7, ncol=min(len(series), 4), loc="upper left")
        ax.grid(axis="y", linewidth=0.3)
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, -0.02, f"$ {command}", fontsize=5.5, family="monospace", ha="left", va="top", wrap=True)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
