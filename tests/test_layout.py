"""The layout keeps its promises: the runtime never imports training code, and the UIs only talk to the service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = [ROOT / "app.py", *sorted((ROOT / "pipeline").glob("*.py")), *sorted((ROOT / "web").glob("*.py")),
           *sorted((ROOT / "dashboard").glob("*.py"))]
UIS = [ROOT / "app.py", *sorted((ROOT / "web").glob("*.py")), *sorted((ROOT / "dashboard").glob("*.py"))]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function, as absolute dotted names."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1]) if path.is_relative_to(ROOT) else ""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parent, base]))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


def test_no_runtime_module_reaches_the_training_code():
    """Walks every import (transitively, lazy ones included) from each runtime module."""
    for start in RUNTIME:
        seen, todo, chain = {start}, [start], {start: [start.name]}
        while todo:
            path = todo.pop()
            for name in _imports(path):
                assert not (name == "pipeline.training" or name.startswith("pipeline.training.")), (
                    f"{' -> '.join(chain[path])} imports {name}: the runtime must not load training code")
                target = _module_file(name)
                if target is not None and target not in seen:
                    seen.add(target)
                    chain[target] = [*chain[path], target.relative_to(ROOT).as_posix()]
                    todo.append(target)


def test_the_import_walk_would_catch_a_training_import(tmp_path):
    """The walk above is not vacuous: a lazy import inside a function is found."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from pipeline.training import synth\n")
    assert "pipeline.training" in _imports(probe)


def test_user_interfaces_only_talk_to_the_service():
    """No UI reaches past the service facade into ``service.store`` or ``service.map``."""
    for path in UIS:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in {"store", "map", "index"}
                    and isinstance(node.value, ast.Name) and node.value.id == "service"):
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} uses service.{node.attr}")
