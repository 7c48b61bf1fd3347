from tests.e2e.conftest import procs, pytest_collection_modifyitems

__all__ = ["procs", "pytest_collection_modifyitems"]
