"""The deploy tests start real masters and workers: the e2e fixture that cleans them up."""

from tests.e2e.conftest import procs

__all__ = ["procs"]
