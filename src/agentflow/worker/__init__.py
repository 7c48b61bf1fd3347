"""The worker runtime: a session with the master, executors, resource probe, output shipping.

Owns running task attempts on one machine; it learns what to run only from its master session
and reports only through it. It must not touch master state directly. Entry point:
:class:`Worker`.
"""

from agentflow.worker.executor import Attempt, Finished, build_argv
from agentflow.worker.resources import probe_resources
from agentflow.worker.runtime import Worker

__all__ = ["Attempt", "Finished", "Worker", "build_argv", "probe_resources"]
