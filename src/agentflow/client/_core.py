"""What the sync and async clients share: building requests, reading answers, retry policy.

The requests of each operation are built in :mod:`agentflow.client._calls`.
"""

from __future__ import annotations

import functools
import inspect
import os
import secrets
import ssl
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import httpx

from agentflow.client._sockets import SocketDownError
from agentflow.config import read_token_file, tls_context
from agentflow.errors import (
    AgentFlowError,
    ClientError,
    NotLeaderError,
    TaskFailedError,
    UnavailableError,
    error_from_problem,
)
from agentflow.gitspec import WorkspaceResult

__all__ = [
    "BATCH",
    "BATCH_CHARS",
    "LONG_POLL_S",
    "RETRYABLE",
    "RETRY_STATUSES",
    "SOCKET_FALLBACK",
    "TERMINAL",
    "Deadline",
    "Failover",
    "SocketAccess",
    "TaskInfo",
    "api_token",
    "build_task",
    "master_urls",
    "raise_for_problem",
    "renamed",
    "token_body",
    "verify",
    "ws_options",
]

P = ParamSpec("P")
R = TypeVar("R")

RETRYABLE = (NotLeaderError, UnavailableError, httpx.TransportError)
# What sends a socket's call to HTTP instead: the socket is down, or the master answered with
# an error that HTTP retries (no leader yet, unavailable). Submits carry idempotency keys.
SOCKET_FALLBACK = (SocketDownError, NotLeaderError, UnavailableError)
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out", "upstream_failed"})
RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_URL = "http://127.0.0.1:6767"
BATCH = 1000  # tasks per batch submit
BATCH_CHARS = 4 << 20  # of calls sent by value per batch submit (a master takes 8 MiB bodies)
LONG_POLL_S = 30.0  # the longest one long poll of a wait asks the master to hold


def api_token(token: str | None) -> str | None:
    """``token``, else ``$AGENTFLOW_API_TOKEN``, else the file named by
    ``$AGENTFLOW_API_TOKEN_FILE``."""
    if token is not None:
        return token
    if os.environ.get("AGENTFLOW_API_TOKEN"):
        return os.environ["AGENTFLOW_API_TOKEN"]
    path = os.environ.get("AGENTFLOW_API_TOKEN_FILE")
    return read_token_file(path) if path else None


def verify(ca: str | None) -> ssl.SSLContext | bool:
    """What verifies the masters' certificates: ``ca`` (or ``$AGENTFLOW_CA``), else the
    system's roots."""
    ca = ca or os.environ.get("AGENTFLOW_CA")
    return tls_context(ca) if ca else True


def ws_options(url: str, verify: ssl.SSLContext | bool, headers: Mapping[str, str]) -> Any:
    """Keyword arguments for ``websockets`` ``connect`` to ``url``."""
    options: dict[str, Any] = {"additional_headers": dict(headers)}
    if url.startswith("wss://") and isinstance(verify, ssl.SSLContext):
        options["ssl"] = verify
    return options


def master_urls(url: str | Sequence[str] | None) -> list[str]:
    """Master URLs from an argument (comma-separated or a list), ``AGENTFLOW_URL``, or default."""
    if url is None:
        url = os.environ.get("AGENTFLOW_URL") or DEFAULT_URL
    items = url.split(",") if isinstance(url, str) else list(url)
    urls = [u.strip().rstrip("/") for u in items if u.strip()]
    for u in urls:
        if not u.startswith(("http://", "https://")):
            raise ClientError(f"master URL must start with http:// or https://: {u!r}")
    if not urls:
        raise ClientError("no master URL given")
    return urls


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInfo:
    """A task as the master reported it. ``raw`` holds every field of the JSON."""

    id: str
    status: str
    title: str = ""
    priority: str = "medium"
    exit_code: int | None = None
    worker_id: str | None = None
    attempts: int = 0
    reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def workspace_result(self) -> WorkspaceResult | None:
        """What the last attempt's git workspace came to (base, commit, branch, changed
        files), or None for a task with no workspace or none recorded yet."""
        wire = self.raw.get("workspace_result")
        return None if wire is None else WorkspaceResult.from_wire(wire)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskInfo:
        return cls(
            id=data["id"],
            status=data["status"],
            title=data.get("title", ""),
            priority=data.get("priority", "medium"),
            exit_code=data.get("exit_code"),
            worker_id=data.get("worker_id"),
            attempts=data.get("attempts", 0),
            reason=data.get("reason"),
            raw=data,
        )

    def raise_for_status(self) -> TaskInfo:
        """Raise :class:`TaskFailedError` unless the task completed."""
        if self.done and not self.ok:
            raise TaskFailedError(
                f"task {self.id} {self.status}: {self.reason or 'no reason given'}",
                task_id=self.id,
                status=self.status,
                exit_code=self.exit_code,
            )
        return self


