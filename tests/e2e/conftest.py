from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import STORE_ENV, Processes, e2e_store, stop_sql_servers


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture(scope="session", autouse=True)
def _sql_servers() -> Iterator[None]:
    """Under ``AGENTFLOW_E2E_STORE``, the session's database server goes with the session."""
    yield
    stop_sql_servers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    store = e2e_store()
    for item in items:
        if "e2e" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.slow)
        if store is not None and item.get_closest_marker("raft_only") is not None:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"{STORE_ENV}={store}: only the embedded Raft log has this"
                    " (peers, membership, raft files)"
                )
            )
