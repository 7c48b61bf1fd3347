"""Imports point downward only (the layers table of the design): a package imports from the
packages below it and from the shared top-level modules (errors, config, wire...), never up."""

import ast
from pathlib import Path

import agentflow

SRC = Path(agentflow.__file__).parent
PACKAGES = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
# package: the packages it may import (besides itself and agentflow's top-level modules)
MAY_IMPORT = {
    "raft": set(),
    "state": set(),
    "cluster": {"raft", "state"},
    "scheduler": {"state"},
    "api": {"cluster", "state", "scheduler", "raft"},
    "client": set(),
    "worker": {"client"},
    "cli": PACKAGES,
    "testing": PACKAGES,
}


def _imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            if parts[0] == "agentflow" and len(parts) > 1 and parts[1] in PACKAGES:
                found.add(parts[1])
    return found


def test_every_package_has_a_row() -> None:
    assert set(MAY_IMPORT) >= PACKAGES, PACKAGES - set(MAY_IMPORT)


def test_imports_point_downward() -> None:
    upward = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((SRC / package).rglob("*.py")):
            for used in _imported_packages(path) - allowed - {package}:
                upward.append(f"{path.relative_to(SRC)} imports agentflow.{used}")
    assert upward == []
