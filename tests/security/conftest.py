"""Fixtures of the end-to-end tests, shared with the security tests."""

from tests.e2e.conftest import procs

__all__ = ["procs"]
