# Real processes on 127.0.0.1 for the workload's tests, as tests/e2e starts them.
from tests.e2e.conftest import procs

__all__ = ["procs"]
