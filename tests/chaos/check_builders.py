"""Hand-built chaos histories for the checker tests: a clock in milliseconds, ops and storage
records made in a line each, and a few whole good stories (a task that completes, a lock
held and fenced) the tests then break one fact at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentflow.testing.chaos.history import Op, Outcome, StorageRecord

MS = 1_000_000


class Hist:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.storage: list[StorageRecord] = []

    def op(
        self,
        f: str,
        at: int,
        end: int | None = None,
        type: Outcome = "ok",
        *,
        process: str = "c1",
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
        **args: Any,
    ) -> Op:
        """`f` by `process`, invoked at `at` ms, completed at `end` ms (at + 5 by default)."""
        op = Op(
            process=process,
            f=f,
            invoke_ns=at * MS,
            complete_ns=(at + 5 if end is None else end) * MS,
            type=type,
            args=dict(args),
            result=dict(result or {}),
            error=error,
        )
        self.ops.append(op)
        return op

    def write(
        self, stream: str, writer: str, token: int, event: str, at: int, accepted: bool = True
    ) -> StorageRecord:
        rec = StorageRecord(
            stream=stream,
            writer=writer,
            token=token,
            event=event,
            at_ns=at * MS,
            accepted=accepted,
        )
        self.storage.append(rec)
        return rec

    def attempt(self, task_id: str, number: int, token: int, at: int, *, end: bool = True) -> None:
        """One attempt's start (at `at`) and, if `end`, its end 10 ms later."""
        writer = f"{task_id}/{number}"
        self.write(f"task:{task_id}", writer, token, "start", at)
        if end:
            self.write(f"task:{task_id}", writer, token, "end", at + 10)

    def task(
        self,
        task_id: str,
        at: int,
        *,
        rule: str = "ok",
        status: str = "completed",
        attempts: int = 1,
        key: str | None = None,
        process: str = "c1",
    ) -> Op:
        """An ok submit, its attempts in storage (the last one completing unless `status`
        says otherwise), and a final read showing `status` and `attempts`."""
        submit = self.op(
            "submit",
            at,
            process=process,
            key=key or f"k-{task_id}",
            rule=rule,
            result={"task_id": task_id},
        )
        for n in range(1, attempts + 1):
            self.attempt(task_id, n, token=at + 100 * n, at=at + 100 * n)
        self.final(task_id, status=status, attempt=attempts)
        return submit

    def final(self, task_id: str, *, status: str, attempt: int, at: int = 1_000_000) -> Op:
        return self.op(
            "final-task",
            at,
            process="final",
            task_id=task_id,
            result={"status": status, "attempt": attempt},
        )
