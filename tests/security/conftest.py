"""Security tests run real processes, like the end-to-end tests: the same fixtures."""

from tests.e2e.conftest import procs

__all__ = ["procs"]
