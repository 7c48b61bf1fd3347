"""The worker table: registered workers by id and the history of departed ones.

Pure and self-contained like :class:`~agentflow.state.locks.LockTable`: it changes only
workers. What a worker's change does to tasks (attempts requeued when it is lost) is the
command handler's, :mod:`agentflow.state.workers`. The events it records (a
:class:`WorkerChanged` per change of state) go to the list it was given, the machine's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from agentflow.errors import NotFoundError
from agentflow.state.commands import RegisterWorker
from agentflow.state.events import Event, WorkerChanged
from agentflow.state.records import Drain, WorkerRecord, WorkerState

__all__ = ["WorkerTable", "admits"]


def admits(worker: WorkerRecord | None, secret_hash: str) -> bool:
    """May a session holding ``secret_hash`` register as ``worker``?

    The instance that holds the worker's secret always may (it resumes). Anyone else only once
    the id holds nothing: unknown, declared lost (its attempts were requeued), offline with no
    attempt, or registered before session secrets existed.
    """
    if worker is None or not worker.secret_hash or secret_hash == worker.secret_hash:
        return True
    if worker.state is WorkerState.LOST:
        return True
    return worker.state is WorkerState.OFFLINE and not worker.running


class WorkerTable(dict[str, WorkerRecord]):
    """Worker id -> record, in registration order, and the departed workers' history.

    A ``dict`` itself, so that the reads placement makes for every entry (``get``, ``in``,
    ``values``) cost no Python call; it is changed only through the methods below."""

    def __init__(self, max_departed: int, events: list[Event] | None = None) -> None:
        super().__init__()
        self.events: list[Event] = [] if events is None else events
        self.departed: deque[dict[str, Any]] = deque(maxlen=max_departed)

    # -- reads ------------------------------------------------------------------------------

    def admits(self, worker_id: str, secret_hash: str) -> bool:
        """May a session holding ``secret_hash`` register as ``worker_id``? (:func:`admits`)"""
        return admits(self.get(worker_id), secret_hash)

    def live(self) -> Iterator[WorkerRecord]:
        return (w for w in self.values() if w.live)

    def free_slots(self) -> int:
        """Free task slots on live workers."""
        return sum(w.free_slots for w in self.values() if w.live)

    # -- changes ----------------------------------------------------------------------------

    def register(self, cmd: RegisterWorker) -> WorkerRecord:
        """Add the worker, or update what it declares; a new instance (another secret) ends
        the drain the previous one asked for itself. Its attempts are the caller's."""
        worker = self.get(cmd.worker_id)
        if worker is None:
            worker = WorkerRecord(
                id=cmd.worker_id,
                group=cmd.group,
                slots=cmd.slots,
                resources=dict(cmd.resources),
                labels=dict(cmd.labels),
                hostname=cmd.hostname,
                registered_at=cmd.now_ms,
                prefetch=cmd.prefetch,
                gpus=list(cmd.gpus),
                secret_hash=cmd.secret_hash,
                pickled_functions=cmd.pickled_functions,
                workspaces=cmd.workspaces,
            )
            self[worker.id] = worker
            return worker
        if cmd.secret_hash != worker.secret_hash and worker.drain is Drain.WORKER:
            worker.drain = Drain.NONE  # the instance that asked for it has ended
        worker.group = cmd.group
        worker.slots = cmd.slots
        worker.resources = dict(cmd.resources)
        worker.labels = dict(cmd.labels)
        worker.hostname = cmd.hostname
        worker.prefetch = cmd.prefetch
        worker.gpus = list(cmd.gpus)
        worker.secret_hash = cmd.secret_hash
        worker.pickled_functions = cmd.pickled_functions
        worker.workspaces = cmd.workspaces
        return worker

    def set_state(self, worker: WorkerRecord, state: WorkerState, index: int) -> None:
        if worker.state is not state:
            worker.state = state
            self.events.append(WorkerChanged(index=index, worker_id=worker.id, state=state.value))

    def refresh(self, worker: WorkerRecord, index: int) -> None:
        """Recompute a live worker's active/busy state from its free slots."""
        if worker.state in (WorkerState.ACTIVE, WorkerState.BUSY):
            state = WorkerState.BUSY if worker.free_capacity <= 0 else WorkerState.ACTIVE
            self.set_state(worker, state, index)

    def drain(self, worker_id: str, *, draining: bool, by_worker: bool, index: int) -> str:
        """Drain or activate a worker; its state after. A worker's own drain never weakens
        an operator's."""
        worker = self.get(worker_id)
        if worker is None:
            raise NotFoundError(f"no worker {worker_id}", worker_id=worker_id)
        if not draining:
            worker.drain = Drain.NONE
        elif not by_worker:
            worker.drain = Drain.OPERATOR
        elif worker.drain is Drain.NONE:
            worker.drain = Drain.WORKER
        if worker.state in (WorkerState.ACTIVE, WorkerState.BUSY, WorkerState.DRAINING):
            state = WorkerState.DRAINING if worker.draining else WorkerState.ACTIVE
            self.set_state(worker, state, index)
            self.refresh(worker, index)
        return worker.state.value

    def lost(self, worker: WorkerRecord, now_ms: int, index: int) -> None:
        """``worker`` is declared lost: it holds nothing any more."""
        worker.running.clear()
        worker.lost_at = now_ms
        self.set_state(worker, WorkerState.LOST, index)

    def depart(self, worker_id: str, now_ms: int) -> WorkerRecord:
        """Remove the worker, remembering it in the departed history."""
        worker = self.pop(worker_id)
        self.departed.append(
            {
                "id": worker.id,
                "group": worker.group,
                "hostname": worker.hostname,
                "registered_at": worker.registered_at,
                "lost_at": worker.lost_at,
                "departed_at": now_ms,
                "completed": worker.completed,
                "failed": worker.failed,
            }
        )
        return worker

    # -- snapshot ---------------------------------------------------------------------------

    def to_wire(self) -> list[dict[str, Any]]:
        return [w.to_wire() for w in self.values()]

    def restore(self, wires: Iterable[dict[str, Any]], departed: Iterable[dict[str, Any]]) -> None:
        for wire in wires:
            worker = WorkerRecord.from_wire(wire)
            self[worker.id] = worker
        self.departed.extend(departed)
