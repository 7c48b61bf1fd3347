"""Locks: a pure table of holders, FIFO waiters and fencing tokens (issue 7).

A lock is held by a session. Every grant carries a fencing token, the log ``index`` of the
command that granted it, so tokens only rise. Exclusive grants exclude everything; shared grants
coexist and exclude exclusive ones; ``limit=N`` makes an exclusive lock a counting semaphore of up
to N holders, each with its own grant. A grant that cannot be made at once either fails with
:class:`ConflictError` or, with ``wait=True``, joins the lock's FIFO queue. Waiters are woken in
order by the command that frees room (release, expiry, force release, session end) and get that
command's index as their token; shared waiters at the head are granted together while
compatible, never a herd. A blocking acquire that would close a cycle in the wait-for graph is
refused at once with the cycle. Expiry is decided by ``expire(now_ms)``, never early. After a
holder is lost without releasing, an optional lock-delay keeps the lock from being granted again
until ``lost_at + lock_delay_ms``.

Nothing here reads a clock or does I/O: time is ``now_ms``, order is ``index``. Refusals raise
typed errors from :mod:`agentflow.errors`; the state machine turns them into results.
"""

from __future__ import annotations

import heapq
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar

from agentflow.errors import (
    ConflictError,
    NotFoundError,
    OverloadedError,
    StaleTokenError,
    ValidationError,
)

__all__ = [
    "TASK_SESSION_PREFIX",
    "Grant",
    "LockChanges",
    "LockEvent",
    "LockEventKind",
    "LockLimits",
    "LockMode",
    "LockTable",
    "Waiting",
    "task_session",
]


_AnswerT = TypeVar("_AnswerT", "Grant", "Waiting")

TASK_SESSION_PREFIX = "task:"


def task_session(task_id: str, fencing_token: int) -> str:
    """The lock session of one task attempt: ``task:<task id>:<fencing token>``."""
    return f"{TASK_SESSION_PREFIX}{task_id}:{fencing_token}"


