"""Several workers in one event loop (``agentflow run``) each install the pidfd child watcher:
the second must not close the first while a child it waits for is still running."""

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


async def test_a_second_worker_keeps_the_watcher_a_running_child_waits_on() -> None:
    loop = asyncio.get_running_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # child watchers, in 3.12
        before = asyncio.get_child_watcher()
        warnings.simplefilter("error", RuntimeWarning)  # "detached ... with pending handlers"
        try:
            _use_pidfd_child_watcher(loop)
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
            _use_pidfd_child_watcher(loop)  # the next worker of the same loop starts
            assert await asyncio.wait_for(proc.wait(), timeout=30) == 0
        finally:
            asyncio.set_child_watcher(before)  # not one bound to this test's loop
