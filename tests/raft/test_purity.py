"""The core is pure: stdlib only, and no I/O, clock, threads or global randomness."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import agentflow.raft

PACKAGE = Path(agentflow.raft.__file__).parent
FORBIDDEN = {"asyncio", "socket", "sqlite3", "time", "threading", "selectors", "os", "io"}


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_package_imports_only_pure_stdlib() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5
    for path in modules:
        for module, names in _imports(ast.parse(path.read_text())):
            top = module.split(".")[0]
            where = f"{path.name}: {module}"
            if top == "agentflow":
                assert module.startswith("agentflow.raft"), where
                continue
            assert top in sys.stdlib_module_names, where
            assert top not in FORBIDDEN, where
            if top == "random":
                assert module == "random" and names == ["Random"], where


def test_no_module_level_random_calls() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert node.value.id not in {"random", "time"}, f"{path.name}: {node.value.id}"


def test_public_names_are_sorted_and_exported() -> None:
    names = agentflow.raft.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(agentflow.raft, name)
