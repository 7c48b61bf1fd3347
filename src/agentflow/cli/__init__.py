"""The ``agentflow`` command line: click commands over the client, master and worker.

Owns argument parsing, tables and exit codes; every error becomes one line on stderr and a
non-zero exit, never a traceback. Entry points: :func:`main`, :func:`master_main`,
:func:`worker_main`.
"""

from agentflow.cli import cluster, local, server, tasks
from agentflow.cli._app import main

__all__ = ["main", "master_main", "worker_main"]

_ = (cluster, local, server, tasks)  # importing them registers their commands


def master_main() -> None:
    """``agentflow-master``: the same as ``agentflow master``."""
    main(args=["master", *__import__("sys").argv[1:]], prog_name="agentflow-master")


def worker_main() -> None:
    """``agentflow-worker``: the same as ``agentflow worker``."""
    main(args=["worker", *__import__("sys").argv[1:]], prog_name="agentflow-worker")
