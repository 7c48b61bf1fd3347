"""The public surface: __all__ sorted as isort (and ruff) sort it (constants, then classes, then
functions), every name importable."""

import importlib

import pytest

PACKAGES = [
    "agentflow",
    "agentflow.api",
    "agentflow.client",
    "agentflow.cluster",
    "agentflow.cluster.sql",
    "agentflow.errors",
    "agentflow.scheduler",
    "agentflow.state",
    "agentflow.worker",
    "agentflow.testing.chaos.checkers",
    "agentflow.testing.chaos.checkers.attempts",
    "agentflow.testing.chaos.checkers.common",
    "agentflow.testing.chaos.checkers.convergence",
    "agentflow.testing.chaos.checkers.locks",
    "agentflow.testing.chaos.checkers.messages",
    "agentflow.testing.chaos.checkers.reads",
    "agentflow.testing.chaos.checkers.tasks",
    "agentflow.testing.chaos.history",
    "agentflow.testing.chaos.report",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported, key=_isort)
    for item in exported:
        assert hasattr(module, item), f"{name}.{item}"


def test_top_level_sdk() -> None:
    import agentflow

    assert {"Client", "AsyncClient", "TaskInfo", "AgentFlowError"} <= set(agentflow.__all__)


def _isort(name: str) -> tuple[int, str]:
    return (0 if name.isupper() else 1 if name[0].isupper() else 2), name
