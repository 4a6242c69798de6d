"""The package's import graph: data flows one way (data -> preferences -> retrieval -> indexing -> tasks ->
ranker -> evaluation -> experiments), so no stage package imports a later one, function-local imports
included; the ground-level modules import no stage except the settings dataclasses (``<stage>.config``).
No import cycle either, function-local imports included, so a function-local import of the package's own
modules is never there to break a cycle: the few left (:data:`LOCAL_IMPORTS`) defer a heavy library that
``ulmrec --help`` does not need. Nothing is found by name (importlib, find_spec, module ``__getattr__``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "ulmrec"
ORDER = ["data", "preferences", "retrieval", "indexing", "tasks", "ranker", "evaluation", "experiments"]
#: Modules that sit above every stage (they wire the stages together): the CLI, the pipeline, and the
#: ``accelerate launch`` entry point of the ranker stage (``python -m ulmrec.ranker.launch``).
TOP = {"cli", "pipeline", "ranker/launch"}
#: ``ulmrec.pipeline`` imports every stage up to evaluation: for the data-flow check, importing it is importing
#: evaluation (experiments may, no earlier stage may).
PIPELINE_STAGE = "evaluation"
#: The function-local imports of the package's own modules that stay function-local, and the heavy library
#: each defers (the imported module loads it at module level; a module-level import would load it at every
#: ``ulmrec`` start, since the CLI imports the importing module). Everything else is imported at module level.
LOCAL_IMPORTS = {
    ("evaluation/stage.py", "ulmrec.evaluation.stats"): "scipy",  # 0.1 s
    ("preferences/stage.py", "ulmrec.preferences.openai_client"): "openai",  # 0.5 s
}
#: Project modules looked up by name (importlib.import_module, importlib.util.find_spec, __import__, a module
#: ``__getattr__``): none. Third-party probes with a literal name (``find_spec("bitsandbytes")``) are fine.
LAZY_LOOKUPS: set[tuple[str, str]] = set()


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
    if parts[1:2] == ["pipeline"]:
        return PIPELINE_STAGE
    return parts[1] if len(parts) > 1 and parts[1] in ORDER else None


def test_no_stage_imports_a_later_stage():
    """Every import statement counts, function-local ones included (``ast.walk``): a function-local import
    may defer a heavy library, never reach a later stage."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        here = rel.parts[0] if rel.parts[0] in ORDER else None
        if rel.parts[0] in TOP or "/".join(rel.parts) in TOP:
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
    (tmp_path / "retrieval" / "y.py").write_text("def g():\n    if True:\n        import ulmrec.pipeline\n")
    (tmp_path / "retrieval" / "ok.py").write_text("from ulmrec.data.dataset import Dataset\nfrom ulmrec.tasks.config import X\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "ok2.py").write_text("def h():\n    from ulmrec.pipeline import run_stage\n")
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path)
    try:
        test_no_stage_imports_a_later_stage()
    except AssertionError as err:
        assert "retrieval/x imports ulmrec.evaluation.stats" in str(err)
        assert "retrieval/y imports ulmrec.pipeline" in str(err)
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


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        modules[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return modules


def _targets(node: ast.AST, modules: dict[str, Path]) -> set[str]:
    """The package modules an import statement names (``from ulmrec.evaluation import stats``:
    ``ulmrec.evaluation.stats``; ``from ulmrec.tasks import Sample``: ``ulmrec.tasks``)."""
    if isinstance(node, ast.Import):
        names = {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                 for a in node.names}
    else:
        return set()
    return {n for n in names if n in modules}


def test_no_import_cycle():
    """Imports between the package's modules form no cycle, function-local ones included (``ast.walk``): so
    no function-local import is there to break a cycle."""
    graph: dict[str, set[str]] = {}
    modules = _modules()
    for name, path in modules.items():
        deps = set().union(*(_targets(n, modules) for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))))
        graph[name] = deps - {name}
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


def test_the_cycle_check_counts_function_local_imports(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("from ulmrec.b import x\n")
    (tmp_path / "b.py").write_text("def x():\n    from ulmrec.a import y\n")
    (tmp_path / "c.py").write_text("from ulmrec.a import z\n")
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path / "ulmrec")
    (tmp_path / "ulmrec").mkdir()
    for f in ("a.py", "b.py", "c.py"):
        (tmp_path / f).rename(tmp_path / "ulmrec" / f)
    try:
        test_no_import_cycle()
    except AssertionError as err:
        assert "ulmrec.a -> ulmrec.b -> ulmrec.a" in str(err) and "ulmrec.c" not in str(err), str(err)
    else:
        raise AssertionError("the cycle through a function-local import was not found")