def build_task(
    command: str | None = None,
    *,
    args: Sequence[str] | None = None,
    agent: str | None = None,
    prompt: str | None = None,
    idempotency_key: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The JSON body of one task; an idempotency key is made up when none is given, so a
    retried submit can never create a second task."""
    body: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if command is not None:
        body["command"] = command
    if args is not None:
        body["args"] = list(args)
    if agent is not None:
        body["agent"] = agent
        body["prompt"] = prompt
    body["idempotency_key"] = idempotency_key or "sdk-" + secrets.token_hex(12)
    return body


def token_body(role: str, ttl_s: float | None, name: str | None) -> dict[str, Any]:
    """The body of ``POST /api/v1/tokens``: only what the caller set."""
    body: dict[str, Any] = {"role": role}
    if ttl_s is not None:
        body["ttl_s"] = ttl_s
    if name is not None:
        body["name"] = name
    return body


def raise_for_problem(response: httpx.Response) -> Any:
    """The JSON body of a success, or the typed error of a problem+json answer."""
    if response.status_code < 400:
        if not response.content:
            return None
        return response.json()
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text[:500] or response.reason_phrase}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)}
    error: AgentFlowError = error_from_problem(response.status_code, problem)
    raise error


def unreachable(urls: Sequence[str], last: Exception | None) -> UnavailableError:
    why = f": {last}" if last else ""
    return UnavailableError(f"no master reachable at {', '.join(urls)}{why}")


class Deadline:
    """The long polls of a wait for at most ``timeout_s`` seconds (``None``: for ever)."""

    def __init__(self, timeout_s: float | None) -> None:
        self._at = None if timeout_s is None else time.monotonic() + timeout_s

    def wait_s(self) -> float:
        """How long the next long poll may ask the master to hold the answer."""
        left = LONG_POLL_S if self._at is None else max(0.0, self._at - time.monotonic())
        return min(LONG_POLL_S, left)

    @property
    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def left_s(self) -> float | None:
        """Seconds left (never below 0); None when there is no deadline."""
        return None if self._at is None else max(0.0, self._at - time.monotonic())


class SocketAccess:
    """What the sync and async clients share for their sockets: where to connect, with which
    headers and TLS, and moving on when a master names another leader."""

    _failover: Failover
    verify: ssl.SSLContext | bool
    auth_headers: dict[str, str]

    def ws_options(self, url: str) -> Any:
        """Keyword arguments for ``websockets`` ``connect`` to ``url`` (headers, TLS)."""
        return ws_options(url, self.verify, self.auth_headers)

    def ws_url(self, path: str) -> str:
        """``path`` on the master this client talks to now, as a WebSocket URL."""
        return "ws" + self._failover.base.removeprefix("http") + path

    def follow_leader(self, leader_url: str | None) -> None:
        """Talk to ``leader_url`` next (a follower named it), or to the next master."""
        extra = {"leader_url": leader_url} if leader_url else {}
        self._failover.failed(NotLeaderError("not the leader", **extra))


class Failover:
    """Which master to ask next, and how long to wait, while a request is retried.

    A master that names the leader (a 503 with ``leader_url``) sends the next try there;
    otherwise the next URL is tried. A failover takes one to two seconds, so tries are frequent
    (backing off to 0.5 s) within a time budget rather than a count.
    """

    def __init__(self, urls: list[str], retry_for_s: float) -> None:
        self.urls = urls
        self.retry_for_s = retry_for_s
        self._preferred = 0

    @property
    def base(self) -> str:
        return self.urls[self._preferred % len(self.urls)]

    def attempts(self) -> Iterator[float]:
        """Yields the delay before each retry; stops when the budget is spent."""
        deadline = time.monotonic() + self.retry_for_s
        attempt = 0
        while time.monotonic() + 0.05 <= deadline:
            yield min(0.5, 0.05 * 2**attempt)
            attempt += 1

    def failed(self, exc: Exception) -> None:
        leader = getattr(exc, "extra", {}).get("leader_url")
        if leader and leader.rstrip("/") in self.urls:
            self._preferred = self.urls.index(leader.rstrip("/"))
        else:
            self._preferred += 1


def renamed(**names: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Keeps each old keyword (``ttl="ttl_s"``) working for one release: it is passed on
    under its new name, with a :class:`DeprecationWarning`. Signatures show the new names."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        def moved(kwargs: dict[str, Any]) -> None:
            for old, new in names.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{fn.__qualname__}() got both {old}= and {new}=")
                warnings.warn(
                    f"{fn.__qualname__}(): {old}= is deprecated, use {new}=",
                    DeprecationWarning,
                    stacklevel=3,
                )
                kwargs[new] = kwargs.pop(old)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awaited(*args: Any, **kwargs: Any) -> Any:
                moved(kwargs)
                return await fn(*args, **kwargs)

            return awaited  # type: ignore[return-value]

        @functools.wraps(fn)
        def called(*args: P.args, **kwargs: P.kwargs) -> R:
            moved(kwargs)
            return fn(*args, **kwargs)

        return called

    return decorate
