"""The package's import graph: data flows one way (data -> preferences -> retrieval -> indexing -> tasks ->
ranker -> evaluation -> experiments), so no stage package imports a later one, function-local imports
included; the ground-level modules import no stage except the settings dataclasses (``<stage>.config``)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "ulmrec"
ORDER = ["data", "preferences", "retrieval", "indexing", "tasks", "ranker", "evaluation", "experiments"]
#: Modules that sit above every stage (they wire the stages together).
TOP = {"cli", "pipeline"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("ulmrec")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("ulmrec"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_no_stage_imports_a_later_stage():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        here = rel.parts[0] if rel.parts[0] in ORDER else None
        if rel.parts[0] in TOP:
            continue
        for mod in _imports(path):
            there = _stage(mod)
            if there is None or there == here:
                continue
            if mod.split(".")[2:3] == ["config"] or mod.endswith(".config"):  # settings dataclasses are ground
                continue
            if here is None or ORDER.index(there) > ORDER.index(here):
                bad.append(f"{'/'.join(rel.parts)} imports {mod}")
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_the_check_finds_a_back_edge(tmp_path, monkeypatch):
    (tmp_path / "retrieval").mkdir()
    (tmp_path / "retrieval" / "x.py").write_text("def f():\n    from ulmrec.evaluation.stats import fuse\n")
    (tmp_path / "retrieval" / "ok.py").write_text("from ulmrec.data.dataset import Dataset\nfrom ulmrec.tasks.config import X\n")
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path)
    try:
        test_no_stage_imports_a_later_stage()
    except AssertionError as err:
        assert "retrieval/x imports ulmrec.evaluation.stats" in str(err)
        assert "ok" not in str(err).split("\n", 1)[1]
    else:
        raise AssertionError("the back edge was not found")
