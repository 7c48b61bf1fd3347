"""The clients of a chaos run: threads that drive the cluster through the SDK and record a
history, then the final reads that close it once the cluster has healed.

``Workload(urls, storage_url, recorder, seed=...)``; `start` launches ``clients`` threads (see
:mod:`agentflow.testing.chaos.clients` for the mix of operations and how each outcome is
classified); `stop` ends them, recording what is still pending as ``info``; `final_reads`
reads, without creating anything, every task the history knows of (by id, or found by its
idempotency key), drains every agent's inbox, and reads every lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from agentflow.client import Client
from agentflow.testing.chaos.clients import (
    PARKED_GROUP,
    REQUEST_TIMEOUT_S,
    RETRY_FOR_S,
    ClientThread,
    Invoker,
    Shared,
    Slot,
    drain,
    lock_holders,
)
from agentflow.testing.chaos.history import Op, Recorder

__all__ = ["Learned", "Workload", "learned"]

SETTLE_SHARE = 0.6  # of final_reads' time, spent waiting for tasks to end before reading them
SETTLE_POLL_S = 0.2
DRAIN_ROUNDS = 5  # receive+ack rounds per try at one inbox
LIST_PAGE = 500
WORKFLOWS_LISTED = 1000  # the most a master lists at once


@dataclass(frozen=True, slots=True, kw_only=True)
class Learned:
    """What a history says exists: task ids answered or asked about, keys submitted."""

    task_ids: frozenset[str]
    task_keys: frozenset[str]
    workflow_keys: frozenset[str]


def learned(ops: Iterable[Op]) -> Learned:
    """Task ids from ok answers and from the arguments of every op; submitted keys (any
    outcome: an ``info`` or even a ``fail`` submit may have made a task)."""
    ids: set[str] = set()
    task_keys: set[str] = set()
    workflow_keys: set[str] = set()
    for op in ops:
        if "task_id" in op.args:
            ids.add(str(op.args["task_id"]))
        if op.f == "submit":
            task_keys.add(str(op.args["key"]))
        elif op.f == "workflow":
            workflow_keys.add(str(op.args["key"]))
        if op.ok and "task_id" in op.result:
            ids.add(str(op.result["task_id"]))
        if op.ok and "task_ids" in op.result:
            ids.update(str(t) for t in op.result["task_ids"].values())
    return Learned(
        task_ids=frozenset(ids),
        task_keys=frozenset(task_keys),
        workflow_keys=frozenset(workflow_keys),
    )


class Workload:
    """Client threads against every master, recording into ``recorder``."""

    def __init__(
        self,
        urls: list[str],
        storage_url: str,
        recorder: Recorder,
        *,
        seed: int,
        token: str | None = None,
        clients: int = 5,
        python: str = sys.executable,
        pause_s: float = 0.05,
    ) -> None:
        self.urls = list(urls)
        self.recorder = recorder
        self.token = token
        self.pause_s = pause_s
        self.shared = Shared(seed=seed, clients=clients, storage_url=storage_url, python=python)
        self._stop = threading.Event()
        self._threads: list[tuple[threading.Thread, ClientThread]] = []

    @property
    def unexpected(self) -> list[str]:
        """Exceptions no system could have raised: bugs of the workload (should stay empty)."""
        with self.shared.mutex:
            return list(self.shared.unexpected)

    def _client(self) -> Client:
        return Client(
            self.urls, token=self.token, timeout_s=REQUEST_TIMEOUT_S, retry_for_s=RETRY_FOR_S
        )

    def start(self) -> None:
        assert not self._threads, "a workload starts once"
        for k in range(self.shared.clients):
            client = ClientThread(k, self.shared, self.recorder, self._client(), self.pause_s)
            thread = threading.Thread(
                target=self._run, args=(client,), name=f"chaos-client-{k}", daemon=True
            )
            self._threads.append((thread, client))
            thread.start()

    def _run(self, client: ClientThread) -> None:
        try:
            client.run(self._stop)
        finally:
            client.close()

    def stop(self, timeout_s: float) -> int:
        """Stop issuing; wait up to ``timeout_s`` for operations in flight. Each one still
        pending is recorded as ``info``; returns how many were."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        abandoned = 0
        for thread, client in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                client.invoke.slot.abandon()
                abandoned += 1
        return abandoned

    def final_reads(self, timeout_s: float) -> None:
        """After the cluster healed: ``final-task`` for every task the history knows, a drain
        of every inbox, a ``lock-read`` of every lock; nothing is created."""
        deadline = time.monotonic() + timeout_s
        invoke = Invoker("final", Slot(self.recorder), self.shared)
        with self._client() as client:
            known = learned(self.recorder.ops())
            ids = set(known.task_ids) | _ids_by_key(client, known)
            _settle(client, ids, time.monotonic() + SETTLE_SHARE * timeout_s)
            for task_id in sorted(ids):
                if time.monotonic() >= deadline:
                    break
                invoke("final-task", {"task_id": task_id}, partial(_final, client, task_id))
            for agent in self.shared.agents:
                while time.monotonic() < deadline:
                    if drain(invoke, client, agent, rounds=DRAIN_ROUNDS):
                        break
            for lock in self.shared.locks:
                invoke("lock-read", {"lock": lock}, partial(lock_holders, client, lock))


def _final(client: Client, task_id: str) -> dict[str, Any]:
    info = client.get(task_id)
    return {"status": info.status, "attempt": info.attempts}


def _ids_by_key(client: Client, known: Learned) -> set[str]:
    """The tasks that the submitted keys made, found by listing (a lookup creates nothing).
    A listing that fails finds nothing: the checkers then see those keys unread."""
    found: set[str] = set()
    try:
        for task in client.iter_tasks(limit=LIST_PAGE, history=True):
            if task.raw.get("idempotency_key") in known.task_keys:
                found.add(task.id)
        if known.workflow_keys:
            listed = client.request("GET", "/api/v1/workflows", params={"limit": WORKFLOWS_LISTED})
            for wf in listed["workflows"]:
                if wf["name"] in known.workflow_keys:
                    found.update(t["id"] for t in client.workflow(wf["id"])["tasks"])
    except Exception as exc:  # reported; the reads go on without it
        print(f"chaos workload: listing tasks by key failed: {exc!r}", file=sys.stderr)
    return found


def _settle(client: Client, ids: Iterable[str], until: float) -> None:
    """Wait (up to ``until``) for every task but the parked ones to end, so that the final
    reads see where each one ended, not where it was."""
    for task_id in sorted(ids):
        while time.monotonic() < until:
            try:
                info = client.get(task_id)
            except Exception:  # the final read records what it finds
                break
            if info.done or info.raw.get("group") == PARKED_GROUP:
                break
            time.sleep(SETTLE_POLL_S)
