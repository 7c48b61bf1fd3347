"""Who a request is, and what that identity may do (issue 12).

A bearer token resolves to an :class:`Identity`:

- the master's ``--api-token``: ``admin``, everything;
- ``af_<id>_<secret>``: a token from ``agentflow token create``, looked up by its public id in
  the replicated :class:`~agentflow.state.tokens.TokenTable`, its secret's sha256 compared in
  constant time, refused once expired (the master's clock) or revoked;
- ``aft_<fencing>_<mac>_<task id>``: a task's token, scoped to one attempt. The MAC is keyed by
  a key derived from the admin token, which every master of a cluster holds, so any master
  verifies it after a failover without storing per-task tokens; it is good only while that
  attempt is the task's current, live one (checked against the state on every request).

Nothing is cached beyond the request: a revocation or the end of an attempt applies to the
next request. :func:`authorize` is the route policy per role.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Scope

from agentflow.errors import AuthError, ForbiddenError
from agentflow.state import StateMachine, TaskStatus
from agentflow.state.locks import task_session
from agentflow.state.tokens import Role, TokenRecord

__all__ = [
    "CLOSE_REVOKED",
    "HOLDS_KEY",
    "SCOPE_KEY",
    "Identity",
    "TokenVerifier",
    "authorize",
    "holds_of",
    "identity_of",
    "task_token",
    "task_token_key",
]

SCOPE_KEY = "agentflow.identity"
# A request's or socket's scope holds a callable: whether the token it came with still holds
# (not revoked or expired, its attempt still running). Waits and loops that act for it without
# hearing from it (a long-poll, a lock wait, a keep-alive) ask it before each round.
HOLDS_KEY = "agentflow.token_holds"
CLOSE_REVOKED = 4401  # the close code of a socket whose token stopped holding
ROLE_PREFIX = "af_"
TASK_PREFIX = "aft_"
_LIVE = (TaskStatus.ASSIGNED, TaskStatus.RUNNING)
_IDENTITIES_MAX = 10_000
_WORKER_SESSION = re.compile(r"^/api/v1/workers/[^/]+/session$")
_TASK_SUBMIT = frozenset(
    {"/api/v1/tasks", "/api/v1/tasks/batch", "/api/v1/workflows", "/api/v1/workflows/validate"}
)
EVENTS_PATH = "/api/v1/events"  # a socket that only reads: read-only and task tokens too
_TASK_SEND = frozenset({"/api/v1/messages", "/api/v1/messages/batch", "/api/v1/messages/request"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    role: Role
    name: str
    task_id: str | None = None  # a task token's task: also its agent id
    fencing_token: int | None = None  # and its attempt

    @property
    def lock_session(self) -> str | None:
        """The only lock session a task token may use."""
        if self.task_id is None or self.fencing_token is None:
            return None
        return task_session(self.task_id, self.fencing_token)


def identity_of(scope: Scope) -> Identity | None:
    """The request's identity; ``None`` on a master without ``--api-token`` (open)."""
    found: Identity | None = scope.get(SCOPE_KEY)
    return found


def holds_of(scope: Scope) -> Callable[[], bool]:
    """Whether the token of the request or socket in ``scope`` still holds (always, on an open
    master)."""
    holds: Callable[[], bool] | None = scope.get(HOLDS_KEY)
    return holds if holds is not None else _always


def task_token_key(admin_token: str) -> bytes:
    return hmac.digest(admin_token.encode(), b"agentflow task token key v1", "sha256")


def task_token(key: bytes, task_id: str, fencing_token: int) -> str:
    """The token of one attempt of a task."""
    mac = hmac.digest(key, f"{task_id}:{fencing_token}".encode(), "sha256")[:16].hex()
    return f"{TASK_PREFIX}{fencing_token}_{mac}_{task_id}"


