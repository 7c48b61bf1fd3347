"""Security tests reuse the end-to-end fixtures (real master and worker processes)."""

from tests.e2e.conftest import procs, pytest_collection_modifyitems

__all__ = ["procs", "pytest_collection_modifyitems"]
