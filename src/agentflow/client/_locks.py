"""Locks in the SDK: leases renewed in the background, and fencing on the resource side.

``Client.lock`` / ``AsyncClient.lock`` return a context manager whose value is a :class:`Lease`.
While the block runs, the lease is renewed every third of its TTL. The lease counts as lost
(``lease.lost``; ``lease.check()`` raises :class:`LeaseLostError`) as soon as a renewal is
refused, or when no renewal has succeeded within the TTL measured from when that renewal was
*sent* — so this side gives the lease up no later than the master could expire it.

A lease alone cannot stop a paused holder from writing after it lost the lock: pass
``lease.token`` with every write and let the resource refuse old tokens (:class:`FencedResource`,
:class:`FencedFile`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.client._sockets import SocketDownError
from agentflow.errors import (
    LeaseLostError,
    NotFoundError,
    StaleTokenError,
    TimeoutExpiredError,
)

if TYPE_CHECKING:
    from agentflow.client._async import AsyncClient
    from agentflow.client._sync import Client

__all__ = ["AsyncLockContext", "FencedFile", "FencedResource", "Lease", "LockContext"]

MAX_WAIT_S = 300.0  # the longest one blocking acquire may wait on the master
_LOST = (StaleTokenError, NotFoundError)


def default_holder() -> dict[str, Any]:
    """Inside a task: the attempt (its locks end with it). Elsewhere: a fresh agent session."""
    task_id = os.environ.get("AGENTFLOW_TASK_ID")
    token = os.environ.get("AGENTFLOW_FENCING_TOKEN", "")
    if task_id and token.isdigit():
        return {"task_id": task_id, "task_token": int(token)}
    return {"session": f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"}


@dataclass(slots=True, kw_only=True)
class Lease:
    """A granted lock. ``token`` is its fencing token: send it with every guarded write."""

    name: str
    token: int
    session: str
    mode: str
    ttl_s: float
    holder: dict[str, Any]
    valid_until: float  # time.monotonic() by which a renewal must have succeeded
    lost_reason: str | None = None
    renewals: int = 0
    _on_lost: list[Callable[[Lease], None]] = field(default_factory=list)

    @property
    def lost(self) -> bool:
        if self.lost_reason is None and time.monotonic() >= self.valid_until:
            self._lose(f"no renewal of lock {self.name} succeeded within its {self.ttl_s:g}s TTL")
        return self.lost_reason is not None

    def check(self) -> None:
        """Raise :class:`LeaseLostError` if the lease is (or may be) gone."""
        if self.lost:
            raise LeaseLostError(self.lost_reason or "lease lost", lock=self.name)

    def _renewed(self, sent_at: float, answer: dict[str, Any]) -> None:
        self.valid_until = sent_at + float(answer["ttl_s"])
        self.renewals += 1

    def _lose(self, reason: str, *, notify: bool = True) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            for callback in self._on_lost if notify else ():
                callback(self)


def _slices(wait_s: float | None) -> Iterator[float]:
    """The ``wait_s`` of each blocking request: ``None`` waits for ever, in 300 s turns."""
    if wait_s is not None and wait_s <= MAX_WAIT_S:
        yield max(0.0, wait_s)
        return
    deadline = None if wait_s is None else time.monotonic() + wait_s
    while True:
        left = MAX_WAIT_S if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return
        yield min(MAX_WAIT_S, left)


def _waited(lease: Lease, sent_at: float) -> bool:
    """Whether the grant came long after the request: its validity, counted from the request,
    is then mostly spent, so it is confirmed by a renewal at once (counted from that)."""
    return time.monotonic() - sent_at >= lease.ttl_s / 3


def _lost_at_once(lease: Lease, exc: Exception) -> LeaseLostError:
    lease._lose(f"lock {lease.name} lost before it could be confirmed: {exc}", notify=False)
    return LeaseLostError(lease.lost_reason or "lease lost", lock=lease.name)


class _LockRequest:
    """What to acquire, and for whom; shared by the sync and async contexts."""

    def __init__(
        self,
        name: str,
        *,
        ttl_s: float,
        wait_s: float | None,
        mode: str,
        limit: int,
        session: str | None,
        owner: str | None,
        metadata: dict[str, Any] | None,
        on_lost: Callable[[Lease], None] | None,
    ) -> None:
        self._name = name
        self._holder = {"session": session} if session else default_holder()
        self._ttl_s, self._mode, self._limit, self._owner = ttl_s, mode, limit, owner
        self._metadata = metadata
        self._wait_s = wait_s
        self._on_lost = on_lost
        self.lease: Lease | None = None
        self.path = f"/api/v1/locks/{name}"

    def _bodies(self) -> Iterator[dict[str, Any]]:
        for wait_s in _slices(self._wait_s):
            body: dict[str, Any] = {**self._holder, "ttl_s": self._ttl_s, "wait_s": wait_s}
            body |= {"mode": self._mode, "limit": self._limit}
            body["request_id"] = "lk-" + secrets.token_hex(12)  # a retry gets the same grant
            if self._owner is not None:
                body["owner"] = self._owner
            if self._metadata:
                body["metadata"] = self._metadata
            yield body

    def _granted(self, answer: dict[str, Any], sent_at: float) -> Lease:
        lease = Lease(
            name=answer["name"],
            token=int(answer["token"]),
            session=answer["session"],
            mode=answer["mode"],
            ttl_s=float(answer["ttl_s"]),
            holder=self._holder,
            valid_until=sent_at + float(answer["ttl_s"]),
        )
        if self._on_lost is not None:
            lease._on_lost.append(self._on_lost)
        self.lease = lease
        return lease

    def _not_granted(self) -> TimeoutExpiredError:
        return TimeoutExpiredError(f"lock {self._name} was not granted in time", lock=self._name)

    def _release_body(self) -> dict[str, Any] | None:
        lease = self.lease
        if lease is None or lease.lost_reason is not None:
            return None
        return {**lease.holder, "token": lease.token}


class LockContext(_LockRequest):
    """``with client.lock(name) as lease:`` — acquire, renew in a thread, release on exit.

    Operations go over the client's lock socket (``WS /api/v1/locks``), by HTTP when it is
    down; acquire carries its request id, so a retry either way gets the same grant."""

    def __init__(self, client: Client, name: str, **spec: Any) -> None:
        super().__init__(name, **spec)
        self._client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(self, op: str, body: dict[str, Any], timeout_s: float = 30.0) -> Any:
        try:
            frame = {"op": op, "name": self._name} | body
            answer = self._client.lock_socket.call(frame, timeout_s=timeout_s)
        except SocketDownError:
            return self._client.request("POST", f"{self.path}/{op}", json=body, timeout_s=timeout_s)
        return answer.get("grant", answer)

    def acquire(self) -> Lease:
        for body in self._bodies():
            sent_at = time.monotonic()
            try:
                answer = self._call("acquire", body, timeout_s=body["wait_s"] + 30)
            except TimeoutExpiredError:
                continue
            lease = self._granted(answer, sent_at)
            if _waited(lease, sent_at):
                renew_body = {**lease.holder, "token": lease.token}
                confirmed_at = time.monotonic()
                try:
                    answer = self._call("renew", renew_body)
                except _LOST as exc:
                    raise _lost_at_once(lease, exc) from None
                lease._renewed(confirmed_at, answer)
            self._thread = threading.Thread(
                target=self._renew_loop, args=(lease,), name=f"lease-{self._name}", daemon=True
            )
            self._thread.start()
            return lease
        raise self._not_granted()

    def _renew_loop(self, lease: Lease) -> None:
        body = {**lease.holder, "token": lease.token}
        while not self._stop.wait(lease.ttl_s / 3):
            if lease.lost:
                return
            sent_at = time.monotonic()
            try:
                lease._renewed(sent_at, self._call("renew", body))
            except _LOST as exc:
                lease._lose(f"lock {lease.name} lost: {exc}")
                return
            except Exception:
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        body = self._release_body()
        if body is None or self.lease is None:
            return
        with contextlib.suppress(*_LOST):
            self._call("release", body)
        self.lease._lose(f"lock {self._name} released", notify=False)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class AsyncLockContext(_LockRequest):
    """``async with client.lock(name) as lease:`` — renewal runs as an asyncio task.

    Operations go over the client's lock socket (``WS /api/v1/locks``), by HTTP when it is
    down; acquire carries its request id, so a retry either way gets the same grant."""

    def __init__(self, client: AsyncClient, name: str, **spec: Any) -> None:
        super().__init__(name, **spec)
        self._client = client
        self._task: asyncio.Task[None] | None = None

    async def _call(self, op: str, body: dict[str, Any], timeout_s: float = 30.0) -> Any:
        try:
            frame = {"op": op, "name": self._name} | body
            answer = await self._client.lock_socket.call(frame, timeout_s=timeout_s)
        except SocketDownError:
            return await self._client.request(
                "POST", f"{self.path}/{op}", json=body, timeout_s=timeout_s
            )
        return answer.get("grant", answer)

    async def acquire(self) -> Lease:
        for body in self._bodies():
            sent_at = time.monotonic()
            try:
                answer = await self._call("acquire", body, timeout_s=body["wait_s"] + 30)
            except TimeoutExpiredError:
                continue
            lease = self._granted(answer, sent_at)
            if _waited(lease, sent_at):
                confirmed_at = time.monotonic()
                try:
                    answer = await self._call("renew", {**lease.holder, "token": lease.token})
                except _LOST as exc:
                    raise _lost_at_once(lease, exc) from None
                lease._renewed(confirmed_at, answer)
            self._task = asyncio.create_task(self._renew_loop(lease))
            return lease
        raise self._not_granted()

    async def _renew_loop(self, lease: Lease) -> None:
        body = {**lease.holder, "token": lease.token}
        while True:
            await asyncio.sleep(lease.ttl_s / 3)
            if lease.lost:
                return
            sent_at = time.monotonic()
            try:
                lease._renewed(sent_at, await self._call("renew", body))
            except _LOST as exc:
                lease._lose(f"lock {lease.name} lost: {exc}")
                return
            except Exception:
                continue

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        body = self._release_body()
        if body is None or self.lease is None:
            return
        with contextlib.suppress(*_LOST):
            await self._call("release", body)
        self.lease._lose(f"lock {self._name} released", notify=False)

    async def __aenter__(self) -> Lease:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


def _check_fence(token: int, highest: int) -> None:
    if token < highest:
        raise StaleTokenError(
            f"token {token} is older than {highest}: a newer holder has written",
            token=token,
            highest=highest,
        )


class FencedResource:
    """Guards a resource: a write carrying a token lower than the highest seen is refused.

    In one process (threads share it). For a resource many processes write, see
    :class:`FencedFile`, or keep the highest token wherever the resource itself lives.
    """

    def __init__(self) -> None:
        self._highest = 0
        self._mutex = threading.Lock()

    @property
    def highest(self) -> int:
        return self._highest

    def admit(self, token: int) -> None:
        """Record ``token``, or raise :class:`StaleTokenError` if a newer one was seen."""
        with self.guard(token):
            pass

    @contextlib.contextmanager
    def guard(self, token: int) -> Iterator[None]:
        """Hold the resource for one write made with ``token`` (refused if it is stale)."""
        with self._mutex:
            _check_fence(token, self._highest)
            self._highest = token
            yield


class FencedFile:
    """A file appended to by many processes, each append checked against the highest token.

    The check and the append happen under an exclusive ``flock`` of ``PATH.fence``, which also
    stores the highest token seen, so a stale holder can never append after a newer one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.fence = self.path.with_name(self.path.name + ".fence")

    def append(self, token: int, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        with open(self.fence, "a+b") as fence:
            fcntl.flock(fence, fcntl.LOCK_EX)
            try:
                fence.seek(0)
                text = fence.read().decode().strip()
                _check_fence(token, int(text) if text else 0)
                with open(self.path, "ab") as out:
                    out.write(raw)
                    out.flush()
                    os.fsync(out.fileno())
                fence.seek(0)
                fence.truncate()
                fence.write(str(token).encode())
                fence.flush()
            finally:
                fcntl.flock(fence, fcntl.LOCK_UN)

    @property
    def highest(self) -> int:
        try:
            text = self.fence.read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text else 0
