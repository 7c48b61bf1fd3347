"""The pure cores do no I/O: no asyncio, sockets, SQLite, threads, clocks or global random."""

import ast
from pathlib import Path

import agentflow

SRC = Path(agentflow.__file__).parent
PURE = [
    SRC / "state",
    SRC / "scheduler" / "placement.py",
    SRC / "scheduler" / "dag.py",
    SRC / "raft",
    SRC / "gitspec.py",  # workspace checks, run at the API, the worker and workerwire
    SRC / "client" / "_calls.py",  # the SDK's requests and answers, shared by both clients
    SRC / "cluster" / "sql" / "url.py",  # the --store URL, checked before anything connects
]
FORBIDDEN = {"asyncio", "socket", "sqlite3", "threading", "time", "subprocess", "os", "random"}


def _modules() -> list[Path]:
    found: list[Path] = []
    for root in PURE:
        found += sorted(root.rglob("*.py")) if root.is_dir() else [root]
    return found


def test_pure_modules_import_no_io() -> None:
    offenders = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "random" and all(a.name == "Random" for a in node.names):
                    names = []  # the seeded generator type is allowed
            offenders += [
                f"{path.relative_to(SRC)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN
            ]
    assert offenders == []
    assert len(_modules()) >= 8