def test_function_local_imports_of_the_package_are_the_listed_ones():
    """Every import of a package module that is not at module level (in a function, or under ``if``) is in
    :data:`LOCAL_IMPORTS`, and every listed one is still there and its module imports the library it defers at
    module level."""
    modules = _modules()
    found = set()
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nested = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and n not in tree.body]
        found |= {(path.relative_to(PKG).as_posix(), m) for n in nested for m in _targets(n, modules)}
    listed = set(LOCAL_IMPORTS)
    assert found == listed, ("imports of the package below module level outside LOCAL_IMPORTS (move them to module "
                             f"level, or list them with the library they defer): {sorted(found - listed)}; listed "
                             f"but gone: {sorted(listed - found)}")
    for (_, mod), library in LOCAL_IMPORTS.items():
        tree = ast.parse(modules[mod].read_text(encoding="utf-8"))
        libraries = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        libraries |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        assert library in libraries, (mod, library)


def test_the_local_import_check_finds_one(tmp_path, monkeypatch):
    (tmp_path / "ulmrec").mkdir()
    (tmp_path / "ulmrec" / "x.py").write_text("def f():\n    from ulmrec import y\n    import json\n")
    (tmp_path / "ulmrec" / "y.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from ulmrec.x import f\n")
    (tmp_path / "ulmrec" / "ok.py").write_text("from ulmrec.y import g\n")
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path / "ulmrec")
    try:
        test_function_local_imports_of_the_package_are_the_listed_ones()
    except AssertionError as err:
        outside = str(err).split("listed but gone")[0]
        assert "('x.py', 'ulmrec.y')" in outside and "('y.py', 'ulmrec.x')" in outside, outside
        assert "ok.py" not in outside and "json" not in outside, outside
    else:
        raise AssertionError("the function-local import was not found")


def test_the_deferred_libraries_stay_out_of_the_cli_start():
    """``import ulmrec.cli`` (what ``ulmrec --help`` pays for) loads none of the libraries the function-local
    imports defer, nor the language-model stack (which stays local inside ranker/ and indexing/encoder.py)."""
    deferred = sorted(set(LOCAL_IMPORTS.values()) | {"transformers", "peft", "sentence_transformers"})
    code = f"import sys, ulmrec.cli; print([m for m in {deferred!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _lazy_lookups(path: Path) -> set[str]:
    """What a file looks up by name: ``import_module(x)`` / ``find_spec(x)`` / ``__import__(x)`` with anything
    but a literal third-party name (``'<expr>'`` when not a literal), and a module-level ``__getattr__``."""
    out = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "find_spec", "__import__"):
                arg = node.args[0] if node.args else None
                target = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "<expr>"
                if target == "<expr>" or target.split(".")[0] == "ulmrec":
                    out.add(f"{name}({target})")
    out |= {"__getattr__" for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "__getattr__"}
    return out


def test_no_lazy_lookup_of_the_package_modules():
    """The package's modules import each other by name in import statements: no importlib.import_module,
    find_spec or module ``__getattr__`` lazy export of them (except :data:`LAZY_LOOKUPS`, none today)."""
    found = {(path.relative_to(PKG).as_posix(), what) for path in sorted(PKG.rglob("*.py"))
             for what in _lazy_lookups(path)}
    assert found == LAZY_LOOKUPS, f"lookups by name: {sorted(found - LAZY_LOOKUPS)}"


def test_the_lazy_lookup_check_finds_them(tmp_path, monkeypatch):
    (tmp_path / "x.py").write_text("import importlib\n\ndef __getattr__(name):\n"
                                   "    return importlib.import_module(f'ulmrec.tasks.{name}')\n")
    (tmp_path / "y.py").write_text("import importlib.util\nX = importlib.util.find_spec('ulmrec.indexing')\n")
    (tmp_path / "ok.py").write_text("import importlib.util\n\ndef f():\n    return importlib.util.find_spec('bitsandbytes')\n")
    monkeypatch.setattr(__import__(__name__), "PKG", tmp_path)
    try:
        test_no_lazy_lookup_of_the_package_modules()
    except AssertionError as err:
        message = str(err).split("\nassert ")[0]
        assert "('x.py', '__getattr__')" in message and "('x.py', 'import_module(<expr>)')" in message, message
        assert "('y.py', 'find_spec(ulmrec.indexing)')" in message and "ok.py" not in message, message
    else:
        raise AssertionError("the lookups by name were not found")


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
