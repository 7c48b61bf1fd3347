"""The ``agentflow`` command line: click commands over the client, master and worker.

Owns argument parsing, tables and exit codes; every error becomes one line on stderr and a
non-zero exit, never a traceback. Entry points: :func:`main`, :func:`master_main`,
:func:`worker_main`.
"""

import sys

from agentflow.cli._app import main

__all__ = ["main", "master_main", "worker_main"]


def master_main() -> None:
    """``agentflow-master``: the same as ``agentflow master``."""
    main(args=["master", *sys.argv[1:]], prog_name="agentflow-master")


def worker_main() -> None:
    """``agentflow-worker``: the same as ``agentflow worker``."""
    main(args=["worker", *sys.argv[1:]], prog_name="agentflow-worker")
