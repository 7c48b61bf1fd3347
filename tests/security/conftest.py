"""Security tests reuse the end-to-end fixtures (real processes on 127.0.0.1)."""

from tests.e2e.conftest import procs

__all__ = ["procs"]
