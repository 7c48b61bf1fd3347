from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.procs import Processes


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.slow)
