"""The real `StateMachine` as a simulated node's `ReplicaModel`, with the checks each replica
makes after every entry it applies.

Per replica, after every applied entry: no lock has two exclusive holders (or more holders
than its limit); a lock's grants carry rising tokens; a task's attempts carry rising fencing
tokens; a worker's report is accepted only for the attempt that is the task's live one when
it applies (never a superseded token); a lock renewal is granted only while the grant it
renews has not expired (the renewal's time is before the expiry in force), and the expiry
pass ends only grants whose expiry passed (a lease never ends early). Across replicas
(`DigestBook`): every replica that applies the entry at an index ends with the same state
digest there, and the same result.
A violation raises `InvariantViolationError` out of `apply`, which fails the seed.
"""

from __future__ import annotations

from agentflow.errors import AgentFlowError
from agentflow.state import StateMachine
from agentflow.state.commands import ExpireLocks, RenewLock, ReportAttempts, decode_command
from agentflow.state.events import Event, TaskAssigned
from agentflow.state.locks import Grant, LockMode
from agentflow.state.machine import StateLimits
from agentflow.testing.sim._invariants import InvariantViolationError

__all__ = ["DigestBook", "SystemModel", "describe"]

_REPORT_TAG = b"ReportAttempts"
_RENEW_TAG = b"RenewLock"
_EXPIRE_TAG = b"ExpireLocks"


def describe(result: object) -> str:
    """A replica-independent spelling of an apply result (errors by kind and message)."""
    if isinstance(result, AgentFlowError):
        return f"{type(result).__name__}: {result}"
    return repr(result)


def _machine() -> StateMachine:
    """The real state machine with a short live window: most finished tasks are kept frozen
    (as bytes), so freezing, thawing on reads and snapshots of frozen rows run too."""
    return StateMachine(limits=StateLimits(live_finished_tasks=3))


class DigestBook:
    """What the first replica to apply each index saw there; later ones must see the same."""

    def __init__(self, *, every: int = 1) -> None:
        self.every = every  # compare the whole state's digest at every n-th index
        self._seen: dict[int, tuple[str, bytes]] = {}
        self.compared = 0

    def check(self, node: str, index: int, result: str, digest: bytes) -> None:
        first = self._seen.setdefault(index, (result, digest))
        if first == (result, digest):
            self.compared += 1
            return
        what = "result" if first[0] != result else "state digest"
        raise InvariantViolationError(
            f"replicas differ at index {index} ({what}): {node} has {result!r} "
            f"{digest.hex()}, another had {first[0]!r} {first[1].hex()}"
        )


