"""The leader's loops end when cancelled, even when the cancel lands as they are woken, and live
on when their timer and a wake coincide (on Python 3.11, ``asyncio.wait_for`` swallowed such a
cancel and a master's shutdown hung)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from agentflow.cluster.memlog import MemoryLog
from agentflow.scheduler import Scheduler, SchedulerConfig
from agentflow.scheduler.lockkeeper import LockKeeper
from agentflow.state import StateMachine

Loop = tuple[Callable[[], Coroutine[Any, Any, None]], Callable[[], None]]


def _scheduler(log: MemoryLog, tick_s: float = 3600.0) -> Loop:
    loop = Scheduler(log, lambda: 0, SchedulerConfig(tick_s=tick_s))
    return loop.run, loop.poke


def _lock_keeper(log: MemoryLog, tick_s: float = 3600.0) -> Loop:
    keeper = LockKeeper(log, lambda: 0, tick_s=tick_s)
    return keeper.run, keeper.rearm


@pytest.mark.parametrize("make", [_scheduler, _lock_keeper], ids=["scheduler", "lock-keeper"])
@pytest.mark.parametrize("steps", [0, 1, 2, 3])
async def test_a_loop_ends_when_cancelled_as_it_wakes(make: Any, steps: int) -> None:
    log = MemoryLog(StateMachine())
    log.set_leader(None)  # a follower: a pass proposes nothing
    run, wake = make(log)
    task = asyncio.create_task(run())
    for _ in range(10):  # into its wait (a follower: a pass does nothing)
        await asyncio.sleep(0)
    wake()
    for _ in range(steps):  # the cancel lands this many loop steps after the wake
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=30)
    assert done, "the loop swallowed its cancel and went on"


@pytest.mark.parametrize("make", [_scheduler, _lock_keeper], ids=["scheduler", "lock-keeper"])
async def test_a_loop_lives_on_when_its_timer_and_a_wake_coincide(make: Any) -> None:
    """Woken by its timer and an event in the same loop step, again and again: it must not
    take a cancel of its own for its owner's and die (asyncio.timeout on 3.11 did)."""
    log = MemoryLog(StateMachine())
    log.set_leader(None)
    run, wake = make(log, tick_s=0.0)
    task = asyncio.create_task(run())
    for _ in range(2000):
        wake()
        await asyncio.sleep(0)
    assert not task.done(), task.exception() if task.done() and not task.cancelled() else task
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=30)
    assert done
