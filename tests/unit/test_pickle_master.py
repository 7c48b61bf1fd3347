"""A master never unpickles: a call sent by value is text to it, from the API to the log.

Two checks: no module a master is built from imports a pickle module (not even inside a
function), and the ``pickled`` field is a plain string in the API model, the command and the
record, checked for its length and alphabet only. tests/e2e/test_pickle_byvalue.py watches a
running master with an audit hook that sees every unpickling.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pydantic
import pytest

import agentflow
from agentflow.api.schemas import TaskIn, WorkflowTaskIn
from agentflow.byvalue import MAX_PICKLED_CHARS
from agentflow.errors import PayloadTooLargeError
from agentflow.state.records import TaskSpec

SRC = Path(agentflow.__file__).parent
UNPICKLERS = {"pickle", "_pickle", "cloudpickle", "dill", "marshal", "shelve", "jsonpickle"}
MASTER_ENTRY = ["agentflow.cli", "agentflow.cli.server", "agentflow.api.app", "agentflow.cluster"]
MASTER_PACKAGES = ["api", "state", "scheduler", "cluster", "raft"]


def _master_modules() -> set[str]:
    """Every module of ours a master process loads, seen from a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {MASTER_ENTRY!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('agentflow'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def _source(module: str) -> Path:
    path = SRC.parent.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _unpicklers_imported(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [n for n in names if n.split(".")[0] in UNPICKLERS]
    return found


def test_no_module_of_a_master_imports_a_pickle_module() -> None:
    loaded = _master_modules()
    assert "agentflow.api.task_routes" in loaded and "agentflow.state.records" in loaded
    assert not any(m.startswith(("agentflow.client", "agentflow.worker.")) for m in loaded)
    paths = {_source(m) for m in loaded}
    for package in MASTER_PACKAGES:
        paths |= set((SRC / package).rglob("*.py"))
    offenders = {str(p.relative_to(SRC)): _unpicklers_imported(p) for p in sorted(paths)}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_pickled_field_is_plain_text_wherever_a_master_keeps_it() -> None:
    assert typing.get_type_hints(TaskSpec)["pickled"] == str | None
    assert TaskIn.model_fields["pickled"].annotation == str | None
    assert {f.name for f in dataclasses.fields(TaskSpec)} >= {"pickled"}


def test_the_model_checks_length_and_alphabet_only() -> None:
    assert TaskIn.model_validate({"pickled": "gAU="}).to_new_task().spec["pickled"] == "gAU="
    with pytest.raises(pydantic.ValidationError, match="pattern"):
        TaskIn.model_validate({"pickled": "not base64!"})
    with pytest.raises(PayloadTooLargeError, match=f"over the limit of {MAX_PICKLED_CHARS}"):
        WorkflowTaskIn.model_validate({"id": "a", "pickled": "A" * (MAX_PICKLED_CHARS + 4)})
    with pytest.raises(pydantic.ValidationError, match="carries its own arguments: drop args"):
        TaskIn.model_validate({"pickled": "gAU=", "args": [1]})
