"""In-process workers share one event loop, so they must share its child watcher.

``agentflow run`` starts its local workers in one loop. Each Worker.run installed a fresh pidfd
child watcher, and installing one closes the one before, which forgets the subprocesses it was
watching: the first worker's ``git version`` (its workspace check at start) never ended, so
every local run waited out that call's timeout, and the worker came up without workspaces.
"""

from __future__ import annotations

import asyncio
import os
import sys
import warnings

import pytest

from agentflow.worker.runtime import _use_pidfd_child_watcher

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"),
    reason="the worker installs a pidfd child watcher only on Python 3.11 with pidfds",
)


async def test_a_second_worker_in_the_loop_keeps_the_first_ones_subprocesses_watched() -> None:
    loop = asyncio.get_running_loop()
    try:
        _use_pidfd_child_watcher(loop)  # the first worker starts
        proc = await asyncio.create_subprocess_exec("sleep", "0.3")  # git version
        _use_pidfd_child_watcher(loop)  # the second worker starts in the same loop
        assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_child_watcher(None)  # type: ignore[arg-type]  # back to the default
