"""The public surface: sorted __all__, every name importable."""

import importlib

import pytest

PACKAGES = [
    "agentflow",
    "agentflow.api",
    "agentflow.client",
    "agentflow.cluster",
    "agentflow.errors",
    "agentflow.scheduler",
    "agentflow.state",
    "agentflow.worker",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    for item in exported:
        assert hasattr(module, item), f"{name}.{item}"


def test_top_level_sdk() -> None:
    import agentflow

    assert {"Client", "AsyncClient", "TaskInfo", "AgentFlowError"} <= set(agentflow.__all__)