class SystemModel:
    def __init__(self, book: DigestBook | None = None, node: str = "a replica") -> None:
        self.sm = _machine()
        self._book = book
        self._node = node
        self._task_tokens: dict[str, int] = {}  # what this replica saw, since it started
        self._lock_tokens: dict[str, int] = {}
        self._events: list[Event] = []  # applied since the last take_events (for SimLog)

    # -- ReplicaModel ---------------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> object:
        live = self._live_tokens(data) if _REPORT_TAG in data[:24] else None
        renewing = self._renewing(data) if _RENEW_TAG in data[:24] else None
        held = self._grants() if _EXPIRE_TAG in data[:24] else None
        result = self.sm.apply_entry(index, data)
        if held is not None:
            self._check_expired(held, decode_command(data), index)
        if renewing is not None and isinstance(result, Grant):
            self._check_renewal(renewing, index)
        events = self.sm.drain_events()
        self._events.extend(events)
        for event in events:
            if isinstance(event, TaskAssigned):
                self._check_task_token(event.task_id, event.fencing_token, index)
        if live is not None and isinstance(result, list):
            self._check_reports(live, result, index)
        self._check_locks(index)
        if self._book is not None:
            digest = b"" if index % self._book.every else self.digest()
            self._book.check(self._node, index, describe(result), digest)
        return result

    def snapshot(self) -> bytes:
        return self.sm.snapshot()

    def restore(self, data: bytes) -> None:
        self.sm = _machine()
        if data:
            self.sm.restore(data)
        self._task_tokens = {  # finished (frozen) tasks get no new attempt: live ones suffice
            task.id: task.fencing_token
            for task in self.sm.tasks.live()
            if task.fencing_token is not None
        }
        self._lock_tokens = {}
        for name in self.sm.locks.names():
            for grant in self.sm.locks.holders(name):
                self._lock_tokens[name] = max(self._lock_tokens.get(name, 0), grant.token)

    def take_events(self) -> list[Event]:
        """The events of the entries applied since the last call, in order."""
        events, self._events = self._events, []
        return events

    def digest(self) -> bytes:
        """The state's digest (which covers the ready queue's push order: placement follows it
        among equal keys)."""
        return bytes.fromhex(self.sm.digest())

    @property
    def lock_tokens(self) -> dict[str, int]:
        """Each lock's newest grant token this replica has seen."""
        return self._lock_tokens

    # -- per-replica invariants -------------------------------------------------------------

    def _check_task_token(self, task_id: str, token: int, index: int) -> None:
        last = self._task_tokens.get(task_id, 0)
        if token <= last:
            raise InvariantViolationError(
                f"{self._node} at index {index}: task {task_id} got token {token} after {last}"
            )
        self._task_tokens[task_id] = token

    def _live_tokens(self, data: bytes) -> dict[tuple[str, int], int | None]:
        """Before a report applies: each outcome's task's live token (None: none live)."""
        command = decode_command(data)
        assert isinstance(command, ReportAttempts), command
        live: dict[tuple[str, int], int | None] = {}
        for outcome in command.outcomes:
            task = self.sm.tasks.peek(outcome.task_id)  # a check must not thaw what it reads
            worker = self.sm.workers.get(command.worker_id)
            current = None
            if (
                task is not None
                and task.attempts
                and task.attempts[-1].worker_id == command.worker_id
                and worker is not None
            ):
                current = task.fencing_token
            live[(outcome.task_id, outcome.fencing_token)] = current
        return live

    def _renewing(self, data: bytes) -> tuple[RenewLock, int | None]:
        """Before a renewal applies: the expiry in force of the grant it renews (None: none)."""
        command = decode_command(data)
        assert isinstance(command, RenewLock), command
        grant = next(
            (g for g in self.sm.locks.holders(command.name) if g.session == command.session),
            None,
        )
        held = grant is not None and grant.token == command.token
        return command, grant.expiry_ms if held and grant is not None else None

    def _check_renewal(self, renewing: tuple[RenewLock, int | None], index: int) -> None:
        command, expiry = renewing
        if expiry is None or command.now_ms >= expiry:
            raise InvariantViolationError(
                f"{self._node} at index {index}: lock {command.name}'s grant {command.token} "
                f"was renewed at {command.now_ms} ms, its expiry in force being {expiry}"
            )

    def _grants(self) -> dict[tuple[str, str, int], int]:
        """Every grant held now, by (lock, session, token): its expiry."""
        return {
            (g.name, g.session, g.token): g.expiry_ms
            for name in self.sm.locks.names()
            for g in self.sm.locks.holders(name)
        }

    def _check_expired(
        self, held: dict[tuple[str, str, int], int], command: object, index: int
    ) -> None:
        assert isinstance(command, ExpireLocks), command
        now = self._grants()
        for (name, session, token), expiry in held.items():
            if (name, session, token) not in now and command.now_ms < expiry:
                raise InvariantViolationError(
                    f"{self._node} at index {index}: the expiry pass at {command.now_ms} ms "
                    f"ended {session}'s grant {token} of lock {name}, which ran until {expiry}"
                )

    def _check_reports(
        self, live: dict[tuple[str, int], int | None], accepted: list[object], index: int
    ) -> None:
        for (task_id, token), took in zip(live, accepted, strict=False):
            if took is True and live[(task_id, token)] != token:
                raise InvariantViolationError(
                    f"{self._node} at index {index}: a report for task {task_id} with token "
                    f"{token} was accepted; the live attempt's token was {live[(task_id, token)]}"
                )

    def _check_locks(self, index: int) -> None:
        locks = self.sm.locks
        for name in locks.names():
            holders = locks.holders(name)
            if not holders:
                continue
            limit = locks.limit(name) or 1
            exclusive = [g for g in holders if g.mode is LockMode.EXCLUSIVE]
            if len(holders) > limit or (exclusive and len(holders) > 1):
                raise InvariantViolationError(
                    f"{self._node} at index {index}: lock {name} has holders "
                    f"{[(g.session, g.token, g.mode.value) for g in holders]}"
                )
            top = self._lock_tokens.get(name, 0)
            for grant in holders:
                if grant.token > top:
                    self._lock_tokens[name] = grant.token
                elif grant.token < top and len(holders) == 1 and grant.mode is LockMode.EXCLUSIVE:
                    raise InvariantViolationError(
                        f"{self._node} at index {index}: lock {name} granted token "
                        f"{grant.token} after {top}"
                    )