class TokenVerifier:
    """Resolves a bearer token against the admin token and the replicated state."""

    def __init__(
        self, admin_token: str, machine: StateMachine, clock_ms: Callable[[], int]
    ) -> None:
        self._admin = admin_token.encode()
        self.task_key = task_token_key(admin_token)
        self._machine = machine
        self._now_ms = clock_ms
        self._admin_identity = Identity(role=Role.ADMIN, name="admin")
        # The identity made for a stored token, reused only while that very record is the
        # table's (a revoked or replaced token is looked up, and refused, first).
        self._identities: dict[str, tuple[TokenRecord, Identity]] = {}

    def identify(self, given: bytes) -> Identity:
        if hmac.compare_digest(given, self._admin):
            return self._admin_identity
        text = given.decode("ascii", "replace")
        if text.startswith(TASK_PREFIX):
            return self._task(text)
        if text.startswith(ROLE_PREFIX):
            return self._role(text)
        raise AuthError("wrong bearer token")

    def _role(self, text: str) -> Identity:
        token_id, _, secret = text[len(ROLE_PREFIX) :].partition("_")
        record = self._machine.tokens.get(token_id)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if record is None or not hmac.compare_digest(digest, record.secret_sha256):
            raise AuthError("wrong or revoked bearer token")
        if record.expired(self._now_ms()):
            raise AuthError(f"token {token_id} has expired")
        known = self._identities.get(token_id)
        if known is None or known[0] is not record:  # kept only beside the live record
            known = (record, Identity(role=record.role, name=record.name or token_id))
            if len(self._identities) >= _IDENTITIES_MAX:
                self._identities.clear()
            self._identities[token_id] = known
        return known[1]

    def _task(self, text: str) -> Identity:
        fencing, _, rest = text[len(TASK_PREFIX) :].partition("_")
        _mac, _, task_id = rest.partition("_")
        if not fencing.isdigit() or not task_id:
            raise AuthError("malformed task token")
        expected = task_token(self.task_key, task_id, int(fencing))
        if not hmac.compare_digest(expected.encode(), text.encode()):
            raise AuthError("wrong task token")
        task = self._machine.tasks.peek(task_id)
        if task is None or task.fencing_token != int(fencing) or task.status not in _LIVE:
            raise AuthError(f"attempt {fencing} of task {task_id} has ended: its token with it")
        return Identity(
            role=Role.TASK, name=f"task {task_id}", task_id=task_id, fencing_token=int(fencing)
        )


BACKUP_PATH = "/api/v1/cluster/backup"  # the whole state: admin only


def authorize(identity: Identity, method: str, path: str) -> None:
    """Raise :class:`ForbiddenError` unless ``identity`` may ``method`` (``WS`` for a socket)
    on ``path``."""
    role = identity.role
    read = method in ("GET", "HEAD") or (method == "WS" and path == EVENTS_PATH)
    if role is Role.ADMIN:
        allowed = True
    elif role is Role.READ_ONLY:
        # who holds what, and a backup (every task's body): admin only
        allowed = read and not path.startswith(("/api/v1/tokens", BACKUP_PATH))
    elif role is Role.WORKER:
        allowed = method == "WS" and _WORKER_SESSION.match(path) is not None
    elif role is Role.CLIENT:
        allowed = not _admin_only(method, path, read)
    else:
        allowed = _task_may(identity, method, path, read)
    if not allowed:
        raise ForbiddenError(f"a {role.value} token may not {method} {path}", role=role.value)


def _admin_only(method: str, path: str, read: bool) -> bool:
    if path.startswith(("/api/v1/tokens", BACKUP_PATH)) or _WORKER_SESSION.match(path):
        return True
    return not read and path.startswith(("/api/v1/workers", "/api/v1/cluster"))


def _task_may(identity: Identity, method: str, path: str, read: bool) -> bool:
    """A task: its own agent id and lock session, submitting and reading tasks (nested work
    is common: a task may do what a client does with tasks), nothing else."""
    if path.startswith("/api/v1/agents/"):
        return path.split("/", 5)[4] == identity.task_id
    if path == "/api/v1/locks" or path.startswith("/api/v1/locks/"):
        return not path.endswith("/force-release")  # the session is checked by the route
    if method == "POST" and (path in _TASK_SEND or path in _TASK_SUBMIT):
        return True  # a message's sender is set by the route
    if path == EVENTS_PATH:
        return True  # its task and workflow events only (the route narrows the kinds)
    if method == "WS" and path == "/api/v1/submit":
        return True  # the socket form of the submit routes above
    return read and path.startswith(("/api/v1/tasks", "/api/v1/workflows"))


def _always() -> bool:
    return True
