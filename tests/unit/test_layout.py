"""The layout keeps its promises: the runtime never imports training code, its modules import each other without a
cycle, and only the use cases (``pipeline/usecases/``) touch the store, the index and the map."""

from __future__ import annotations

import ast
from pathlib import Path
from tests.conftest import ROOT

RUNTIME = [ROOT / "app.py", *sorted((ROOT / "pipeline").glob("*.py")), *sorted((ROOT / "pipeline/usecases").glob("*.py")),
           *sorted((ROOT / "web").glob("*.py")), *sorted((ROOT / "dashboard").glob("*.py"))]
USE_CASES = ROOT / "pipeline/usecases"
# what a use case holds; everything else goes through the use cases (pipeline/service.py wires them)
INSIDE = {"pipeline.usecases.parts.Parts", "pipeline.store.LogoStore", "pipeline.index.LogoIndex",
          "pipeline.projection.LogoMap"}
# the modules that call the use cases: front ends, the CLI and the pipeline's own orchestration
CALLERS = [ROOT / "app.py", *sorted((ROOT / "web").glob("*.py")), *sorted((ROOT / "dashboard").glob("*.py")),
           *(ROOT / "pipeline" / name for name in ("cli.py", "demo.py", "importing.py", "evaluation.py",
                                                   "service.py"))]


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


def test_nothing_reaches_around_the_use_cases():
    """Callers name no store, index, map or parts, and no module but the wiring touches a service's parts."""
    for path in CALLERS:
        names = _imports(path)
        reached = names & INSIDE if path.name != "service.py" else names & (INSIDE - {"pipeline.usecases.parts.Parts"})
        assert not reached, f"{path.relative_to(ROOT)} imports {sorted(reached)}: call a use case instead"
    for path in RUNTIME:
        if path.name == "service.py" or path.is_relative_to(USE_CASES):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "_parts":
                raise AssertionError(f"{path.relative_to(ROOT)}:{node.lineno} reaches into a service's parts")


def test_the_check_would_catch_a_caller_reaching_for_the_store(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from pipeline.store import LogoStore, NewLogo\n")
    assert _imports(probe) & INSIDE == {"pipeline.store.LogoStore"}


def _graph() -> dict[Path, set[Path]]:
    """Which runtime module imports which (lazy imports included; typing-only ones left out)."""
    graph = {}
    for path in RUNTIME:
        tree = ast.parse(path.read_text())
        typing_only = {id(inner) for node in ast.walk(tree)
                       if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for child in node.body for inner in ast.walk(child)}
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and id(node) not in typing_only:
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and id(node) not in typing_only and node.module:
                names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        graph[path] = {found for name in names if (found := _module_file(name)) is not None} - {path}
    return graph


def test_no_import_cycle():
    """Modules that import each other (even through a function-local import) cannot be understood apart."""
    graph = _graph()
    done: set[Path] = set()

    def visit(path: Path, stack: list[Path]) -> None:
        if path in stack:
            cycle = stack[stack.index(path):] + [path]
            raise AssertionError("import cycle: " + " -> ".join(p.relative_to(ROOT).as_posix() for p in cycle))
        if path in done:
            return
        for target in graph.get(path, ()):
            visit(target, [*stack, path])
        done.add(path)

    for path in graph:
        visit(path, [])


# the modules that may start threads: the one worker of every derived result, and the first build of the store
THREAD_STARTERS = {ROOT / "pipeline/derived.py", ROOT / "pipeline/demo.py"}


def _starts_threads(path: Path) -> bool:
    return any(isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
               and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "Thread"
               for node in ast.walk(ast.parse(path.read_text(), filename=str(path))))


def test_derived_state_is_refreshed_by_one_kind_of_worker():
    """Whatever is computed from the store (index, calibration, map, cluster health, store evaluation) is a
    pipeline.derived.Derived refreshed by its worker; no module runs its own background thread beside it."""
    assert {path for path in RUNTIME if _starts_threads(path)} <= THREAD_STARTERS


def test_the_thread_check_would_catch_a_worker_of_its_own(tmp_path):
    rogue = tmp_path / "rogue.py"
    rogue.write_text("import threading\nthreading.Thread(target=print).start()\n")
    assert _starts_threads(rogue)
