"""Every command kind has exactly one handler, declared by the module of the table it is
about, and the machine routes by that map alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agentflow
from agentflow.state import lock_ops, message_ops, schedule_ops, token_ops
from agentflow.state import tasks as task_ops
from agentflow.state import workers as worker_ops
from agentflow.state import workflows as workflow_ops
from agentflow.state.commands import _REGISTRY, Command, SubmitTasks
from agentflow.state.handlers import route
from agentflow.state.machine import HANDLERS

_MODULES = (task_ops, worker_ops, workflow_ops, lock_ops, message_ops, token_ops, schedule_ops)


def _kind_names(cls: type[Command]) -> set[str]:
    """Names of every subclass (by name: a slotted dataclass leaves its first class behind)."""
    found: set[str] = set()
    for sub in cls.__subclasses__():
        found |= {sub.__name__} | _kind_names(sub)
    return found


def test_every_command_kind_has_exactly_one_handler() -> None:
    declared = [kind for module in _MODULES for kind in module.HANDLERS]
    assert len(declared) == len(set(declared)), "a kind is declared by two modules"
    assert set(declared) == set(_REGISTRY.values())
    assert {kind.__name__ for kind in declared} == _kind_names(Command)
    assert set(HANDLERS) == set(declared)
    for module in _MODULES:
        for kind, handler in module.HANDLERS.items():
            assert HANDLERS[kind] is handler
            assert handler.__module__ == module.__name__, (kind, handler)


def test_a_kind_declared_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="SubmitTasks has two handlers"):
        route(task_ops.HANDLERS, {SubmitTasks: worker_ops.register})


def test_routes_read_through_the_tables_not_the_handler_modules() -> None:
    handler_modules = {m.__name__ for m in _MODULES}
    root = Path(agentflow.__file__).parent
    for path in [*sorted((root / "api").glob("*.py")), root / "workerwire.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in handler_modules, (path.name, node.module)