class LockMode(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"


class LockEventKind(StrEnum):
    GRANTED = "granted"
    RELEASED = "released"
    EXPIRED = "expired"
    FORCED = "forced"
    WAITING = "waiting"
    WAIT_ENDED = "wait-ended"  # a waiter left without a grant: its wait timed out or session ended


@dataclass(frozen=True, slots=True, kw_only=True)
class LockLimits:
    """Bounds on the lock table. Part of the cluster's configuration."""

    ttl_ms_max: int = 24 * 3_600_000
    limit_max: int = 1024
    waiters_max: int = 1024  # per lock
    history_max: int = 1000
    requests_max: int = 10_000  # remembered request ids, for idempotent acquire
    lock_delay_ms: int = 0  # after a holder is lost without releasing


@dataclass(frozen=True, slots=True, kw_only=True)
class Grant:
    name: str
    session: str
    token: int
    mode: LockMode
    expiry_ms: int
    ttl_ms: int
    request_id: str | None = None
    owner: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    name: str
    session: str
    mode: LockMode
    ttl_ms: int
    since_ms: int
    deadline_ms: int | None = None  # the wait ends unanswered at this time (408 in the API)
    request_id: str | None = None
    owner: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class LockEvent:
    kind: LockEventKind
    name: str
    session: str
    index: int
    token: int | None = None
    detail: str | None = None  # why, for a forced release


@dataclass(frozen=True, slots=True, kw_only=True)
class LockChanges:
    """What a release, force release, expiry or session end did."""

    ended: tuple[Grant, ...] = ()  # grants that are over
    dropped: tuple[Waiting, ...] = ()  # waits that ended without a grant
    granted: tuple[Grant, ...] = ()  # waiters woken with a grant, in order


@dataclass(slots=True, kw_only=True)
class _Lock:
    limit: int
    holders: dict[str, Grant] = field(default_factory=dict)  # by session
    waiters: deque[Waiting] = field(default_factory=deque)
    delay_until_ms: int = 0


def _fits(lock: _Lock, mode: LockMode) -> bool:
    """Whether a grant in ``mode`` is compatible with the current holders."""
    modes = {g.mode for g in lock.holders.values()}
    if mode is LockMode.SHARED:
        return LockMode.EXCLUSIVE not in modes
    return LockMode.SHARED not in modes and len(lock.holders) < lock.limit


def _wire(value: Grant | Waiting | LockEvent) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(value):
        v = getattr(value, f.name)
        out[f.name] = v.value if isinstance(v, StrEnum) else v
    return out


def _grant_from(d: dict[str, Any]) -> Grant:
    return Grant(**{**d, "mode": LockMode(d["mode"])})


def _waiting_from(d: dict[str, Any]) -> Waiting:
    return Waiting(**{**d, "mode": LockMode(d["mode"])})


class LockTable:
    """All locks of the cluster. Mutators take the log ``index`` and never go back in it."""

    def __init__(self, limits: LockLimits | None = None) -> None:
        self.limits = limits or LockLimits()
        self._locks: dict[str, _Lock] = {}
        self._held: dict[str, set[str]] = {}  # session -> names of locks it holds
        self._waiting_on: dict[str, str] = {}  # session -> the one lock it waits for
        self._requests: OrderedDict[str, Grant | Waiting] = OrderedDict()
        self._delayed: set[str] = set()  # locks in lock-delay
        self._deadlines: list[tuple[int, str]] = []  # (ms, lock name), lazily cleaned
        self.history: deque[LockEvent] = deque(maxlen=self.limits.history_max)
        self.emitted: list[LockEvent] = []  # events since the owner last took them
        self.counts: Counter[str] = Counter()  # lock events by kind, since the cluster began
        self.index = 0

    # -- queries ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._locks)

    def holders(self, name: str) -> tuple[Grant, ...]:
        lock = self._locks.get(name)
        return () if lock is None else tuple(lock.holders.values())

    def waiters(self, name: str) -> tuple[Waiting, ...]:
        lock = self._locks.get(name)
        return () if lock is None else tuple(lock.waiters)

    def limit(self, name: str) -> int | None:
        lock = self._locks.get(name)
        return None if lock is None else lock.limit

    def held_by(self, session: str) -> list[Grant]:
        """The grants ``session`` holds, by lock name."""
        return [self._locks[n].holders[session] for n in sorted(self._held.get(session, ()))]

    def waiting_for(self, session: str) -> Waiting | None:
        name = self._waiting_on.get(session)
        if name is None:
            return None
        return next(w for w in self._locks[name].waiters if w.session == session)

    def delayed_until(self, name: str) -> int:
        lock = self._locks.get(name)
        return 0 if lock is None else lock.delay_until_ms

    def next_deadline_ms(self) -> int | None:
        """The earliest time at which ``expire`` would change something (expiry, wait, delay)."""
        while self._deadlines:
            at, name = self._deadlines[0]
            if self._due_at(name, at):
                return at
            heapq.heappop(self._deadlines)
        return None

    def _due_at(self, name: str, at: int) -> bool:
        lock = self._locks.get(name)
        if lock is None:
            return False
        return (
            any(g.expiry_ms == at for g in lock.holders.values())
            or any(w.deadline_ms == at for w in lock.waiters)
            or (name in self._delayed and lock.delay_until_ms == at)
        )

    def take_events(self) -> list[LockEvent]:
        events, self.emitted = self.emitted, []
        return events

    def wait_for_graph(self) -> dict[str, set[str]]:
        """Session -> the sessions holding the lock it waits for."""
        return {s: set(self._locks[n].holders) for s, n in self._waiting_on.items()}

    # -- acquire ----------------------------------------------------------------------------

    def acquire(
        self,
        name: str,
        session: str,
        *,
        mode: str = LockMode.EXCLUSIVE,
        limit: int = 1,
        ttl_ms: int,
        wait: bool = False,
        wait_timeout_ms: int | None = None,
        request_id: str | None = None,
        owner: str | None = None,
        metadata: dict[str, Any] | None = None,
        now_ms: int,
        index: int,
    ) -> Grant | Waiting:
        """A grant now, a place in the queue (``wait``), or ConflictError when held."""
        self._advance(index)
        if request_id is not None and request_id in self._requests:
            return self._replay(self._requests[request_id], name, session)
        lock_mode = self._checked(name, session, mode, limit, ttl_ms)
        lock = self._locks.get(name)
        if lock is not None:
            self._check_lock(lock, name, session, limit)
        if lock is None or self._grantable(lock, lock_mode, now_ms):
            lock = self._locks.setdefault(name, _Lock(limit=limit))
            grant = Grant(
                name=name,
                session=session,
                token=index,
                mode=lock_mode,
                expiry_ms=now_ms + ttl_ms,
                ttl_ms=ttl_ms,
                request_id=request_id,
                owner=owner,
                metadata=metadata or {},
            )
            return self._add_holder(lock, grant)
        if not wait:
            raise ConflictError(f"lock {name} is held", lock=name, holders=sorted(lock.holders))
        waiting = Waiting(
            name=name,
            session=session,
            mode=lock_mode,
            ttl_ms=ttl_ms,
            since_ms=now_ms,
            deadline_ms=None if wait_timeout_ms is None else now_ms + wait_timeout_ms,
            request_id=request_id,
            owner=owner,
            metadata=metadata or {},
        )
        return self._enqueue(lock, waiting)

    def _checked(self, name: str, session: str, mode: str, limit: int, ttl_ms: int) -> LockMode:
        if not name or not session:
            raise ValidationError("lock name and session must not be empty")
        if not 0 < ttl_ms <= self.limits.ttl_ms_max:
            raise ValidationError(f"ttl_ms must be in 1..{self.limits.ttl_ms_max}")
        if not 0 < limit <= self.limits.limit_max:
            raise ValidationError(f"limit must be in 1..{self.limits.limit_max}")
        try:
            return LockMode(mode)
        except ValueError:
            raise ValidationError(f"unknown lock mode {mode!r}") from None

    def _check_lock(self, lock: _Lock, name: str, session: str, limit: int) -> None:
        if limit != lock.limit:
            raise ConflictError(f"lock {name} has limit {lock.limit}", lock=name, limit=lock.limit)
        if session in lock.holders:
            raise ConflictError(f"session {session} already holds lock {name}", lock=name)

    def _grantable(self, lock: _Lock, mode: LockMode, now_ms: int) -> bool:
        # Waiters queued first are served first: a new request never jumps the queue.
        return now_ms >= lock.delay_until_ms and not lock.waiters and _fits(lock, mode)

    def _replay(self, seen: Grant | Waiting, name: str, session: str) -> Grant | Waiting:
        if (seen.name, seen.session) != (name, session):
            raise ValidationError(f"request id {seen.request_id} was used for another acquire")
        lock = self._locks.get(name)
        current = None if lock is None else lock.holders.get(session)
        if isinstance(seen, Grant) and current is not None and current.token == seen.token:
            return current  # renewed since: the reply shows the expiry in force
        return seen

    def _enqueue(self, lock: _Lock, waiting: Waiting) -> Waiting:
        if waiting.session in self._waiting_on:
            waited = self._waiting_on[waiting.session]
            raise ConflictError(f"session {waiting.session} already waits for lock {waited}")
        if len(lock.waiters) >= self.limits.waiters_max:
            raise OverloadedError(f"too many waiters for lock {waiting.name}", lock=waiting.name)
        hops = self._cycle(waiting.session, waiting.name)
        if hops:
            cycle = [s for s, _ in hops]
            locks = [n for _, n in hops]
            raise ConflictError(
                f"acquiring lock {waiting.name} would deadlock: {' -> '.join(cycle)}",
                lock=waiting.name,
                cycle=cycle,
                locks=locks,
            )
        lock.waiters.append(waiting)
        self._waiting_on[waiting.session] = waiting.name
        if waiting.deadline_ms is not None:
            heapq.heappush(self._deadlines, (waiting.deadline_ms, waiting.name))
        self._record(LockEventKind.WAITING, waiting.name, waiting.session)
        return self._remember(waiting)

    def _cycle(self, start: str, name: str) -> list[tuple[str, str]]:
        """The hops ``(session, lock it waits for)`` from ``start`` back to it, or []."""
        parent: dict[str, tuple[str, str]] = {}  # holder -> (session waiting on it, lock)
        frontier = [(start, name)]
        seen = {start}
        while frontier:
            waiter, lock_name = frontier.pop()
            for holder in self._locks[lock_name].holders:
                if holder == start:
                    return self._hops(parent, waiter, lock_name, start)
                if holder in seen:
                    continue
                seen.add(holder)
                parent[holder] = (waiter, lock_name)
                if holder in self._waiting_on:
                    frontier.append((holder, self._waiting_on[holder]))
        return []

    @staticmethod
    def _hops(
        parent: dict[str, tuple[str, str]], last: str, lock_name: str, start: str
    ) -> list[tuple[str, str]]:
        hops = [(last, lock_name)]
        while last != start:
            last, lock_name = parent[last]
            hops.append((last, lock_name))
        hops.reverse()
        return hops

    # -- renew, release ---------------------------------------------------------------------

    def renew(self, name: str, session: str, token: int, *, ttl_ms: int, now_ms: int) -> Grant:
        """The grant with ``expiry_ms = now_ms + ttl_ms``; refused once its expiry passed."""
        if not 0 < ttl_ms <= self.limits.ttl_ms_max:
            raise ValidationError(f"ttl_ms must be in 1..{self.limits.ttl_ms_max}")
        lock, grant = self._held_by(name, session, token)
        if now_ms >= grant.expiry_ms:
            raise StaleTokenError(f"grant {token} of lock {name} has expired", lock=name)
        renewed = replace(grant, expiry_ms=now_ms + ttl_ms, ttl_ms=ttl_ms)
        lock.holders[session] = renewed
        heapq.heappush(self._deadlines, (renewed.expiry_ms, name))
        return renewed

    def release(
        self, name: str, session: str, token: int, *, index: int, now_ms: int
    ) -> LockChanges:
        """Release one grant (only with its token) and wake the waiters it makes room for."""
        self._advance(index)
        lock, grant = self._held_by(name, session, token)
        self._drop_holder(lock, grant, LockEventKind.RELEASED)
        return LockChanges(ended=(grant,), granted=self._wake(name, now_ms))

    def force_release(
        self, name: str, *, index: int, now_ms: int, reason: str | None = None
    ) -> LockChanges:
        """Admin: end every grant of ``name`` (recorded as forced, with why) and wake waiters."""
        self._advance(index)
        lock = self._locks.get(name)
        if lock is None:
            raise NotFoundError(f"no lock {name}", lock=name)
        ended = tuple(lock.holders.values())
        for grant in ended:
            self._drop_holder(lock, grant, LockEventKind.FORCED, detail=reason)
        return LockChanges(ended=ended, granted=self._wake(name, now_ms))

    def cancel_wait(self, name: str, session: str, *, index: int, now_ms: int) -> LockChanges:
        """The waiter gave up (its client went away): drop its place, keep what it holds."""
        self._advance(index)
        if self._waiting_on.get(session) != name:
            return LockChanges()
        lock = self._locks[name]
        waiting = next(w for w in lock.waiters if w.session == session)
        self._drop_waiter(lock, waiting)
        return LockChanges(dropped=(waiting,), granted=self._wake(name, now_ms))

    def _held_by(self, name: str, session: str, token: int) -> tuple[_Lock, Grant]:
        lock = self._locks.get(name)
        grant = None if lock is None else lock.holders.get(session)
        if lock is None or grant is None or grant.token != token:
            raise StaleTokenError(f"token {token} does not hold lock {name}", lock=name)
        return lock, grant

    # -- time and sessions ------------------------------------------------------------------

    def expire(self, *, now_ms: int, index: int) -> LockChanges:
        """End grants whose expiry passed and waits whose deadline passed; wake waiters."""
        self._advance(index)
        ended: list[Grant] = []
        dropped: list[Waiting] = []
        touched = set(self._delayed)
        for name, lock in self._locks.items():
            for grant in [g for g in lock.holders.values() if now_ms >= g.expiry_ms]:
                self._drop_holder(lock, grant, LockEventKind.EXPIRED)
                self._lose(name, lock, now_ms)
                ended.append(grant)
                touched.add(name)
            late = [
                w for w in lock.waiters if w.deadline_ms is not None and now_ms >= w.deadline_ms
            ]
            for waiting in late:
                self._drop_waiter(lock, waiting)
                dropped.append(waiting)
                touched.add(name)
        granted = [g for name in sorted(touched) for g in self._wake(name, now_ms)]
        return LockChanges(ended=tuple(ended), dropped=tuple(dropped), granted=tuple(granted))

    def session_ended(
        self, session: str, *, index: int, now_ms: int, lost: bool = False
    ) -> LockChanges:
        """Drop the session's wait and holds; ``lost`` (no clean release) arms the lock-delay."""
        self._advance(index)
        dropped: list[Waiting] = []
        waited = self._waiting_on.get(session)
        if waited is not None:
            lock = self._locks[waited]
            waiting = next(w for w in lock.waiters if w.session == session)
            self._drop_waiter(lock, waiting)
            dropped.append(waiting)
        names = sorted(self._held.get(session, ()))
        ended = []
        for name in names:
            lock = self._locks[name]
            grant = lock.holders[session]
            kind = LockEventKind.EXPIRED if lost else LockEventKind.RELEASED
            self._drop_holder(lock, grant, kind)
            if lost:
                self._lose(name, lock, now_ms)
            ended.append(grant)
        touched = sorted({*names, *([waited] if waited else [])})
        granted = [g for name in touched for g in self._wake(name, now_ms)]
        return LockChanges(ended=tuple(ended), dropped=tuple(dropped), granted=tuple(granted))

    def rearm(self, *, now_ms: int) -> None:
        """After a leader change: every grant gets its full TTL again from ``now_ms``."""
        for name, lock in self._locks.items():
            for session, grant in lock.holders.items():
                lock.holders[session] = replace(grant, expiry_ms=now_ms + grant.ttl_ms)
                heapq.heappush(self._deadlines, (now_ms + grant.ttl_ms, name))

    # -- bookkeeping ------------------------------------------------------------------------

    def _advance(self, index: int) -> None:
        if index < self.index:
            raise ValidationError(f"index {index} is behind {self.index}")
        self.index = index

    def _add_holder(self, lock: _Lock, grant: Grant) -> Grant:
        lock.holders[grant.session] = grant
        self._held.setdefault(grant.session, set()).add(grant.name)
        self._record(LockEventKind.GRANTED, grant.name, grant.session, grant.token)
        heapq.heappush(self._deadlines, (grant.expiry_ms, grant.name))
        return self._remember(grant)

    def _drop_holder(
        self, lock: _Lock, grant: Grant, kind: LockEventKind, detail: str | None = None
    ) -> None:
        del lock.holders[grant.session]
        held = self._held[grant.session]
        held.discard(grant.name)
        if not held:
            del self._held[grant.session]
        self._record(kind, grant.name, grant.session, grant.token, detail)

    def _drop_waiter(self, lock: _Lock, waiting: Waiting) -> None:
        lock.waiters.remove(waiting)
        del self._waiting_on[waiting.session]
        if waiting.request_id is not None:
            self._requests.pop(waiting.request_id, None)
        self._record(LockEventKind.WAIT_ENDED, waiting.name, waiting.session)

    def _lose(self, name: str, lock: _Lock, now_ms: int) -> None:
        if self.limits.lock_delay_ms > 0:
            lock.delay_until_ms = max(lock.delay_until_ms, now_ms + self.limits.lock_delay_ms)
            self._delayed.add(name)
            heapq.heappush(self._deadlines, (lock.delay_until_ms, name))

    def _wake(self, name: str, now_ms: int) -> tuple[Grant, ...]:
        """Grant the head of the queue while it fits; token = the index of this command."""
        lock = self._locks[name]
        granted: list[Grant] = []
        while lock.waiters and now_ms >= lock.delay_until_ms and _fits(lock, lock.waiters[0].mode):
            w = lock.waiters.popleft()
            del self._waiting_on[w.session]
            grant = Grant(
                name=name,
                session=w.session,
                token=self.index,
                mode=w.mode,
                expiry_ms=now_ms + w.ttl_ms,
                ttl_ms=w.ttl_ms,
                request_id=w.request_id,
                owner=w.owner,
                metadata=w.metadata,
            )
            granted.append(self._add_holder(lock, grant))
        if now_ms >= lock.delay_until_ms:
            self._delayed.discard(name)
            if not lock.holders and not lock.waiters:
                del self._locks[name]
        return tuple(granted)

    def _remember(self, answer: _AnswerT) -> _AnswerT:
        if answer.request_id is not None:
            self._requests[answer.request_id] = answer
            self._requests.move_to_end(answer.request_id)
            while len(self._requests) > self.limits.requests_max:
                self._requests.popitem(last=False)
        return answer

    def _record(
        self,
        kind: LockEventKind,
        name: str,
        session: str,
        token: int | None = None,
        detail: str | None = None,
    ) -> None:
        event = LockEvent(
            kind=kind, name=name, session=session, index=self.index, token=token, detail=detail
        )
        self.history.append(event)
        self.emitted.append(event)
        self.counts[kind.value] += 1

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The whole table as plain dicts and lists (msgpack-friendly)."""
        return {
            "index": self.index,
            "locks": [
                {
                    "name": name,
                    "limit": lock.limit,
                    "delay_until_ms": lock.delay_until_ms,
                    "holders": [_wire(g) for g in lock.holders.values()],
                    "waiters": [_wire(w) for w in lock.waiters],
                }
                for name, lock in self._locks.items()
            ],
            "requests": [
                [rid, "grant" if isinstance(a, Grant) else "waiting", _wire(a)]
                for rid, a in self._requests.items()
            ],
            "delayed": sorted(self._delayed),
            "history": [_wire(e) for e in self.history],
            "counts": dict(self.counts),
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.__init__(self.limits)  # type: ignore[misc]
        self.index = data["index"]
        for d in data["locks"]:
            lock = _Lock(limit=d["limit"], delay_until_ms=d["delay_until_ms"])
            self._locks[d["name"]] = lock
            for g in map(_grant_from, d["holders"]):
                lock.holders[g.session] = g
                self._held.setdefault(g.session, set()).add(g.name)
                self._deadlines.append((g.expiry_ms, g.name))
            for w in map(_waiting_from, d["waiters"]):
                lock.waiters.append(w)
                self._waiting_on[w.session] = w.name
                if w.deadline_ms is not None:
                    self._deadlines.append((w.deadline_ms, w.name))
            if d["name"] in data["delayed"]:
                self._deadlines.append((lock.delay_until_ms, d["name"]))
        for rid, kind, d in data["requests"]:
            self._requests[rid] = _grant_from(d) if kind == "grant" else _waiting_from(d)
        self._delayed = set(data["delayed"])
        heapq.heapify(self._deadlines)
        self.counts = Counter(data.get("counts", {}))
        for e in data["history"]:
            self.history.append(LockEvent(**{**e, "kind": LockEventKind(e["kind"])}))
