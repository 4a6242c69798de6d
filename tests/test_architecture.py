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


# ------------------------------------------------------------------------------------ the stage registry
def test_the_pipeline_imports_every_stage_explicitly():
    """``ulmrec.pipeline`` names each stage module in an import statement (no importlib, no find_spec), and its
    registry is those stages in data-flow order; no stage module imports the pipeline (only ulmrec.stage)."""
    from ulmrec import pipeline

    source = (PKG / "pipeline.py").read_text(encoding="utf-8") + (PKG / "cli.py").read_text(encoding="utf-8")
    assert "importlib" not in source and "find_spec" not in source
    imported = _imports(PKG / "pipeline.py")
    pkgs = ["data", "preferences", "retrieval", "indexing", "ranker", "evaluation"]
    assert all(f"ulmrec.{p}.stage" in imported for p in pkgs)
    assert [s.name for s in pipeline.STAGES] == ["data", "preferences", "retrieval", "index", "ranker", "evaluate"]
    for p in pkgs:
        mods = _imports(PKG / p / "stage.py")
        assert "ulmrec.stage.Stage" in mods and not any(m.startswith("ulmrec.pipeline") for m in mods), p


def test_no_import_cycle():
    """Module-level imports between the package's modules form no cycle."""
    graph: dict[str, set[str]] = {}
    modules = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        modules[name] = path
    for name, path in modules.items():
        deps = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # module level only
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                         for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_stage_declares_what_it_reads_and_writes(tmp_path):
    """Each stage's fingerprinted inputs are among its declared ``reads`` (every artifact present, settings that
    read the most), and what it reads is written by an earlier stage."""
    from ulmrec import artifacts
    from ulmrec.config import load_config
    from ulmrec.pipeline import STAGES

    for a in artifacts.ALL:
        a.path(tmp_path).parent.mkdir(parents=True, exist_ok=True)
        a.path(tmp_path).write_text("x")
    written: set = set()
    for overrides in ([], ["tasks.train_candidates=retriever", "preferences.mode=import", "index.text_source=auto"]):
        cfg = load_config([], [f"run_dir={tmp_path}", *overrides])
        written = set()
        for stage in STAGES:
            declared = {a.path(tmp_path) for a in stage.reads}
            inside = [p for p in stage.inputs(cfg, tmp_path) if str(p).startswith(str(tmp_path))]
            assert set(inside) <= declared, (stage.name, set(inside) - declared)
            assert set(stage.reads) <= written, (stage.name, set(stage.reads) - written)
            assert all(a.stage == stage.name for a in stage.writes), stage.name
            written |= set(stage.writes)
    assert {a for a in artifacts.ALL if a.stage != artifacts.AUDIT} == written


def _literals(path: Path) -> list[tuple[int, str]]:
    """The package's string literals (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    docstrings |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_artifact_file_names_are_spelled_only_in_the_declaration():
    """Every artifact path comes from ``ulmrec.artifacts``: no other module writes an artifact's file name (or any
    ``.parquet`` name) as a literal."""
    import re

    from ulmrec.artifacts import FILE_NAMES

    names = re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in sorted(FILE_NAMES)) + r")(?![\w])"
                       r"|\.parquet\b")
    stray = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "artifacts.py":
            continue
        for line, text in _literals(path):
            if names.search(text):
                stray.append(f"{path.relative_to(PKG)}:{line}: {text!r}")
    assert not stray, "artifact file names outside ulmrec/artifacts.py:\n" + "\n".join(stray)


def test_docs_architecture_is_generated_from_the_registry():
    """docs/ARCHITECTURE.md's stage table, graph and artifacts are what the registry generates
    (``.venv/bin/python scripts/architecture.py`` rewrites them)."""
    import importlib.util

    script = PKG.parents[1] / "scripts" / "architecture.py"
    spec = importlib.util.spec_from_file_location("architecture_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = module.DOC.read_text(encoding="utf-8")
    assert module.regenerate(text) == text, "docs/ARCHITECTURE.md is out of date: run scripts/architecture.py"


def test_the_literal_check_finds_a_stray_file_name(tmp_path, monkeypatch):
    (tmp_path / "x.py").write_text('"""Writes ``user_index.parquet``."""\n\ndef f(d, s):\n'
                                   '    return d / "user_index.parquet", d / f"cands_{s}.parquet", d / "best.json"\n')
    (tmp_path / "ok.py").write_text('def g(d):\n    """Reads ``results.json``."""\n    return d / "README.md"\n')
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path)
    try:
        test_artifact_file_names_are_spelled_only_in_the_declaration()
    except AssertionError as err:
        message = str(err).split("\nassert ")[0]
        assert message.count("x.py:4: ") == 3 and "ok.py" not in message, message
    else:
        raise AssertionError("the stray literals were not found")
