"""DiskThread: a store's blocking calls, in order, on one thread, results to the event loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from agentflow.cluster.diskthread import DiskThread


async def test_calls_run_in_order_on_one_thread_and_answer_the_loop() -> None:
    disk = DiskThread("test-disk")
    seen: list[tuple[int, str]] = []
    futures = [
        disk.run(lambda i=i: seen.append((i, threading.current_thread().name))) for i in range(50)
    ]
    await asyncio.gather(*futures)
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"test-disk"}
    assert await disk.run(sum, [1, 2, 3]) == 6
    disk.shutdown()


async def test_an_error_is_raised_to_the_caller_and_the_thread_goes_on() -> None:
    disk = DiskThread("test-disk")
    with pytest.raises(ZeroDivisionError):
        await disk.run(lambda: 1 // 0)
    assert await disk.run(lambda: "still here") == "still here"
    disk.shutdown()


async def test_a_caller_that_gave_up_does_not_break_the_thread() -> None:
    disk = DiskThread("test-disk")
    gate = threading.Event()
    slow = disk.run(gate.wait, 10.0)
    slow.cancel()
    gate.set()
    assert await disk.run(lambda: 7) == 7
    disk.shutdown()


def test_shutdown_of_a_thread_never_used_is_a_no_op() -> None:
    DiskThread("test-disk").shutdown()
